"""Checkpoint reading: wrappers, safety, and one-line errors for bad files."""
from __future__ import annotations

import pickle

import pytest
import torch

from esr.archs.presets import build_model
from esr.cli import main
from esr.errors import EsrError
from esr.loading import load_model, save_checkpoint


def assert_one_line(err: EsrError, path) -> None:
    message = str(err)
    assert "\n" not in message
    assert str(path) in message


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.pth"
    good = tmp_path / "good.pth"
    torch.save(build_model("rlfn_ntire", 4).state_dict(), good)
    path.write_bytes(good.read_bytes()[:5000])  # truncated zip
    with pytest.raises(EsrError) as info:
        load_model(path)
    assert_one_line(info.value, path)
    assert "corrupt" in str(info.value)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(EsrError, match="empty") as info:
        load_model(path)
    assert_one_line(info.value, path)


class NotWeights:
    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def test_non_checkpoint_pickle_is_refused_without_running_code(tmp_path):
    path = tmp_path / "object.pth"
    with open(path, "wb") as handle:
        pickle.dump(NotWeights(), handle)
    with pytest.raises(EsrError, match="not a weights checkpoint") as info:
        load_model(path)
    assert_one_line(info.value, path)


def test_tensor_dict_of_unknown_arch(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(EsrError, match="unrecognised architecture") as info:
        load_model(path)
    assert_one_line(info.value, path)


def test_wrong_scale(tmp_path):
    path = tmp_path / "x4.pth"
    torch.save(build_model("rlfn_ntire", 4).state_dict(), path)
    with pytest.raises(EsrError, match="x4, but x2") as info:
        load_model(path, scale=2)
    assert_one_line(info.value, path)


def test_cli_reports_bad_file_in_one_line(tmp_path, capsys):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    assert main(["eval", "--model", str(path), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and str(path) in err


@pytest.mark.parametrize("wrapper", ["params", "params_ema", "state_dict"])
def test_basicsr_wrappers_and_module_prefix(tmp_path, wrapper):
    torch.manual_seed(0)
    model = build_model("rlfn_ntire", 3).eval()
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    loaded = load_model(path)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_esr_checkpoint_keeps_hyperparameters(tmp_path):
    model = build_model("rlfn_s", 2, img_range=1.0)
    path = save_checkpoint(model, tmp_path / "sub" / "ours.pth")
    loaded = load_model(path)
    assert loaded.hyperparams == model.hyperparams
    assert not loaded.training


def test_zoo_name_without_local_weights_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("ESR_WEIGHTS_DIR", str(tmp_path / "none"))

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    with pytest.raises(EsrError, match="download failed") as info:
        load_model("rlfn_x2")
    assert "\n" not in str(info.value)
    assert not list(tmp_path.rglob("*.part"))


def test_embedded_default_loads_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("ESR_WEIGHTS_DIR", raising=False)
    model = load_model("rlfn_s_x4")
    assert model.descriptor.scale == 4 and not model.training


def test_zoo_scale_mismatch():
    with pytest.raises(EsrError, match="x4, but x2"):
        load_model("rlfn_s_x4", scale=2)


def test_download_verifies_checksum(tmp_path, monkeypatch, official_weights):
    """A zoo entry is fetched into the cache (file:// URL here) only when its sha256 matches."""
    import dataclasses

    import esr.loading as loading
    from esr.zoo import ZOO

    monkeypatch.setenv("ESR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ESR_WEIGHTS_DIR", str(tmp_path / "none"))
    entry = dataclasses.replace(ZOO["rlfn_x2"], url=(official_weights / "rlfn_x2.pth").as_uri())
    bad = dataclasses.replace(entry, sha256="0" * 64)
    monkeypatch.setitem(loading.ZOO, "rlfn_x2", bad)
    with pytest.raises(EsrError, match="sha256 mismatch"):
        load_model("rlfn_x2")
    assert not list((tmp_path / "cache").rglob("*.pth*"))
    monkeypatch.setitem(loading.ZOO, "rlfn_x2", entry)
    model = load_model("rlfn_x2")
    assert model.descriptor.scale == 2
    assert (tmp_path / "cache" / "weights" / "rlfn_x2.pth").is_file()
