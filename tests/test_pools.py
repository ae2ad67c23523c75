"""esr.pools: the in-order map over a worker pool that runs a large image's tiles; file work's lower priority."""
from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from esr.pools import FILE_WORK_NICENESS, ordered_map, worker_pool


def test_results_come_in_order_with_at_most_workers_plus_one_queued():
    pool = worker_pool("test-ordered", 2)
    lock, started = threading.Lock(), []

    def slow_square(n: int) -> int:
        with lock:
            started.append(n)
        time.sleep(0.002 * (n * 3 % 4))  # finish out of order
        return n * n

    for index, result in enumerate(ordered_map(slow_square, range(20), pool, 2)):
        assert result == index * index
        assert len(started) <= index + 3  # the one yielded and two queued beyond it


def test_an_error_is_raised_in_place_and_the_rest_is_cancelled():
    pool = worker_pool("test-ordered", 2)
    ran = []

    def fail_at_three(n: int) -> int:
        ran.append(n)
        if n == 3:
            raise ValueError("three")
        return n

    results = ordered_map(fail_at_three, range(100), pool, 2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="three"):
        next(results)
    assert len(ran) <= 6


def test_a_forked_child_gets_its_own_pool():
    import os

    parent = worker_pool("test-fork", 1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new pool that runs work (the parent's has no live threads here)
        child = worker_pool("test-fork", 1)
        os.write(write, b"1" if child is not parent and child.submit(lambda: 7).result(timeout=10) == 7 else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"


def test_a_lender_gives_each_item_to_one_caller_at_a_time_and_gets_it_back_on_error():
    from concurrent.futures import ThreadPoolExecutor

    from esr.pools import Lender

    lender, lock, holders = Lender(["a", "b"]), threading.Lock(), {"a": 0, "b": 0}
    most = []

    def borrow(_: int) -> None:
        with lender.lend() as item:
            with lock:
                holders[item] += 1
                most.append(max(holders.values()))
            time.sleep(0.001)
            with lock:
                holders[item] -= 1

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(borrow, range(40)))
    assert max(most) == 1 and lender.free.qsize() == 2
    with pytest.raises(RuntimeError):
        with lender.lend():
            raise RuntimeError("a failing call")
    assert lender.free.qsize() == 2


def niceness() -> int:
    """The calling thread's niceness (Linux: each thread has its own)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is a Linux feature")
def test_file_work_threads_run_at_a_lower_priority_than_the_caller():
    mine = niceness()
    assert worker_pool("esr-test-file-work", 1, file_work=True).submit(niceness).result(timeout=30) == min(
        19, mine + FILE_WORK_NICENESS)
    assert worker_pool("esr-test-model-work", 1).submit(niceness).result(timeout=30) == mine
    assert niceness() == mine  # the caller's own priority is untouched


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is a Linux feature")
def test_a_file_work_pool_started_from_file_work_does_not_sink_further():
    """The PNG part pool is started by an encoding worker, whose niceness its threads inherit: they still run
    FILE_WORK_NICENESS below the main thread, not twice that."""
    def nested() -> int:
        return worker_pool("esr-test-nested-inner", 1, file_work=True).submit(niceness).result(timeout=30)

    outer = worker_pool("esr-test-nested-outer", 1, file_work=True)
    assert outer.submit(nested).result(timeout=30) == min(19, niceness() + FILE_WORK_NICENESS)
