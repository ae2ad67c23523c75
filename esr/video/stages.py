"""Run one stage of a frame pipeline in a worker thread, a bounded number of items ahead.

``in_background(decode(...), depth)`` yields what ``decode`` yields, computed by a worker
thread that stays at most ``depth`` items ahead: memory is bounded by the queue, not by
the length of the video. Chaining two such stages overlaps decode, model and encode.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_END = object()
_POLL_SECONDS = 0.1


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def in_background(items: Iterable[T], depth: int, name: str) -> Iterator[T]:
    """Iterate ``items`` in a worker thread named ``name``, at most ``depth`` items ahead.

    An exception raised by ``items`` is raised here. When this generator is closed or the
    consumer fails (Ctrl-C included), the worker stops after its current item and closes
    ``items`` (so a chained stage stops too) before this returns.
    """
    buffer: queue.Queue = queue.Queue(max(1, depth))
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    return
            put(_END)
        except BaseException as err:  # handed to the consumer, which re-raises it
            put(_Failure(err))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()
