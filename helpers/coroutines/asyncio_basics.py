"""Coroutines for the asyncio chapter: timed sleeps, a bounded pool, a queue, a heartbeat, an echo server.

Used by chapter 11 (协程: asyncio, "Await many things at once with asyncio").

Everything here is an ``async def`` that the notebook awaits at top level (a
Jupyter kernel already runs an event loop), or that a script runs with
``asyncio.run``. Coroutines return values and never print. Every wait has a
timeout, and every task a helper starts is awaited before the helper returns,
so nothing is left pending on the loop.
"""
from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from helpers.instruments.timeline import TaskRecord
from helpers.instruments.workloads import io_wait

__all__ = [
    "fetch", "timed_sleep", "limited_run", "producer_consumer",
    "heartbeat", "HeartbeatRun", "watch_heartbeat",
    "blocking_sleep", "polite_sleep", "offloaded_sleep",
    "EchoStats", "make_echo_handler", "start_echo_server", "server_port", "echo_client",
    "our_pending_tasks",
]

MAX_SECONDS = 60.0
DEFAULT_TIMEOUT = 10.0


def _check_seconds(name: str, value: Any, high: float = MAX_SECONDS) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or not 0 <= value <= high:
        raise ValueError(f"{name} must be between 0 and {high} seconds, got {value}")
    return float(value)


def _check_count(name: str, value: Any, minimum: int = 1, maximum: int = 100_000) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be in {minimum}..{maximum}, got {value}")
    return value


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    return name


# --- single coroutines -------------------------------------------------------------------

async def fetch(name: str, delay: float, *, fail: bool = False, log: list | None = None) -> str:
    """Pretend to fetch ``name``: wait ``delay`` seconds, then return ``"<name> ok"``.

    With ``fail=True`` it raises ``ValueError`` after the wait instead. If ``log``
    is a list, it receives ``"<name> done"``, ``"<name> failed"`` or
    ``"<name> cancelled"``, so a chapter can show what happened to each task.
    """
    name = _check_name(name)
    delay = _check_seconds("delay", delay)
    if log is not None and not isinstance(log, list):
        raise TypeError(f"log must be a list or None, got {type(log).__name__}")
    try:
        await asyncio.sleep(delay)
    except asyncio.CancelledError:
        if log is not None:
            log.append(f"{name} cancelled")
        raise  # a cancelled coroutine must let the cancellation through
    if fail:
        if log is not None:
            log.append(f"{name} failed")
        raise ValueError(f"{name} failed")
    if log is not None:
        log.append(f"{name} done")
    return f"{name} ok"


async def timed_sleep(task: int | str, seconds: float,
                      semaphore: asyncio.Semaphore | None = None) -> TaskRecord:
    """Sleep ``seconds`` (inside ``semaphore`` if given); return when it ran as a TaskRecord.

    The record's ``thread`` field names the task (``"task 3"``), so that
    ``plot_timeline(records, by="thread", lane_label="task")`` draws one lane per task.
    """
    if isinstance(task, bool) or not isinstance(task, (int, str)):
        raise TypeError(f"task must be an int or str, got {type(task).__name__}")
    seconds = _check_seconds("seconds", seconds)
    if semaphore is not None and not isinstance(semaphore, asyncio.Semaphore):
        raise TypeError(f"semaphore must be an asyncio.Semaphore, got {type(semaphore).__name__}")

    async def run() -> TaskRecord:
        start = time.time()
        await asyncio.sleep(seconds)
        return TaskRecord(task=task, pid=os.getpid(), thread=f"task {task}",
                          start=start, end=time.time())

    if semaphore is None:
        return await run()
    async with semaphore:
        return await run()


async def limited_run(n_tasks: int, limit: int, seconds: float) -> list[TaskRecord]:
    """Start ``n_tasks`` timed sleeps at once, but let at most ``limit`` run at a time."""
    n_tasks = _check_count("n_tasks", n_tasks, maximum=10_000)
    limit = _check_count("limit", limit, maximum=10_000)
    seconds = _check_seconds("seconds", seconds)
    semaphore = asyncio.Semaphore(limit)
    return list(await asyncio.gather(*(timed_sleep(i, seconds, semaphore) for i in range(n_tasks))))


async def producer_consumer(n_items: int, n_consumers: int, *, maxsize: int = 5,
                            work_seconds: float = 0.01) -> dict[str, list[int]]:
    """One producer puts ``0..n_items-1`` on a bounded queue; consumers take them.

    Each consumer stops at its own ``None`` sentinel, which the producer puts
    after the items, so no task is ever cancelled or left waiting. Returns the
    items each consumer handled, in the order it handled them.
    """
    n_items = _check_count("n_items", n_items, minimum=0)
    n_consumers = _check_count("n_consumers", n_consumers, maximum=1_000)
    maxsize = _check_count("maxsize", maxsize, maximum=100_000)
    work_seconds = _check_seconds("work_seconds", work_seconds, high=1.0)
    queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize)
    handled: dict[str, list[int]] = {f"consumer {i}": [] for i in range(n_consumers)}

    async def produce() -> None:
        for item in range(n_items):
            await queue.put(item)        # waits while the queue is full: back-pressure
        for _ in range(n_consumers):
            await queue.put(None)        # one "stop" per consumer

    async def consume(name: str) -> None:
        for _ in range(n_items + 1):     # bounded: at most every item, then the sentinel
            item = await queue.get()
            try:
                if item is None:
                    return
                await asyncio.sleep(work_seconds)
                handled[name].append(item)
            finally:
                queue.task_done()

    await asyncio.wait_for(
        asyncio.gather(produce(), *(consume(name) for name in handled)),
        timeout=MAX_SECONDS)
    return handled


# --- the heartbeat: is the loop still responsive? ------------------------------------------

async def heartbeat(ticks: list[float], interval: float, stop: asyncio.Event,
                    max_ticks: int = 100_000) -> int:
    """Append ``time.perf_counter()`` to ``ticks`` every ``interval`` seconds until ``stop`` is set."""
    if not isinstance(ticks, list):
        raise TypeError(f"ticks must be a list, got {type(ticks).__name__}")
    interval = _check_seconds("interval", interval, high=1.0)
    if not isinstance(stop, asyncio.Event):
        raise TypeError(f"stop must be an asyncio.Event, got {type(stop).__name__}")
    max_ticks = _check_count("max_ticks", max_ticks, maximum=1_000_000)
    for _ in range(max_ticks):
        if stop.is_set():
            break
        ticks.append(time.perf_counter())
        await asyncio.sleep(interval)
    return len(ticks)


@dataclass
class HeartbeatRun:
    """What :func:`watch_heartbeat` saw: the work's result and every heartbeat tick."""

    result: Any
    ticks: list[float] = field(repr=False)
    interval: float = 0.01

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.ticks, self.ticks[1:])]

    @property
    def max_gap(self) -> float:
        """The longest time the loop went without running the heartbeat (seconds)."""
        return max(self.gaps, default=0.0)


async def watch_heartbeat(work: Awaitable, interval: float = 0.01) -> HeartbeatRun:
    """Await ``work`` while a heartbeat task ticks every ``interval`` seconds.

    The heartbeat ticks before and after the work, so a loop blocked for B
    seconds shows up as a gap of at least B between two ticks.
    """
    if not inspect_awaitable(work):
        raise TypeError(f"work must be an awaitable (a coroutine or task), got {type(work).__name__}")
    interval = _check_seconds("interval", interval, high=1.0)
    if interval <= 0:
        raise ValueError("interval must be > 0")
    ticks: list[float] = []
    stop = asyncio.Event()
    beat = asyncio.create_task(heartbeat(ticks, interval, stop), name="heartbeat")
    try:
        await asyncio.sleep(2 * interval)     # a few ticks before the work
        result = await work
        await asyncio.sleep(2 * interval)     # and a few after
    finally:
        stop.set()
        await asyncio.wait_for(beat, timeout=DEFAULT_TIMEOUT)
    return HeartbeatRun(result=result, ticks=ticks, interval=interval)


def inspect_awaitable(obj: Any) -> bool:
    """True for coroutines, tasks, futures, and anything with ``__await__``."""
    return hasattr(obj, "__await__")


async def blocking_sleep(seconds: float) -> float:
    """The classic mistake: a blocking ``time.sleep`` inside a coroutine. The loop stops."""
    seconds = _check_seconds("seconds", seconds, high=5.0)
    start = time.perf_counter()
    time.sleep(seconds)  # blocks the event loop's only thread: nothing else runs
    return time.perf_counter() - start


async def polite_sleep(seconds: float) -> float:
    """The same wait with ``await asyncio.sleep``: the loop runs other tasks meanwhile."""
    seconds = _check_seconds("seconds", seconds, high=5.0)
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    return time.perf_counter() - start


async def offloaded_sleep(seconds: float) -> float:
    """The same blocking call, moved to a worker thread with ``asyncio.to_thread``."""
    seconds = _check_seconds("seconds", seconds, high=5.0)
    return await asyncio.to_thread(io_wait, seconds)


# --- a streams echo server and its client --------------------------------------------------

@dataclass
class EchoStats:
    """What the echo server saw: connections, lines echoed, and the most clients open at once."""

    connections: int = 0
    open_now: int = 0
    peak_open: int = 0
    lines: int = 0
    errors: list[str] = field(default_factory=list)


def make_echo_handler(stats: EchoStats, *, timeout: float = DEFAULT_TIMEOUT,
                      max_lines: int = 1_000) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A ``client_connected_cb`` for ``asyncio.start_server``: echo each line back.

    It never lets an exception escape (the loop would print it to stderr): a
    client error is counted in ``stats.errors`` instead.
    """
    if not isinstance(stats, EchoStats):
        raise TypeError(f"stats must be an EchoStats, got {type(stats).__name__}")
    timeout = _check_seconds("timeout", timeout)
    max_lines = _check_count("max_lines", max_lines, maximum=1_000_000)

    async def handle_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats.connections += 1
        stats.open_now += 1
        stats.peak_open = max(stats.peak_open, stats.open_now)
        try:
            for _ in range(max_lines):
                line = await asyncio.wait_for(reader.readline(), timeout)
                if not line:              # the client closed its side
                    break
                writer.write(line)
                await writer.drain()
                stats.lines += 1
        except (ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError) as error:
            stats.errors.append(repr(error))
        finally:
            stats.open_now -= 1
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), timeout)
            except (ConnectionError, asyncio.TimeoutError) as error:
                stats.errors.append(repr(error))

    return handle_echo


async def start_echo_server(stats: EchoStats, host: str = "127.0.0.1", port: int = 0,
                            backlog: int = 1_024) -> asyncio.Server:
    """Start an echo server (port 0: the OS picks a free port). Close it with
    ``server.close()`` then ``await server.wait_closed()``."""
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, got {type(host).__name__}")
    port = _check_count("port", port, minimum=0, maximum=65_535)
    backlog = _check_count("backlog", backlog, maximum=65_535)
    return await asyncio.start_server(make_echo_handler(stats), host, port, backlog=backlog)


def server_port(server: asyncio.Server) -> int:
    """The port a started server listens on."""
    if not isinstance(server, asyncio.AbstractServer) or not server.sockets:
        raise ValueError("server must be a started asyncio server with at least one socket")
    return server.sockets[0].getsockname()[1]


async def echo_client(host: str, port: int, message: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Connect, send ``message`` as one line, return the line that comes back."""
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, got {type(host).__name__}")
    port = _check_count("port", port, maximum=65_535)
    if not isinstance(message, str) or "\n" in message:
        raise ValueError("message must be a str without newlines")
    timeout = _check_seconds("timeout", timeout)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(message.encode() + b"\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), timeout)
    return reply.decode().removesuffix("\n")


# --- clean-up check ------------------------------------------------------------------------

def our_pending_tasks(baseline: set[asyncio.Task]) -> list[asyncio.Task]:
    """Tasks on the running loop that are not done, not in ``baseline``, and not the caller.

    Take ``baseline = asyncio.all_tasks()`` before starting anything; a Jupyter
    kernel runs tasks of its own, and those are not ours to judge. Call from a
    coroutine (or a notebook cell, which runs in the kernel's loop).
    """
    if not isinstance(baseline, (set, frozenset)):
        raise TypeError(f"baseline must be a set of tasks, got {type(baseline).__name__}")
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks()
            if t not in baseline and t is not current and not t.done()
            and not _is_kernel_task(t)]


def _is_kernel_task(task: asyncio.Task) -> bool:
    """A task whose coroutine belongs to the Jupyter kernel's own machinery."""
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    filename = getattr(code, "co_filename", "") or ""
    # package directories only: a notebook cell's own code lives in /tmp/ipykernel_<pid>/
    return any(f"{os.sep}{package}{os.sep}" in filename for package in _KERNEL_PACKAGES)


_KERNEL_PACKAGES = ("ipykernel", "tornado", "zmq", "jupyter_client", "IPython", "anyio")
