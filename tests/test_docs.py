"""Measured docs are rendered from committed JSON (scripts/render_docs.py): none may drift from its source."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def load_renderer():
    spec = importlib.util.spec_from_file_location("render_docs", REPO / "scripts" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rendered_pages_match_their_json():
    render = load_renderer()
    stale = [str(path.relative_to(REPO)) for path, text in render.render_all().items()
             if not path.is_file() or path.read_text() != text]
    assert not stale, f"run `python scripts/render_docs.py`: stale pages {stale}"


def test_a_changed_number_is_caught(tmp_path):
    render = load_renderer()
    (tmp_path / "src").mkdir()
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "bench.json").write_text(json.dumps({"rows": [{"model": "a", "ms": 12.345},
                                                                      {"model": "b", "ms": 7.0}]}))
    (tmp_path / "src" / "page.md").write_text(
        "a takes {{ pick(bench.rows, model='a').ms :.1f }} ms\n{{ table(bench.rows, [('model', 'model'), ('ms', 'ms', '.0f')]) }}\n")
    text = next(iter(render.render_all(tmp_path / "src", tmp_path / "res").values()))
    assert text.startswith("a takes 12.3 ms\n| model | ms |\n|---|---|\n| a | 12 |\n| b | 7 |")
    (tmp_path / "res" / "bench.json").write_text(json.dumps({"rows": [{"model": "a", "ms": 13.0}]}))
    assert "13.0 ms" in next(iter(render.render_all(tmp_path / "src", tmp_path / "res").values()))
    (tmp_path / "src" / "page.md").write_text("{{ pick(bench.rows, model='zzz').ms }}")
    with pytest.raises(ValueError, match="matched 0 records"):
        render.render_all(tmp_path / "src", tmp_path / "res")
