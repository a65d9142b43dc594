"""gevent without monkey-patching: tasks, pools, queues, an echo server, and sleep counts.

Used by chapter 10 (gevent) and by ``bench/coroutine_sleeps.py``.

Everything here uses gevent's own APIs (``gevent.sleep``, ``gevent.socket``,
``gevent.server``), so it is safe to import in a Jupyter kernel: this module
never calls ``gevent.monkey.patch_all()``. The patched programs live in
``helpers/scripts/gevent_patched.py`` and ``helpers/scripts/many_sleeps.py`` and
run as subprocesses.

* Small greenlet tasks: :func:`fetch`, :func:`take_turns`, :func:`fail_after`, :func:`nap_record`,
  :func:`ticker`, :func:`block_thread`, :func:`produce`, :func:`consume`,
  :func:`wait_for_event`, :func:`deliver`, :func:`use_connection`.
* :func:`quiet_hub` and :func:`capture_hub_errors`: keep a failing greenlet's
  traceback off stderr (the hub prints it there by default).
* :func:`pack_into_lanes` puts :class:`~helpers.instruments.timeline.TaskRecord` values into
  as few lanes as possible, so a pool's timeline shows one lane per slot.
* :class:`EchoHandler`, :func:`start_echo_server`, :func:`echo_once` and
  :func:`run_echo_clients`: a ``StreamServer`` echo server on loopback and
  its clients, every echo checked.
* :func:`sleep_many` (run inside a child process) and :func:`measure_sleeps`
  (run a child and read its JSON): many concurrent sleeps under gevent, asyncio
  or threads, with wall time and peak memory (``helpers.instruments.measure.peak_memory_kib``).
* :func:`unfinished_gevent_greenlets` lists gevent greenlets not yet dead.

Workers return values; nothing here prints.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import gevent.server
import gevent.socket

from helpers.instruments.measure import peak_memory_kib
from helpers.instruments.timeline import TaskRecord

__all__ = [
    "fetch", "take_turns", "fail_after", "nap_record", "ticker", "block_thread", "produce", "consume",
    "wait_for_event", "deliver", "ConcurrencyTracker", "use_connection",
    "quiet_hub", "capture_hub_errors", "pack_into_lanes",
    "EchoHandler", "start_echo_server", "echo_once", "EchoReport", "run_echo_clients",
    "SLEEP_KINDS", "sleep_many", "SleepRun", "measure_sleeps", "unfinished_gevent_greenlets",
]

#: Upper bounds, so that no loop or request runs away.
MAX_TASKS = 20_000
MAX_SECONDS = 60.0
MAX_MESSAGE = 64 * 1024


def _check_int(name: str, value: Any, *, minimum: int = 0, maximum: int = MAX_TASKS) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _check_seconds(name: str, value: Any, *, maximum: float = MAX_SECONDS) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be between 0 and {maximum} seconds, got {value}")
    return float(value)


# --------------------------------------------------------------------------- small tasks


def fetch(name: str, seconds: float) -> str:
    """Pretend to fetch ``name``: wait ``seconds`` cooperatively, return a short answer."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    gevent.sleep(_check_seconds("seconds", seconds))
    return f"{name}: done"


def take_turns(name: str, steps: int, log: list) -> int:
    """Log ``steps`` steps as ``name0``, ``name1``..., yielding to the hub after each one.

    ``gevent.sleep(0)`` is the smallest yield point: "let every other ready greenlet run".
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not isinstance(log, list):
        raise TypeError(f"log must be a list, got {type(log).__name__}")
    for step in range(_check_int("steps", steps, maximum=1_000)):
        log.append(f"{name}{step}")
        gevent.sleep(0)
    return steps


def fail_after(seconds: float, message: str) -> None:
    """Wait ``seconds`` cooperatively, then raise ``ValueError(message)``."""
    if not isinstance(message, str):
        raise TypeError(f"message must be a str, got {type(message).__name__}")
    gevent.sleep(_check_seconds("seconds", seconds))
    raise ValueError(message)


def nap_record(task: int | str, seconds: float) -> TaskRecord:
    """Sleep ``seconds`` cooperatively; return when it ran as a TaskRecord.

    ``thread`` holds the greenlet's name: every greenlet shares one OS thread.
    """
    seconds = _check_seconds("seconds", seconds)
    start = time.time()
    gevent.sleep(seconds)
    return TaskRecord(task, os.getpid(), gevent.getcurrent().name, start, time.time(), seconds)


def ticker(interval: float, ticks: int) -> list[float]:
    """Tick ``ticks`` times, ``interval`` seconds apart.

    Returns ``ticks + 1`` perf_counter times: the start, then each tick.
    """
    interval, ticks = _check_seconds("interval", interval), _check_int("ticks", ticks, maximum=10_000)
    times = [time.perf_counter()]
    for _ in range(ticks):
        gevent.sleep(interval)
        times.append(time.perf_counter())
    return times


def block_thread(seconds: float) -> float:
    """The pitfall: an unpatched ``time.sleep`` blocks the whole thread, hub included.

    Bounded to 2 s. Returns how long the thread was blocked.
    """
    seconds = _check_seconds("seconds", seconds, maximum=2.0)
    start = time.perf_counter()
    time.sleep(seconds)  # NOT gevent.sleep: no other greenlet can run meanwhile
    return time.perf_counter() - start


# --------------------------------------------------------------------------- queue, event, semaphore


def produce(queue: gevent.queue.Queue, items: list, consumers: int, timeout: float = 5.0) -> int:
    """Put every item on ``queue``, then one ``StopIteration`` per consumer; return the count.

    ``put`` blocks (cooperatively) while a bounded queue is full, up to ``timeout``.
    """
    if not isinstance(queue, gevent.queue.Queue):
        raise TypeError(f"queue must be a gevent.queue.Queue, got {type(queue).__name__}")
    consumers, timeout = _check_int("consumers", consumers, minimum=1), _check_seconds("timeout", timeout)
    for item in items:
        queue.put(item, timeout=timeout)
    for _ in range(consumers):
        queue.put(StopIteration, timeout=timeout)
    return len(items)


def consume(queue: gevent.queue.Queue, seconds_per_item: float = 0.0,
            timeout: float = 5.0) -> list:
    """Take items until ``StopIteration``, spending ``seconds_per_item`` on each; return them.

    Iterating a gevent queue stops at ``StopIteration``; ``get(timeout=...)`` keeps
    the wait bounded if the producer never sends it.
    """
    if not isinstance(queue, gevent.queue.Queue):
        raise TypeError(f"queue must be a gevent.queue.Queue, got {type(queue).__name__}")
    seconds_per_item, timeout = _check_seconds("seconds_per_item", seconds_per_item), _check_seconds("timeout", timeout)
    taken = []
    for _ in range(MAX_TASKS):
        item = queue.get(timeout=timeout)  # raises gevent.queue.Empty after timeout
        if item is StopIteration:
            break
        gevent.sleep(seconds_per_item)
        taken.append(item)
    return taken


def wait_for_event(event: gevent.event.Event, timeout: float) -> tuple[bool, float]:
    """Wait for ``event`` up to ``timeout``; return (was it set, perf_counter time on waking)."""
    if not isinstance(event, gevent.event.Event):
        raise TypeError(f"event must be a gevent.event.Event, got {type(event).__name__}")
    flag = event.wait(timeout=_check_seconds("timeout", timeout))
    return bool(flag), time.perf_counter()


def deliver(result: gevent.event.AsyncResult, value: Any, seconds: float,
            error: BaseException | None = None) -> None:
    """After ``seconds``, set ``result`` to ``value`` (or, if ``error`` is given, fail it)."""
    if not isinstance(result, gevent.event.AsyncResult):
        raise TypeError(f"result must be a gevent.event.AsyncResult, got {type(result).__name__}")
    if error is not None and not isinstance(error, BaseException):
        raise TypeError("error must be an exception instance or None")
    gevent.sleep(_check_seconds("seconds", seconds))
    if error is None:
        result.set(value)
    else:
        result.set_exception(error)


@dataclass
class ConcurrencyTracker:
    """Counts how many greenlets are inside a section now, and at most ever."""

    active: int = 0
    peak: int = 0
    entered: int = 0

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        self.active += 1
        self.entered += 1
        self.peak = max(self.peak, self.active)
        try:
            yield
        finally:
            self.active -= 1


def use_connection(semaphore: gevent.lock.BoundedSemaphore, tracker: ConcurrencyTracker,
                   seconds: float, timeout: float = 5.0) -> bool:
    """Hold one of ``semaphore``'s slots for ``seconds``; return whether a slot was obtained.

    ``acquire(timeout=...)`` returns False instead of waiting forever.
    """
    if not isinstance(semaphore, gevent.lock.Semaphore):
        raise TypeError(f"semaphore must be a gevent semaphore, got {type(semaphore).__name__}")
    if not isinstance(tracker, ConcurrencyTracker):
        raise TypeError("tracker must be a ConcurrencyTracker")
    seconds, timeout = _check_seconds("seconds", seconds), _check_seconds("timeout", timeout)
    if not semaphore.acquire(timeout=timeout):
        return False
    try:
        with tracker.inside():
            gevent.sleep(seconds)
    finally:
        semaphore.release()
    return True


# --------------------------------------------------------------------------- the hub's error printing


def _exception_types(types: tuple) -> tuple[type[BaseException], ...]:
    if not types:
        raise ValueError("name at least one exception type")
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(f"expected exception classes, got {t!r}")
    return tuple(types)


@contextlib.contextmanager
def quiet_hub(*exc_types: type[BaseException]) -> Iterator[None]:
    """While the block runs, the hub does not print these exceptions from failing greenlets.

    Uses the hub's documented ``NOT_ERROR`` attribute. The failure is still
    recorded: ``g.exception`` holds it, ``g.successful()`` is False.
    """
    types = _exception_types(exc_types)
    hub = gevent.get_hub()
    before = hub.NOT_ERROR
    hub.NOT_ERROR = tuple(before) + types
    try:
        yield
    finally:
        hub.NOT_ERROR = before


@contextlib.contextmanager
def capture_hub_errors() -> Iterator[io.StringIO]:
    """Redirect what the hub prints about failing greenlets into a StringIO, and yield it.

    Uses the hub's documented ``exception_stream`` attribute, restored afterwards.
    """
    hub = gevent.get_hub()
    had_own = "exception_stream" in vars(hub)
    previous = vars(hub).get("exception_stream")
    captured = io.StringIO()
    hub.exception_stream = captured
    try:
        yield captured
    finally:
        if had_own:
            hub.exception_stream = previous
        else:
            del hub.exception_stream  # back to the class default (sys.stderr)


# --------------------------------------------------------------------------- timelines


def pack_into_lanes(records: list[TaskRecord], prefix: str = "slot") -> list[TaskRecord]:
    """Return copies of ``records`` whose ``thread`` is the lowest free lane ("slot 0", ...).

    A task may reuse a lane the moment the previous task in it ended, so the
    number of lanes equals :func:`helpers.instruments.timeline.max_overlap`.
    """
    records = list(records)
    if not records or not all(isinstance(r, TaskRecord) for r in records):
        raise TypeError("records must be a non-empty list of TaskRecord values")
    if not isinstance(prefix, str):
        raise TypeError("prefix must be a str")
    lane_free_at: list[float] = []
    packed = []
    for rec in sorted(records, key=lambda r: (r.start, r.end)):
        lane = next((i for i, free in enumerate(lane_free_at) if free <= rec.start), None)
        if lane is None:
            lane = len(lane_free_at)
            lane_free_at.append(rec.end)
        lane_free_at[lane] = rec.end
        packed.append(replace(rec, thread=f"{prefix} {lane}"))
    return packed


# --------------------------------------------------------------------------- echo server


class EchoHandler:
    """A StreamServer handler: read until the client stops sending, echo every byte back.

    Counts connections being served now (``active``), at most at once (``peak``)
    and in all (``served``). Each socket read has a timeout, so a silent client
    cannot hold a greenlet forever.
    """

    def __init__(self, read_timeout: float = 5.0) -> None:
        self.read_timeout = _check_seconds("read_timeout", read_timeout)
        self.tracker = ConcurrencyTracker()
        self.errors: list[str] = []

    @property
    def peak(self) -> int:
        return self.tracker.peak

    @property
    def served(self) -> int:
        return self.tracker.entered

    def __call__(self, sock: gevent.socket.socket, address: tuple) -> None:
        sock.settimeout(self.read_timeout)
        with self.tracker.inside():
            try:
                for _ in range(MAX_MESSAGE):  # at most one chunk per byte allowed
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    sock.sendall(chunk)
            except OSError as exc:  # a timeout or reset: note it, never let it reach the hub
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                sock.close()


def start_echo_server(host: str = "127.0.0.1", port: int = 0, backlog: int = 1024,
                      handler: EchoHandler | None = None,
                      spawn: Any = "default") -> gevent.server.StreamServer:
    """Start a StreamServer echo server (port 0: any free port); return it, listening.

    ``spawn`` is passed to StreamServer: a ``gevent.pool.Pool`` limits how many
    connections are handled at once. Read ``server.address`` for the real port;
    call ``server.stop(timeout=...)`` when done.
    """
    if not isinstance(host, str):
        raise TypeError("host must be a str")
    _check_int("port", port, maximum=65535)
    _check_int("backlog", backlog, minimum=1, maximum=65535)
    if handler is not None and not isinstance(handler, EchoHandler):
        raise TypeError("handler must be an EchoHandler")
    server = gevent.server.StreamServer((host, port), handler or EchoHandler(), backlog=backlog,
                                        spawn=spawn)
    server.start()
    return server


def echo_once(address: tuple[str, int], message: bytes, timeout: float = 5.0,
              pause: float = 0.0) -> bytes:
    """Connect, wait ``pause`` seconds, send ``message``, close the sending side, read the echo."""
    if not (isinstance(address, tuple) and len(address) == 2):
        raise TypeError("address must be a (host, port) tuple")
    if not isinstance(message, bytes):
        raise TypeError(f"message must be bytes, got {type(message).__name__}")
    if len(message) > MAX_MESSAGE:
        raise ValueError(f"message is longer than {MAX_MESSAGE} bytes")
    timeout, pause = _check_seconds("timeout", timeout), _check_seconds("pause", pause)
    with gevent.socket.create_connection(address, timeout=timeout) as sock:
        gevent.sleep(pause)  # hold the connection open, so that the clients overlap
        sock.sendall(message)
        sock.shutdown(gevent.socket.SHUT_WR)
        chunks = []
        for _ in range(MAX_MESSAGE):
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class EchoReport:
    """What :func:`run_echo_clients` saw."""

    clients: int
    echoed_correctly: int
    failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0


def run_echo_clients(address: tuple[str, int], clients: int, timeout: float = 10.0,
                     pause: float = 0.05) -> EchoReport:
    """Start ``clients`` greenlets, each sending its own message; check every echo."""
    clients = _check_int("clients", clients, minimum=1, maximum=5_000)
    timeout = _check_seconds("timeout", timeout)
    messages = [f"client {i} says hello {'x' * (i % 50)}".encode() for i in range(clients)]
    start = time.perf_counter()
    greenlets = [gevent.spawn(echo_once, address, m, timeout, pause) for m in messages]
    with quiet_hub(OSError):  # a failed client is reported below, not printed by the hub
        gevent.joinall(greenlets, timeout=timeout)
    elapsed = time.perf_counter() - start
    gevent.killall([g for g in greenlets if not g.dead], timeout=timeout)
    report = EchoReport(clients, 0, elapsed=elapsed)
    for i, (g, m) in enumerate(zip(greenlets, messages)):
        if g.successful() and g.value == m:
            report.echoed_correctly += 1
        else:
            report.failures.append(f"client {i}: {g.exception!r}" if g.exception else f"client {i}: wrong echo")
    return report


# --------------------------------------------------------------------------- many sleeps

#: What :func:`sleep_many` can run: greenlets, asyncio tasks, threads (each sleeping
#: from its own start), or threads that all start, wait at a gate, then sleep together.
SLEEP_KINDS = ("gevent", "asyncio", "threads", "threads-gated")




def _sleep_gevent(n: int, delay: float, timeout: float) -> tuple[int, int, str]:
    count = {"active": 0, "peak": 0}  # one OS thread: no lock needed between greenlets

    def sleeper() -> None:
        count["active"] += 1
        count["peak"] = max(count["peak"], count["active"])
        gevent.sleep(delay)
        count["active"] -= 1

    greenlets = [gevent.spawn(sleeper) for _ in range(n)]
    done = gevent.joinall(greenlets, timeout=timeout)
    return sum(g.successful() for g in done), count["peak"], ""


def _sleep_asyncio(n: int, delay: float, timeout: float) -> tuple[int, int, str]:
    count = {"active": 0, "peak": 0}

    async def sleeper() -> None:
        count["active"] += 1
        count["peak"] = max(count["peak"], count["active"])
        await asyncio.sleep(delay)
        count["active"] -= 1

    async def main() -> int:
        results = await asyncio.wait_for(asyncio.gather(*(sleeper() for _ in range(n))), timeout)
        return len(results)

    return asyncio.run(main()), count["peak"], ""


def _sleep_threads(n: int, delay: float, timeout: float, gated: bool) -> tuple[int, int, str]:
    lock = threading.Lock()
    tracker = ConcurrencyTracker()
    finished = []
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
            tracker.active += 1
            tracker.peak = max(tracker.peak, tracker.active)
        time.sleep(delay)
        with lock:
            tracker.active -= 1
            finished.append(1)

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
    return len(finished), tracker.peak, error


def sleep_many(kind: str, n: int, delay: float = 0.1, timeout: float = 30.0) -> dict:
    """Run ``n`` concurrent sleeps of ``delay`` seconds in THIS process; return the numbers.

    Meant for a fresh child process (``python -m helpers.scripts.many_sleeps``),
    since ``maxrss`` is the process's high-water mark. The result has the kind,
    n, delay, wall time (``elapsed``), how many sleeps completed, the most that
    were sleeping at the same time (``peak_concurrent``), ``maxrss_kib`` before
    (``baseline_kib``) and after, and an ``error`` string ('' if none).
    """
    if kind not in SLEEP_KINDS:
        raise ValueError(f"kind must be one of {SLEEP_KINDS}, got {kind!r}")
    n = _check_int("n", n, maximum=MAX_TASKS)
    delay, timeout = _check_seconds("delay", delay, maximum=5.0), _check_seconds("timeout", timeout)
    gc.collect()
    baseline = peak_memory_kib()
    start = time.perf_counter()
    if kind == "gevent":
        completed, peak, error = _sleep_gevent(n, delay, timeout)
    elif kind == "asyncio":
        completed, peak, error = _sleep_asyncio(n, delay, timeout)
    else:
        completed, peak, error = _sleep_threads(n, delay, timeout, gated=(kind == "threads-gated"))
    elapsed = time.perf_counter() - start
    return {"kind": kind, "n": n, "delay": delay, "elapsed": elapsed, "completed": completed,
            "peak_concurrent": peak, "baseline_kib": baseline, "maxrss_kib": peak_memory_kib(),
            "error": error}


@dataclass(frozen=True)
class SleepRun:
    """One :func:`sleep_many` result, read back from a child process."""

    kind: str
    n: int
    delay: float
    elapsed: float
    completed: int
    peak_concurrent: int
    baseline_kib: int
    maxrss_kib: int
    error: str = ""

    @property
    def growth_mib(self) -> float:
        """How much the peak memory grew during the sleeps, in MiB."""
        return max(0, self.maxrss_kib - self.baseline_kib) / 1024

    @property
    def maxrss_mib(self) -> float:
        return self.maxrss_kib / 1024


def measure_sleeps(kind: str, n: int, delay: float = 0.1, timeout: float = 60.0) -> SleepRun:
    """Run :func:`sleep_many` in a fresh Python process and return its numbers.

    Raises RuntimeError (with the child's last stderr line) if the child fails.
    """
    if kind not in SLEEP_KINDS:
        raise ValueError(f"kind must be one of {SLEEP_KINDS}, got {kind!r}")
    n = _check_int("n", n, maximum=MAX_TASKS)
    delay, timeout = _check_seconds("delay", delay, maximum=5.0), _check_seconds("timeout", timeout, maximum=600)
    proc = subprocess.run(
        [sys.executable, "-m", "helpers.scripts.many_sleeps", kind, str(n), str(delay)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        raise RuntimeError(f"many_sleeps {kind} {n} exited with {proc.returncode}: {last}")
    return SleepRun(**json.loads(proc.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- clean-up


def unfinished_gevent_greenlets() -> list[gevent.Greenlet]:
    """Every gevent Greenlet object that still exists and is not dead."""
    gc.collect()
    return [g for g in gc.get_objects() if isinstance(g, gevent.Greenlet) and not g.dead]
