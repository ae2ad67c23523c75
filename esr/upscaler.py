"""The one image -> tensor -> backend -> tensor -> image path, with seamless tiling.

:class:`Upscaler` is stateless (safe to share between threads): every call computes its
own tile plan. Along each axis of length L an image is cut into ``ceil(L / tile)``
overlapping tiles of ``ceil(L / n) + 2 * tile_pad`` pixels (all the same size, at most
``tile + 2 * tile_pad``, evenly spread so that neighbours overlap by at least ``2 * tile_pad``). Each tile's output is weighted by a
separable window that ramps up as sin^2 over ``tile_pad * scale`` output pixels on the
sides that have a neighbour, normalised so that the weights sum to one everywhere, and
accumulated one row of tiles at a time (the window is one in a tile's interior, so only the
overlaps are multiplied): finished output rows are quantised straight into the result, so
float memory is one row of tiles, never the whole output. An image in one pass is quantised
straight from the model's output.

Automatic tile size (``tile=0``): an image runs in one pass when
``H * W * BYTES_PER_INPUT_PIXEL <= memory_budget``; otherwise the tile side is
``floor(sqrt(memory_budget / BYTES_PER_INPUT_PIXEL)) - 2 * tile_pad`` (at least
``MIN_TILE``). Tiles run one at a time on all the threads; with ``tile_streams`` > 1 a backend with streams
(:func:`esr.backends.tile_runner`: OpenVINO on a CPU) runs up to that many at once, each on its share of the
threads (docs/benchmarks.md: slower on a quiet 2-core host, faster on a busy shared one); tiles are blended in
order whatever order they finish in, so the output is the same either way. A backend with a size limit (``max_hw``, e.g. a TensorRT profile or a
static ONNX shape) caps the tile so that ``tile + 2 * tile_pad`` fits it (``tile_pad`` shrinks to a
quarter of a limit smaller than ``4 * tile_pad``). A model whose
descriptor says tiling is ``internal`` (it tiles itself) or ``discouraged`` is run in one
pass unless such a limit forces tiles. On an out-of-memory error of a model call the tile
side is halved and the image retried; the output array is allocated once, before that, and
an image whose output does not fit in the memory available is refused with one line
(:func:`check_output_memory`) instead.

Alpha (:meth:`Upscaler.upscale_alpha`): a constant alpha plane (fully opaque, fully
transparent) stays exactly that constant without a model call; otherwise the model's
result is clamped, pixel by pixel, to the range of the 3x3 input neighbourhood it comes
from, so alpha never overshoots and flat regions stay exactly flat.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import replace
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
import torch

from esr.backends import Backend, tile_runner
from esr.channels import run_on_channels
from esr.errors import EsrError
from esr.image_io import Image
from esr.pools import ordered_map, worker_pool

BYTES_PER_INPUT_PIXEL = 4096
"""Peak memory one model call needs per input pixel (RLFN-S x4 fp32 on CPU measures about
2.3 KB; rounded up for the larger zoo models and allocator slack). It also covers OpenVINO's two tiles in
flight (streams) for the zoo's models: peak over the process before the first call, compilation included,
at 362 x 362, two calls at once: RLFN-S x4 / RLFN x4 bf16 2.7 KB, fp32 3.5 / 3.7 KB (one call: 1.4 and
2.0-2.1 KB). A heavier model exceeds it either way (DITN-Real x4 fp32: 6.1 KB one call, 10.0 KB two); an
out-of-memory error halves the tile."""

DEFAULT_MEMORY_BUDGET = 512 * 2**20
"""Bytes one model call may use when ``tile=0`` (512 MiB: whole images up to about 360 x 360)."""

ARRAY_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)
"""Array types :meth:`Upscaler.upscale_array` takes: integers at full range, floats in [0, 1]."""

MIN_TILE = 32
"""Smallest tile side the automatic rule and the out-of-memory retry go down to."""

Progress = Callable[[float], None]
"""Called with the fraction of the current image just completed (sums to 1 per image)."""


def axis_spans(length: int, tile: int, pad: int) -> list[tuple[int, int]]:
    """[start, end) input spans covering ``length`` for tiles of side ``tile`` plus ``pad`` context.

    ``n = ceil(length / tile)`` spans (one if ``tile <= 0``), all of the same size
    ``min(length, ceil(length / n) + 2 * pad)``, evenly spread, so neighbours overlap by
    at least ``2 * pad``.
    """
    count = 1 if tile <= 0 else math.ceil(length / tile)
    size = min(length, math.ceil(length / count) + 2 * pad)
    if count == 1 or size >= length:
        return [(0, length)]
    return [(s, s + size) for s in (round(i * (length - size) / (count - 1)) for i in range(count))]


def axis_weights(spans: list[tuple[int, int]], scale: int, pad: int) -> list[torch.Tensor]:
    """Per-span 1-D blend weights over output pixels, summing to exactly one at every position.

    Each span ramps as sin^2 over ``pad * scale`` output pixels on the sides facing a neighbour.
    """
    ramp_len = pad * scale
    ramp = torch.sin(0.5 * math.pi * (torch.arange(ramp_len, dtype=torch.float64) + 0.5) / max(ramp_len, 1)) ** 2
    total = torch.zeros(spans[-1][1] * scale, dtype=torch.float64)
    raw = []
    for index, (start, end) in enumerate(spans):
        weight = torch.ones((end - start) * scale, dtype=torch.float64)
        if ramp_len and index > 0:
            weight[:ramp_len] = ramp
        if ramp_len and index < len(spans) - 1:
            weight[-ramp_len:] = torch.minimum(weight[-ramp_len:], ramp.flip(0))
        total[start * scale:end * scale] += weight
        raw.append(weight)
    return [(w / total[s * scale:e * scale]).float() for w, (s, e) in zip(raw, spans)]


def ones_span(weights: torch.Tensor) -> tuple[int, int]:
    """[first, last) of the run of weights that are exactly one in 1-D ``weights`` (a tile's interior), (0, 0) if none."""
    ones = (weights == 1).nonzero()
    if not len(ones):
        return 0, 0
    first, last = int(ones[0]), int(ones[-1]) + 1
    return (first, last) if bool((weights[first:last] == 1).all()) else (0, 0)


def add_weighted_(target: torch.Tensor, out: torch.Tensor, row_w: torch.Tensor, col_w: torch.Tensor) -> None:
    """``target += out * row_w[:, None] * col_w[None, :]`` for (C, h, w) tensors, multiplying only where a weight
    is not one: the interior is added as it is, the four edge strips weighted (``out`` is not modified)."""
    (r0, r1), (c0, c1) = ones_span(row_w), ones_span(col_w)
    height, width = out.shape[1:]
    target[:, r0:r1, c0:c1].add_(out[:, r0:r1, c0:c1])
    for rows, cols in (((0, r0), (0, width)), ((r1, height), (0, width)), ((r0, r1), (0, c0)), ((r0, r1), (c1, width))):
        if rows[1] > rows[0] and cols[1] > cols[0]:
            region = (slice(None), slice(*rows), slice(*cols))
            target[region].addcmul_(out[region], row_w[slice(*rows), None] * col_w[None, slice(*cols)])


CV_DEPTHS = {np.dtype(np.uint8): cv2.CV_8U, np.dtype(np.uint16): cv2.CV_16U}
"""Integer output dtype -> OpenCV depth :func:`quantise_into` writes."""


def quantise_into(band: torch.Tensor, max_value: float, out: np.ndarray) -> None:
    """``out[...] = clip(round(band * max_value), 0, max)`` as (rows, W, C) ``uint8``/``uint16``, from ``band``
    (C, rows, W) float of any dtype and device (a custom backend's), unclamped; rounding half to even (the
    same as ``torch.round``; checked on every tie).

    OpenCV multiplies, rounds and saturates in one pass: per plane then interleaved for a planar band,
    straight into ``out`` for a channels-last one (torch's CPU output). About half the time of clamp, multiply,
    round and a channel-permuting cast in torch (24.7 -> 13.0 ms for a 2048 x 2048 RGB image, 2 threads)."""
    depth = CV_DEPTHS[out.dtype]
    band = band.detach().to("cpu", torch.float32)  # no copy for the usual CPU float32 band
    channels, rows, width = band.shape
    pixels = band.permute(1, 2, 0)
    if pixels.is_contiguous():
        written = cv2.multiply(pixels.numpy().reshape(rows, width * channels), max_value,
                               dst=out.reshape(rows, width * channels), dtype=depth)
    elif channels == 1:
        written = cv2.multiply(band.numpy()[0], max_value, dst=out[..., 0], dtype=depth)
    else:
        written = cv2.merge([cv2.multiply(plane, max_value, dtype=depth) for plane in band.numpy()], dst=out)
    if not np.shares_memory(written, out):  # OpenCV allocated its own result: copy it over
        out[...] = written.reshape(out.shape)


OUTPUT_COPIES = 3
"""Copies of an output image alive at its peak: the result, the encoder's channel-reordered
copy, and an ``--outscale`` resize or the encoded bytes."""


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_output_memory(height: int, width: int, channels: int, itemsize: int, available: int | None = None) -> None:
    """EsrError (exit 1) if an output of ``height x width x channels`` needs more memory than is available."""
    needed = height * width * channels * itemsize * OUTPUT_COPIES
    available = available_memory() if available is None else available
    if available is not None and needed > available:
        raise EsrError(f"the {width}x{height} output needs about {needed / 2**30:.1f} GiB of memory, "
                       f"{available / 2**30:.1f} GiB is available (use a smaller --outscale or a smaller "
                       f"image)", exit_code=1)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(err).lower()


class Upscaler:
    """Upscale images, arrays or tensors with a :class:`esr.backends.Backend`.

    Args:
        backend: callable (N, C, h, w) float [0, 1] -> (N, C', h*s, w*s) (C, C' from its ``descriptor``),
            with ``descriptor`` and ``max_hw``.
        tile: tile side in input pixels (without padding); 0 = automatic (module docstring).
        tile_pad: overlap context added on each side of a tile, in input pixels.
        outscale: final scale of :meth:`upscale_array` / :meth:`upscale_image` (None: the model's);
            the model output is resized once (Lanczos up, area down).
        memory_budget: bytes one model call may use, for ``tile=0``.
        tile_streams: tiles of one image run at once where the backend has streams (at most its
            ``streams``); 1 = one at a time.
    """

    def __init__(self, backend: Backend, tile: int = 0, tile_pad: int = 16, outscale: float | None = None,
                 memory_budget: int = DEFAULT_MEMORY_BUDGET, tile_streams: int = 1) -> None:
        if tile < 0 or tile_pad < 0:
            raise ValueError("tile and tile_pad must be >= 0")
        if tile_streams < 1:
            raise ValueError("tile_streams must be >= 1")
        if outscale is not None and outscale <= 0:
            raise ValueError("outscale must be > 0")
        self.backend = backend
        self.run_tile, self.streams = tile_runner(backend, tile_streams)
        self.descriptor = backend.descriptor
        self.scale = self.descriptor.scale
        if tile and self.descriptor.tiling != "supported":
            warnings.warn(f"{self.descriptor.name}: tiling is {self.descriptor.tiling} for this model; "
                          f"tile {tile} ignored (tiles only where a size limit forces them)", stacklevel=2)
            tile = 0
        self.tile = tile
        if backend.max_hw is not None:  # a small static shape: keep tiles at least half of it
            tile_pad = min(tile_pad, (min(backend.max_hw) - 1) // 4)
        self.tile_pad = tile_pad
        self.outscale = outscale
        self.memory_budget = memory_budget

    def tile_for(self, height: int, width: int) -> int:
        """Tile side used for an ``height x width`` input (0: one pass), per the rule in the module docstring."""
        tile = self.tile
        if (tile == 0 and self.descriptor.tiling == "supported"
                and height * width * BYTES_PER_INPUT_PIXEL > self.memory_budget):
            tile = max(MIN_TILE, math.isqrt(self.memory_budget // BYTES_PER_INPUT_PIXEL) - 2 * self.tile_pad)
        limit = self.backend.max_hw
        if limit is not None:
            cap = max(1, min(limit) - 2 * self.tile_pad)
            if (tile == 0 and (height > limit[0] or width > limit[1])) or tile > cap:
                tile = cap
        return tile

    def _run(self, x: torch.Tensor, run: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """(1, C, h, w) float, C in {1, 3, 4} -> (1, C, h*s, w*s) by ``run`` (default: the backend), fitted to the
        model's channels by :func:`esr.channels.run_on_channels` (gray through an RGB model as RGB, averaged back;
        colour through a gray model plane by plane; an opaque alpha added for an RGBA model)."""
        return run_on_channels(run or self.backend, x, self.descriptor.in_channels, self.descriptor.out_channels)

    def bands(self, src: torch.Tensor, max_value: float, tile: int, progress: Progress | None = None,
              clamp: bool = True) -> Iterator[tuple[int, torch.Tensor]]:
        """Blend tiles of ``src`` (C, H, W), any dtype scaled by ``max_value`` to [0, 1].

        Yields ``(first_row, band)``: finished output rows as (C, rows, W*s) float in [0, 1]
        (the caller may modify it; valid until the next item), top to bottom, covering H*s rows.
        ``clamp=False``: the rows as blended, not clamped to [0, 1], and read only (an image in one
        pass yields the model's own output).
        """
        channels, height, width = src.shape
        s, pad = self.scale, self.tile_pad if tile > 0 else 0
        rows, cols = axis_spans(height, tile, pad), axis_spans(width, tile, pad)
        if len(rows) == len(cols) == 1:  # one pass: the output is the band, no blending buffer
            out = self._tile(src[None], max_value)  # read only: a backend's output may be an inference tensor
            yield 0, out.clamp(0, 1) if clamp else out
            if progress is not None:
                progress(1.0)
            return
        row_w, col_w = axis_weights(rows, s, pad), axis_weights(cols, s, pad)
        strip = (rows[0][1] - rows[0][0]) * s
        buffer = torch.zeros(channels, strip, width * s)
        top = 0  # output row of buffer[:, 0]
        places = [(r, c) for r in range(len(rows)) for c in range(len(cols))]
        inputs = (src[None, :, rows[r][0]:rows[r][1], cols[c][0]:cols[c][1]] for r, c in places)
        for (r, c), out in zip(places, self._tile_outputs(inputs, max_value)):
            (y0, _), (x0, x1) = rows[r], cols[c]
            if y0 * s > top:  # a new row of tiles: the rows above it are finished
                done, keep = y0 * s - top, top + strip - y0 * s
                yield top, buffer[:, :done].clamp_(0, 1) if clamp else buffer[:, :done]
                buffer[:, :keep] = buffer[:, done:done + keep].clone()
                buffer[:, keep:] = 0
                top = y0 * s
            add_weighted_(buffer[:, :, x0 * s:x1 * s], out, row_w[r], col_w[c])
            if progress is not None:
                progress(1.0 / len(places))
        yield top, buffer[:, :height * s - top].clamp_(0, 1) if clamp else buffer[:, :height * s - top]

    def _tile_outputs(self, inputs: Iterable[torch.Tensor], max_value: float) -> Iterator[torch.Tensor]:
        """:meth:`_tile` of each of ``inputs`` (an image's tiles), in order, ``streams`` at a time."""
        def run(tile_in: torch.Tensor) -> torch.Tensor:
            return self._tile(tile_in, max_value, self.run_tile)

        if self.streams == 1:
            return map(run, inputs)
        return ordered_map(run, inputs, worker_pool("esr-tiles", self.streams), self.streams)

    def _tile(self, tile_in: torch.Tensor, max_value: float,
              run: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """(1, C, h, w) input of any dtype scaled by ``max_value`` -> (C, h*s, w*s) float model output by ``run``
        (default: the backend; read only: it may be an inference tensor); FloatingPointError if it holds a NaN/Inf."""
        out = self._run(tile_in.float() / max_value, run)[0]
        if not math.isfinite(float(out.sum())):  # a NaN/Inf anywhere reaches the sum; 10x cheaper than isfinite()
            raise FloatingPointError("model output has NaN/Inf")
        return out

    def upscale_tensor(self, x: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
        """(1, C, H, W) float in [0, 1] (C = 1, 3 or 4) -> (1, C, H*s, W*s) float clamped to [0, 1]; no outscale."""
        tile = self.tile_for(x.shape[-2], x.shape[-1])
        return torch.cat([band.clone() for _, band in self.bands(x[0], 1.0, tile, progress)], dim=1)[None]

    def _model_array(self, pixels: np.ndarray, tile: int, progress: Progress | None, out: np.ndarray) -> np.ndarray:
        integer = pixels.dtype.kind == "u"
        max_value = float(np.iinfo(pixels.dtype).max) if integer else 1.0
        with warnings.catch_warnings():  # a read-only array is only read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            src = torch.from_numpy(pixels).permute(2, 0, 1)
        for top, band in self.bands(src, max_value, tile, progress, clamp=not integer):
            rows = out[top:top + band.shape[1]]
            if integer:
                quantise_into(band, max_value, rows)
            else:
                torch.from_numpy(rows).copy_(band.permute(1, 2, 0))
        return out

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the final output of an ``height x width`` input (outscale applied)."""
        if self.outscale is None or self.outscale == self.scale:
            return height * self.scale, width * self.scale
        return max(1, round(height * self.outscale)), max(1, round(width * self.outscale))

    def upscale_array(self, pixels: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Upscale an image array; the result has the same layout and dtype.

        Args:
            pixels: (H, W) or (H, W, 1) gray, (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, uint16, or
                float32/float64 with values in [0, 1]. Read-only arrays are fine (never written).

        Returns:
            (round(H*f), round(W*f)[, C]) with f = outscale or the model's scale: integer results
            rounded and clipped to the dtype's range, float results clipped to [0, 1]. RGBA: the
            colour through the model, alpha by :meth:`upscale_alpha`; for an RGBA model (4 input
            channels) all four through the model in one call, alpha then clamped to its 3x3 input
            neighbourhood's range as :meth:`upscale_alpha` does. Out of memory in a model call
            -> the tile is halved and retried; an output larger than the memory available -> EsrError first.
        """
        if pixels.dtype not in ARRAY_DTYPES or pixels.ndim not in (2, 3) or (
                pixels.ndim == 3 and pixels.shape[2] not in (1, 2, 3, 4)):
            raise ValueError(f"expected (H, W), (H, W, 1|2|3|4) uint8/uint16/float32/float64, "
                             f"got {pixels.shape} {pixels.dtype}")
        if pixels.ndim == 2:
            return self.upscale_array(pixels[..., None], progress)[..., 0]
        if pixels.shape[2] == 4 and self.descriptor.in_channels == 4:
            out = self._upscale_planes(pixels, progress)
            out[..., 3] = clamp_to_neighbourhood(np.ascontiguousarray(out[..., 3]), pixels[..., 3])
            return out
        if pixels.shape[2] in (2, 4):  # the last channel is alpha
            def half(fraction: float) -> None:
                if progress is not None:
                    progress(fraction / 2)

            color = self.upscale_array(pixels[..., :-1], half)
            return np.dstack([color, self.upscale_alpha(pixels[..., -1], half)])
        return self._upscale_planes(pixels, progress)

    def _upscale_planes(self, pixels: np.ndarray, progress: Progress | None) -> np.ndarray:
        """:meth:`upscale_array` of (H, W, C) with all C planes through the model (:meth:`_run` fits them to it)."""
        height, width, channels = pixels.shape
        check_output_memory(*self.output_size(height, width), channels, pixels.itemsize)
        try:
            out = np.empty((height * self.scale, width * self.scale, channels), dtype=pixels.dtype)
        except MemoryError:
            raise EsrError(f"cannot allocate the {width * self.scale}x{height * self.scale} output "
                           f"({height * width * self.scale**2 * channels * pixels.itemsize / 2**30:.1f} GiB)",
                           exit_code=1) from None
        tile = self.tile_for(height, width)
        while True:
            try:
                out = self._model_array(pixels, tile, progress, out)
                break
            except (RuntimeError, MemoryError) as err:
                current = tile or max(height, width)
                if not _is_oom(err) or current // 2 < MIN_TILE:
                    raise
                tile = current // 2
                warnings.warn(f"out of memory; retrying this image with --tile {tile}", stacklevel=2)
        return self._resize(out, height, width)

    def _resize(self, out: np.ndarray, height: int, width: int) -> np.ndarray:
        if self.outscale is None or self.outscale == self.scale:
            return out
        out_h, out_w = self.output_size(height, width)
        method = cv2.INTER_LANCZOS4 if self.outscale > self.scale else cv2.INTER_AREA
        resized = cv2.resize(out, (out_w, out_h), interpolation=method)
        return resized.reshape(out_h, out_w, out.shape[2])

    def upscale_alpha(self, alpha: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """(H, W) alpha -> the output's alpha, never outside the local input range (module docstring)."""
        height, width = alpha.shape
        low, high = alpha.min(), alpha.max()
        if low == high:
            if progress is not None:
                progress(1.0)
            return np.full(self.output_size(height, width), low, dtype=alpha.dtype)
        return clamp_to_neighbourhood(self.upscale_array(alpha[..., None], progress)[..., 0], alpha)

    def upscale_image(self, image: Image, progress: Progress | None = None) -> Image:
        """Upscale an :class:`esr.image_io.Image`; the ICC profile is kept. Alpha: by :meth:`upscale_alpha`,
        or, for an RGBA model (4 input channels), with the colour in one model call (see :meth:`upscale_array`)."""
        if image.alpha is not None and not image.gray and self.descriptor.in_channels == 4:
            rgba = self.upscale_array(np.dstack([image.color, image.alpha]), progress)
            return replace(image, color=np.ascontiguousarray(rgba[..., :3]), alpha=np.ascontiguousarray(rgba[..., 3]))
        parts = 1 if image.alpha is None else 2

        def share(fraction: float) -> None:
            if progress is not None:
                progress(fraction / parts)

        color = self.upscale_array(image.color, share)
        alpha = None if image.alpha is None else self.upscale_alpha(image.alpha, share)
        return replace(image, color=color, alpha=alpha)


def clamp_to_neighbourhood(out: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``out`` (H', W'), an upscale of ``source`` (H, W), clamped pixel by pixel to the range of the
    3x3 ``source`` neighbourhood it comes from (nearest mapping)."""
    kernel = np.ones((3, 3), np.uint8)
    size = (out.shape[1], out.shape[0])
    floor = cv2.resize(cv2.erode(source, kernel), size, interpolation=cv2.INTER_NEAREST)
    ceiling = cv2.resize(cv2.dilate(source, kernel), size, interpolation=cv2.INTER_NEAREST)
    return np.clip(out, floor, ceiling)
