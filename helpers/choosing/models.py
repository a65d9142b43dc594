"""One grid, six concurrency models, four workloads: every run in a fresh process, interleaved.

Used by chapter 15 (choose a concurrency model, measured).

The models are :data:`MODELS`: ``sequential`` (one loop), ``threads`` (a
``ThreadPoolExecutor`` of :data:`WORKERS` threads), ``thread-per-task`` (one
``threading.Thread`` per task, no pool), ``processes`` (a ``ProcessPoolExecutor`` of
:data:`WORKERS` processes; the pools are started, and warmed up until every worker has run
one short task (:func:`warm_up`), inside the timed run, and the start-up is also reported on
its own), ``gevent`` (one greenlet per task, in a monkey-patched process) and ``asyncio``
(one task per task, on one event loop). The workloads are :data:`WORKLOADS`:

* ``cpu``: count the primes below :data:`CPU_LIMIT` in :data:`CPU_CHUNKS` chunks of equal
  cost (:func:`prime_chunks` cuts by loop iterations, :func:`loop_iterations`);
* ``io``: :data:`IO_REQUESTS` GETs of :data:`IO_DELAY` seconds each, against a
  :class:`helpers.threads.pools.DelayServer` on loopback;
* ``mixed``: :data:`MIXED_TASKS` tasks, each one GET and then a chunk of primes; each
  records its GET's latency and its chunk's compute time;
* ``idle``: :data:`IDLE_CLIENTS` idle clients, each a real TCP connection that a
  :class:`helpers.choosing.idle_server.HoldServer` holds for :data:`IDLE_HOLD` seconds,
  within a budget of :data:`IDLE_BUDGET` seconds: how many does each model get through?

Every model talks HTTP through one client: :func:`fetch_item` (a blocking socket; under
gevent's ``patch_all()`` it is gevent's cooperative socket) and its asyncio twin
:func:`async_fetch_item`, which send the same bytes (:func:`http_request`) and parse the
answer with the same function (:func:`parse_response`).

:func:`workload_tasks` gives a workload's task function (and its coroutine twin) and
argument tuples; :func:`run_sequential`, :func:`run_threads`, :func:`run_thread_per_task`,
:func:`run_processes`, :func:`run_gevent` and :func:`run_asyncio` are the models.
:func:`run_in_this_process` runs one pair and returns its measurements; it is what
``python -m helpers.scripts.compare_models MODEL WORKLOAD`` calls in a fresh interpreter
(which patches with gevent first, for the gevent model). In the parent, :func:`run_pair`
starts that script and reads its JSON line, and :func:`run_grid` runs every pair
:data:`REPEATS` times, interleaved: repeat by repeat, each workload's models in a rotated
order. :func:`spread` and :func:`summarize` turn the repeats into a median with its min and
max, :func:`clearly_less` and :func:`agree` compare two of them, :func:`physical_limits`
says how fast each pair could be here, and :func:`format_results_table` (with
:func:`markdown_table_to_html`) and :func:`plot_grid` show the results.

Workers return values; nothing here prints.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import ipaddress
import itertools
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from helpers.instruments.measure import peak_memory_kib
from helpers.instruments.workloads import _check_int, count_primes_in_range

__all__ = [
    "MODELS",
    "WORKLOADS",
    "WORKERS",
    "REPEATS",
    "CPU_LIMIT",
    "CPU_CHUNKS",
    "IO_REQUESTS",
    "IO_DELAY",
    "MIXED_TASKS",
    "MIXED_LIMIT",
    "IDLE_CLIENTS",
    "IDLE_HOLD",
    "IDLE_BUDGET",
    "peak_memory_kib",
    "primes_below",
    "loop_iterations",
    "prime_chunks",
    "http_request",
    "parse_response",
    "fetch_item",
    "async_fetch_item",
    "fetch_then_count",
    "async_fetch_then_count",
    "serve_idle",
    "async_serve_idle",
    "async_count_primes",
    "workload_tasks",
    "expected_results",
    "run_sequential",
    "warm_up",
    "results_by",
    "ready",
    "run_threads",
    "run_thread_per_task",
    "in_worker",
    "run_processes",
    "run_gevent",
    "run_asyncio",
    "run_in_this_process",
    "percentile",
    "PairResult",
    "run_pair",
    "rotated",
    "run_grid",
    "Spread",
    "spread",
    "summarize",
    "paired_ratios",
    "clearly_less",
    "agree",
    "physical_limits",
    "format_spread",
    "format_results_table",
    "markdown_table_to_html",
    "plot_grid",
]

MODELS = ("sequential", "threads", "thread-per-task", "processes", "gevent", "asyncio")
WORKLOADS = ("cpu", "io", "mixed", "idle")
#: Threads in the thread pool and processes in the process pool (the other concurrent models: one per task).
WORKERS = 4
#: How many times the grid runs, interleaved (every model once per repeat, in a rotated order).
REPEATS = 5
#: Models that run at most WORKERS tasks at once; the others run one at a time or all at once.
_POOLED = ("threads", "processes")

CPU_LIMIT = 600_000
CPU_CHUNKS = 8
IO_REQUESTS = 32
IO_DELAY = 0.03
MIXED_TASKS = 16
MIXED_LIMIT = 250_000  # the mixed tasks count the primes below this, one chunk each
IDLE_CLIENTS = 1_000
IDLE_HOLD = 0.2
IDLE_BUDGET = 0.9  # four holds fit, with a tenth of a second to spare

_MAX_TIMEOUT = 600.0
_REQUEST_TIMEOUT = 10.0


def _concurrency(model: str, tasks: int) -> int:
    """How many of ``tasks`` tasks ``model`` runs at once."""
    if model == "sequential":
        return 1
    return min(WORKERS, tasks) if model in _POOLED else tasks


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def _check_seconds(name: str, value: Any, high: float = _MAX_TIMEOUT, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or not 0 <= value <= high or (positive and value == 0):
        raise ValueError(
            f"{name} must be {'more than' if positive else 'at least'} 0 and at most {high} seconds, got {value}"
        )
    return float(value)


def _check_url(url: Any) -> str:
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    if not url.startswith("http://"):
        raise ValueError(f"url must start with http://, got {url!r}")
    return url.rstrip("/")


# --------------------------------------------------------------------------- measuring


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process, all its threads, and nothing else.

    Not ``RUSAGE_CHILDREN``: that counts only children this process has reaped, and a
    ``forkserver`` pool's workers are children of the fork server, which outlives the run.
    A pool process reports its own CPU time instead (:func:`in_worker`).
    """
    return time.process_time()


# --------------------------------------------------------------------------- the tasks


def primes_below(limit: int) -> int:
    """How many primes are below ``limit``, by a sieve: the independent check of the CPU workload."""
    limit = _check_int("limit", limit, 0, 50_000_000)
    if limit < 3:
        return 0
    sieve = bytearray([1]) * limit
    sieve[0] = sieve[1] = 0
    for n in range(2, math.isqrt(limit - 1) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit, n)))
    return sum(sieve)


def loop_iterations(limit: int) -> array:
    """For each n below ``limit``, the loop iterations ``count_primes_in_range`` spends on n.

    One turn of the outer loop for every n >= 2, plus the inner loop's trial divisions for an
    odd n: up to its smallest odd prime factor if that is at most isqrt(n), else all the odd
    divisors 3, 5, ... up to isqrt(n). Counted from a smallest-factor sieve, without dividing.
    """
    limit = _check_int("limit", limit, 0, 50_000_000)
    smallest = array("I", bytes(4 * limit))
    # Largest first: a smaller factor written later overwrites a larger one.
    for p in range(math.isqrt(max(limit - 1, 0)) | 1, 2, -2):
        smallest[p * p :: 2 * p] = array("I", [p]) * len(range(p * p, limit, 2 * p))
    costs = array("I", bytes(4 * limit))
    for n in range(2, limit):
        if n % 2 == 0:
            costs[n] = 1
        elif smallest[n]:
            costs[n] = 1 + (smallest[n] - 1) // 2  # d = 3, 5, ..., smallest[n]
        else:
            costs[n] = 1 + len(range(3, math.isqrt(n) + 1, 2))  # a prime: every odd d up to isqrt(n)
    return costs


def prime_chunks(limit: int, chunks: int) -> list[tuple[int, int]]:
    """Split ``range(limit)`` into ``chunks`` consecutive (start, stop) pairs of equal cost.

    Equal cost, not equal width: a number near ``limit`` takes more trial divisions than a
    small one, so each boundary is where the running total of :func:`loop_iterations`
    first reaches the next equal share. The pairs cover ``range(limit)`` exactly.
    """
    limit = _check_int("limit", limit, 0, 50_000_000)
    chunks = _check_int("chunks", chunks, 1, 10_000)
    return list(_equal_cost_edges(limit, chunks))


@functools.lru_cache(maxsize=8)
def _equal_cost_edges(limit: int, chunks: int) -> tuple[tuple[int, int], ...]:
    running = array("Q", itertools.accumulate(loop_iterations(limit)))
    total = running[-1] if running else 0
    edges = [0] + [bisect.bisect_left(running, total * i / chunks) + 1 for i in range(1, chunks)] + [limit]
    edges = [min(max(edge, 0), limit) for edge in edges]
    return tuple(zip(edges[:-1], edges[1:]))


def http_request(url: str) -> tuple[str, int, bytes]:
    """What every model sends for ``url``: (host, port, the bytes of one HTTP/1.0 GET).

    The host must be an IPv4 address, so that no model looks a name up: a lookup runs in a
    thread pool (gevent's, or asyncio's default executor), code the other models do not run.
    """
    url = _check_url(url)
    parts = urlsplit(url)
    ipaddress.IPv4Address(parts.hostname or "")  # ValueError for a name
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode()


def parse_response(raw: bytes) -> str:
    """The body of an HTTP/1.0 response read to its end; ``ConnectionError`` unless the status is 200."""
    if not isinstance(raw, bytes):
        raise TypeError(f"raw must be bytes, got {type(raw).__name__}")
    head, blank_line, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    if not blank_line or status_line.split()[1:2] != ["200"]:
        raise ConnectionError(f"unexpected answer: {status_line!r}")
    return body.decode()


def fetch_item(url: str, timeout: float = _REQUEST_TIMEOUT) -> str:
    """GET ``url`` over one blocking socket and return the body (every model but asyncio).

    ``timeout`` bounds each socket operation. After gevent's ``patch_all()``, ``socket`` is
    gevent's: the same calls then wait by switching to other greenlets.
    """
    timeout = _check_seconds("timeout", timeout, 60.0, positive=True)
    host, port, request = http_request(url)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(request)
        received = []
        while data := sock.recv(65536):  # HTTP/1.0: the server closes when it has answered
            received.append(data)
    return parse_response(b"".join(received))


async def async_fetch_item(url: str, timeout: float = _REQUEST_TIMEOUT) -> str:
    """:func:`fetch_item` for asyncio: the same request bytes and the same parsing, over asyncio streams.

    ``timeout`` bounds the whole exchange (``asyncio.timeout``, new in 3.11).
    """
    timeout = _check_seconds("timeout", timeout, 60.0, positive=True)
    host, port, request = http_request(url)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            await writer.drain()
            received = await reader.read()  # to the end: the server closes when it has answered
        finally:
            writer.close()
            await writer.wait_closed()
    return parse_response(received)


def fetch_then_count(
    url: str, start: int, stop: int, timeout: float = _REQUEST_TIMEOUT
) -> tuple[str, int, float, float]:
    """The mixed task: one GET, then count the primes in ``range(start, stop)``.

    Returns (body, primes, the GET's latency, the counting's duration), in seconds.
    """
    sent = time.perf_counter()
    body = fetch_item(url, timeout)
    answered = time.perf_counter()
    return body, count_primes_in_range(start, stop), answered - sent, time.perf_counter() - answered


async def async_fetch_then_count(
    url: str, start: int, stop: int, timeout: float = _REQUEST_TIMEOUT
) -> tuple[str, int, float, float]:
    """:func:`fetch_then_count` as a coroutine: the GET awaits, the counting blocks the loop."""
    sent = time.perf_counter()
    body = await async_fetch_item(url, timeout)
    answered = time.perf_counter()
    return body, count_primes_in_range(start, stop), answered - sent, time.perf_counter() - answered


def _check_idle(url: str, first: int, clients: int, hold: float, deadline: float) -> str:
    url = _check_url(url)
    _check_int("first", first, 0, 1_000_000)
    _check_int("clients", clients, 0, 100_000)
    _check_seconds("hold", hold, 60.0)
    if not isinstance(deadline, (int, float)) or isinstance(deadline, bool):
        raise TypeError(f"deadline must be a time.time() value, got {type(deadline).__name__}")
    return url


def serve_idle(url: str, first: int, clients: int, hold: float, deadline: float) -> int:
    """Serve ``clients`` idle clients one after another: each one connection held ``hold`` seconds.

    Client i is a GET of ``/idle/i?delay=hold``, which the server answers only after the hold,
    so the connection stays open and idle until then. A client is started only if it can
    finish before ``deadline`` (a ``time.time()`` value, comparable across processes).
    Returns how many were served.
    """
    url = _check_idle(url, first, clients, hold, deadline)
    served = 0
    for i in range(first, first + clients):
        if time.time() + hold > deadline:
            break
        path = f"/idle/{i}?delay={hold:g}"
        if fetch_item(url + path) != path:
            raise ConnectionError(f"client {i} got another client's answer")
        served += 1
    return served


async def async_serve_idle(url: str, first: int, clients: int, hold: float, deadline: float) -> int:
    """:func:`serve_idle` as a coroutine: each client is an :func:`async_fetch_item`."""
    url = _check_idle(url, first, clients, hold, deadline)
    served = 0
    for i in range(first, first + clients):
        if time.time() + hold > deadline:
            break
        path = f"/idle/{i}?delay={hold:g}"
        if await async_fetch_item(url + path) != path:
            raise ConnectionError(f"client {i} got another client's answer")
        served += 1
    return served


async def async_count_primes(start: int, stop: int) -> int:
    """The CPU task as a coroutine: with no ``await`` inside, it holds the event loop until it returns."""
    return count_primes_in_range(start, stop)


def in_worker(function: Callable[..., Any], args: tuple) -> tuple[Any, int, int, float]:
    """Run one task in a pool process; return (value, pid, this process's peak memory in KiB, its CPU seconds so far)."""
    return function(*args), os.getpid(), peak_memory_kib(), time.process_time()


def ready(pause: float) -> tuple[int, int]:
    """The warm-up task: wait ``pause`` seconds, return who ran it: (pid, thread id)."""
    time.sleep(_check_seconds("pause", pause, 1.0))
    return os.getpid(), threading.get_ident()


# --------------------------------------------------------------------------- one pair, here


def workload_tasks(
    workload: str, url: str | None, deadline: float, shares: int
) -> tuple[Callable[..., Any], Callable[..., Any], list[tuple]]:
    """The tasks of ``workload``: its function, the same as a coroutine function, and the argument tuples.

    Every model runs the function on the same argument tuples (asyncio: the coroutine
    function). ``url`` is a DelayServer's for io and mixed, a HoldServer's for idle. The idle
    workload splits its clients into ``shares`` tasks: one per worker that can wait at once
    (1 for sequential, :data:`WORKERS` for a pool, one per client otherwise), each serving its
    clients one after another until ``deadline``.
    """
    workload = _check_choice("workload", workload, WORKLOADS)
    shares = _check_int("shares", shares, 1, IDLE_CLIENTS)
    if workload == "cpu":
        return count_primes_in_range, async_count_primes, prime_chunks(CPU_LIMIT, CPU_CHUNKS)
    if url is None:
        raise ValueError(f"the {workload!r} workload needs the url of a server")
    url = _check_url(url)
    if workload == "idle":
        base, extra = divmod(IDLE_CLIENTS, shares)
        sizes = [base + (i < extra) for i in range(shares)]
        firsts = list(itertools.accumulate([0, *sizes[:-1]]))
        tasks = [(url, first, size, IDLE_HOLD, deadline) for first, size in zip(firsts, sizes)]
        return serve_idle, async_serve_idle, tasks
    if workload == "io":
        return fetch_item, async_fetch_item, [(f"{url}/item/{i}?delay={IO_DELAY:g}",) for i in range(IO_REQUESTS)]
    chunks = prime_chunks(MIXED_LIMIT, MIXED_TASKS)
    return (
        fetch_then_count,
        async_fetch_then_count,
        [(f"{url}/item/{i}?delay={IO_DELAY:g}", start, stop) for i, (start, stop) in enumerate(chunks)],
    )


def expected_results(workload: str) -> Any:
    """What a correct run of ``workload`` returns (primes by a sieve, bodies their own paths); None for idle."""
    workload = _check_choice("workload", workload, WORKLOADS)
    if workload == "cpu":
        return primes_below(CPU_LIMIT)
    if workload == "io":
        return [f"/item/{i}?delay={IO_DELAY:g}" for i in range(IO_REQUESTS)]
    if workload == "mixed":
        return ([f"/item/{i}?delay={IO_DELAY:g}" for i in range(MIXED_TASKS)], primes_below(MIXED_LIMIT))
    return None


def run_sequential(function: Callable[..., Any], tasks: list[tuple]) -> list:
    """The sequential model: one plain loop."""
    return [function(*args) for args in tasks]


def results_by(futures: Sequence[Future], deadline: float) -> list:
    """The results of ``futures`` in their order, all of them by ``deadline`` (a ``time.monotonic()`` value).

    One bound for the lot, not one per future: raises ``TimeoutError`` (after cancelling
    what has not started) if any is unfinished at the deadline.
    """
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        raise TypeError(f"deadline must be a time.monotonic() value, got {type(deadline).__name__}")
    futures = list(futures)
    _done, not_done = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
    if not_done:
        for future in not_done:
            future.cancel()
        raise TimeoutError(f"{len(not_done)} of {len(futures)} tasks unfinished at the deadline")
    return [future.result(timeout=0) for future in futures]


def warm_up(pool: Executor, deadline: float, workers: int = WORKERS) -> float:
    """Start all ``workers`` workers of ``pool`` by ``deadline``; return how long that took.

    One short task per worker is not enough: a worker that is ready first (under ``spawn``,
    the others are still importing) can take two of them. So rounds of short tasks go out
    until ``workers`` distinct workers (pid, thread) have each run one; ``TimeoutError`` at the deadline.
    """
    workers = _check_int("workers", workers, 1, 1024)
    start = time.perf_counter()
    answered: set[tuple[int, int]] = set()
    while len(answered) < workers:
        answered.update(results_by([pool.submit(ready, 0.01) for _ in range(workers)], deadline))
    return time.perf_counter() - start


def run_threads(function: Callable[..., Any], tasks: list[tuple], timeout: float) -> tuple[list, float]:
    """The threads model: a pool of :data:`WORKERS` threads; returns the values and the pool's start-up time."""
    deadline = time.monotonic() + timeout  # one bound for the whole run, start-up included
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="compare") as pool:
        startup = warm_up(pool, deadline)
        futures = [pool.submit(function, *args) for args in tasks]
        return results_by(futures, deadline), startup


def run_thread_per_task(function: Callable[..., Any], tasks: list[tuple], timeout: float) -> list:
    """The thread-per-task model: one ``threading.Thread`` per task, all started at once, no pool."""
    deadline = time.monotonic() + timeout
    outcomes: list[tuple[bool, Any]] = [(False, None)] * len(tasks)

    def run(i: int, args: tuple) -> None:
        try:
            outcomes[i] = (True, function(*args))
        except BaseException as error:  # handed to the caller below, not printed
            outcomes[i] = (False, error)

    threads = [
        threading.Thread(target=run, args=(i, args), name=f"compare-task-{i}", daemon=True)
        for i, args in enumerate(tasks)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    unfinished = sum(thread.is_alive() for thread in threads)
    if unfinished:
        raise TimeoutError(f"{unfinished} of {len(threads)} threads unfinished after {timeout} s")
    failed = [value for ok, value in outcomes if not ok]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(threads)} threads failed: {failed[0]!r}")
    return [value for _, value in outcomes]


def run_processes(
    function: Callable[..., Any], tasks: list[tuple], timeout: float, start_method: str
) -> tuple[list, int, float, float]:
    """The processes model: a pool of :data:`WORKERS` processes.

    Returns the values, the sum of the pool processes' peak memory (KiB), the sum of their
    CPU seconds (each process's last report), and the pool's start-up time.
    """
    import multiprocessing

    deadline = time.monotonic() + timeout  # one bound for the whole run, start-up included
    context = multiprocessing.get_context(start_method)
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=context) as pool:
        startup = warm_up(pool, deadline)
        futures = [pool.submit(in_worker, function, args) for args in tasks]
        answers = results_by(futures, deadline)
    peaks: dict[int, int] = {}
    cpus: dict[int, float] = {}
    for _, pid, peak, cpu in answers:
        peaks[pid] = max(peaks.get(pid, 0), peak)
        cpus[pid] = max(cpus.get(pid, 0.0), cpu)
    return [answer[0] for answer in answers], sum(peaks.values()), sum(cpus.values()), startup


def run_gevent(function: Callable[..., Any], tasks: list[tuple], timeout: float) -> list:
    """The gevent model: one greenlet per task, in a process that called ``monkey.patch_all()`` first."""
    import gevent
    import gevent.monkey

    if not gevent.monkey.is_module_patched("socket") or not gevent.monkey.is_module_patched("time"):
        raise RuntimeError(
            "the gevent model needs gevent.monkey.patch_all() first "
            "(run it through python -m helpers.scripts.compare_models)"
        )
    greenlets = [gevent.spawn(function, *args) for args in tasks]
    gevent.joinall(greenlets, timeout=timeout)
    unfinished = [g for g in greenlets if not g.dead]
    gevent.killall(unfinished, timeout=5)
    if unfinished:
        raise TimeoutError(f"{len(unfinished)} of {len(greenlets)} greenlets unfinished after {timeout} s")
    failed = [g for g in greenlets if not g.successful()]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(greenlets)} greenlets failed: {failed[0].exception!r}")
    return [g.value for g in greenlets]


def run_asyncio(coroutine_function: Callable[..., Any], tasks: list[tuple], timeout: float) -> list:
    """The asyncio model: one task per argument tuple, gathered on one event loop."""

    async def main() -> list:
        return await asyncio.wait_for(asyncio.gather(*(coroutine_function(*a) for a in tasks)), timeout)

    return asyncio.run(main())


def _check_values(workload: str, values: list) -> tuple[bool, int]:
    """(the values are right, tasks done or clients served) for one run of ``workload``."""
    expected = expected_results(workload)
    if workload == "cpu":
        return sum(values) == expected, len(values)
    if workload == "io":
        return values == expected, len(values)
    if workload == "mixed":
        return ([v[0] for v in values], sum(v[1] for v in values)) == expected, len(values)
    served = sum(values)
    return all(isinstance(v, int) for v in values) and 0 <= served <= IDLE_CLIENTS, served


def run_in_this_process(
    model: str, workload: str, url: str | None = None, start_method: str | None = None, timeout: float = 120.0
) -> dict:
    """Run one (model, workload) pair here and return its measurements as a dict.

    Meant for a fresh interpreter (``python -m helpers.scripts.compare_models``):
    the peak memory is this process's high-water mark (plus, for ``processes``,
    the sum of each pool process's own peak), the CPU time is this process's plus, for
    ``processes``, each pool process's own (reported with its last result). ``timeout``
    bounds all the tasks together (for a pool, start-up included). The dict holds model,
    workload, ``wall`` and ``cpu`` seconds, ``startup`` (of ``wall``: starting the pool's
    workers; 0 without a pool), ``peak_kib``, ``tasks``, ``concurrency`` (tasks that can run
    at once), ``done`` (clients served, for ``idle``; tasks finished otherwise), ``ok`` (the
    results are right), and for ``mixed`` each task's GET ``latencies`` and chunk ``computes``.
    """
    model = _check_choice("model", model, MODELS)
    workload = _check_choice("workload", workload, WORKLOADS)
    timeout = _check_seconds("timeout", timeout, positive=True)
    if start_method is None:
        import multiprocessing

        start_method = multiprocessing.get_start_method()
    if not isinstance(start_method, str):
        raise TypeError(f"start_method must be a str or None, got {type(start_method).__name__}")
    shares = {"sequential": 1, "threads": WORKERS, "processes": WORKERS}.get(model, IDLE_CLIENTS)
    if workload == "idle":
        from helpers.choosing.idle_server import raise_open_file_limit

        raise_open_file_limit(IDLE_CLIENTS + 64)  # one socket per waiting client
    workload_tasks(workload, url, 0.0, shares)  # untimed: checks the arguments, caches the chunk boundaries
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    function, coroutine_function, tasks = workload_tasks(workload, url, time.time() + IDLE_BUDGET, shares)
    children_kib, children_cpu, startup = 0, 0.0, 0.0
    if model == "sequential":
        values = run_sequential(function, tasks)
    elif model == "threads":
        values, startup = run_threads(function, tasks, timeout)
    elif model == "thread-per-task":
        values = run_thread_per_task(function, tasks, timeout)
    elif model == "processes":
        values, children_kib, children_cpu, startup = run_processes(function, tasks, timeout, start_method)
    elif model == "gevent":
        values = run_gevent(function, tasks, timeout)
    else:
        values = run_asyncio(coroutine_function, tasks, timeout)
    wall = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_before + children_cpu
    ok, done = _check_values(workload, values)
    clients = IDLE_CLIENTS if workload == "idle" else len(tasks)
    return {
        "model": model,
        "workload": workload,
        "wall": wall,
        "startup": startup,
        "cpu": cpu,
        "peak_kib": peak_memory_kib() + children_kib,
        "tasks": clients,
        "concurrency": min(_concurrency(model, len(tasks)), clients),
        "done": done,
        "ok": bool(ok),
        "start_method": start_method,
        "latencies": [v[2] for v in values] if workload == "mixed" else [],
        "computes": [v[3] for v in values] if workload == "mixed" else [],
    }


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile of ``values`` by nearest rank: the smallest value with p% at or below it."""
    values = sorted(values)
    if not values:
        raise ValueError("percentile of no values")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 100:
        raise ValueError(f"p must be in (0, 100], got {p!r}")
    return values[math.ceil(p / 100 * len(values)) - 1]


# --------------------------------------------------------------------------- many pairs, from the parent


@dataclass(frozen=True)
class PairResult:
    """What one (model, workload) run reported."""

    model: str
    workload: str
    wall: float
    startup: float
    cpu: float
    peak_kib: int
    tasks: int
    concurrency: int
    done: int
    ok: bool
    start_method: str
    latencies: tuple[float, ...] = ()  # mixed: each GET's latency, in task order
    computes: tuple[float, ...] = ()  # mixed: each chunk's compute time, in task order
    server_peak: int = 0  # the most requests the server held at once during the run (run_grid's servers)
    repeat: int = 0  # which repeat of the grid this run belongs to (run_grid)

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass  # nobody left in the group


def _stop_session(proc: subprocess.Popen) -> None:
    """Stop ``proc`` and every process in its group (``proc`` was started with ``start_new_session=True``).

    SIGTERM first: it ends the child, its pool's workers and a fork server, while
    multiprocessing's resource tracker ignores it, sees them gone and unlinks their
    semaphores; SIGKILL for anything left after 5 s.
    """
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.communicate(timeout=5)  # returns once every process holding its pipes has exited
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)


def run_pair(
    model: str, workload: str, url: str | None = None, start_method: str | None = None, timeout: float = 120.0
) -> PairResult:
    """Run ``python -m helpers.scripts.compare_models`` for one pair and return what it printed.

    Raises ``RuntimeError`` with the child's last stderr line if it fails, and
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds, once the child and everything it
    started (it runs in a session of its own) have been killed.
    """
    model = _check_choice("model", model, MODELS)
    workload = _check_choice("workload", workload, WORKLOADS)
    timeout = _check_seconds("timeout", timeout, positive=True)
    if url is not None:
        url = _check_url(url)
    if start_method is None:
        import multiprocessing

        start_method = multiprocessing.get_start_method()
    command = [sys.executable, "-m", "helpers.scripts.compare_models", model, workload, "--start-method", start_method]
    if url is not None:
        command += ["--url", url]
    # A session of its own: on timeout, the signal goes to the child and to every process it
    # started (its pool's workers, a fork server); killing the child alone would orphan them.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:  # the timeout, or an interrupt
        _stop_session(proc)
        raise
    finally:
        _signal_group(proc.pid, signal.SIGKILL)  # anything still in the group, even after a normal exit
    if proc.returncode != 0:
        last = (stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise RuntimeError(f"compare_models {model} {workload} exited with {proc.returncode}: {last}")
    report = json.loads(stdout.strip().splitlines()[-1])
    report["latencies"], report["computes"] = tuple(report["latencies"]), tuple(report["computes"])
    return PairResult(**report)


def rotated(models: Sequence[str], repeat: int) -> list[str]:
    """``models`` starting at position ``repeat`` (mod their number): repeat r's running order."""
    models = list(models)
    shift = repeat % len(models) if models else 0
    return models[shift:] + models[:shift]


def run_grid(
    urls: dict[str, str],
    models: Iterable[str] = MODELS,
    workloads: Iterable[str] = WORKLOADS,
    repeats: int = REPEATS,
    start_method: str | None = None,
    timeout: float = 120.0,
    servers: dict[str, Any] | None = None,
) -> list[PairResult]:
    """Run every (model, workload) pair ``repeats`` times, one fresh process each, interleaved.

    Repeat by repeat, workload by workload, every model runs once, in an order rotated by
    one place each repeat (:func:`rotated`), so that a slow spell on the machine falls on
    different models, and no model always runs first. ``urls`` maps a workload to its
    server's URL (io and mixed: a DelayServer; idle: a HoldServer). ``servers`` maps a
    workload to that server, so that each result carries ``server_peak``: the most requests it
    held at once during that run, a count that does not depend on what else the machine does.
    Returns every run (``repeat`` says which), all of them: nothing is dropped.
    """
    models, workloads = list(models), list(workloads)
    for m in models:
        _check_choice("model", m, MODELS)
    for w in workloads:
        _check_choice("workload", w, WORKLOADS)
    if not models or not workloads:
        raise ValueError("name at least one model and one workload")
    if not isinstance(urls, dict):
        raise TypeError(f"urls must map workloads to server URLs, got {type(urls).__name__}")
    servers = dict(servers or {})
    for w, server in servers.items():
        if not (hasattr(server, "reset_peak") and hasattr(server, "peak_in_flight")):
            raise TypeError(f"servers[{w!r}] must be a DelayServer or a HoldServer, got {type(server).__name__}")
    repeats = _check_int("repeats", repeats, 1, 20)
    results = []
    for repeat in range(repeats):
        for w in workloads:
            for m in rotated(models, repeat):
                server = servers.get(w)
                if server is not None:
                    server.reset_peak()
                run = run_pair(m, w, urls.get(w), start_method, timeout)
                results.append(replace(run, repeat=repeat, server_peak=server.peak_in_flight if server else 0))
    return results


# --------------------------------------------------------------------------- medians and spreads


@dataclass(frozen=True)
class Spread:
    """The median of some repeated measurements, with their min and max."""

    median: float
    low: float
    high: float
    values: tuple[float, ...] = field(default=(), compare=False)

    @property
    def width(self) -> float:
        return self.high - self.low


def spread(values: Iterable[float]) -> Spread:
    """The median, min and max of ``values``."""
    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError("spread of no values")
    return Spread(statistics.median(values), min(values), max(values), values)


def summarize(results: Sequence[PairResult], measure: Callable[[PairResult], float]) -> dict[tuple[str, str], Spread]:
    """For each (model, workload) in ``results``: the :class:`Spread` of ``measure(run)`` over its repeats."""
    grouped: dict[tuple[str, str], list[float]] = {}
    for r in results:
        grouped.setdefault((r.model, r.workload), []).append(measure(r))
    return {pair: spread(values) for pair, values in grouped.items()}


def paired_ratios(
    results: Sequence[PairResult], workload: str, numerator: str, denominator: str, measure=lambda r: r.wall
) -> Spread:
    """The Spread of measure(numerator) / measure(denominator), paired repeat by repeat."""
    by_repeat = {(r.model, r.repeat): r for r in results if r.workload == workload}
    repeats = sorted({r for m, r in by_repeat if m == numerator} & {r for m, r in by_repeat if m == denominator})
    if not repeats:
        raise ValueError(f"no repeat ran both {numerator} and {denominator} on {workload}")
    return spread(measure(by_repeat[numerator, r]) / measure(by_repeat[denominator, r]) for r in repeats)


def clearly_less(a: Spread, b: Spread) -> bool:
    """Every measurement of ``a`` is below every one of ``b``: a difference larger than both spreads."""
    return a.high < b.low


def agree(a: Spread, b: Spread) -> bool:
    """The two ranges (min to max) overlap: no difference larger than the spread."""
    return a.low <= b.high and b.low <= a.high


# --------------------------------------------------------------------------- limits, tables, plots


def physical_limits(
    cpu_serial: float, mixed_cpu: float, cpus: int, workers: int = WORKERS, gil: bool = True
) -> dict[str, dict[str, float]]:
    """The best wall time each pair could reach on ``cpus`` CPUs, in seconds (``idle``: clients).

    ``cpu_serial`` is the sequential wall time of the ``cpu`` workload; ``mixed_cpu`` is the
    CPU time of the sequential ``mixed`` run (its computing, including what each GET costs
    the client). Computation runs on at most min(workers, cpus) CPUs at once with processes
    (and with threads when ``gil`` is False, as on a free-threaded build; a thread per task
    then gets all ``cpus``), and on one at a time with threads under the GIL, gevent and
    asyncio (one thread); waits overlap up to the model's concurrency (1, ``workers``, or
    every task). The mixed workload's floor is the larger of its computing floor and its
    waiting floor (sequential: their sum). For ``idle``, the value is the most clients the
    model can serve within :data:`IDLE_BUDGET`.
    """
    cpu_serial = _check_seconds("cpu_serial", cpu_serial, positive=True)
    mixed_cpu = _check_seconds("mixed_cpu", mixed_cpu, positive=True)
    cpus = _check_int("cpus", cpus, 1, 4096)
    workers = _check_int("workers", workers, 1, 1024)
    if not isinstance(gil, bool):
        raise TypeError(f"gil must be a bool, got {type(gil).__name__}")
    limits: dict[str, dict[str, float]] = {}
    for model in MODELS:
        if model == "processes" or (model == "threads" and not gil):
            computing_cpus = min(workers, cpus)
        elif model == "thread-per-task" and not gil:
            computing_cpus = cpus
        else:
            computing_cpus = 1
        waiters = {"sequential": 1, "threads": workers, "processes": workers}.get(model)
        io_floor = IO_REQUESTS * IO_DELAY / min(waiters or IO_REQUESTS, IO_REQUESTS)
        mixed_wait = MIXED_TASKS * IO_DELAY / min(waiters or MIXED_TASKS, MIXED_TASKS)
        idle_slots = min(waiters or IDLE_CLIENTS, IDLE_CLIENTS)
        limits[model] = {
            "cpu": cpu_serial / computing_cpus,
            "io": io_floor,
            "mixed": (mixed_cpu + mixed_wait if model == "sequential" else max(mixed_cpu / computing_cpus, mixed_wait)),
            "idle": float(min(IDLE_CLIENTS, idle_slots * math.floor(IDLE_BUDGET / IDLE_HOLD))),
        }
    return limits


def _format_seconds(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 0.1 else f"{seconds:.2f} s"


def format_spread(s: Spread, unit: str = "s") -> str:
    """``median (min–max)``, every number with its unit: ``s`` (seconds), ``×`` (a ratio), ``MiB`` or ``KiB``."""
    if not isinstance(s, Spread):
        raise TypeError(f"s must be a Spread, got {type(s).__name__}")
    if unit == "s":
        show = _format_seconds
    elif unit == "×":
        show = lambda x: f"{x:.2f}×"  # noqa: E731
    elif unit in ("MiB", "KiB"):
        show = lambda x: f"{x:.1f} {unit}"  # noqa: E731
    else:
        raise ValueError(f"unit must be 's', '×', 'MiB' or 'KiB', got {unit!r}")
    return f"{show(s.median)} ({show(s.low)}–{show(s.high)})"


def format_results_table(results: Sequence[PairResult], limits: dict[str, dict[str, float]] | None = None) -> str:
    """A Markdown table, one row per pair: median (min–max) over the repeats of each measurement.

    Wall time, pool start-up, CPU time, peak memory, the speedup over sequential (paired
    repeat by repeat; idle: clients served), the best possible, and how many runs were
    correct. Every varying value has a unit (s, ms, ×, MiB), so the book's sanitize file hides it.
    """
    results = list(results)
    if not results or not all(isinstance(r, PairResult) for r in results):
        raise TypeError("results must be a non-empty sequence of PairResult values")
    wall = summarize(results, lambda r: r.wall)
    cpu = summarize(results, lambda r: r.cpu)
    memory = summarize(results, lambda r: r.peak_mib)
    startup = summarize(results, lambda r: r.startup)
    lines = [
        "| workload | model | wall time | of it, pool start-up | CPU time | peak memory | vs sequential "
        "| best possible | correct runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    pairs = [(m, w) for w in WORKLOADS for m in MODELS if (m, w) in wall]
    has_sequential = {w for m, w in pairs if m == "sequential"}
    for model, workload in pairs:
        runs = [r for r in results if (r.model, r.workload) == (model, workload)]
        if workload not in has_sequential:
            speedup = "n/a"
        elif workload == "idle":  # more clients served is better
            ratio = paired_ratios(results, workload, model, "sequential", lambda r: max(1, r.done))
            speedup = f"{format_spread(ratio, '×')} the clients"
        else:
            speedup = format_spread(paired_ratios(results, workload, "sequential", model), "×")
        if limits is None:
            best = "n/a"
        elif workload == "idle":  # the count served can vary from run to run: shown as a ratio
            most = limits[model]["idle"]
            served = statistics.median(r.done for r in runs) / most
            best = f"{most:.0f} clients ({served:.2f}× of it served)"
        else:
            best = _format_seconds(limits[model][workload])
        pool_start = _format_seconds(startup[model, workload].median) if model in _POOLED else "none"
        lines.append(
            f"| {workload} | {model} | {format_spread(wall[model, workload])} | {pool_start} | "
            f"{format_spread(cpu[model, workload])} | {format_spread(memory[model, workload], 'MiB')} | "
            f"{speedup} | {best} | {sum(r.ok for r in runs)} of {len(runs)} |"
        )
    return "\n".join(lines)


def markdown_table_to_html(table: str) -> str:
    """A simple Markdown table (header, alignment row, body rows) as an HTML ``<table>``.

    The book renders a cell's ``text/html`` output as is, whereas its Markdown
    outputs are read as CommonMark, which has no tables.
    """
    import html

    if not isinstance(table, str):
        raise TypeError(f"table must be a str, got {type(table).__name__}")
    lines = [line.strip() for line in table.strip().splitlines()]
    if len(lines) < 2 or not all(line.startswith("|") and line.endswith("|") for line in lines):
        raise ValueError("table must be a Markdown table: a header, an alignment row, then rows")

    def cells(line: str) -> list[str]:
        return [html.escape(c.strip()) for c in line[1:-1].split("|")]

    aligns = ["right" if c.endswith(":") else "left" for c in cells(lines[1])]
    head = "".join(f'<th style="text-align:{a}">{c}</th>' for a, c in zip(aligns, cells(lines[0])))
    body = "".join(
        "<tr>" + "".join(f'<td style="text-align:{a}">{c}</td>' for a, c in zip(aligns, cells(line))) + "</tr>\n"
        for line in lines[2:]
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


_COLOURS = dict(zip(MODELS, ["0.55", "tab:blue", "tab:cyan", "tab:orange", "tab:green", "tab:purple"]))


def plot_grid(results: Sequence[PairResult], limits: dict[str, dict[str, float]] | None = None):
    """One panel per workload: the median wall time per model with its min–max as an error bar
    (idle: clients served), the limit dashed; a last panel with the p50 and p99 latency of the
    mixed workload's GETs. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    results = list(results)
    if not results or not all(isinstance(r, PairResult) for r in results):
        raise TypeError("results must be a non-empty sequence of PairResult values")
    workloads = [w for w in WORKLOADS if any(r.workload == w for r in results)]
    models = [m for m in MODELS if any(r.model == m for r in results)]
    wall = summarize(results, lambda r: r.wall)
    served = summarize(results, lambda r: max(1, r.done))
    fig, axes = plt.subplots(1, len(workloads) + 1, figsize=(3.0 * (len(workloads) + 1), 3.8), layout="constrained")
    for ax, workload in zip(axes, workloads):
        table = served if workload == "idle" else wall
        for i, model in enumerate(models):
            s = table.get((model, workload))
            if s is None:
                continue
            ax.bar(i, s.median, color=_COLOURS[model])
            ax.errorbar(i, s.median, yerr=[[s.median - s.low], [s.high - s.median]], color="black", capsize=3)
            if limits is not None:
                ax.hlines(limits[model][workload], i - 0.4, i + 0.4, colors="black", linestyles="dashed", linewidth=1)
        ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=8)
        if workload == "idle":
            ax.set_yscale("log")
            ax.set_ylabel(f"clients served in {IDLE_BUDGET:g} s (log scale)")
            ax.set_title(f"idle: {IDLE_CLIENTS:,} clients", fontsize=10)
        elif workload == "io":  # tens of ms to a second: only a log scale shows both
            ax.set_yscale("log")
            ax.set_ylabel("wall time, s (log scale)")
            ax.set_title(workload, fontsize=10)
        else:
            ax.set_ylabel("wall time, s")
            ax.set_title(workload, fontsize=10)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    latency_ax = axes[-1]
    mixed = [r for r in results if r.workload == "mixed" and r.latencies]
    for j, measure in enumerate((lambda r: r.p50, lambda r: r.p99)):
        table = summarize(mixed, measure) if mixed else {}
        for i, model in enumerate(models):
            s = table.get((model, "mixed"))
            if s is None:
                continue
            x = i + (j - 0.5) * 0.4
            latency_ax.bar(x, s.median * 1000, 0.4, color=_COLOURS[model], alpha=0.5 + 0.5 * j)
            latency_ax.errorbar(
                x, s.median * 1000, yerr=[[(s.median - s.low) * 1000], [(s.high - s.median) * 1000]], color="black"
            )
    latency_ax.axhline(IO_DELAY * 1000, color="black", linestyle="dashed", linewidth=1)
    latency_ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=8)
    latency_ax.set_ylabel("GET latency, ms")
    latency_ax.set_title("mixed: p50 (light), p99 (dark)", fontsize=10)
    return fig
