"""helpers.threads.locks: chapter 06's thread workers, their results, and their argument checks."""
from __future__ import annotations

import dis
import threading

import pytest

from helpers.threads.locks import (
    THREAD_PREFIX, BoundedBuffer, SharedCounter, acquire_elsewhere, barrier_phases,
    connection_limit, count_together, helper_threads_alive, increment, produce_consume,
    two_locks, wait_for_start,
)
from helpers.instruments.timeline import TaskRecord, max_overlap


@pytest.fixture(autouse=True)
def no_threads_left():
    before = threading.active_count()
    yield
    assert helper_threads_alive() == []
    assert threading.active_count() == before


def test_increment_is_load_add_store():
    counter = SharedCounter(41)
    increment(counter)
    assert counter.value == 42
    ops = [i.opname for i in dis.get_instructions(increment)]
    steps = [op for op in ops if op in ("LOAD_ATTR", "BINARY_OP", "STORE_ATTR")]
    assert steps == ["LOAD_ATTR", "BINARY_OP", "STORE_ATTR"]


def test_count_together_locked_is_exact():
    assert count_together(3, 200, locked=True) == 600


def test_count_together_unlocked_loses_updates():
    total = count_together(3, 300, locked=False)
    assert 0 < total < 900


def test_count_together_zero_times():
    assert count_together(2, 0, locked=False) == 0


@pytest.mark.parametrize("kwargs, error", [
    ({"threads": 0, "times": 1, "locked": True}, ValueError),
    ({"threads": 2, "times": -1, "locked": True}, ValueError),
    ({"threads": 2.0, "times": 1, "locked": True}, TypeError),
    ({"threads": 2, "times": 1, "locked": 1}, TypeError),
    ({"threads": 2, "times": 1, "locked": True, "timeout": -1}, ValueError),
])
def test_count_together_bad_input(kwargs, error):
    with pytest.raises(error):
        count_together(**kwargs)


def test_shared_counter_bad_input():
    with pytest.raises(TypeError):
        SharedCounter("0")
    with pytest.raises(ValueError):
        SharedCounter(-1)


def test_acquire_elsewhere_lock_and_rlock():
    lock, rlock = threading.Lock(), threading.RLock()
    assert acquire_elsewhere(lock) is True
    with lock:
        assert acquire_elsewhere(lock, timeout=0.05) is False
    with rlock:
        with rlock:
            assert acquire_elsewhere(rlock, timeout=0.05) is False
        assert acquire_elsewhere(rlock, timeout=0.05) is False
    assert acquire_elsewhere(rlock) is True
    with pytest.raises(TypeError):
        acquire_elsewhere(object())
    with pytest.raises(ValueError):
        acquire_elsewhere(lock, timeout=1e9)


def test_bounded_buffer_fifo_and_timeouts():
    buffer = BoundedBuffer(2)
    buffer.put("a", timeout=1)
    buffer.put("b", timeout=1)
    with pytest.raises(TimeoutError):
        buffer.put("c", timeout=0.05)
    assert [buffer.get(timeout=1), buffer.get(timeout=1)] == ["a", "b"]
    with pytest.raises(TimeoutError):
        buffer.get(timeout=0.05)
    assert buffer.max_size == 2 and len(buffer) == 0
    with pytest.raises(ValueError):
        BoundedBuffer(0)
    with pytest.raises(TypeError):
        BoundedBuffer("3")


def test_produce_consume_in_order_within_capacity():
    result = produce_consume(40, 3, consumer_delay=0.001)
    assert result["received"] == list(range(40))
    assert result["max_size"] <= 3
    assert len(result["sizes"]) == 80
    assert all(0 <= size <= 3 for _, size in result["sizes"])
    with pytest.raises(ValueError):
        produce_consume(-1, 3)
    with pytest.raises(ValueError):
        produce_consume(5, 3, consumer_delay=2.0)


@pytest.mark.parametrize("bounded", [True, False])
def test_connection_limit_respects_limit(bounded):
    records = connection_limit(2, 5, seconds=0.05, bounded=bounded)
    assert all(isinstance(r, TaskRecord) for r in records)
    assert sorted(r.task for r in records) == list(range(5))
    assert all(r.thread.startswith(THREAD_PREFIX) for r in records)
    assert max_overlap(records) <= 2


@pytest.mark.parametrize("kwargs, error", [
    ({"limit": 0, "tasks": 2}, ValueError),
    ({"limit": 2, "tasks": 0}, ValueError),
    ({"limit": 2, "tasks": 2, "seconds": "1"}, TypeError),
    ({"limit": 2, "tasks": 2, "bounded": None}, TypeError),
])
def test_connection_limit_bad_input(kwargs, error):
    with pytest.raises(error):
        connection_limit(**kwargs)


def test_wait_for_start_wakes_after_set():
    set_at, records = wait_for_start(3, delay=0.05, timeout=5)
    assert [r.task for r in records] == ["w0", "w1", "w2"]
    assert all(r.result is True and r.end >= set_at and r.start <= set_at for r in records)
    with pytest.raises(ValueError):
        wait_for_start(2, delay=1.0, timeout=0.5)
    with pytest.raises(ValueError):
        wait_for_start(0)


def test_barrier_phases_keep_step():
    records = barrier_phases([0.01, 0.05, 0.1], timeout=5)
    first = [r for r in records if r.task.endswith(".1")]
    second = [r for r in records if r.task.endswith(".2")]
    assert len(first) == len(second) == 3
    assert min(r.start for r in second) >= max(r.end for r in first)
    with pytest.raises(ValueError):
        barrier_phases([])
    with pytest.raises(TypeError):
        barrier_phases(["fast"])


def test_two_locks_deadlock_then_order():
    assert two_locks(False, timeout=0.05) == {"one": 0, "two": 0}
    assert two_locks(True, rounds=300) == {"one": 300, "two": 300}
    with pytest.raises(TypeError):
        two_locks("yes")
    with pytest.raises(ValueError):
        two_locks(True, rounds=0)


def test_thread_errors_are_raised_in_caller_not_printed():
    # A non-lock semaphore-like object that fails inside the thread body.
    class Broken:
        def acquire(self, timeout=None):
            raise OSError("broken lock")

        def release(self):
            pass

    with pytest.raises(RuntimeError, match="broken lock"):
        acquire_elsewhere(Broken())
