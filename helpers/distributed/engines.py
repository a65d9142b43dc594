"""Start, time and stop the engines of chapter 16: a Dask cluster and a Celery worker.

Used by chapter 16 (``notebooks/16-beyond-one-machine.ipynb``, "Go beyond one machine:
Dask and Celery") and by ``bench/engines_overhead.py``.

* :func:`start_dask` starts a ``LocalCluster`` of worker *processes* on loopback, on free
  ports only (the dashboard's too), and its logs silenced; :func:`stop_dask` closes both.
* :func:`start_celery_worker` runs ``python -m celery -A helpers.distributed.celery_app worker`` as a
  subprocess against a Redis server (broker and result backend), its log in a temporary
  file, and waits until it answers; :func:`stop_celery_worker` asks it for a warm
  shutdown (SIGTERM), waits, then kills what is left.
* :func:`time_tiny_tasks_pool`, :func:`time_tiny_tasks_dask` and
  :func:`time_tiny_tasks_celery` run the same ``n`` tiny tasks on each engine; a process pool
  next to Dask's threads takes :func:`pool_context` (never ``fork``) and is warmed up by
  :func:`start_pool_workers`.

Every wait has a time bound, and every loop a deadline.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.context
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from helpers.distributed import celery_app
from helpers.instruments.measure import Timer
from helpers.instruments.workloads import square

__all__ = [
    "silence_dask_logs",
    "start_dask",
    "stop_dask",
    "CeleryWorker",
    "start_celery_worker",
    "stop_celery_worker",
    "worker_children",
    "celery_processes",
    "wait_for",
    "pool_context",
    "worker_pid",
    "start_pool_workers",
    "time_tiny_tasks_pool",
    "time_tiny_tasks_dask",
    "time_tiny_tasks_celery",
]

MAX_TIMEOUT = 600.0
DASK_LOGGERS = ("distributed", "dask", "tornado", "bokeh")
CELERY_COMMAND = ("-m", "celery", "-A", "helpers.distributed.celery_app", "worker")


def _check_timeout(timeout: float, name: str = "timeout") -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(timeout).__name__}")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"{name} must be in (0, {MAX_TIMEOUT:.0f}] seconds, got {timeout!r}")
    return float(timeout)


def _check_count(name: str, value: int, low: int = 1, high: int = 100_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")
    return value


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Call ``predicate`` until it returns something truthy; return that, or raise TimeoutError."""
    if not callable(predicate):
        raise TypeError("predicate must be callable")
    timeout = _check_timeout(timeout)
    interval = _check_timeout(interval, "interval")
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)


# --------------------------------------------------------------------------- Dask


def silence_dask_logs(level: int = logging.CRITICAL) -> None:
    """Raise the level of Dask's (and tornado's) loggers in this process: nothing on stderr."""
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"level must be a logging level (int), got {type(level).__name__}")
    for name in DASK_LOGGERS:
        logging.getLogger(name).setLevel(level)


def start_dask(n_workers: int = 2, threads_per_worker: int = 1, timeout: float = 60.0):
    """Start a ``LocalCluster`` of ``n_workers`` worker processes and a ``Client``; return both.

    The scheduler, its HTTP server (the dashboard, which needs ``bokeh``) and the workers
    listen on free loopback ports (never a fixed port), and the logs of the scheduler, the nannies and the workers are
    silenced. Close both with :func:`stop_dask`.
    """
    _check_count("n_workers", n_workers, 1, 64)
    _check_count("threads_per_worker", threads_per_worker, 1, 64)
    timeout = _check_timeout(timeout)
    from dask.distributed import Client, LocalCluster

    silence_dask_logs()
    # The nannies start their workers with spawn (distributed.worker.multiprocessing-method),
    # whatever this process's start method: forking a process with Dask's threads would be unsafe.
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        # The scheduler always runs an HTTP server (dashboard, health checks); with no
        # address it takes port 8787, or warns when that is busy: a free port instead.
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address=None,
        silence_logs=logging.CRITICAL,
    )
    try:
        client = Client(cluster, timeout=timeout)
        client.wait_for_workers(n_workers, timeout=timeout)
    except BaseException:
        cluster.close(timeout=timeout)
        raise
    return cluster, client


def stop_dask(client, cluster, timeout: float = 30.0) -> None:
    """Close the client, then the cluster (its workers and scheduler). Idempotent."""
    timeout = _check_timeout(timeout)
    if client is not None:
        client.close(timeout=timeout)
    if cluster is not None:
        cluster.close(timeout=timeout)


# --------------------------------------------------------------------------- Celery


@dataclass(eq=False)
class CeleryWorker:
    """A Celery worker running as a subprocess: its process, name, queue and log file."""

    name: str
    queue: str
    concurrency: int
    process: subprocess.Popen = field(repr=False)
    logfile: Path = field(repr=False)
    workdir: Path = field(repr=False)
    #: The worker's command line (``python -m celery ...``), without the ``setpriv`` prefix
    #: that makes the kernel stop it if this process dies.
    command: list[str] = field(default_factory=list, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        """The worker's own log (it never writes to the notebook)."""
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""


def worker_children(worker: CeleryWorker) -> list[int]:
    """PIDs of the worker's prefork child processes (the ones that run tasks)."""
    if not isinstance(worker, CeleryWorker):
        raise TypeError(f"worker must be a CeleryWorker, got {type(worker).__name__}")
    try:
        return sorted(p.pid for p in psutil.Process(worker.pid).children())
    except psutil.NoSuchProcess:
        return []


def celery_processes() -> list[psutil.Process]:
    """Descendants of this process whose command line runs Celery."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "celery" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue  # exited meanwhile
    return found


def _worker_answers(name: str) -> bool:
    replies = celery_app.app.control.ping(destination=[name], timeout=0.5) or []
    return any(name in reply for reply in replies)


def start_celery_worker(
    redis_url: str,
    *,
    concurrency: int = 2,
    queue: str = celery_app.QUEUE,
    name: str | None = None,
    loglevel: str = "WARNING",
    timeout: float = 60.0,
) -> CeleryWorker:
    """Start ``celery -A helpers.distributed.celery_app worker`` (prefork) against ``redis_url``.

    The worker's stdout and stderr go to a log file in a fresh temporary directory;
    this process's Celery app is pointed at the same server (:func:`helpers.distributed.celery_app.configure`).
    ``loglevel`` is the worker's (INFO logs every task, which costs time).
    Returns once the worker answers a ping and has run one task; raises ``TimeoutError``
    (after stopping it) if it does not within ``timeout`` seconds.
    """
    _check_count("concurrency", concurrency, 1, 32)
    if not isinstance(queue, str) or not queue.strip():
        raise ValueError(f"queue must be a non-empty str, got {queue!r}")
    if name is None:
        name = f"book-{uuid.uuid4().hex[:8]}@localhost"
    if not isinstance(name, str) or "@" not in name:
        raise ValueError(f"name must look like 'worker@host', got {name!r}")
    if loglevel not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"loglevel must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {loglevel!r}")
    timeout = _check_timeout(timeout)
    celery_app.configure(redis_url)  # validates the URL too

    workdir = Path(tempfile.mkdtemp(prefix="book-celery-"))
    logfile = workdir / "worker.log"
    env = dict(os.environ)
    env[celery_app.URL_VARIABLE] = redis_url
    env["C_FORCE_ROOT"] = "1"  # CI runs as root; the warning would go to the log anyway
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("BOOK_START_METHOD", None)
    command = [
        sys.executable,
        *CELERY_COMMAND,
        "--pool=prefork",
        f"--concurrency={concurrency}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-Q",
        queue,
        "-n",
        name,
        f"--loglevel={loglevel}",
        f"--logfile={logfile}",
    ]
    from helpers.instruments.services import pdeathsig_prefix

    with open(workdir / "worker.out", "wb") as out:
        process = subprocess.Popen(
            pdeathsig_prefix() + command,  # on Linux, the kernel stops the worker if we die
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
        )
    worker = CeleryWorker(name, queue, concurrency, process, logfile, workdir, command=command)
    deadline = time.monotonic() + timeout
    try:
        while not _worker_answers(name):
            if process.poll() is not None:
                raise RuntimeError(
                    f"the Celery worker exited with code {process.returncode}; "
                    f"its log ends with:\n{worker.log()[-800:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Celery worker did not answer within {timeout} s")
        remaining = max(1.0, deadline - time.monotonic())
        celery_app.add.apply_async((1, 1), queue=queue).get(timeout=remaining)
    except BaseException:
        stop_celery_worker(worker, timeout=10)
        raise
    return worker


def stop_celery_worker(worker: CeleryWorker, timeout: float = 20.0, *, keep_log: bool = False) -> str:
    """Warm shutdown (SIGTERM: finish running tasks, then exit), then SIGKILL if needed.

    Returns ``"warm shutdown"``, ``"killed"`` or ``"already stopped"``. Every prefork child
    is gone when it returns. The temporary directory (with the log) is removed unless
    ``keep_log``.
    """
    if not isinstance(worker, CeleryWorker):
        raise TypeError(f"worker must be a CeleryWorker, got {type(worker).__name__}")
    timeout = _check_timeout(timeout)
    children = []
    try:
        children = psutil.Process(worker.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        pass
    how = "already stopped"
    if worker.process.poll() is None:
        worker.process.send_signal(signal.SIGTERM)
        try:
            worker.process.wait(timeout=timeout)
            how = "warm shutdown"
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait(timeout=timeout)
            how = "killed"
    else:
        worker.process.wait(timeout=timeout)
    _gone, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)
    if not keep_log:
        shutil.rmtree(worker.workdir, ignore_errors=True)
    return how


# --------------------------------------------------------------------------- timing


def _tiny_inputs(n: int) -> list[int]:
    return list(range(_check_count("n", n, 1, 100_000)))


def pool_context() -> multiprocessing.context.BaseContext:
    """The context for a process pool started next to other threads (Dask's client and scheduler).

    The book's start method (``BOOK_START_METHOD``, else the platform's default), except that
    ``fork`` becomes ``forkserver``: a forked child gets a copy of every lock another thread
    held at that instant, and can deadlock on one (Python 3.12+ warns about forking a
    multi-threaded process).
    """
    method = multiprocessing.get_start_method()
    return multiprocessing.get_context("forkserver" if method == "fork" else method)


def worker_pid(_: object = None) -> int:
    """The pid of the process that runs it: a warm-up task."""
    return os.getpid()


def start_pool_workers(executor: ProcessPoolExecutor, workers: int, timeout: float = 60.0) -> set[int]:
    """Run rounds of tiny tasks on ``executor`` until ``workers`` distinct processes have answered.

    One round is not enough: under ``spawn`` or ``forkserver`` the first worker ready can take
    several tasks while the others still start. Returns their pids; ``TimeoutError`` after ``timeout``.
    """
    if not isinstance(executor, ProcessPoolExecutor):
        raise TypeError(f"executor must be a ProcessPoolExecutor, got {type(executor).__name__}")
    _check_count("workers", workers, 1, 64)
    timeout = _check_timeout(timeout)
    deadline = time.monotonic() + timeout
    pids: set[int] = set()
    while len(pids) < workers:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"only {len(pids)} of {workers} pool workers answered within {timeout} s")
        pids.update(executor.map(worker_pid, range(workers), timeout=remaining))
    return pids


def time_tiny_tasks_pool(n: int = 1_000, workers: int = 2, timeout: float = 120.0) -> tuple[float, list[int]]:
    """Seconds for ``n`` ``square`` tasks, one submit each, on a warm ``ProcessPoolExecutor``.

    The pool uses :func:`pool_context` (never ``fork``: chapter 16 runs it next to Dask's threads),
    and every worker has started before the timer does (:func:`start_pool_workers`).
    """
    inputs = _tiny_inputs(n)
    _check_count("workers", workers, 1, 64)
    timeout = _check_timeout(timeout)
    with ProcessPoolExecutor(max_workers=workers, mp_context=pool_context()) as executor:
        start_pool_workers(executor, workers, timeout)
        with Timer() as t:
            futures = [executor.submit(square, x) for x in inputs]
            results = [f.result(timeout=timeout) for f in futures]
    return t.elapsed, results


def time_tiny_tasks_dask(client, n: int = 1_000, timeout: float = 120.0) -> tuple[float, list[int]]:
    """Seconds for ``n`` ``square`` tasks through ``client.map`` and ``gather``."""
    from dask.distributed import wait

    inputs = _tiny_inputs(n)
    timeout = _check_timeout(timeout)
    with Timer() as t:
        futures = client.map(square, inputs, pure=False)  # pure=False: no reuse of earlier results
        wait(futures, timeout=timeout)
        results = client.gather(futures)
    for future in futures:
        future.release()
    return t.elapsed, results


def time_tiny_tasks_celery(
    n: int = 1_000, queue: str = celery_app.QUEUE, timeout: float = 120.0
) -> tuple[float, list[int]]:
    """Seconds for ``n`` ``square`` tasks sent as one Celery ``group`` and gathered."""
    from celery import group

    inputs = _tiny_inputs(n)
    timeout = _check_timeout(timeout)
    if celery_app.configured_url() is None:
        raise RuntimeError("no Celery worker: call start_celery_worker(redis_url) first")
    with Timer() as t:
        result = group(celery_app.square_task.s(x) for x in inputs).apply_async(queue=queue)
        results = result.get(timeout=timeout)
    result.forget()
    return t.elapsed, results
