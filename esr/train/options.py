"""esr training documents: one YAML, optional ``stages:`` list, ``key=value`` overrides.

A document is a BasicSR options file plus ``stages:``, a list of dicts each with a unique
``name`` and any option keys to override (deep-merged onto the document, lists replaced,
a dict with a different ``type`` replaced whole).
A document without ``stages`` is one stage named ``train``. Strings under ``datasets``
and ``path`` have ``$VARS`` expanded; ``$ESR_SHARED`` defaults to :func:`esr.paths.find_shared_dir`.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from esr.errors import EsrError
from esr.paths import find_shared_dir


def load_document(path: str | Path) -> dict[str, Any]:
    """The parsed YAML mapping; EsrError naming the file if unreadable or not a mapping."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise EsrError(f"{path}: cannot read options ({str(err).splitlines()[0]})") from None
    if not isinstance(doc, dict) or "name" not in doc:
        raise EsrError(f"{path}: not an options file (a YAML mapping with a 'name' key)")
    return doc


def apply_override(doc: dict[str, Any], assignment: str) -> None:
    """Set ``a.b.c=value`` in place (value parsed as YAML; digits index lists, e.g. ``stages.1.train.total_iter=5``).

    A path through a value that is not a mapping or list, or past a list's end, is an EsrError;
    a new key is created (the schema check then rejects it if unknown, with a suggestion).
    """
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise EsrError(f"{assignment}: override must look like key.path=value")
    *parents, last = key.split(".")
    node: Any = doc
    try:
        value = parse_value(raw)
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise TypeError(type(node).__name__)
    except (ValueError, IndexError, TypeError, AttributeError, yaml.YAMLError):
        raise EsrError(f"{assignment}: no such option (a path of mapping keys, numbers for list items, "
                       f"e.g. stages.1.train.total_iter=5)") from None


def parse_value(raw: str) -> Any:
    """YAML value of an override; number-like strings PyYAML leaves as str (``2e-4``) become floats."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``override`` merged into ``base`` recursively.

    Dicts merge key by key, except that a dict whose ``type`` differs from the base's
    replaces it whole (a new loss/optimizer type must not inherit the old one's kwargs);
    other values replace.
    """
    merged = copy.deepcopy(base)
    for key, value in override.items():
        same_type = isinstance(value, dict) and value.get("type", None) in (None, (merged.get(key) or {}).get("type"))
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and same_type:
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def expand_vars(node: Any) -> Any:
    """``node`` with ``$VAR``/``${VAR}`` expanded in every string. ``ESR_SHARED`` defaults to
    :func:`esr.paths.find_shared_dir`; when it is unset and no ``../shared`` exists it stays as written (the
    data-folder check then says to set it)."""
    if isinstance(node, dict):
        return {key: expand_vars(value) for key, value in node.items()}
    if isinstance(node, list):
        return [expand_vars(value) for value in node]
    if isinstance(node, str) and "$" in node:
        shared = find_shared_dir()
        if "ESR_SHARED" not in os.environ and shared is not None:
            node = node.replace("${ESR_SHARED}", str(shared)).replace("$ESR_SHARED", str(shared))
        return os.path.expandvars(node)
    return node


def stage_options(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``[(stage name, merged BasicSR options), ...]`` in order; BasicSR names are ``{name}_{stage}``."""
    base = {key: value for key, value in doc.items() if key != "stages"}
    stages = doc.get("stages") or [{"name": "train"}]
    names = [stage.get("name") for stage in stages]
    if any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
        raise EsrError(f"{doc['name']}: every stage needs a unique non-empty 'name' (got {names})")
    planned = []
    for stage in stages:
        overrides = {key: value for key, value in stage.items() if key not in ("name", "warm_start_transform")}
        opt = deep_merge(base, overrides)
        opt["name"] = f"{doc['name']}_{stage['name']}"
        for section in ("datasets", "path"):
            if section in opt:
                opt[section] = expand_vars(opt[section])
        planned.append((stage["name"], opt))
    return planned
