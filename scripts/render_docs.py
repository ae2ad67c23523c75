"""Render the measured documentation from the committed JSON results.

Every page under ``docs/src/`` is a Markdown template; ``{{ EXPR }}`` and ``{{ EXPR :FORMAT }}``
placeholders are Python expressions over the JSON files of ``docs/results/`` (each ``.json``
file, or ``.jsonl`` file read as a list of its lines' objects, is a variable named after its stem, with attribute access: ``bench_precision.machine.cpu``), plus
the helpers :func:`pick` (one record of a list by field values), :func:`last_until` (the last
record up to a limit) and :func:`table` (a Markdown table from records). ``docs/src/README.md`` renders to the repo's ``README.md``, every other
page ``docs/src/X.md`` to ``docs/X.md``. A test (``tests/test_docs.py``) renders in memory and
fails when a committed page differs, so no number in the docs can drift from its JSON.

    python scripts/render_docs.py          # rewrite the rendered pages
    python scripts/render_docs.py --check  # exit 1 and list the stale pages
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable

from esr.fileio import write_bytes_atomically

REPO = Path(__file__).resolve().parent.parent
SOURCES = REPO / "docs" / "src"
RESULTS = REPO / "docs" / "results"
PLACEHOLDER = re.compile(r"\{\{(.+?)\}\}", re.S)


class Record(dict):
    """A JSON object whose keys also read as attributes (``rec.median_ms``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no field {name!r} (fields: {', '.join(self)})") from None


def as_records(value: Any) -> Any:
    """``value`` with every dict turned into a :class:`Record`, recursively."""
    if isinstance(value, dict):
        return Record({key: as_records(item) for key, item in value.items()})
    if isinstance(value, list):
        return [as_records(item) for item in value]
    return value


def pick(records: Iterable[Record], **match: Any) -> Record:
    """The one record whose fields equal ``match``; ValueError unless exactly one does."""
    found = [r for r in records if all(r.get(key) == value for key, value in match.items())]
    if len(found) != 1:
        raise ValueError(f"pick({match}) matched {len(found)} records")
    return found[0]


def last_until(records: Iterable[Record], field: str, limit: float) -> Record | None:
    """The last record (in order) whose ``field`` is at most ``limit``; None if none is."""
    found = [r for r in records if r[field] <= limit]
    return found[-1] if found else None


def cell(value: Any, fmt: str = "") -> str:
    """``value`` formatted for a table cell (``-`` for None)."""
    if value is None:
        return "-"
    return format(value, fmt) if fmt else str(value)


def table(records: Iterable[Record], columns: list[tuple]) -> str:
    """A Markdown table: ``columns`` are ``(header, field)`` or ``(header, field, format)``;
    ``field`` may be a callable taking the record."""
    columns = [(c[0], c[1], c[2] if len(c) > 2 else "") for c in columns]
    lines = ["| " + " | ".join(header for header, _, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    for record in records:
        values = [field(record) if callable(field) else record.get(field) for _, field, _ in columns]
        lines.append("| " + " | ".join(cell(v, fmt) for v, (_, _, fmt) in zip(values, columns)) + " |")
    return "\n".join(lines)


def namespace(results: Path = RESULTS) -> dict[str, Any]:
    """Variables for the placeholders: one per ``*.json`` in ``results`` plus the helpers."""
    names: dict[str, Any] = {"pick": pick, "table": table, "last_until": last_until, "cell": cell, "round": round, "len": len,
                             "min": min, "max": max, "sum": sum, "sorted": sorted, "abs": abs, "str": str, "range": range,
                             "zip": zip}
    for path in sorted(results.glob("*.json")):
        names[path.stem] = as_records(json.loads(path.read_text()))
    for path in sorted(results.glob("*.jsonl")):  # one JSON object per line (e.g. `esr models --json`)
        names[path.stem] = as_records([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
    return names


def render_text(text: str, names: dict[str, Any], source: str = "template") -> str:
    """``text`` with every ``{{ EXPR[:FORMAT] }}`` replaced by its value."""

    def substitute(match: re.Match) -> str:
        body = match.group(1).strip()
        expr, fmt = body, ""
        head, sep, tail = body.rpartition(" :")
        if sep and re.fullmatch(r"[<>^=+\- #0-9,._a-zA-Z%]*", tail.strip()):
            expr, fmt = head.strip(), tail.strip()
        try:
            # names as globals, so comprehensions inside an expression see them too; our own templates, not user input
            return cell(eval(expr, {"__builtins__": {}, **names}), fmt)
        except Exception as err:
            line = text[:match.start()].count("\n") + 1
            raise ValueError(f"{source}:{line}: {{{{ {body} }}}}: {type(err).__name__}: {err}") from None

    return PLACEHOLDER.sub(substitute, text)


def target_of(template: Path) -> Path:
    """``docs/src/README.md`` -> ``README.md``; ``docs/src/X.md`` -> ``docs/X.md`` (beside ``src/``)."""
    docs = template.parent.parent
    return docs.parent / "README.md" if template.name == "README.md" else docs / template.name


def render_all(sources: Path = SOURCES, results: Path = RESULTS) -> dict[Path, str]:
    """{rendered page path: its text} for every template."""
    names = namespace(results)
    return {target_of(t): render_text(t.read_text(), names, t.name)
            for t in sorted(sources.glob("*.md"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report pages that differ from their render")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render_all().items():
        if not path.is_file() or path.read_text() != text:
            stale.append(path)
            if not args.check:
                write_bytes_atomically(path, text.encode())
    for path in stale:
        print(f"{'stale' if args.check else 'rendered'}: {path.relative_to(REPO)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
