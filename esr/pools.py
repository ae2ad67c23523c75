"""The process's worker-thread pools, an in-order map over one, and a lender of things used one call at a time.

Threads do not survive a fork, so a forked child (a Ray or multiprocessing worker) makes its own pools
instead of waiting forever on its parent's.
"""
from __future__ import annotations

import os
import queue
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from functools import lru_cache
from typing import Callable, Generic, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@lru_cache(maxsize=None)
def worker_pool(name: str, workers: int) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` threads named ``name``, made on first use."""
    return ThreadPoolExecutor(workers, name)


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
