"""Thread targets, and the GIL measurement: threads against processes on the same work.

Used by chapter 05 (start threads, and measure the GIL).

* :func:`describe_thread`, :func:`hold_until` and :class:`ClockThread` are small,
  bounded thread targets: they return their findings in a list or attribute,
  never by printing.
* :func:`remember_in_local` shows that a ``threading.local`` value is per thread.
* :func:`record_thread_exceptions` installs a ``threading.excepthook`` for the
  length of a ``with`` block, records each escaped exception, and restores the
  previous hook afterwards.
* :data:`SHARED_LIST` with :func:`append_shared` and :func:`reset_shared`: the one
  variable that a thread changes for everyone and a child process changes only
  for itself. :func:`append_shared` is spawn-safe.
* :func:`run_with` runs ``n`` CPU-bound or I/O-bound tasks on threads or
  processes and returns a :class:`GilRun`; :func:`measure_gil` runs the whole
  grid in interleaved rounds; :func:`format_gil_table` prints runs
  as Markdown, with times as ``0.52 s`` and speedups as ``1.93×``.
* :func:`threads_alive` counts live threads for a notebook's clean-up check,
  leaving out the helper threads a Jupyter kernel starts on its own, lazily.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from helpers.instruments.timeline import TaskRecord
from helpers.instruments.workloads import timed_task

__all__ = [
    "SHARED_LIST",
    "run_named_threads",
    "append_shared",
    "reset_shared",
    "describe_thread",
    "hold_until",
    "ClockThread",
    "remember_in_local",
    "fail_with",
    "ThreadFailure",
    "record_thread_exceptions",
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
_MAX_TICKS = 10_000


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")
    return value


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

    With ``out`` (a queue), also report whether the append is visible here, in
    the process that made it: ``True`` in a thread and in a child alike.
    """
    _check_str("item", item)
    SHARED_LIST.append(item)
    if out is not None:
        out.put(SHARED_LIST[-1] == item)


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
    return sum(1 for t in threading.enumerate()
               if not (prefixes and type(t).__module__.startswith(prefixes)))


# --- small thread targets ----------------------------------------------------------

def describe_thread(results: list, greeting: str = "hello", *, repeat: int = 1) -> None:
    """Append a dict describing the thread that runs this call to ``results``.

    Keys: ``name``, ``greeting`` (``greeting`` repeated ``repeat`` times), ``daemon``,
    ``ident``, ``native_id``, ``pid`` and ``is_main``.
    """
    if not isinstance(results, list):
        raise TypeError(f"results must be a list, got {type(results).__name__}")
    _check_str("greeting", greeting)
    _check_int("repeat", repeat, 1, 100)
    me = threading.current_thread()
    results.append({
        "name": me.name,
        "greeting": " ".join([greeting] * repeat),
        "daemon": me.daemon,
        "ident": threading.get_ident(),
        "native_id": threading.get_native_id(),
        "pid": os.getpid(),
        "is_main": me is threading.main_thread(),
    })


def hold_until(release: threading.Event, timeout: float = 30.0) -> bool:
    """Wait until ``release`` is set, or ``timeout`` seconds; return whether it was set."""
    if not hasattr(release, "wait") or not hasattr(release, "set"):
        raise TypeError(f"release must be a threading.Event, got {type(release).__name__}")
    timeout = _check_seconds("timeout", timeout)
    return release.wait(timeout)


def fail_with(message: str) -> None:
    """Raise ``RuntimeError(message)``: a thread target whose exception escapes."""
    raise RuntimeError(_check_str("message", message))


class ClockThread(threading.Thread):
    """Chapter 01's clock as a ``Thread`` subclass: the work is in :meth:`run`.

    Records ``time.time()`` in :attr:`ticks` every ``interval`` seconds, at most
    ``max_ticks`` times; :meth:`stop` ends it within one wait.
    """

    def __init__(self, interval: float = 1.0, max_ticks: int = 5, *, name: str | None = None,
                 daemon: bool | None = None) -> None:
        self.interval = _check_seconds("interval", interval, 0.001)
        self.max_ticks = _check_int("max_ticks", max_ticks, 1, _MAX_TICKS)
        super().__init__(name=name, daemon=daemon)
        self.ticks: list[float] = []
        self._stop_requested = threading.Event()  # not "_stop": Thread has a method of that name

    def run(self) -> None:
        for _ in range(self.max_ticks):
            self.ticks.append(time.time())
            if len(self.ticks) == self.max_ticks or self._stop_requested.wait(self.interval):
                break

    def stop(self) -> None:
        """Ask the clock to end after its current wait."""
        self._stop_requested.set()


def remember_in_local(store: threading.local, value: Any, results: dict,
                      barrier: threading.Barrier | None = None, timeout: float = 30.0) -> None:
    """Set ``store.value``, wait for the other threads to set theirs, then read it back.

    ``results[thread name]`` receives what this thread read: its own value, if
    ``store`` is a ``threading.local``, whatever the others wrote meanwhile.
    """
    if not isinstance(store, threading.local):
        raise TypeError(f"store must be a threading.local, got {type(store).__name__}")
    if not isinstance(results, dict):
        raise TypeError(f"results must be a dict, got {type(results).__name__}")
    timeout = _check_seconds("timeout", timeout)
    store.value = value
    if barrier is not None:
        barrier.wait(timeout)
    results[threading.current_thread().name] = store.value


# --- exceptions in threads ---------------------------------------------------------

@dataclass(frozen=True)
class ThreadFailure:
    """An exception that escaped a thread's ``run``, as ``threading.excepthook`` saw it."""

    thread: str
    exc_type: str
    message: str


@contextmanager
def record_thread_exceptions() -> Iterator[list[ThreadFailure]]:
    """Replace ``threading.excepthook`` for a ``with`` block; yield the failures it records.

    Only names and messages are kept (not the exception object), so no reference
    cycle through the traceback outlives the hook. The previous hook is restored
    on exit, even if the block raises.
    """
    failures: list[ThreadFailure] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:  # the default hook ignores it too
            return
        name = args.thread.name if args.thread is not None else "<unknown>"
        failures.append(ThreadFailure(name, args.exc_type.__name__, str(args.exc_value)))

    threading.excepthook = hook
    try:
        yield failures
    finally:
        threading.excepthook = previous


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


def run_with(kind: str, workers: int, task: str, n: int = 4, size: float | int | None = None,
             timeout: float = 120.0, repeat: int = 1) -> GilRun:
    """Run ``n`` equal tasks on ``workers`` threads or processes; time the whole run.

    ``task`` is ``"cpu"`` (count primes below ``size``, default 150_000) or ``"io"``
    (wait ``size`` seconds, default 0.2). Each task is
    :func:`helpers.instruments.workloads.timed_task`, which is importable, so the process
    version works under spawn. The time includes starting and stopping the
    workers: that is part of what each kind costs. Every result is awaited with
    ``timeout``. With ``repeat`` > 1 the run is repeated and the fastest kept,
    which filters out moments when another program had the CPU.
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
    with executor:
        futures = [executor.submit(timed_task, i, **kwargs) for i in range(n)]
        records = tuple(f.result(timeout=timeout) for f in futures)
    elapsed = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    return GilRun(kind, task, workers, n, elapsed, records, cpu_seconds)


def measure_gil(worker_counts: Sequence[int] = (1, 2, 4), n: int = 4, rounds: int = 3,
                timeout: float = 120.0) -> list[GilRun]:
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
        lines.append(f"| {r.task} | {r.kind} | {r.workers} | {r.elapsed:.2f} s | "
                     f"{baseline[r.task] / r.elapsed:.2f}× |")
    return "\n".join(lines)


def run_named_threads(bodies: Sequence[tuple[str, Callable[[], Any]]], timeout: float,
                      prefix: str = "") -> list[Any]:
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

    threads = [threading.Thread(target=wrap(i, name, body), name=prefix + name, daemon=True)
               for i, (name, body) in enumerate(bodies)]
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
