"""Training documents: stage merging, overrides, $ESR_SHARED expansion."""
from __future__ import annotations

from pathlib import Path

import pytest

from esr.errors import EsrError
from esr.train.options import apply_override, deep_merge, expand_vars, load_document, stage_options

DOC = {
    "name": "run",
    "datasets": {"train": {"gt_size": 64, "dataroot_hr": ["$ESR_SHARED/datasets/T91"]}},
    "train": {"total_iter": 10, "optim_g": {"type": "Adam", "lr": 1e-3, "betas": [0.9, 0.99]},
              "pixel_opt": {"type": "L1Loss", "reduction": "mean"}},
    "stages": [
        {"name": "a"},
        {"name": "b", "datasets": {"train": {"gt_size": 96}}, "train": {"optim_g": {"lr": 5e-4},
                                                                       "pixel_opt": {"type": "ContrastiveLoss"}}},
    ],
}


def test_stages_merge_onto_the_document() -> None:
    (name_a, opt_a), (name_b, opt_b) = stage_options(DOC)
    assert (name_a, opt_a["name"], name_b, opt_b["name"]) == ("a", "run_a", "b", "run_b")
    assert opt_a["datasets"]["train"]["gt_size"] == 64 and opt_b["datasets"]["train"]["gt_size"] == 96
    assert opt_b["train"]["optim_g"] == {"type": "Adam", "lr": 5e-4, "betas": [0.9, 0.99]}
    # a new loss type replaces the dict: the L1 kwargs must not leak into ContrastiveLoss
    assert opt_b["train"]["pixel_opt"] == {"type": "ContrastiveLoss"}
    assert "stages" not in opt_b and DOC["stages"][1]["datasets"]["train"]["gt_size"] == 96  # input untouched


def test_document_without_stages_is_one_stage() -> None:
    doc = {key: value for key, value in DOC.items() if key != "stages"}
    assert [(name, opt["name"]) for name, opt in stage_options(doc)] == [("train", "run_train")]


def test_duplicate_or_missing_stage_names_are_rejected() -> None:
    with pytest.raises(EsrError, match="unique"):
        stage_options({**DOC, "stages": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(EsrError, match="unique"):
        stage_options({**DOC, "stages": [{"train": {}}]})


def test_overrides_address_nested_keys_and_stages() -> None:
    doc = deep_merge(DOC, {})
    apply_override(doc, "train.total_iter=3")
    apply_override(doc, "stages.1.train.optim_g.lr=2e-4")
    apply_override(doc, "val.val_freq=5")
    assert doc["train"]["total_iter"] == 3 and doc["val"] == {"val_freq": 5}
    assert doc["stages"][1]["train"]["optim_g"]["lr"] == pytest.approx(2e-4)
    with pytest.raises(EsrError, match="key.path=value"):
        apply_override(doc, "train.total_iter")


def test_esr_shared_default_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from esr.paths import shared_dir

    monkeypatch.delenv("ESR_SHARED", raising=False)
    assert expand_vars({"a": ["${ESR_SHARED}/x"]}) == {"a": [f"{shared_dir()}/x"]}
    monkeypatch.setenv("ESR_SHARED", str(tmp_path))
    assert expand_vars("$ESR_SHARED/y") == f"{tmp_path}/y"


def test_bad_documents_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(EsrError, match="bad.yml: not an options file"):
        load_document(bad)
    with pytest.raises(EsrError, match="missing.yml: cannot read"):
        load_document(tmp_path / "missing.yml")


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parent.parent.joinpath("options").glob("*.yml")))
def test_shipped_options_plan(path: Path) -> None:
    from esr.train.runner import build_network

    for _, opt in stage_options(load_document(path)):
        assert opt["model_type"] == "ESRModel" and opt["network_g"]["upscale"] == opt["scale"]
        assert int(opt["train"]["total_iter"]) > 0
        assert build_network(opt["network_g"]).descriptor.scale == opt["scale"]


def test_resume_skips_a_truncated_newest_state(tmp_path: Path, resume_dirs: dict) -> None:
    """A kill during BasicSR's (non-atomic) save leaves a truncated newest state: resume from the one before."""
    from esr.train.runner import load_latest_state

    states, models, opt = resume_dirs["states"], resume_dirs["models"], resume_dirs["opt"]
    (states / "6.state").write_bytes((states / "6.state").read_bytes()[:100])
    state = load_latest_state(opt)
    assert state["iter"] == 4
    assert opt["path"]["resume_state"] == str(states / "4.state")
    assert opt["path"]["pretrain_network_g"] == str(models / "net_g_4.pth")
    assert load_latest_state({**opt, "path": {**opt["path"], "training_states": str(tmp_path / "none")}}) is None
