"""The top-level error handler (one line, exit 70, --debug / ESR_DEBUG for the traceback), and the
zoo's download URLs (item 10: the names the upstream repositories use, checked as data)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

import esr.cli.models_cmd as models_cmd
from esr.cli import build_parser, main
from esr.errors import EXIT_INTERNAL
from esr.zoo import ZOO

UPSTREAM_FILES = {
    # (owner/repo, folder) -> the files that folder holds on the default branch (listed by hand from GitHub)
    ("bytedance/RLFN", "model_zoo"): {"rlfn_x2.pth", "rlfn_x4.pth", "rlfn_s_x2.pth", "rlfn_s_x4.pth"},
    ("ofsoundof/NTIRE2022_ESR", "model_zoo"): {"team04_rlfn.pth"},  # the RLFN_ntire entry (team 04) of the challenge
}


def boom(args):
    raise ValueError("something broke\nover two lines")


def test_unexpected_errors_are_one_line_with_a_hint(monkeypatch, capsys):
    monkeypatch.delenv("ESR_DEBUG", raising=False)
    monkeypatch.setattr(models_cmd, "run", boom)
    assert main(["models"]) == EXIT_INTERNAL == 70
    err = capsys.readouterr().err
    assert err == "error: ValueError: something broke over two lines (rerun with --debug for the traceback)\n"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(monkeypatch, capsys, how):
    monkeypatch.setattr(models_cmd, "run", boom)
    if how == "env":
        monkeypatch.setenv("ESR_DEBUG", "1")
    assert main(["--debug", "models"] if how == "flag" else ["models"]) == 70
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in boom" in err
    assert err.splitlines()[-1].startswith("error: ValueError: something broke")


def test_train_debug_keeps_its_basicsr_meaning():
    args = build_parser().parse_args(["train", "-opt", "x.yml", "--debug"])
    assert args.debug is True and args.esr_debug is False
    args = build_parser().parse_args(["--debug", "train", "-opt", "x.yml"])
    assert args.debug is False and args.esr_debug is True


def test_a_real_subprocess_error_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    run = subprocess.run([sys.executable, "-m", "esr", "export", "--model", str(bad), "--onnx",
                          str(tmp_path / "x.onnx")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and run.stderr.startswith(f"error: {bad}: ")


def test_zoo_urls_name_the_files_upstream_publishes():
    for entry in ZOO.values():
        url = urlparse(entry.url)
        assert url.scheme == "https" and url.netloc == "github.com"
        owner, repo, raw, branch, *folder, name = url.path.strip("/").split("/")
        assert (raw, branch) == ("raw", "main")
        assert name in UPSTREAM_FILES[(f"{owner}/{repo}", "/".join(folder))], entry.url
        assert entry.filename == f"{entry.name}.pth"  # the local name stays the zoo name
    assert Path(urlparse(ZOO["rlfn_ntire_x4"].url).path).name == "team04_rlfn.pth"


def test_zoo_checksums_match_the_shared_copies(shared):
    from esr.loading import sha256_of

    folder = shared / "weights" / "rlfn"
    found = [entry for entry in ZOO.values() if (folder / entry.filename).is_file()]
    assert {entry.name for entry in found} >= {"rlfn_x4", "rlfn_ntire_x4"}
    for entry in found:
        assert sha256_of(folder / entry.filename) == entry.sha256, entry.name
