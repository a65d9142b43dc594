"""Thread workers for chapter 06 (protect shared state with thread locks, 线程锁).

Every function here starts its own threads, joins them with a timeout, and
returns what they did (numbers, dicts or :class:`~helpers.instruments.timeline.TaskRecord`
values); none of them prints. Each thread's body runs inside a wrapper that
keeps any exception and re-raises it in the caller after the join, so nothing
ever reaches ``threading.excepthook`` (which would print to stderr). Every
loop is bounded and every ``acquire``/``wait``/``join`` has a timeout.

* :func:`increment` and :func:`count_together`: the lost update, and its fix.
* :func:`acquire_elsewhere`: can *another* thread take this lock right now?
* :class:`BoundedBuffer` and :func:`produce_consume`: ``Condition`` with ``wait_for``/``notify``.
* :func:`connection_limit`: ``Semaphore``/``BoundedSemaphore`` as a connection limit.
* :func:`wait_for_start`: ``Event`` as a starting gun.
* :func:`barrier_phases`: ``Barrier`` keeping workers in step between phases.
* :func:`two_locks`: a deadlock detected by timeouts, then prevented by lock order.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

from helpers.processes.locks import take_two_locks
from helpers.threads.basics import run_named_threads
from helpers.instruments.timeline import TaskRecord
from helpers.instruments.workloads import _check_int, _check_seconds

__all__ = [
    "THREAD_PREFIX",
    "SharedCounter",
    "increment",
    "count_together",
    "acquire_elsewhere",
    "BoundedBuffer",
    "produce_consume",
    "connection_limit",
    "wait_for_start",
    "barrier_phases",
    "two_locks",
    "helper_threads_alive",
]

#: Every thread this module starts has a name beginning with this prefix.
THREAD_PREFIX = "ch06-"
MAX_TIMES = 1_000_000  # bound on every loop's length
MAX_THREADS = 64
MAX_WAIT = 60.0  # seconds: the longest any acquire, wait or join here may block


def _check_lock(name: str, lock: Any) -> Any:
    if not (callable(getattr(lock, "acquire", None)) and callable(getattr(lock, "release", None))):
        raise TypeError(
            f"{name} must be a lock (something with acquire() and release()), got {type(lock).__name__}"
        )
    return lock


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return value


def _run_threads(bodies: Sequence[tuple[str, Callable[[], Any]]], timeout: float) -> list[Any]:
    """:func:`helpers.threads.basics.run_named_threads`, with this chapter's thread-name prefix."""
    return run_named_threads(bodies, timeout, prefix=THREAD_PREFIX)


def _record(task: int | str, start: float, end: float, result: Any = None) -> TaskRecord:
    return TaskRecord(task=task, pid=os.getpid(), thread=threading.current_thread().name,
                      start=start, end=max(start, end), result=result)


def helper_threads_alive() -> list[str]:
    """Names of the threads this module started that are still alive (should be ``[]``)."""
    return [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


# --- the lost update -----------------------------------------------------------------

class SharedCounter:
    """A plain object with one attribute, ``value``, shared by every thread that holds it."""

    def __init__(self, value: int = 0) -> None:
        self.value = _check_int("value", value, 0)


def increment(counter: SharedCounter) -> None:
    """``counter.value += 1``: one line of Python, several bytecode steps."""
    counter.value += 1


def _add_many(counter: SharedCounter, times: int, lock: Any, start: threading.Barrier,
              timeout: float) -> None:
    start.wait(timeout)  # begin together, so that the threads really overlap
    for _ in range(times):
        if lock is not None and not lock.acquire(timeout=timeout):
            raise TimeoutError(f"lock not acquired within {timeout} s")
        try:
            value = counter.value       # read
            time.sleep(0)               # let another thread run between the read and the write
            counter.value = value + 1   # write: whatever others wrote meanwhile is overwritten
        finally:
            if lock is not None:
                lock.release()


def count_together(threads: int, times: int, *, locked: bool, timeout: float = 30.0) -> int:
    """``threads`` threads each add 1 to one :class:`SharedCounter` ``times`` times; return the total.

    Each increment is a read, a ``time.sleep(0)`` and a write, so that a thread
    switch between the read and the write (rare with a bare ``+= 1``) happens
    almost every time. ``locked=True`` holds one ``threading.Lock`` around each
    increment, and the total is then exactly ``threads * times``.
    """
    _check_int("threads", threads, 1, MAX_THREADS)
    _check_int("times", times, 0, MAX_TIMES)
    _check_bool("locked", locked)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    counter = SharedCounter()
    lock = threading.Lock() if locked else None
    start = threading.Barrier(threads)
    _run_threads([(f"counter-{i}", lambda: _add_many(counter, times, lock, start, timeout))
                  for i in range(threads)], timeout)
    return counter.value


# --- Lock and RLock ------------------------------------------------------------------

def acquire_elsewhere(lock: Any, timeout: float = 0.1) -> bool:
    """Try to take ``lock`` from a new thread, waiting at most ``timeout`` s; release it if taken.

    True means the lock was free to *another* thread at that moment.
    """
    _check_lock("lock", lock)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)

    def attempt() -> bool:
        got = lock.acquire(timeout=timeout)
        if got:
            lock.release()
        return got

    return _run_threads([("elsewhere", attempt)], timeout + 10.0)[0]


# --- Condition: a bounded buffer --------------------------------------------------------

class BoundedBuffer:
    """A first-in first-out buffer of at most ``capacity`` items, guarded by one ``Condition``.

    ``put`` waits (up to ``timeout``) while the buffer is full, ``get`` while it
    is empty; each wakes the other side with ``notify_all``. ``max_size`` is the
    most items it ever held, ``waits`` counts the puts and gets that had to wait.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = _check_int("capacity", capacity, 1, MAX_TIMES)
        self._items: deque = deque()
        self._condition = threading.Condition()
        self.max_size = 0
        self.waits = {"put": 0, "get": 0}

    def __len__(self) -> int:
        with self._condition:
            return len(self._items)

    def put(self, item: Any, timeout: float = 10.0) -> None:
        """Add ``item``, waiting while the buffer is full; TimeoutError after ``timeout`` s."""
        timeout = _check_seconds("timeout", timeout, MAX_WAIT)
        with self._condition:
            if len(self._items) >= self.capacity:
                self.waits["put"] += 1
            if not self._condition.wait_for(lambda: len(self._items) < self.capacity, timeout):
                raise TimeoutError(f"buffer still full after {timeout} s")
            self._items.append(item)
            self.max_size = max(self.max_size, len(self._items))
            self._condition.notify_all()

    def get(self, timeout: float = 10.0) -> Any:
        """Remove and return the oldest item, waiting while the buffer is empty."""
        timeout = _check_seconds("timeout", timeout, MAX_WAIT)
        with self._condition:
            if not self._items:
                self.waits["get"] += 1
            if not self._condition.wait_for(lambda: len(self._items) > 0, timeout):
                raise TimeoutError(f"buffer still empty after {timeout} s")
            item = self._items.popleft()
            self._condition.notify_all()
            return item


def produce_consume(items: int, capacity: int, *, consumer_delay: float = 0.002,
                    timeout: float = 30.0) -> dict:
    """One producer puts 0, 1, ..., ``items - 1`` into a :class:`BoundedBuffer`; one consumer gets them.

    The consumer pauses ``consumer_delay`` s after each item, so the producer
    soon finds the buffer full and must wait. Returns ``{"received": [...],
    "max_size": n, "capacity": c, "waits": {...}, "sizes": [(seconds, size), ...]}``;
    ``sizes`` is the buffer's length after every put and get, for a plot.
    """
    _check_int("items", items, 0, 100_000)
    consumer_delay = _check_seconds("consumer_delay", consumer_delay, 1.0)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    buffer = BoundedBuffer(capacity)
    sizes: list[tuple[float, int]] = []
    sizes_lock = threading.Lock()
    t0 = time.perf_counter()

    def note() -> None:
        size = len(buffer)
        if sizes_lock.acquire(timeout=timeout):
            try:
                sizes.append((time.perf_counter() - t0, size))
            finally:
                sizes_lock.release()

    def producer() -> None:
        for item in range(items):
            buffer.put(item, timeout)
            note()

    def consumer() -> list:
        received = []
        for _ in range(items):
            received.append(buffer.get(timeout))
            note()
            time.sleep(consumer_delay)
        return received

    _, received = _run_threads([("producer", producer), ("consumer", consumer)], timeout + 10.0)
    return {"received": received, "max_size": buffer.max_size, "capacity": capacity,
            "waits": dict(buffer.waits), "sizes": sorted(sizes)}


# --- Semaphore: a connection limit -------------------------------------------------------

def connection_limit(limit: int, tasks: int, *, seconds: float = 0.1, bounded: bool = True,
                     timeout: float = 30.0) -> list[TaskRecord]:
    """``tasks`` threads share a (Bounded)Semaphore(``limit``); each holds a "connection" ``seconds`` s.

    Returns one TaskRecord per task, sorted by start: ``start`` is when the
    task got its connection, ``end`` is taken before it gives it back, and
    ``result`` is how long it waited for one.
    """
    _check_int("limit", limit, 1, MAX_THREADS)
    _check_int("tasks", tasks, 1, MAX_THREADS)
    seconds = _check_seconds("seconds", seconds, 5.0)
    _check_bool("bounded", bounded)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    semaphore = threading.BoundedSemaphore(limit) if bounded else threading.Semaphore(limit)
    start = threading.Barrier(tasks)

    def use_connection(task: int) -> TaskRecord:
        start.wait(timeout)
        asked = time.time()
        if not semaphore.acquire(timeout=timeout):
            raise TimeoutError(f"task {task}: no connection within {timeout} s")
        try:
            got = time.time()
            time.sleep(seconds)
            return _record(task, got, time.time(), result=got - asked)
        finally:
            semaphore.release()

    records = _run_threads([(f"conn-{task}", lambda task=task: use_connection(task))
                            for task in range(tasks)], timeout + 10.0)
    return sorted(records, key=lambda r: r.start)


# --- Event and Barrier ---------------------------------------------------------------

def wait_for_start(waiters: int, delay: float = 0.2, timeout: float = 10.0) -> tuple[float, list[TaskRecord]]:
    """``waiters`` threads wait on one ``Event``; the caller sets it after ``delay`` s.

    Returns ``(set_at, records)``: the ``time.time()`` at which the event was
    set, and per waiter a TaskRecord from when it began waiting to when it
    woke (``result`` is what ``wait`` returned: True unless it timed out).
    """
    _check_int("waiters", waiters, 1, MAX_THREADS)
    delay = _check_seconds("delay", delay, 5.0)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    if delay >= timeout:
        raise ValueError(f"delay ({delay} s) must be shorter than timeout ({timeout} s)")
    go = threading.Event()
    set_at: list[float] = []

    def waiter(index: int) -> TaskRecord:
        began = time.time()
        woke = go.wait(timeout)
        return _record(f"w{index}", began, time.time(), result=woke)

    def starter() -> None:
        time.sleep(delay)
        set_at.append(time.time())
        go.set()

    bodies = [(f"waiter-{i}", lambda i=i: waiter(i)) for i in range(waiters)]
    results = _run_threads(bodies + [("starter", starter)], timeout + 10.0)
    return set_at[0], sorted(results[:waiters], key=lambda r: r.task)


def barrier_phases(durations: Sequence[float], timeout: float = 10.0) -> list[TaskRecord]:
    """One thread per entry of ``durations``: phase 1 lasts that long, then all meet at a ``Barrier``.

    Phase 2 (a short fixed 0.05 s) starts only when every thread has finished
    phase 1. Returns TaskRecords named ``"<i>.1"`` and ``"<i>.2"``, sorted by start.
    """
    durations = list(durations)
    if not 1 <= len(durations) <= MAX_THREADS:
        raise ValueError(f"durations must hold 1..{MAX_THREADS} numbers, got {len(durations)}")
    durations = [_check_seconds("duration", d, 5.0) for d in durations]
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    barrier = threading.Barrier(len(durations))

    def worker(index: int) -> list[TaskRecord]:
        began = time.time()
        time.sleep(durations[index])
        first = _record(f"{index}.1", began, time.time())
        barrier.wait(timeout)  # BrokenBarrierError after timeout, instead of waiting forever
        began = time.time()
        time.sleep(0.05)
        return [first, _record(f"{index}.2", began, time.time())]

    results = _run_threads([(f"phase-{i}", lambda i=i: worker(i)) for i in range(len(durations))],
                           timeout + 10.0)
    return sorted((r for pair in results for r in pair), key=lambda r: r.start)


# --- two locks: deadlock and lock ordering --------------------------------------------

def two_locks(ordered: bool, *, rounds: int = 1, timeout: float = 0.3) -> dict[str, int]:
    """Workers ``one`` and ``two`` each need locks A and B; return how many rounds each got both.

    ``one`` always takes A, then B. With ``ordered=False``, ``two`` takes B,
    then A, and a Barrier makes both hold their first lock before either tries
    its second: a deadlock every round, which the second ``acquire(timeout=...)``
    turns into a miss. With ``ordered=True`` both take A first, and every round
    gets both locks.
    """
    _check_bool("ordered", ordered)
    _check_int("rounds", rounds, 1, 100_000)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    lock_a, lock_b = threading.Lock(), threading.Lock()
    meet = None if ordered else threading.Barrier(2)
    wait_limit = timeout + 10.0  # the other worker may spend `timeout` failing first

    def worker(first: Any, second: Any) -> int:
        return take_two_locks(first, second, rounds, timeout=timeout, meet=meet, patience=wait_limit)

    order_two = (lock_a, lock_b) if ordered else (lock_b, lock_a)
    one, two = _run_threads([("one", lambda: worker(lock_a, lock_b)),
                             ("two", lambda: worker(*order_two))],
                            rounds * (timeout + 1.0) + 30.0)
    return {"one": one, "two": two}
