"""What chapter 05 runs in child processes, the GIL measurement, and the thread plumbing of chapters 05-08.

Used by chapter 05 (start threads, and measure the GIL), and for
:func:`run_named_threads` and :func:`threads_alive` by chapters 06, 07, 08 and 15.
Chapter 05's thread targets (``describe_thread``, ``ClockThread``,
``record_thread_exceptions``...) are written in its cells: threads need nothing
importable. What stays here is what a child process must import, and plumbing.

* :data:`SHARED_LIST` with :func:`append_shared` and :func:`reset_shared`: the one
  variable that a thread changes for everyone and a child process changes only
  for itself. :func:`append_shared` is spawn-safe; chapter 05 shows its source.
* :func:`run_with` runs ``n`` CPU-bound or I/O-bound tasks on threads or
  processes and returns a :class:`GilRun`; :func:`measure_gil` runs the whole
  grid in interleaved rounds; :func:`format_gil_table` prints runs
  as Markdown, with times as ``0.52 s`` and speedups as ``1.93×``.
* :func:`threads_alive` counts live threads for a notebook's clean-up check,
  leaving out the helper threads a Jupyter kernel starts on its own, lazily.
* :func:`run_named_threads` runs ``(name, body)`` pairs on named threads, joins
  them within a timeout, and re-raises a body's exception in the caller.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from helpers.instruments.timeline import TaskRecord
from helpers.instruments.workloads import _check_int, timed_task

__all__ = [
    "SHARED_LIST",
    "run_named_threads",
    "append_shared",
    "reset_shared",
    "GilRun",
    "run_with",
    "measure_gil",
    "format_gil_table",
    "KINDS",
    "TASKS",
    "threads_alive",
    "KERNEL_THREAD_MODULES",
]

#: Worker kinds and task kinds that :func:`run_with` accepts.
KINDS = ("thread", "process")
TASKS = ("cpu", "io")

#: Module-level state: a thread appends to the kernel's copy, a child process to its own.
SHARED_LIST: list[str] = []

_MAX_SECONDS = 60.0


def _check_seconds(name: str, value: Any, low: float = 0.0, high: float = _MAX_SECONDS) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high} seconds, got {value}")
    return float(value)


def _check_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


# --- one variable, shared or not -------------------------------------------------------


def append_shared(item: str, out=None) -> None:
    """Append ``item`` to this process's :data:`SHARED_LIST`.

    With ``out`` (a queue), also put a copy of the list as this process sees it
    after the append: a child process reports its own copy, which the parent's
    list can then be compared with.
    """
    _check_str("item", item)
    SHARED_LIST.append(item)
    if out is not None:
        out.put(list(SHARED_LIST))


def reset_shared() -> None:
    """Empty this process's :data:`SHARED_LIST`."""
    SHARED_LIST.clear()


#: Libraries whose threads a Jupyter kernel starts and stops by itself.
KERNEL_THREAD_MODULES = ("zmq.", "IPython.", "ipykernel.")


def threads_alive(ignore_modules: Sequence[str] = KERNEL_THREAD_MODULES) -> int:
    """``threading.active_count()``, minus threads whose class comes from ``ignore_modules``.

    A Jupyter kernel's own threads come and go at moments no cell controls:
    pyzmq starts a garbage-collector thread the first time the kernel sends a
    large message (a plot, say), and IPython's history-saving thread may end
    mid-session. They are the kernel's, not the notebook's, so by default they
    are not counted.
    """
    if isinstance(ignore_modules, str) or not all(isinstance(m, str) for m in ignore_modules):
        raise TypeError("ignore_modules must be a sequence of module-name prefixes (str)")
    prefixes = tuple(ignore_modules)
    return sum(1 for t in threading.enumerate() if not (prefixes and type(t).__module__.startswith(prefixes)))


# --- the GIL, measured ---------------------------------------------------------------


@dataclass(frozen=True)
class GilRun:
    """One measured run: ``n`` tasks of one kind on ``workers`` threads or processes."""

    kind: str
    task: str
    workers: int
    n: int
    elapsed: float
    records: tuple[TaskRecord, ...]
    #: CPU seconds this process used meanwhile (its threads' work; not its children's).
    cpu_seconds: float = 0.0

    @property
    def cpu_per_wall(self) -> float:
        """CPU seconds per wall-clock second in this process: about 1.0 when the GIL serialises threads."""
        return self.cpu_seconds / self.elapsed if self.elapsed > 0 else 0.0


def _task_kwargs(task: str, size: float | int) -> dict:
    if task == "cpu":
        return {"prime_limit": _check_int("size", size, 1, 5_000_000)}
    return {"seconds": _check_seconds("size", size, 0.0, 10.0)}


def run_with(
    kind: str,
    workers: int,
    task: str,
    n: int = 4,
    size: float | int | None = None,
    timeout: float = 120.0,
    repeat: int = 1,
) -> GilRun:
    """Run ``n`` equal tasks on ``workers`` threads or processes; time the whole run.

    ``task`` is ``"cpu"`` (count primes below ``size``, default 150_000) or ``"io"``
    (wait ``size`` seconds, default 0.2). Each task is
    :func:`helpers.instruments.workloads.timed_task`, which is importable, so the process
    version works under spawn. The time includes starting and stopping the
    workers: that is part of what each kind costs. All ``n`` results are awaited
    within ``timeout`` seconds in all; if some are late, TimeoutError is raised at
    once, the tasks not yet started are cancelled, and the running ones are left
    to finish on their own (not waited for). With ``repeat`` > 1 the run is
    repeated and the fastest kept, which filters out moments when another
    program had the CPU.
    """
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    _check_int("workers", workers, 1, 64)
    _check_int("n", n, 1, 1000)
    timeout = _check_seconds("timeout", timeout, 0.001, 3600.0)
    _check_int("repeat", repeat, 1, 10)
    if size is None:
        size = 150_000 if task == "cpu" else 0.2
    kwargs = _task_kwargs(task, size)
    runs = [_run_once(kind, workers, task, n, kwargs, timeout) for _ in range(repeat)]
    return min(runs, key=lambda r: r.elapsed)


def _run_once(kind: str, workers: int, task: str, n: int, kwargs: dict, timeout: float) -> GilRun:
    if kind == "thread":
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gil")
    else:
        executor = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context())
    cpu_start = time.process_time()
    start = time.perf_counter()
    try:
        futures = [executor.submit(timed_task, i, **kwargs) for i in range(n)]
        late = wait(futures, timeout=timeout).not_done  # one deadline for the whole run
        if late:
            raise TimeoutError(f"{len(late)} of {n} {task} tasks on {kind}s not done after {timeout} s")
    except BaseException:
        # give up at once: "with executor" would wait here for every late task to finish
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)  # every task is done: this only lets the workers exit
    records = tuple(f.result(timeout=0) for f in futures)  # done: re-raises a task's exception
    elapsed = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    return GilRun(kind, task, workers, n, elapsed, records, cpu_seconds)


def measure_gil(
    worker_counts: Sequence[int] = (1, 2, 4), n: int = 4, rounds: int = 3, timeout: float = 120.0
) -> list[GilRun]:
    """Every task kind on every worker kind and count, in ``rounds`` interleaved rounds.

    Each round runs every configuration once; each configuration keeps its
    fastest run. Interleaving spreads a configuration's tries over the whole
    measurement, so a burst of work from another program cannot spoil all of
    them. Returns the runs in the order task, kind, workers.
    """
    counts = list(worker_counts)
    if not counts:
        raise ValueError("worker_counts is empty")
    for count in counts:
        _check_int("worker count", count, 1, 64)
    _check_int("rounds", rounds, 1, 10)
    configs = [(task, kind, workers) for task in TASKS for kind in KINDS for workers in counts]
    best: dict[tuple[str, str, int], GilRun] = {}
    for _ in range(rounds):
        for task, kind, workers in configs:
            run = run_with(kind, workers, task, n=n, timeout=timeout)
            key = (task, kind, workers)
            if key not in best or run.elapsed < best[key].elapsed:
                best[key] = run
    return [best[c] for c in configs]


def format_gil_table(runs: Sequence[GilRun]) -> str:
    """A Markdown table of runs: kind, task, workers, time (``0.52 s``), speedup (``1.93×``).

    Speedup is against the serial time of the same task: the fastest of its
    1-worker runs (thread or process), so that one slow moment on a busy
    machine cannot inflate every speedup.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("runs is empty")
    if any(not isinstance(r, GilRun) for r in runs):
        raise TypeError("runs must be GilRun values from run_with()")
    baseline: dict[str, float] = {}
    for r in runs:
        if r.workers == 1:
            baseline[r.task] = min(r.elapsed, baseline.get(r.task, r.elapsed))
    missing = {r.task for r in runs} - set(baseline)
    if missing:
        raise ValueError(f"no 1-worker run for task(s) {sorted(missing)}: it is the baseline")
    lines = ["| task | kind | workers | time | speedup |", "|:---|:---|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r.task} | {r.kind} | {r.workers} | {r.elapsed:.2f} s | {baseline[r.task] / r.elapsed:.2f}× |")
    return "\n".join(lines)


def run_named_threads(bodies: Sequence[tuple[str, Callable[[], Any]]], timeout: float, prefix: str = "") -> list[Any]:
    """Run each ``(name, body)`` in its own thread; join all; return the bodies' results in order.

    An exception in a body is kept and re-raised here (as RuntimeError, chained),
    never left to ``threading.excepthook``. Threads still running after
    ``timeout`` seconds raise TimeoutError. Each thread is named ``prefix + name``,
    so a chapter can find its own threads (chapters 06 and 08 use this).
    """
    results: list[Any] = [None] * len(bodies)
    errors: list[tuple[str, BaseException]] = []

    def wrap(index: int, name: str, body: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                results[index] = body()
            except BaseException as error:  # kept for the caller, never printed by the thread
                errors.append((name, error))

        return run

    threads = [
        threading.Thread(target=wrap(i, name, body), name=prefix + name, daemon=True)
        for i, (name, body) in enumerate(bodies)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        raise TimeoutError(f"threads still running after {timeout} s: {stuck}")
    if errors:
        name, error = errors[0]
        raise RuntimeError(f"thread {prefix + name} failed: {error!r}") from error
    return results
