"""``esr upscale --shard I/N``: which outputs this process owns.

Shards are numbered from 0 (``0/3``, ``1/3``, ``2/3``), like SLURM array task ids
(``--array=0-2``, ``--shard $SLURM_ARRAY_TASK_ID/3``) and torch ranks.

An output belongs to shard ``sha1(relative output path) mod N``: the relative path under OUTDIR
(e.g. ``sub/img_x4.png``) names the unit of work, is the same on every machine whatever the inputs'
mount point, and its shard depends on nothing else, so adding or removing inputs between the runs
of different shards never moves an existing file to another shard (with a split by position in the
sorted list it would: a file could then be done twice or never). The price is balance: shards are
equal in size only on average (binomially, e.g. 10 files over 3 shards may give 5/3/2), which is
immaterial for the large batches sharding is for.
"""
from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

from esr.errors import EsrError


class Shard(NamedTuple):
    """Shard ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    def owns(self, key: str) -> bool:
        """True if the work item named ``key`` (a relative output path) is this shard's."""
        return shard_of(key, self.count) == self.index


def shard_of(key: str, count: int) -> int:
    """The shard (0..count-1) of ``key``: its SHA-1 as an integer, modulo ``count``."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % count


def parse_shard(text: str) -> Shard:
    """``"I/N"`` -> ``Shard(I, N)``; EsrError (exit 2) unless 0 <= I < N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise EsrError(f"--shard {text}: expected I/N, e.g. 0/4 (shards are numbered from 0)")
    index, count = int(match[1]), int(match[2])
    if count < 1 or index >= count:
        raise EsrError(f"--shard {text}: I must be in 0..N-1 and N >= 1 (shards are numbered from 0)")
    return Shard(index, count)
