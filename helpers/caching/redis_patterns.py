"""Redis from several processes, and the timings of chapter 14.

Used by chapter 14 (``notebooks/14-redis.ipynb``, "Use Redis as a cache, a queue and
a lock") and by ``bench/redis_pipeline.py``. The chapter's client code that runs in the
notebook's own process (transactions, pub/sub, queues, streams, locks, cache-aside)
is written in its cells; what is here is what a child process or the benchmark needs.

* :func:`incr_worker` runs in a child process, so it lives here and the chapter works
  under ``spawn`` and ``forkserver``: it receives the server's URL (a string), opens its
  own client with :func:`connect`, returns INCR's replies through a queue (it never prints),
  and closes its client. :func:`run_incr` starts the workers, collects, and joins them.
* :func:`redis_benchmark` runs Redis's own C client, ``redis-benchmark``, for comparison with
  the chapter's pipelined SETs (and in ``bench/redis_pipeline.py``).

Every wait has a timeout.
"""

from __future__ import annotations

import multiprocessing as mp
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import redis

from helpers.processes.basics import collect, join_all

__all__ = [
    "connect",
    "redis_benchmark",
    "incr_worker",
    "run_incr",
]

MAX_SECONDS = 120.0  # no worker or wait here lasts longer than this


# --- argument checks ---------------------------------------------------------------


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def _check_seconds(name: str, value: Any, high: float = MAX_SECONDS) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not 0 <= value <= high:
        raise ValueError(f"{name} must be in [0, {high}] seconds, got {value!r}")
    return float(value)


def _check_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _check_url(url: Any) -> str:
    _check_str("url", url)
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError(f"url must look like redis://host:port/0, got {url!r}")
    return url


def _check_client(r: Any) -> redis.Redis:
    if not isinstance(r, redis.Redis):
        raise TypeError(f"r must be a redis.Redis client, got {type(r).__name__}")
    return r


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """A ``redis.Redis`` client for ``url`` that returns ``str``, with bounded socket waits."""
    _check_url(url)
    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": 10.0, "socket_connect_timeout": 2.0}
    options.update(kwargs)
    return redis.Redis.from_url(url, **options)


def _run_children(target: Callable, args_list: list[tuple], timeout: float, names: list[str] | None = None) -> list:
    """Start one process per argument tuple (the queue is appended), collect one result each."""
    ctx = mp.get_context()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(*args, out), name=names[i] if names else f"{target.__name__}-{i}")
        for i, args in enumerate(args_list)
    ]
    try:
        for p in procs:
            p.start()
        results = collect(out, count=len(procs), timeout=timeout)
    finally:
        try:
            join_all(procs, timeout=timeout)
        finally:
            out.close()
            out.join_thread()
    return results


# --- pipelines ------------------------------------------------------------------


_RPS = re.compile(r"SET: ([\d.]+) requests per second")


def redis_benchmark(
    host: str, port: int, *, requests: int = 100_000, pipeline: int = 16, clients: int = 1, timeout: float = 60.0
) -> float | None:
    """Run ``redis-benchmark -c clients -P pipeline -t set -n requests -q``; SETs per second.

    Returns ``None`` when the ``redis-benchmark`` binary (Debian package redis-tools)
    is not installed.
    """
    _check_str("host", host)
    _check_int("port", port, 1, 65535)
    _check_int("requests", requests, 1, 10_000_000)
    _check_int("pipeline", pipeline, 1, 10_000)
    _check_int("clients", clients, 1, 1_000)
    _check_seconds("timeout", timeout, 600.0)
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    done = subprocess.run(
        [
            binary,
            "-h",
            host,
            "-p",
            str(port),
            "-c",
            str(clients),
            "-P",
            str(pipeline),
            "-t",
            "set",
            "-n",
            str(requests),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    found = _RPS.findall(done.stdout)
    if not found:
        raise RuntimeError(f"could not read redis-benchmark's output: {done.stdout[-200:]!r}")
    return float(found[-1])


# --- INCR from several processes ----------------------------------------------------


def incr_worker(url: str, key: str, times: int, out) -> None:
    """Child: ``INCR key`` ``times`` times; put the list of INCR's replies on ``out``."""
    r = connect(url)
    try:
        replies = [r.incr(key) for _ in range(times)]  # each reply: the counter just after this INCR
    finally:
        r.close()
    out.put(replies)


def run_incr(url: str, key: str, processes: int = 4, times: int = 1_000, timeout: float = 60.0) -> list[list[int]]:
    """``processes`` children each INCR ``key`` ``times`` times; each child's list of replies."""
    _check_url(url)
    _check_str("key", key)
    _check_int("processes", processes, 1, 32)
    _check_int("times", times, 0, 1_000_000)
    _check_seconds("timeout", timeout)
    return _run_children(incr_worker, [(url, key, times)] * processes, timeout)
