"""Per-output claim files, so that several ``esr upscale`` runs on one OUTDIR share the work.

Before a run starts on an output ``DIR/NAME`` it creates ``DIR/.NAME.esr-claim`` with
``O_CREAT | O_EXCL`` (atomic: exactly one run wins), holding the owner's host, pid and
process start time as JSON; the claim is removed when that output is written or has failed.
A run that finds a claim of a live process skips the output ("being written by another
run"). A claim whose process is gone (killed, crashed; or the pid was reused by another
process) is stale: the next run reclaims it. Claims of another host (a shared network
folder) are treated as live, since that process cannot be checked from here.

Hidden temp files ``.NAME.XXXXXXXX.part`` (:mod:`esr.fileio`) left by a killed run are
removed by :func:`remove_stale_temps`: those whose output has a stale claim at once, those
with no claim at all once they are older than :data:`ORPHAN_TEMP_AGE_S`.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

from esr.fileio import temp_target
from esr.interrupts import interrupts_deferred

CLAIM_SUFFIX = ".esr-claim"
ORPHAN_TEMP_AGE_S = 3600.0
"""A temp file without any claim is only removed when it is this old (it may belong to another esr command)."""
UNWRITTEN_CLAIM_AGE_S = 10.0
"""An empty or unreadable claim (its owner died between creating and writing it) is stale after this long."""


def claim_path(dest: Path) -> Path:
    """``DIR/NAME`` -> ``DIR/.NAME.esr-claim``."""
    return dest.with_name(f".{dest.name}{CLAIM_SUFFIX}")


def _start_time(pid: int) -> str | None:
    """The process start time in clock ticks since boot (Linux ``/proc``), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name may contain spaces


def _owner() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def is_stale(path: Path) -> bool:
    """Whether the claim file ``path`` belongs to a process that no longer runs (False if it vanished)."""
    try:
        text = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    try:
        owner = json.loads(text)
        host, pid, start = owner["host"], int(owner["pid"]), owner.get("start")
    except (ValueError, KeyError, TypeError):
        return age > UNWRITTEN_CLAIM_AGE_S
    if host != socket.gethostname():
        return False
    if not _alive(pid):
        return True
    return start is not None and _start_time(pid) not in (None, start)  # the pid now names another process


def _remove_stale(path: Path) -> None:
    """Remove the stale claim ``path``; only one of several reclaimers does (it is renamed away first),
    and a claim that a live run took over in the meantime is put back."""
    grave = path.with_name(f"{path.name}.{uuid.uuid4().hex}.stale")
    with interrupts_deferred():  # Ctrl-C here would leave the grave, and could lose a live run's claim
        try:
            os.rename(path, grave)
        except FileNotFoundError:
            return
        if not is_stale(grave):
            try:
                os.link(grave, path)
            except OSError:
                pass
        grave.unlink(missing_ok=True)


def try_claim(dest: Path) -> bool:
    """Claim ``dest`` for this process: True if claimed (also if a stale claim was taken over), False if
    another live run holds it. OSError if the folder cannot hold the claim file."""
    path = claim_path(dest)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not is_stale(path):
                return False
            _remove_stale(path)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(_owner(), handle)
        return True
    return False


def release(dest: Path) -> None:
    """Remove this process's claim on ``dest`` (no-op if it is not ours)."""
    path = claim_path(dest)
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(owner, dict) and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove esr's temp files and stale claims in ``folder`` left by killed runs (see the module
    docstring); returns the temp files removed."""
    try:
        entries = [path for path in folder.iterdir() if path.name.startswith(".")]
    except OSError:
        return []
    stale_claims = {path for path in entries if path.name.endswith(CLAIM_SUFFIX) and is_stale(path)}
    removed, now = [], time.time()
    for path in entries:
        target = temp_target(path.name)
        if target is None:
            continue
        claim = claim_path(folder / target)
        try:
            orphan = not claim.exists() and now - path.stat().st_mtime > ORPHAN_TEMP_AGE_S
        except FileNotFoundError:
            continue
        if orphan or claim in stale_claims:
            path.unlink(missing_ok=True)
            removed.append(path)
    for claim in stale_claims:
        _remove_stale(claim)
    return removed
