"""Targets and tools for chapter 03 (run tasks on a process pool).

Used by chapter 03 (process pools), by ``bench/process_pool.py``, and by the
thread-pool chapters, which reuse :func:`prime_chunks` and :func:`timed_prime_chunk`.

Every function a pool worker runs lives here, so the chapter works under the
``spawn`` and ``forkserver`` start methods; chapter 03 shows each one's source
(``show_source``) where it first runs. None of them prints: each returns its value, which the
pool carries back to the parent. Every wait has a time bound.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections.abc import Iterable
from multiprocessing.pool import Pool
from typing import Any

from helpers.instruments.measure import Timer
from helpers.instruments.timeline import TaskRecord
from helpers.instruments.workloads import _check_int, _check_seconds, count_primes_in_range

__all__ = [
    "init_worker",
    "worker_info",
    "wait_for_all_workers",
    "ready_pool",
    "sleep_then_square",
    "nap",
    "fail_if",
    "die_now",
    "put_square",
    "return_a_lock",
    "prime_chunks",
    "timed_prime_chunk",
    "run_primes_on_pool",
    "join_pool",
    "start_waves",
]

# Set by init_worker() in each pool worker; None in a process that never ran it.
_WORKER_STATE: dict[str, Any] | None = None


def init_worker(label: str) -> None:
    """Pool initializer: give this worker process its own state (a label and a task count).

    It runs once per worker process, before that worker takes its first task.
    """
    if not isinstance(label, str):
        raise TypeError(f"label must be a str, got {type(label).__name__}")
    global _WORKER_STATE
    _WORKER_STATE = {"label": label, "pid": os.getpid(), "tasks": 0}


def worker_info(x: int) -> dict[str, Any]:
    """A task that reports which worker ran it and how many tasks that worker has run.

    Returns ``{"x", "pid", "label", "tasks"}``; ``label`` is None and ``tasks`` is 0
    when the worker was started without :func:`init_worker`.
    """
    _check_int("x", x)
    state = _WORKER_STATE
    if state is None or state["pid"] != os.getpid():  # a forked child inherits the parent's copy
        return {"x": x, "pid": os.getpid(), "label": None, "tasks": 0}
    state["tasks"] += 1
    return {"x": x, "pid": os.getpid(), "label": state["label"], "tasks": state["tasks"]}


def wait_for_all_workers(barrier, timeout: float = 30.0) -> None:
    """Pool initializer: wait at ``barrier`` until every worker (and the parent) is ready.

    A timed-out or broken barrier is not an error here: the worker simply starts,
    so a replacement worker can never crash-loop the pool. (:func:`ready_pool` breaks the
    barrier once the first workers are up, so a replacement, with ``maxtasksperchild``,
    passes at once instead of waiting ``timeout`` seconds for parties that never come.)
    """
    timeout = _check_seconds("timeout", timeout, 600.0)
    try:
        barrier.wait(timeout)
    except threading.BrokenBarrierError:
        pass


def ready_pool(processes: int, ctx=None, timeout: float = 30.0, **pool_kwargs) -> Pool:
    """A ``Pool`` whose ``processes`` workers are all started and idle when it is returned.

    Timelines then show the work, not the staggered start-up of the workers
    (slow under ``spawn``). Raises ``TimeoutError`` (and terminates the pool) if
    the workers are not all up within ``timeout`` seconds.
    """
    _check_int("processes", processes, 1, 256)
    timeout = _check_seconds("timeout", timeout, 600.0)
    if "initializer" in pool_kwargs or "initargs" in pool_kwargs:
        raise ValueError("ready_pool uses the initializer itself; pass neither initializer nor initargs")
    ctx = ctx or mp.get_context()
    barrier = ctx.Barrier(processes + 1)
    pool = ctx.Pool(processes, initializer=wait_for_all_workers, initargs=(barrier, timeout), **pool_kwargs)
    try:
        barrier.wait(timeout)
    except threading.BrokenBarrierError:
        pool.terminate()
        join_pool(pool, 10)
        raise TimeoutError(f"the {processes} pool workers were not all ready within {timeout} s") from None
    barrier.abort()  # all are up: from now on a replacement worker's wait returns at once
    return pool


def sleep_then_square(x: int, seconds: float = 0.0) -> int:
    """Sleep ``seconds`` (a stand-in for slow work), then return ``x * x``."""
    _check_int("x", x)
    time.sleep(_check_seconds("seconds", seconds))
    return x * x


def nap(seconds: float) -> float:
    """Sleep ``seconds`` and return that same number: a one-argument task for ``imap``."""
    time.sleep(_check_seconds("seconds", seconds))
    return seconds


def fail_if(x: int, bad: int) -> int:
    """Return ``x * x``, except raise ``ValueError`` when ``x == bad``: an ordinary task error."""
    _check_int("x", x)
    _check_int("bad", bad)
    if x == bad:
        raise ValueError(f"task {x} refuses to run")
    return x * x


def die_now(code: int = 1) -> None:
    """End this worker process at once with ``os._exit(code)``: no cleanup, no traceback.

    A pool cannot report this as an exception from the task; the process is simply
    gone (``ProcessPoolExecutor`` raises ``BrokenProcessPool``).
    """
    _check_int("code", code, 0, 255)
    os._exit(code)


def put_square(out, x: int) -> int:
    """Put ``x * x`` on the queue ``out`` and return ``x``: a task that needs a queue as its argument."""
    _check_int("x", x)
    out.put(x * x)
    return x


def return_a_lock(x: int) -> threading.Lock:
    """Return a ``threading.Lock``: a result the worker cannot pickle to send it back."""
    _check_int("x", x)
    return threading.Lock()


def prime_chunks(limit: int, chunks: int) -> list[tuple[int, int]]:
    """Split ``0..limit`` into ``chunks`` consecutive ``(start, stop)`` ranges that cover it."""
    _check_int("limit", limit, 1, 50_000_000)
    _check_int("chunks", chunks, 1, 10_000)
    if chunks > limit:
        raise ValueError(f"chunks ({chunks}) must not exceed limit ({limit})")
    bounds = [limit * i // chunks for i in range(chunks + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def timed_prime_chunk(task: int, start: int, stop: int) -> TaskRecord:
    """Count the primes in ``start <= p < stop``; return a TaskRecord with the count as result."""
    _check_int("task", task)
    began = time.time()
    found = count_primes_in_range(start, stop)
    return TaskRecord(
        task=task, pid=os.getpid(), thread=threading.current_thread().name, start=began, end=time.time(), result=found
    )


def run_primes_on_pool(workers: int, limit: int = 600_000, chunks: int = 24, timeout: float = 120.0, ctx=None):
    """Count the primes below ``limit`` in ``chunks`` tasks on a pool of ``workers`` processes.

    Returns a :class:`helpers.instruments.speedup.JobRun`. The clock runs only while the tasks
    run: the workers are started (and waiting) before it starts, so the time is
    the work, not the pool's start-up.
    """
    from helpers.instruments.speedup import JobRun

    _check_int("workers", workers, 1, 256)
    timeout = _check_seconds("timeout", timeout, 600.0)
    tasks = [(i, a, b) for i, (a, b) in enumerate(prime_chunks(limit, chunks))]
    pool = ready_pool(workers, ctx=ctx, timeout=timeout)
    try:
        with Timer() as t:
            records = pool.starmap_async(timed_prime_chunk, tasks, chunksize=1).get(timeout)
        pool.close()
        join_pool(pool, timeout)
    finally:
        pool.terminate()
    return JobRun(workers=workers, elapsed=t.elapsed, records=tuple(records), result=sum(r.result for r in records))


def join_pool(pool: Pool, timeout: float = 30.0) -> None:
    """``pool.join()`` with a time bound (``Pool.join`` has none).

    Call ``pool.close()`` or ``pool.terminate()`` first. If the workers have not
    exited after ``timeout`` seconds, the pool is terminated and ``TimeoutError`` raised.
    """
    if not isinstance(pool, Pool):
        raise TypeError(f"pool must be a multiprocessing Pool, got {type(pool).__name__}")
    timeout = _check_seconds("timeout", timeout, 600.0)
    refused: list[ValueError] = []

    def join_or_keep_error() -> None:
        try:
            pool.join()
        except ValueError as exc:  # "Pool is still running": join() checks that before it waits
            refused.append(exc)

    joiner = threading.Thread(target=join_or_keep_error, name="join_pool", daemon=True)
    joiner.start()
    joiner.join(timeout)
    if refused:
        raise ValueError("call pool.close() or pool.terminate() before join_pool()") from refused[0]
    if joiner.is_alive():
        pool.terminate()
        joiner.join(10)
        raise TimeoutError(f"pool workers still running after {timeout} s; the pool was terminated")


def start_waves(records: Iterable[TaskRecord], gap: float) -> list[list[TaskRecord]]:
    """Group tasks into waves: a new wave begins where start times jump by more than ``gap`` seconds.

    With n workers and tasks of equal length L, a pool runs them in waves of n,
    L apart; ``gap=L/2`` separates the waves while tolerating scheduling jitter.
    """
    records = list(records)
    if any(not isinstance(r, TaskRecord) for r in records):
        raise TypeError("records must be TaskRecord values")
    records.sort(key=lambda r: r.start)
    if not records:
        raise ValueError("records is empty")
    gap = _check_seconds("gap", gap)
    if gap == 0:
        raise ValueError("gap must be > 0 seconds")
    waves = [[records[0]]]
    for previous, record in zip(records, records[1:]):
        if record.start - previous.start > gap:
            waves.append([])
        waves[-1].append(record)
    return waves
