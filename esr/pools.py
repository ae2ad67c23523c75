"""The process's worker-thread pools, an in-order map over one, and a lender of things used one call at a time.

Threads do not survive a fork, so a forked child (a Ray or multiprocessing worker) makes its own pools
instead of waiting forever on its parent's. A pool of file work (decoding, encoding) runs at a lower CPU
priority than the thread that runs the model (:data:`FILE_WORK_NICENESS`).
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable, Generic, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


FILE_WORK_NICENESS = 10
"""How much lower the threads of file work run than the model's (Linux niceness, added to the process's; 0: the
same). The model's runtimes split each call over all the cores and wait for every thread after each layer, so a
file worker that takes a core from one of them stalls them all; at a lower priority it mostly takes the cores the
model leaves idle instead. ``esr upscale`` of Set14 HR (2-core Xeon, 3 interleaved rounds, +0 / +10 / +19):
OpenVINO bf16 2.13 / 2.22 / 2.14 images/s (+10 ahead of +0 in every round, 1.02-1.04x), onnxruntime fp32 0.714 /
0.730 images/s (+0 / +10). In those runs the PNG part threads sank to +19, started from encoding workers whose
niceness they inherited; held at +10 as intended (:func:`lower_priority`), 2.82 against 2.85 images/s (OpenVINO
bf16, 4 interleaved rounds): the same within the host's noise."""


def lower_priority(by: int = FILE_WORK_NICENESS) -> None:
    """Run the calling thread ``by`` niceness steps below the process's main thread (Linux, where each thread has
    its own; elsewhere, or if the system refuses, nothing). Relative to the main thread, not to the calling thread:
    a thread inherits its creator's niceness, so a file-work pool started from another file-work thread (the PNG
    part pool from an encoding worker) would otherwise sink a further ``by`` steps. Never raises a priority."""
    if by <= 0 or not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + by)  # the pid names the main thread
        if target > os.getpriority(os.PRIO_PROCESS, thread):
            os.setpriority(os.PRIO_PROCESS, thread, target)
    except OSError:
        pass


@lru_cache(maxsize=None)
def worker_pool(name: str, workers: int, file_work: bool = False) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` threads named ``name``, made on first use; ``file_work``: its threads run at
    a lower priority (:func:`lower_priority`)."""
    return ThreadPoolExecutor(workers, name, initializer=lower_priority if file_work else None)


os.register_at_fork(after_in_child=worker_pool.cache_clear)


def ordered_map(fn: Callable[[Item], Result], items: Iterable[Item], pool: ThreadPoolExecutor,
                workers: int) -> Iterator[Result]:
    """``fn(item)`` for each of ``items``, yielded in order, computed on ``pool`` with ``workers`` calls queued
    beyond the one being yielded (so ``workers`` threads stay busy while the caller uses a result) and no more.

    An exception of a call is raised where its result would be yielded; when the caller stops early, calls not
    started are cancelled and running ones finish before the generator closes.
    """
    pending: deque[Future] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        wait(pending)


class Lender(Generic[Item]):
    """Lends each of ``items`` (infer requests, sessions: things one call at a time may use) to one caller at a
    time; thread-safe. ``free`` holds the ones not lent."""

    def __init__(self, items: Iterable[Item]) -> None:
        self.free: queue.SimpleQueue = queue.SimpleQueue()
        for item in items:
            self.free.put(item)

    @contextmanager
    def lend(self) -> Iterator[Item]:
        """A free item (waits for one), given back when the block ends."""
        item = self.free.get()
        try:
            yield item
        finally:
            self.free.put(item)
