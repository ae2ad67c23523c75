"""Small media files the tests write with PyAV (imported by the test modules beside it)."""
from __future__ import annotations

from typing import Any

import av
import numpy as np


def mux_silent_aac(out: Any) -> None:
    """Add an AAC stream to the open output container ``out`` and mux one packet of silence into it
    (1024 mono samples at 48 kHz), then flush the encoder."""
    sound = out.add_stream("aac", rate=48000)
    chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
    chunk.sample_rate, chunk.pts = 48000, 0
    out.mux(sound.encode(chunk))
    out.mux(sound.encode(None))
