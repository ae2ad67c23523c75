"""The one policy for files esr writes: users' files are never lost.

Every command that writes calls :func:`check_output` on each target before doing the
work (so a refused target costs nothing), then :func:`write_output` (or
:func:`replace_atomically` for files esr owns, such as caches) to write it:

* a target that exists is replaced only with ``overwrite=True`` (``--overwrite``);
* a target that is one of the command's inputs (an image, a calibration image, the
  source model: same resolved path or same inode, hard and symbolic links included)
  is never replaced, not even with ``--overwrite``;
* a target that is a folder, or whose folder is not writable, is refused;
* the bytes go to a hidden temp file ``.NAME.XXXXXXXX.part`` in the target's folder,
  which is then renamed onto the target (never a half-written file), with the
  permissions of a normal new file (0666 & ~umask). Without ``overwrite`` the rename
  is a hard link that fails if the target appeared meanwhile (no race with another
  writer).

Refusals are :class:`esr.errors.EsrError` with one line ``PATH: reason`` and exit code 2
(nothing was done), unless the caller asks for another code (a batch uses 1 per file).
"""
from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from esr.errors import EXIT_USAGE, EsrError
from esr.interrupts import interrupts_deferred

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import: mkstemp makes 0600 files; results get the usual 0666 & ~umask

TEMP_SUFFIX = ".part"
TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{8}\.part$")
"""Names of esr's temp files (``tempfile.mkstemp`` adds 8 random characters): ``.NAME.XXXXXXXX.part``."""


def temp_target(temp_name: str) -> str | None:
    """The target file name a temp file ``.NAME.XXXXXXXX.part`` was being written for, or None if not esr's."""
    match = TEMP_NAME.match(temp_name)
    return match["target"] if match else None


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name one file: same inode when both exist, else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def file_id(path: str | Path) -> tuple[int, int] | None:
    """``(device, inode)`` of an existing file (links to it share it), or None."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def check_output(path: str | Path, sources: Iterable[str | Path] = (), overwrite: bool = False,
                 exit_code: int = EXIT_USAGE) -> Path:
    """Raise :class:`EsrError` if ``path`` may not be written; return it as a Path.

    Args:
        path: the file the command is about to write.
        sources: files the command reads (inputs, the source model); never replaced.
        overwrite: whether an existing ``path`` may be replaced (``--overwrite``).
        exit_code: the EsrError's exit code (2: nothing was done).
    """
    path = Path(path)
    for source in sources:
        if path.exists() and same_file(path, source):
            raise EsrError(f"{path}: is an input of this command ({source}); refusing to replace it, "
                           "even with --overwrite", exit_code)
    if path.is_dir():
        raise EsrError(f"{path}: is a folder (give a file name)", exit_code)
    if path.exists() and not overwrite:
        raise EsrError(f"{path}: exists (use --overwrite to replace it)", exit_code)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the nearest existing ancestor: missing folders are created when writing
    if not folder.is_dir():
        raise EsrError(f"{path}: cannot write: {folder} is not a folder", exit_code)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EsrError(f"{path}: cannot write: folder {folder} is not writable", exit_code)
    return path


def check_outputs(paths: Iterable[str | Path], sources: Iterable[str | Path] = (), overwrite: bool = False,
                  exit_code: int = EXIT_USAGE) -> list[Path]:
    """:func:`check_output` for each of a command's targets, which must also name different files."""
    sources = list(sources)
    checked: list[Path] = []
    for path in paths:
        path = check_output(path, sources, overwrite, exit_code)
        if any(same_file(path, other) for other in checked):
            raise EsrError(f"{path}: named for two outputs of this command", exit_code)
        checked.append(path)
    return checked


def replace_atomically(path: str | Path, write: Callable[[str], None], overwrite: bool = True) -> Path:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then move it onto ``path``.

    The folder is created if needed; the file gets the permissions of a normal new file
    (0666 & ~umask); the temp file is removed on any failure, KeyboardInterrupt included.
    With ``overwrite=False`` the move never replaces a file: FileExistsError if ``path``
    exists (checked atomically by a hard link where the file system has them).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = ""
    try:
        with interrupts_deferred():  # the temp file is made inside this try, never just before it
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
            os.close(fd)
        write(tmp_name)
        os.chmod(tmp_name, 0o666 & ~_UMASK)
        if overwrite:
            os.replace(tmp_name, path)
        else:
            _move_no_replace(tmp_name, path)
    finally:
        if tmp_name:
            Path(tmp_name).unlink(missing_ok=True)
    return path


def _move_no_replace(tmp_name: str, path: Path) -> None:
    try:
        os.link(tmp_name, path)  # FileExistsError (errno EEXIST) if path exists, atomically
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if path.exists():  # no hard links on this file system: check, then rename
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(tmp_name, path)


def write_output(path: str | Path, write: Callable[[str], None], sources: Iterable[str | Path] = (),
                 overwrite: bool = False, exit_code: int = EXIT_USAGE) -> Path:
    """:func:`check_output`, then :func:`replace_atomically`; every failure is one EsrError line.

    ``write(tmp_path)`` writes the content to the temp path it is given.
    """
    path = check_output(path, sources, overwrite, exit_code)
    try:
        return replace_atomically(path, write, overwrite)
    except FileExistsError:
        raise EsrError(f"{path}: exists (use --overwrite to replace it)", exit_code) from None
    except OSError as err:
        raise EsrError(f"{path}: cannot write ({err.strerror or err})", exit_code) from None


def write_bytes_atomically(path: str | Path, data: bytes, overwrite: bool = True) -> Path:
    """:func:`replace_atomically` for a bytes payload."""
    return replace_atomically(path, lambda tmp: Path(tmp).write_bytes(data), overwrite)


def write_bytes_if_changed(path: str | Path, data: bytes) -> Path:
    """:func:`write_bytes_atomically` unless ``path`` already holds exactly ``data`` (then it is left alone,
    mtime included: re-running finished work changes nothing)."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return path
    return write_bytes_atomically(path, data)


def append_atomically(path: str | Path, text: str) -> Path:
    """Append ``text`` to a small file esr owns (a log such as ``val_curve.jsonl``): the old content plus
    ``text`` go to a temp file that replaces it, so a kill never leaves half a line."""
    path = Path(path)
    old = path.read_bytes() if path.is_file() else b""
    return write_bytes_atomically(path, old + text.encode())


def write_output_bytes(path: str | Path, data: bytes, sources: Iterable[str | Path] = (),
                       overwrite: bool = False, exit_code: int = EXIT_USAGE) -> Path:
    """:func:`write_output` for a bytes payload."""
    return write_output(path, lambda tmp: Path(tmp).write_bytes(data), sources, overwrite, exit_code)
