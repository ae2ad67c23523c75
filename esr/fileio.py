"""Write a file so that its path is either untouched or complete: temp file in the same folder, then rename."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import: mkstemp makes 0600 files; results get the usual 0666 & ~umask


def replace_atomically(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then ``os.replace`` it onto ``path``.

    The folder is created if needed; the file gets the permissions of a normal new file
    (0666 & ~umask); the temp file is removed on any failure, KeyboardInterrupt included.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        write(tmp_name)
        os.chmod(tmp_name, 0o666 & ~_UMASK)
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return path


def write_bytes_atomically(path: str | Path, data: bytes) -> Path:
    """:func:`replace_atomically` for a bytes payload."""
    return replace_atomically(path, lambda tmp: Path(tmp).write_bytes(data))
