"""Ctrl-C and SIGTERM that land while a claim or temp file is being made leave nothing behind.

Each window is hit on purpose: the real step runs, then the signal is raised before the code that
called it gets control back (in a loaded CI run, a SIGTERM once landed there and left a claim file).
"""
from __future__ import annotations

import json
import signal
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

import esr.upscale_batch as batch
from esr import claims, fileio
from esr.errors import Terminated
from esr.interrupts import interrupts_deferred


def test_a_signal_inside_the_block_lands_when_it_ends():
    steps: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            signal.raise_signal(signal.SIGINT)
            steps.append("after the signal")  # still runs: the interrupt waits for the block's end
    assert steps == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is before


def test_the_handler_in_place_gets_the_signal():
    from esr.cli import sigterm_as_interrupt

    with sigterm_as_interrupt():
        with pytest.raises(Terminated):
            with interrupts_deferred():
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGINT)  # only the first signal is delivered
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_a_signal_nothing_changes():
    with interrupts_deferred():
        value = 1
    assert value == 1 and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_outside_the_main_thread_the_block_runs_unchanged():
    seen: list[object] = []

    def body() -> None:
        with interrupts_deferred():  # signal.signal would raise ValueError here
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]


def interrupt_after(fn, signum=signal.SIGINT):
    """``fn``, then ``signum`` raised in this (the main) thread as it returns."""
    def wrapped(*args, **kwargs):
        result = fn(*args, **kwargs)
        signal.raise_signal(signum)
        return result
    return wrapped


class Identity:
    def upscale_image(self, image, progress=None):
        return image


def images(folder: Path, count: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        PILImage.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{index}.png")


@pytest.mark.parametrize("jobs", [0, 2])
def test_an_interrupt_as_a_claim_is_made_leaves_no_claim(tmp_path, monkeypatch, jobs):
    images(tmp_path / "in", 3)
    monkeypatch.setattr(claims, "try_claim", interrupt_after(claims.try_claim))
    options = batch.BatchOptions(inputs=[str(tmp_path / "in")], outdir=str(tmp_path / "out"), jobs=jobs, quiet=True)
    with pytest.raises(KeyboardInterrupt):
        batch.run_pipeline(batch.plan_batch(options).todo, Identity(), options, batch.Counts(), say=lambda line: None)
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []


def test_an_interrupt_as_a_whole_file_is_claimed_releases_it(tmp_path, monkeypatch):
    images(tmp_path / "in", 1)
    options = batch.BatchOptions(inputs=[str(tmp_path / "in")], outdir=str(tmp_path / "out"), quiet=True)
    task = batch.plan_batch(options).todo[0]
    monkeypatch.setattr(claims, "try_claim", interrupt_after(claims.try_claim))
    processed: list[batch.Task] = []
    monkeypatch.setattr(batch, "process_file", lambda task, upscaler, options: processed.append(task))
    with pytest.raises(KeyboardInterrupt):
        batch.run_whole_files([task], Identity(), options, batch.Counts(), say=lambda line: None)
    assert processed == [] and not claims.claim_path(task.dest).exists()
    with pytest.raises(KeyboardInterrupt):
        batch.upscale_file(task, Identity(), options)  # the Ray actors' path
    assert processed == [] and not claims.claim_path(task.dest).exists()


def test_an_interrupt_as_the_temp_file_is_made_leaves_no_temp_file(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio.tempfile, "mkstemp", interrupt_after(fileio.tempfile.mkstemp))
    with pytest.raises(KeyboardInterrupt):
        fileio.write_bytes_atomically(tmp_path / "out.bin", b"data")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_while_a_stale_claim_is_removed_leaves_no_grave(tmp_path, monkeypatch, dead_pid):
    stale = claims.claim_path(tmp_path / "a.png")
    stale.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid, "start": None}))
    monkeypatch.setattr(claims.os, "rename", interrupt_after(claims.os.rename))
    with pytest.raises(KeyboardInterrupt):
        claims.remove_stale_temps(tmp_path)
    assert list(tmp_path.iterdir()) == []
