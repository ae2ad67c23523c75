"""The resume folder of one video output: finished segments and a manifest, beside the output.

``OUTDIR/.NAME.esr-segments/`` (NAME = the output's file name) holds ``00000.nut``,
``00001.nut``, ... and ``manifest.json``. A segment is encoded to ``NNNNN.nut.part`` and
renamed when complete, then the manifest (written atomically) lists it with its first
frame index, frame count and size. So after a kill the folder holds whole segments
plus at most one ``.part`` (deleted on the next run), and a rerun continues at the
first frame no listed segment covers: no frame twice, none missing.

The manifest also records the source (size, mtime, sha256 of its first MiB) and every
setting that changes the output; a rerun with a different source or settings is refused
(``--overwrite`` starts over). After the output is written the folder is removed.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from esr.errors import EXIT_FAILED, EsrError
from esr.fileio import write_bytes_atomically
from esr.video.encode import EncodeSpec, SegmentFile
from esr.video.probe import SourceFrame

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
FINGERPRINT_BYTES = 2**20


def segments_folder(dest: Path) -> Path:
    """The resume folder of output ``dest``: ``.NAME.esr-segments`` beside it."""
    return dest.parent / f".{dest.name}.esr-segments"


def source_fingerprint(path: Path) -> dict[str, Any]:
    """Size, mtime and the sha256 of the first MiB of ``path``: enough to notice a replaced or edited source."""
    stat = path.stat()
    with path.open("rb") as handle:
        head = hashlib.sha256(handle.read(FINGERPRINT_BYTES)).hexdigest()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_first_mib": head}


@dataclass(frozen=True)
class Segment:
    """A finished segment: file name in the folder, first frame index, frame count, bytes."""

    file: str
    first_frame: int
    frames: int
    size: int


@dataclass
class Manifest:
    identity: dict[str, Any]
    segments: list[Segment] = field(default_factory=list)
    complete: bool = False

    def to_json(self) -> bytes:
        return json.dumps({"version": MANIFEST_VERSION, "identity": self.identity, "complete": self.complete,
                           "segments": [asdict(s) for s in self.segments]}, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw = json.loads(data)
        if raw.get("version") != MANIFEST_VERSION:
            raise ValueError("manifest version")
        return cls(raw["identity"], [Segment(**s) for s in raw["segments"]], bool(raw["complete"]))


class SegmentStore:
    """Finished segments of one output (see the module docstring). Use :meth:`open`."""

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        self.folder = folder
        self.manifest = manifest

    @classmethod
    def open(cls, dest: Path, identity: dict[str, Any], overwrite: bool) -> SegmentStore:
        """Resume the segments of ``dest`` made with ``identity``, or start an empty store.

        EsrError (exit 1) if the folder holds segments of another source or other settings,
        unless ``overwrite`` (then they are deleted). Segments missing or of the wrong size
        end the list at that point; a leftover ``.part`` is deleted.
        """
        identity = json.loads(json.dumps(identity))  # the form it has after a round trip through the file
        folder = segments_folder(dest)
        manifest = Manifest(identity)
        try:
            found = Manifest.from_json((folder / MANIFEST_NAME).read_bytes())
        except FileNotFoundError:
            found = None
        except (OSError, ValueError, KeyError, TypeError):  # unreadable manifest: its segments cannot be trusted
            found = Manifest({})
        if found is not None and found.identity != identity and found.segments:
            if not overwrite:
                what = "from another source" if found.identity.get("source") != identity["source"] else \
                    "with other settings"
                raise EsrError(f"{dest}: {folder.name} holds unfinished segments made {what} "
                               "(rerun with the same settings, or --overwrite to start over)", exit_code=EXIT_FAILED)
        elif found is not None:
            for segment in found.segments:
                path = folder / segment.file
                if not path.is_file() or path.stat().st_size != segment.size:
                    break
                manifest.segments.append(segment)
            manifest.complete = found.complete and len(manifest.segments) == len(found.segments)
        store = cls(folder, manifest)
        store._clean(keep={s.file for s in manifest.segments})
        folder.mkdir(parents=True, exist_ok=True)
        store._save()
        return store

    @property
    def next_frame(self) -> int:
        """Index of the first frame no finished segment covers."""
        return sum(s.frames for s in self.manifest.segments)

    @property
    def complete(self) -> bool:
        """Whether every frame of the source is in a finished segment."""
        return self.manifest.complete

    @property
    def files(self) -> list[Path]:
        """The finished segments, in frame order."""
        return [self.folder / s.file for s in self.manifest.segments]

    def part_path(self) -> Path:
        """Temp path the next segment is encoded to."""
        return self.folder / f"{len(self.manifest.segments):05d}.nut.part"

    def commit(self, part: Path, first_frame: int, frames: int) -> None:
        """Rename the finished ``part`` to its final name and list it in the manifest."""
        final = part.with_suffix("")
        part.replace(final)
        self.manifest.segments.append(Segment(final.name, first_frame, frames, final.stat().st_size))
        self._save()

    def finish(self) -> None:
        """Record that every frame is encoded (a rerun goes straight to joining)."""
        self.manifest.complete = True
        self._save()

    def remove(self) -> None:
        """Delete the segments, the manifest and the folder (after the output is written)."""
        self._clean(keep=set())
        (self.folder / MANIFEST_NAME).unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:  # someone put other files there: leave them
            pass

    def _save(self) -> None:
        write_bytes_atomically(self.folder / MANIFEST_NAME, self.manifest.to_json())

    def _clean(self, keep: set[str]) -> None:
        """Delete this store's segments and temp files except ``keep``; other files stay."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if path.name.endswith((".nut", ".part")) and path.name not in keep:
                path.unlink(missing_ok=True)


class SegmentWriter:
    """Feeds upscaled frames into segments of about ``seconds`` each, committing each to ``store``.

    A segment ends before the first frame whose time is ``seconds`` or more after the
    segment's first frame; the next one starts with a fresh encoder (a keyframe).
    """

    def __init__(self, store: SegmentStore, spec: EncodeSpec, seconds: float) -> None:
        self.store = store
        self.spec = spec
        self.seconds = Fraction(seconds)
        self.current: SegmentFile | None = None
        self.part: Path | None = None
        self.first_frame = 0
        self.start_time = Fraction(0)
        self.frames = 0

    def add(self, frame: SourceFrame) -> None:
        time = frame.pts * self.spec.time_base
        if self.current is not None and time - self.start_time >= self.seconds:
            self._commit()
        if self.current is None:
            self.part = self.store.part_path()
            self.current = SegmentFile(self.part, self.spec, frame)
            self.first_frame, self.start_time, self.frames = frame.index, time, 0
        self.current.add(frame)
        self.frames += 1

    def finish(self) -> None:
        """Commit the last segment and mark the store complete."""
        if self.current is not None:
            self._commit()
        self.store.finish()

    def abort(self) -> None:
        """Drop the segment in progress (finished ones stay for the next run)."""
        if self.current is not None:
            self.current.abort()
            self.current = None
        if self.part is not None:
            self.part.unlink(missing_ok=True)

    def _commit(self) -> None:
        self.current.close()
        self.current = None
        self.store.commit(self.part, self.first_frame, self.frames)
        self.part = None
