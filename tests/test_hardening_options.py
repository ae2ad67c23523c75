"""Items 8 (training part) and 10 of the hardening issue: the options schema, overrides checked the
same way, and a finished stage whose options changed is never silently "already finished"."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from esr.archs import build_model
from esr.cli import main
from esr.errors import EsrError
from esr.loading import save_checkpoint
from esr.train.options import apply_override, load_document, stage_options
from esr.train.runner import result_options, train_document
from esr.train.schema import document_problems

OPTIONS = sorted(Path(__file__).resolve().parent.parent.joinpath("options").glob("*.yml"))
BASE = load_document(OPTIONS[0].parent / "demo_rlfn_s_x4.yml")


def problems_after(*edits: str, delete: tuple[str, ...] = ()) -> list[str]:
    doc = copy.deepcopy(BASE)
    doc.pop("stages", None)
    for path in delete:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        del node[last]
    for edit in edits:
        apply_override(doc, edit)
    return document_problems(doc)


@pytest.mark.parametrize("path", OPTIONS, ids=[p.name for p in OPTIONS])
def test_every_shipped_options_file_validates(path: Path) -> None:
    assert document_problems(load_document(path)) == []


@pytest.mark.parametrize("key", ["network_g", "train", "train.total_iter", "datasets", "scale",
                                 "datasets.train.gt_size", "train.optim_g", "logger.print_freq"])
def test_missing_keys_are_named(key: str) -> None:
    assert f"{key}: missing (required)" in problems_after(delete=(key,))


@pytest.mark.parametrize("edit,expected", [
    ("train.totl_iter=4", "train.totl_iter: unknown key (did you mean train.total_iter?)"),
    ("num_gpus=0", "num_gpus: unknown key (did you mean num_gpu?)"),
    ("logger.print_frq=5", "logger.print_frq: unknown key (did you mean logger.print_freq?)"),
    ("path.experiments_root=/tmp", "path.experiments_root: unknown key"),  # set by BasicSR itself
    ("datasets.train.phase=train", "datasets.train.phase: unknown key"),
    ("datasets.train.batch_size=4", "datasets.train.batch_size: unknown key (did you mean "
                                    "datasets.train.batch_size_per_gpu?)"),
    ("train.optim_g.lrr=0.1", "train.optim_g.lrr: unknown key (did you mean train.optim_g.lr?)"),
    ("train.scheduler.period=[5]", "train.scheduler.period: unknown key (did you mean train.scheduler.periods?)"),
    ("network_g.feature_chanels=8", "network_g.feature_chanels: unknown key (did you mean "
                                    "network_g.feature_channels?)"),
    ("network_g.type=RLFNN", "network_g.type: unknown arch 'RLFNN' (did you mean RLFN?)"),
    ("train.pixel_opt.type=L1Los", "train.pixel_opt.type: unknown loss 'L1Los' (did you mean L1Loss?)"),
    ("network_g.upscale=2", "network_g.upscale: is 2 but scale is 4 (they must match)"),
    ("datasets.train.gt_size=66", "datasets.train.gt_size: 66 is not a multiple of scale 4"),
    ("train.total_iter=0", "train.total_iter: must be an integer >= 1, not 0"),
    ("datasets.tarin.name=x", "datasets.tarin: unknown phase (did you mean datasets.train?)"),
])
def test_unknown_or_inconsistent_keys_at_every_level(edit: str, expected: str) -> None:
    found = problems_after(edit)
    assert any(p.startswith(expected) for p in found), found


def test_name_must_stay_a_folder_name() -> None:
    doc = copy.deepcopy(BASE)
    doc["name"] = "../../elsewhere"
    assert any(p.startswith("name: must be a plain folder name") for p in document_problems(doc))


def test_stage_entries_and_stage_specific_problems() -> None:
    doc = copy.deepcopy(BASE)
    doc["stages"] = [{"name": "one"}, {"name": "two", "trian": {}, "network_g": {"upscale": 2}}]
    found = document_problems(doc)
    assert found == ["stages.1.trian: unknown key (did you mean stages.1.train?)"]
    del doc["stages"][1]["trian"]
    assert document_problems(doc) == ["stage two: network_g.upscale: is 2 but scale is 4 (they must match)"]


def test_the_cli_rejects_a_bad_override_in_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    options = OPTIONS[0].parent / "demo_rlfn_s_x4.yml"
    assert main(["train", "-opt", str(options), "train.totl_iter=4"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {options}: invalid options: ")
    assert "train.totl_iter: unknown key (did you mean train.total_iter?)" in err[0]
    assert main(["train", "-opt", str(options), "train.total_iter.x=4"]) == 2
    assert "train.total_iter.x=4: no such option" in capsys.readouterr().err
    assert not (tmp_path / "experiments").exists()  # nothing ran


def finished_document(tmp_path: Path, total_iter: int) -> dict:
    doc = copy.deepcopy(BASE)
    doc.pop("stages", None)
    doc["name"] = "done"
    doc["train"]["total_iter"] = total_iter
    doc["datasets"]["train"]["dataroot_hr"] = str(tmp_path / "hr")
    return doc


def test_a_finished_stage_with_changed_options_says_what_to_do(tmp_path) -> None:
    doc = finished_document(tmp_path, 4)
    (stage, opt), = stage_options(doc)
    run_dir = tmp_path / "experiments" / "done"
    save_checkpoint(build_model("rlfn_s", 4), run_dir / f"stage_{stage}.pth")
    (run_dir / f"stage_{stage}.json").write_text(json.dumps(result_options(opt)))
    assert train_document(doc, tmp_path) == run_dir / "final.pth"  # unchanged: skipped, final written
    with pytest.raises(EsrError) as info:
        train_document(finished_document(tmp_path, 8), tmp_path)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 2
    assert "stage train already finished" in message and "train.total_iter: 4 -> 8" in message
    assert "add a stage" in message and "new name" in message
