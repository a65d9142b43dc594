"""One grid, five concurrency models, four workloads: run each pair in a fresh process.

Used by chapter 15 (choose a concurrency model, measured).

The models are :data:`MODELS`: ``sequential`` (one loop), ``threads`` (a
``ThreadPoolExecutor`` of :data:`WORKERS` threads), ``processes`` (a
``ProcessPoolExecutor`` of :data:`WORKERS` processes; pools are started, and
warmed up until every worker has run one short task (:func:`warm_up`), inside the
timed run, and the start-up is also reported on its own), ``gevent`` (one greenlet per task, in a monkey-patched process) and
``asyncio`` (one task per task, on one event loop). The workloads are
:data:`WORKLOADS`:

* ``cpu``: count the primes below :data:`CPU_LIMIT` in :data:`CPU_CHUNKS` chunks;
* ``io``: :data:`IO_REQUESTS` GETs of :data:`IO_DELAY` seconds each, against a
  :class:`helpers.threads.pools.DelayServer` on loopback;
* ``mixed``: :data:`MIXED_TASKS` tasks, each one GET and then a chunk of primes;
* ``idle``: :data:`IDLE_CLIENTS` idle clients, each a wait of :data:`IDLE_HOLD`
  seconds (a sleep standing in for an idle connection), within a budget of
  :data:`IDLE_BUDGET` seconds: how many clients does each model get through?

:func:`workload_tasks` gives a workload's task function (and its coroutine twin, for
asyncio) and argument tuples; :func:`run_sequential`, :func:`run_threads`,
:func:`run_processes`, :func:`run_gevent` and :func:`run_asyncio` are the five models,
each running those tasks its own way. Chapter 15 shows their source, and the tasks', before
it runs them. :func:`run_in_this_process` runs one pair and returns its measurements; it is what
``python -m helpers.scripts.compare_models MODEL WORKLOAD`` calls in a fresh
interpreter (which patches with gevent first, for the gevent model). In the parent,
:func:`run_pair` starts that script and reads its JSON line, :func:`run_grid` runs
every pair, :func:`physical_limits` says how fast each pair could possibly be on
this machine, and :func:`format_results_table` (with :func:`markdown_table_to_html`) and
:func:`plot_grid` show the results.

Workers return values; nothing here prints.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from helpers.instruments.measure import peak_memory_kib
from helpers.instruments.workloads import _check_int, count_primes_in_range

__all__ = [
    "MODELS",
    "WORKLOADS",
    "WORKERS",
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
    "prime_chunks",
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
    "in_worker",
    "run_processes",
    "run_gevent",
    "run_asyncio",
    "run_in_this_process",
    "PairResult",
    "run_pair",
    "run_grid",
    "physical_limits",
    "format_results_table",
    "markdown_table_to_html",
    "plot_grid",
]

MODELS = ("sequential", "threads", "processes", "gevent", "asyncio")
WORKLOADS = ("cpu", "io", "mixed", "idle")
#: Threads in the thread pool and processes in the process pool (greenlets and tasks: one per task).
WORKERS = 4

CPU_LIMIT = 600_000
CPU_CHUNKS = 8
IO_REQUESTS = 64
IO_DELAY = 0.05
MIXED_TASKS = 32
MIXED_LIMIT = 480_000  # the mixed tasks count the primes below this, one chunk each
IDLE_CLIENTS = 2_000
IDLE_HOLD = 0.5
IDLE_BUDGET = 2.25  # four holds fit, with a quarter second to spare

_MAX_TIMEOUT = 600.0
_REQUEST_TIMEOUT = 10.0


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


def prime_chunks(limit: int, chunks: int) -> list[tuple[int, int]]:
    """Split ``range(limit)`` into ``chunks`` consecutive (start, stop) pairs covering it exactly."""
    limit = _check_int("limit", limit, 0, 50_000_000)
    chunks = _check_int("chunks", chunks, 1, 10_000)
    edges = [limit * i // chunks for i in range(chunks + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _opener():
    import urllib.request  # imported late: in the gevent model, after monkey-patching

    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch_item(url: str, timeout: float = _REQUEST_TIMEOUT) -> str:
    """GET ``url`` with ``urllib`` (blocking; cooperative once gevent has patched sockets); return the body."""
    _check_url(url)
    timeout = _check_seconds("timeout", timeout, 60.0, positive=True)
    with _opener().open(url, timeout=timeout) as response:
        return response.read().decode()


async def async_fetch_item(url: str, timeout: float = _REQUEST_TIMEOUT) -> str:
    """GET ``url`` over asyncio streams (HTTP/1.0, the server closes); return the body.

    Raises ``ConnectionError`` for a status other than 200 and ``TimeoutError`` after ``timeout``.
    """
    _check_url(url)
    timeout = _check_seconds("timeout", timeout, 60.0, positive=True)
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "") or "/"

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode())
            await writer.drain()
            return await reader.read()  # HTTP/1.0: everything until the server closes
        finally:
            writer.close()
            await writer.wait_closed()

    raw = await asyncio.wait_for(exchange(), timeout)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if status_line.split()[1:2] != ["200"]:
        raise ConnectionError(f"GET {url}: {status_line}")
    return body.decode()


def fetch_then_count(url: str, start: int, stop: int, timeout: float = _REQUEST_TIMEOUT) -> tuple[str, int]:
    """The mixed task: one GET, then count the primes in ``range(start, stop)``."""
    body = fetch_item(url, timeout)
    return body, count_primes_in_range(start, stop)


async def async_fetch_then_count(url: str, start: int, stop: int, timeout: float = _REQUEST_TIMEOUT) -> tuple[str, int]:
    """:func:`fetch_then_count` as a coroutine: the GET awaits, the counting blocks the loop."""
    body = await async_fetch_item(url, timeout)
    return body, count_primes_in_range(start, stop)


def serve_idle(clients: int, hold: float, deadline: float) -> int:
    """Serve ``clients`` idle clients one after another, each a wait of ``hold`` seconds.

    A client is started only if it can finish before ``deadline`` (a ``time.time()``
    value, comparable across processes). Returns how many were served.
    """
    clients = _check_int("clients", clients, 0, 100_000)
    hold = _check_seconds("hold", hold, 60.0)
    if not isinstance(deadline, (int, float)) or isinstance(deadline, bool):
        raise TypeError(f"deadline must be a time.time() value, got {type(deadline).__name__}")
    served = 0
    for _ in range(clients):
        if time.time() + hold > deadline:
            break
        time.sleep(hold)  # under gevent's monkey-patching, this is gevent.sleep
        served += 1
    return served


async def async_serve_idle(clients: int, hold: float, deadline: float) -> int:
    """:func:`serve_idle` as a coroutine: each client is an ``asyncio.sleep``."""
    clients = _check_int("clients", clients, 0, 100_000)
    hold = _check_seconds("hold", hold, 60.0)
    if not isinstance(deadline, (int, float)) or isinstance(deadline, bool):
        raise TypeError(f"deadline must be a time.time() value, got {type(deadline).__name__}")
    served = 0
    for _ in range(clients):
        if time.time() + hold > deadline:
            break
        await asyncio.sleep(hold)
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
    function). The idle workload splits its clients into ``shares`` tasks: one per worker
    that can wait at once (1 for sequential, :data:`WORKERS` for a pool, one per client for
    gevent and asyncio), each serving its clients one after another until ``deadline``.
    """
    workload = _check_choice("workload", workload, WORKLOADS)
    shares = _check_int("shares", shares, 1, IDLE_CLIENTS)
    if workload == "cpu":
        return count_primes_in_range, async_count_primes, prime_chunks(CPU_LIMIT, CPU_CHUNKS)
    if workload == "idle":
        base, extra = divmod(IDLE_CLIENTS, shares)
        return serve_idle, async_serve_idle, [(base + (i < extra), IDLE_HOLD, deadline) for i in range(shares)]
    if url is None:
        raise ValueError(f"the {workload!r} workload needs the url of a DelayServer")
    url = _check_url(url)
    if workload == "io":
        return fetch_item, async_fetch_item, [(f"{url}/item/{i}?delay={IO_DELAY:g}",) for i in range(IO_REQUESTS)]
    chunks = prime_chunks(MIXED_LIMIT, MIXED_TASKS)
    return (
        fetch_then_count,
        async_fetch_then_count,
        [(f"{url}/item/{i}?delay={IO_DELAY:g}", start, stop) for i, (start, stop) in enumerate(chunks)],
    )


def expected_results(workload: str, url: str | None) -> Any:
    """What a correct run of ``workload`` returns (computed independently: primes by a sieve); None for idle."""
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


def run_in_this_process(
    model: str, workload: str, url: str | None = None, start_method: str | None = None, timeout: float = 120.0
) -> dict:
    """Run one (model, workload) pair here and return its measurements as a dict.

    Meant for a fresh interpreter (``python -m helpers.scripts.compare_models``):
    the peak memory is this process's high-water mark (plus, for ``processes``,
    the sum of each pool process's own peak), the CPU time is this process's plus, for
    ``processes``, each pool process's own (reported with its last result). ``timeout``
    bounds all the tasks together (for a pool, start-up included). The dict holds model, workload, ``wall`` and ``cpu``
    seconds, ``startup`` (of ``wall``: starting the pool's workers, each with one
    short warm-up task; 0 without a pool), ``peak_kib``, ``tasks``, ``concurrency`` (tasks that can run at once),
    ``done`` (clients served, for ``idle``; tasks finished otherwise) and ``ok``
    (the results are right: primes checked against a sieve, every body its own path).
    """
    model = _check_choice("model", model, MODELS)
    workload = _check_choice("workload", workload, WORKLOADS)
    timeout = _check_seconds("timeout", timeout, positive=True)
    if start_method is None:
        import multiprocessing

        start_method = multiprocessing.get_start_method()
    if not isinstance(start_method, str):
        raise TypeError(f"start_method must be a str or None, got {type(start_method).__name__}")
    expected = expected_results(workload, url)
    shares = {"sequential": 1, "threads": WORKERS, "processes": WORKERS}.get(model, IDLE_CLIENTS)
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    deadline = time.time() + IDLE_BUDGET
    function, coroutine_function, tasks = workload_tasks(workload, url, deadline, shares)
    children_kib, children_cpu, startup = 0, 0.0, 0.0
    if model == "sequential":
        values = run_sequential(function, tasks)
    elif model == "threads":
        values, startup = run_threads(function, tasks, timeout)
    elif model == "processes":
        values, children_kib, children_cpu, startup = run_processes(function, tasks, timeout, start_method)
    elif model == "gevent":
        values = run_gevent(function, tasks, timeout)
    else:
        values = run_asyncio(coroutine_function, tasks, timeout)
    wall = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_before + children_cpu
    if workload == "cpu":
        ok, done = sum(values) == expected, len(values)
    elif workload == "io":
        ok, done = values == expected, len(values)
    elif workload == "mixed":
        bodies, counts = [v[0] for v in values], [v[1] for v in values]
        ok, done = (bodies, sum(counts)) == expected, len(values)
    else:
        done = sum(values)
        ok = all(isinstance(v, int) for v in values) and 0 <= done <= IDLE_CLIENTS
    concurrency = {"sequential": 1, "threads": WORKERS, "processes": WORKERS}.get(model, len(tasks))
    return {
        "model": model,
        "workload": workload,
        "wall": wall,
        "startup": startup,
        "cpu": cpu,
        "peak_kib": peak_memory_kib() + children_kib,
        "tasks": len(tasks) if workload != "idle" else IDLE_CLIENTS,
        "concurrency": min(concurrency, len(tasks)) if workload != "idle" else min(concurrency, IDLE_CLIENTS),
        "done": done,
        "ok": bool(ok),
        "start_method": start_method,
    }


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
    server_peak: int = 0  # the most requests the DelayServer held at once during the run (run_grid's server=)

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024


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
    return PairResult(**json.loads(stdout.strip().splitlines()[-1]))


def run_grid(
    url: str,
    models: Iterable[str] = MODELS,
    workloads: Iterable[str] = WORKLOADS,
    start_method: str | None = None,
    timeout: float = 120.0,
    repeat: int = 1,
    server=None,
) -> list[PairResult]:
    """Run every (model, workload) pair, one fresh process each, workload by workload.

    With ``repeat`` > 1 each pair runs that many times and the fastest run is kept
    (as ``timeit`` does: the other runs were slowed by something else), unless a
    run returned a wrong result, which is kept instead so that it shows.

    ``server``, the :class:`~helpers.threads.pools.DelayServer` behind ``url``, lets
    each result carry ``server_peak``: the most requests that server held at once
    during that run. Unlike a wall time, it does not depend on what else the machine is doing.
    """
    if server is not None and not (hasattr(server, "reset_peak") and hasattr(server, "peak_in_flight")):
        raise TypeError(f"server must be a DelayServer or None, got {type(server).__name__}")
    models, workloads = list(models), list(workloads)
    for m in models:
        _check_choice("model", m, MODELS)
    for w in workloads:
        _check_choice("workload", w, WORKLOADS)
    if not models or not workloads:
        raise ValueError("name at least one model and one workload")
    repeat = _check_int("repeat", repeat, 1, 10)
    results = []
    for w in workloads:
        for m in models:
            runs = []
            for _ in range(repeat):
                if server is not None:
                    server.reset_peak()
                run = run_pair(m, w, url, start_method, timeout)
                if server is not None:
                    run = replace(run, server_peak=server.peak_in_flight)
                runs.append(run)
            results.append(next((r for r in runs if not r.ok), min(runs, key=lambda r: r.wall)))
    return results


def physical_limits(
    cpu_serial: float, mixed_cpu: float, cpus: int, workers: int = WORKERS, gil: bool = True
) -> dict[str, dict[str, float]]:
    """The best wall time each pair could reach on ``cpus`` CPUs, in seconds (``idle``: clients).

    ``cpu_serial`` is the measured sequential wall time of the ``cpu`` workload;
    ``mixed_cpu`` is the CPU time of the sequential ``mixed`` run (its computing,
    including what each GET costs the client). Computation runs on at most min(workers, cpus)
    CPUs at once with processes (and with threads when ``gil`` is False, as on a
    free-threaded build), and on one at a time with threads under the GIL, gevent
    and asyncio (one thread); waits overlap up to the model's concurrency (1,
    ``workers``, or every task). The mixed workload's floor is the larger of its
    computing floor and its waiting floor (sequential: their sum). For ``idle``, the value
    is the most clients the model can serve within :data:`IDLE_BUDGET`.
    """
    cpu_serial = _check_seconds("cpu_serial", cpu_serial, positive=True)
    mixed_cpu = _check_seconds("mixed_cpu", mixed_cpu, positive=True)
    cpus = _check_int("cpus", cpus, 1, 4096)
    workers = _check_int("workers", workers, 1, 1024)
    if not isinstance(gil, bool):
        raise TypeError(f"gil must be a bool, got {type(gil).__name__}")
    limits: dict[str, dict[str, float]] = {}
    for model in MODELS:
        parallel = model == "processes" or (model == "threads" and not gil)
        computing_cpus = min(workers, cpus) if parallel else 1
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


def format_results_table(results: Sequence[PairResult], limits: dict[str, dict[str, float]] | None = None) -> str:
    """A Markdown table, one row per pair: wall (and pool start-up), CPU, peak memory, speedup, limit.

    Every varying value has a unit (s, ms, ×, MiB), so the book's sanitize file hides it.
    """
    results = list(results)
    if not results or not all(isinstance(r, PairResult) for r in results):
        raise TypeError("results must be a non-empty sequence of PairResult values")
    sequential = {r.workload: r for r in results if r.model == "sequential"}
    lines = [
        "| workload | model | wall time | of it, pool start-up | CPU time | peak memory | vs sequential "
        "| best possible | result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        base = sequential.get(r.workload)
        if base is None:
            speedup = "n/a"
        elif r.workload == "idle":  # more clients served is better
            speedup = f"{r.done / max(1, base.done):.1f}× the clients"
        else:
            speedup = f"{base.wall / r.wall:.2f}×"
        if limits is None:
            best = "n/a"
        elif r.workload == "idle":  # the count served varies from run to run: shown as a ratio
            most = limits[r.model]["idle"]
            best = f"{most:.0f} clients ({r.done / most:.2f}× of it served)"
        else:
            best = _format_seconds(limits[r.model][r.workload])
        result = "correct" if r.ok else "WRONG"
        pool_start = _format_seconds(r.startup) if r.model in ("threads", "processes") else "none"
        lines.append(
            f"| {r.workload} | {r.model} | {_format_seconds(r.wall)} | {pool_start} | "
            f"{_format_seconds(r.cpu)} | {r.peak_mib:.1f} MiB | {speedup} | {best} | {result} |"
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


def plot_grid(results: Sequence[PairResult], limits: dict[str, dict[str, float]] | None = None):
    """Four panels, one per workload: wall time per model (idle: clients served), the limit dashed.

    Returns the figure; its last axes are a fifth panel with peak memory per model and workload.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    results = list(results)
    if not results or not all(isinstance(r, PairResult) for r in results):
        raise TypeError("results must be a non-empty sequence of PairResult values")
    workloads = [w for w in WORKLOADS if any(r.workload == w for r in results)]
    models = [m for m in MODELS if any(r.model == m for r in results)]
    by_pair = {(r.model, r.workload): r for r in results}
    colours = dict(zip(MODELS, ["0.55", "tab:blue", "tab:orange", "tab:green", "tab:purple"]))
    fig, axes = plt.subplots(1, len(workloads) + 1, figsize=(3.0 * (len(workloads) + 1), 3.6), layout="constrained")
    for ax, workload in zip(axes, workloads):
        xs, heights = [], []
        for i, model in enumerate(models):
            r = by_pair.get((model, workload))
            if r is None:
                continue
            xs.append(i)
            heights.append(r.done if workload == "idle" else r.wall)
            ax.bar(i, heights[-1], color=colours[model])
            if limits is not None:
                floor = limits[model][workload]
                ax.hlines(floor, i - 0.4, i + 0.4, colors="black", linestyles="dashed", linewidth=1)
        ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=8)
        if workload == "idle":
            ax.set_yscale("log")
            ax.set_ylabel(f"clients served in {IDLE_BUDGET:g} s (log scale)")
            ax.set_title(f"idle: {IDLE_CLIENTS:,} clients", fontsize=10)
        elif workload == "io":  # 50 ms to seconds: only a log scale shows both
            ax.set_yscale("log")
            ax.set_ylabel("wall time, s (log scale)")
            ax.set_title(workload, fontsize=10)
        else:
            ax.set_ylabel("wall time, s")
            ax.set_title(workload, fontsize=10)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    memory_ax = axes[-1]
    width = 0.8 / len(workloads)
    for j, workload in enumerate(workloads):
        for i, model in enumerate(models):
            r = by_pair.get((model, workload))
            if r is not None:
                memory_ax.bar(
                    i + (j - (len(workloads) - 1) / 2) * width,
                    r.peak_mib,
                    width,
                    color=colours[model],
                    alpha=0.4 + 0.6 * (j + 1) / len(workloads),
                )
    memory_ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=8)
    memory_ax.set_ylabel("peak memory, MiB")
    memory_ax.set_title("peak memory", fontsize=10)
    memory_ax.set_xlabel("bars, left to right: " + ", ".join(workloads), fontsize=8)
    return fig
