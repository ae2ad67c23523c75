"""Steps that Ctrl-C and SIGTERM must not cut in two.

Python runs a signal's handler in the main thread between any two bytecodes, so a KeyboardInterrupt
(or :class:`esr.errors.Terminated`) can land after a file was created but before the code that removes
it on failure took charge of it: a claim file made but not yet recorded as held, a temp file made but
not yet inside its ``try``. :func:`interrupts_deferred` holds SIGINT and SIGTERM for the length of such a
step and delivers them, to the handlers that were in place, as soon as it ends. The step must be short
and must not wait on anything that could hang.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside the block take effect when it ends (the first of them, once).

    Only the main thread receives Python's signal handlers, so elsewhere (and for a signal whose handler
    was not set from Python) the block runs unchanged. Put the block inside the ``try`` whose ``finally``
    undoes the step, so that the delivered interrupt finds the step's clean-up in place.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def hold(signum: int, frame: object) -> None:
        arrived.append(signum)

    previous = {signum: signal.getsignal(signum) for signum in DEFERRED_SIGNALS}
    held = [signum for signum, handler in previous.items() if handler is not None]
    for signum in held:
        signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum in held:
            signal.signal(signum, previous[signum])
        if arrived:
            signal.raise_signal(arrived[0])
