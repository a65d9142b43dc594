"""Chapter 10 and bench/coroutine_sleeps.py: many concurrent sleeps, in a fresh process.

    python -m helpers.scripts.many_sleeps KIND N [DELAY]

Starts N sleeps of DELAY seconds (0.1 by default) that all overlap, in one of four ways
(KIND): gevent greenlets (``gevent.sleep``; no monkey-patching), asyncio tasks
(``asyncio.sleep``), one thread per sleep (``time.sleep``), or threads-gated. Greenlets, tasks
and gated threads wait at a gate until all N have started, so that all N are paused at once
however long starting them takes; plain ``threads`` sleep as soon as each one starts.
Prints one JSON line: the wall time, how many sleeps completed, the most that were asleep at
the same moment, and the process's peak memory before and after. A fresh process per run
keeps the memory high-water marks apart: ``helpers.coroutines.gevent_basics.measure_sleeps``
runs this script and reads the line.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import time

import gevent
import gevent.event

from helpers.instruments.measure import peak_memory_kib

SLEEP_KINDS = ("gevent", "asyncio", "threads", "threads-gated")
MAX_SLEEPS = 20_000


def sleep_in_greenlets(n: int, delay: float, timeout: float) -> tuple[int, int, str]:
    """``n`` greenlets each call ``gevent.sleep(delay)``; return (completed, most asleep at once, error)."""
    count = {"started": 0, "asleep": 0, "peak": 0}  # one OS thread, no switch between these lines
    all_started = gevent.event.Event()  # the gate: none sleeps before all n have started

    def sleeper() -> None:
        count["started"] += 1
        if count["started"] == n:
            all_started.set()  # the last one to start opens the gate
        all_started.wait()  # no Timeout per greenlet: joinall below bounds the whole run
        count["asleep"] += 1  # counted past the gate: the peak is how many slept at once
        count["peak"] = max(count["peak"], count["asleep"])
        gevent.sleep(delay)
        count["asleep"] -= 1

    greenlets = [gevent.spawn(sleeper) for _ in range(n)]
    done = gevent.joinall(greenlets, timeout=timeout)
    error = ""
    if len(done) < n:  # report the timeout, and stop the rest
        error = f"timed out after {timeout} s: {len(done)} of {n} sleeps finished"
        gevent.killall(greenlets, timeout=5)
    return sum(g.successful() for g in done), count["peak"], error


def sleep_in_tasks(n: int, delay: float, timeout: float) -> tuple[int, int, str]:
    """``n`` asyncio tasks each ``await asyncio.sleep(delay)``; the same numbers."""
    count = {"started": 0, "asleep": 0, "peak": 0, "completed": 0}

    async def sleeper(all_started: asyncio.Event) -> None:
        count["started"] += 1
        if count["started"] == n:
            all_started.set()  # the last one to start opens the gate
        await all_started.wait()  # the gather's wait_for bounds this wait
        count["asleep"] += 1  # counted past the gate: the peak is how many slept at once
        count["peak"] = max(count["peak"], count["asleep"])
        await asyncio.sleep(delay)
        count["asleep"] -= 1
        count["completed"] += 1

    async def sleep_all() -> str:
        all_started = asyncio.Event()
        try:
            await asyncio.wait_for(asyncio.gather(*(sleeper(all_started) for _ in range(n))), timeout)
        except TimeoutError:  # wait_for cancelled the rest; report it instead of crashing
            return f"timed out after {timeout} s: {count['completed']} of {n} sleeps finished"
        return ""

    error = asyncio.run(sleep_all())  # a script starts its own event loop
    return count["completed"], count["peak"], error


def sleep_in_threads(n: int, delay: float, timeout: float, gated: bool) -> tuple[int, int, str]:
    """``n`` threads each call ``time.sleep(delay)``; with ``gated``, all start before any sleeps."""
    lock = threading.Lock()  # threads are preempted anywhere: the counts need a lock
    count = {"asleep": 0, "peak": 0, "completed": 0}
    # The gate is a plain lock held by the starter: each thread passes it (acquire, release)
    # once it is opened, handing it on to the next. An Event would wake all 10,000 threads
    # at once, and their fight for its condition's lock takes seconds of system time.
    gate = threading.Lock()
    if gated:
        gate.acquire()

    def sleeper() -> None:
        if gated:
            if not gate.acquire(timeout=timeout):
                return
            gate.release()
        with lock:
            count["asleep"] += 1
            count["peak"] = max(count["peak"], count["asleep"])
        time.sleep(delay)
        with lock:
            count["asleep"] -= 1
            count["completed"] += 1

    threads, error = [], ""
    for _ in range(n):
        thread = threading.Thread(target=sleeper, daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": stop here, report how far we got
            error = f"started {len(threads)} of {n} threads: {exc}"
            break
        threads.append(thread)
    if gated:
        gate.release()  # open the gate: every started thread is alive and waiting at it
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    if not error and count["completed"] < n:
        error = f"timed out after {timeout} s: {count['completed']} of {n} sleeps finished"
    return count["completed"], count["peak"], error


def _check_number(name: str, value: object, types: tuple[type, ...], high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, types):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0 <= value <= high:
        raise ValueError(f"{name} must be between 0 and {high}, got {value}")


def sleep_many(kind: str, n: int, delay: float = 0.1, timeout: float = 30.0) -> dict:
    """Run ``n`` concurrent sleeps of ``delay`` seconds of one ``kind`` in THIS process.

    Returns the kind, n, delay, the wall time (``elapsed``), how many sleeps completed,
    the most that were asleep at the same time (``peak_concurrent``), the peak memory
    before (``baseline_kib``) and after (``maxrss_kib``), and an ``error`` ('' if none).
    """
    if kind not in SLEEP_KINDS:
        raise ValueError(f"kind must be one of {SLEEP_KINDS}, got {kind!r}")
    _check_number("n", n, (int,), MAX_SLEEPS)
    _check_number("delay", delay, (int, float), 5.0)
    _check_number("timeout", timeout, (int, float), 60.0)
    gc.collect()
    baseline = peak_memory_kib()
    start = time.perf_counter()
    if kind == "gevent":
        completed, peak, error = sleep_in_greenlets(n, delay, timeout)
    elif kind == "asyncio":
        completed, peak, error = sleep_in_tasks(n, delay, timeout)
    else:
        completed, peak, error = sleep_in_threads(n, delay, timeout, gated=(kind == "threads-gated"))
    elapsed = time.perf_counter() - start
    return {
        "kind": kind,
        "n": n,
        "delay": float(delay),
        "elapsed": elapsed,
        "completed": completed,
        "peak_concurrent": peak,
        "baseline_kib": baseline,
        "maxrss_kib": peak_memory_kib(),
        "error": error,
    }


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    kind, n = argv[0], int(argv[1])
    delay = float(argv[2]) if len(argv) == 3 else 0.1
    print(json.dumps(sleep_many(kind, n, delay)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
