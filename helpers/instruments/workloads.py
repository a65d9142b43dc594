"""Spawn-safe workloads: top-level functions a child process can import by name.

Used by the processes, threads, coroutines and choosing-a-model chapters
(01-11, 15) and by ``make bench``.

* :func:`count_primes` is CPU-bound: pure Python arithmetic, it holds the GIL.
* :func:`io_wait` is I/O-bound: it sleeps, which releases the GIL, the way a
  network or disk wait does.
* :func:`timed_task` runs either kind and returns a :class:`~helpers.instruments.timeline.TaskRecord`,
  so a chapter can draw who ran what, when.
"""

from __future__ import annotations

import math
import os
import threading
import time

from helpers.instruments.timeline import TaskRecord

__all__ = ["count_primes", "count_primes_in_range", "io_wait", "timed_task", "square"]


def _check_int(name: str, value, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _check_seconds(name: str, value, high: float = 60.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not 0 <= value <= high or math.isnan(value):
        raise ValueError(f"{name} must be between 0 and {high} seconds, got {value}")
    return float(value)


def count_primes_in_range(start: int, stop: int) -> int:
    """How many primes p satisfy start <= p < stop (trial division, deliberately plain)."""
    _check_int("start", start)
    _check_int("stop", stop)
    if stop < start:
        raise ValueError(f"stop ({stop}) must be >= start ({start})")
    found = 0
    for n in range(max(start, 2), stop):
        if n % 2 == 0:
            found += n == 2
            continue
        for d in range(3, math.isqrt(n) + 1, 2):
            if n % d == 0:
                break
        else:
            found += 1
    return found


def count_primes(limit: int) -> int:
    """How many primes are below ``limit``: a CPU-bound task whose size you choose."""
    _check_int("limit", limit, 0, 50_000_000)
    return count_primes_in_range(0, limit)


def io_wait(seconds: float) -> float:
    """Wait like an I/O call does (the GIL is released); return the time waited."""
    seconds = _check_seconds("seconds", seconds)
    start = time.perf_counter()
    time.sleep(seconds)
    return time.perf_counter() - start


def square(x: int) -> int:
    """The smallest useful task: a number squared."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"x must be a number, got {type(x).__name__}")
    return x * x


def timed_task(task: int, seconds: float = 0.0, prime_limit: int = 0) -> TaskRecord:
    """Run one task (sleep ``seconds``, then count primes below ``prime_limit``).

    Returns who ran it (pid, thread) and when (wall-clock start and end), which
    is what :func:`helpers.instruments.timeline.plot_timeline` draws.
    """
    _check_int("task", task)
    seconds = _check_seconds("seconds", seconds)
    _check_int("prime_limit", prime_limit, 0, 50_000_000)
    start = time.time()
    if seconds:
        time.sleep(seconds)
    result = count_primes(prime_limit) if prime_limit else None
    return TaskRecord(
        task=task,
        pid=os.getpid(),
        thread=threading.current_thread().name,
        start=start,
        end=time.time(),
        result=result,
    )
