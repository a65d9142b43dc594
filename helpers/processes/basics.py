"""Targets for chapter 01 (start processes): small, bounded, and importable.

Chapter 01 shows each target's source (``show_source``) where it first runs;
chapter 04 reuses :func:`put_squares`, and chapters 02-04 and 13 the plumbing
(:func:`collect`, :func:`join_all`, :func:`child_error_line`); chapter 01 also
uses :func:`has_ended`.

Every target here runs in a child process. None of them prints: results go
back through a queue, because a child's output never reaches a notebook under
nbval. Every loop has an upper bound, so a forgotten child still ends.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import re
import signal
import sys
import tempfile
import time
from multiprocessing.process import BaseProcess

from helpers.instruments.workloads import _check_int, _check_seconds, square, timed_task

__all__ = [
    "describe_self",
    "record_task",
    "exit_with",
    "fail_with",
    "wait_then_clean_up",
    "wait_up_to",
    "clock",
    "ClockProcess",
    "collect",
    "capture_child_stderr",
    "child_error_line",
    "plain_text",
    "join_all",
    "put_squares",
    "has_ended",
]

MAX_LIFETIME = 120.0  # seconds: no helper child lives longer than this


def describe_self(out, greeting: str = "hello", *, repeat: int = 1) -> None:
    """Put this process's name, pid, parent pid and a greeting on ``out``."""
    _check_int("repeat", repeat, 1, 100)
    me = mp.current_process()
    out.put({"name": me.name, "pid": os.getpid(), "ppid": os.getppid(), "greeting": " ".join([greeting] * repeat)})


def record_task(out, task: int, seconds: float = 0.0, prime_limit: int = 0) -> None:
    """Run :func:`helpers.instruments.workloads.timed_task` and put its record on ``out``."""
    out.put(timed_task(task, seconds, prime_limit))


def exit_with(code: int | str) -> None:
    """End the process with ``sys.exit(code)``, without a traceback.

    An int (0 to 255) is the exit code; a str is printed on stderr and the exit code is 1.
    """
    if not isinstance(code, str):
        _check_int("code", code, 0, 255)
    sys.exit(code)


def fail_with(message: str) -> None:
    """Raise an uncaught ``RuntimeError``: the child prints a traceback and exits with 1."""
    raise RuntimeError(message)


def wait_up_to(seconds: float, ignore_sigterm: bool = False, ready=None) -> None:
    """Sleep for ``seconds`` (at most MAX_LIFETIME), optionally deaf to SIGTERM.

    ``ready`` (an Event) is set once the signal handler is in place, so the
    parent knows when a ``terminate()`` will meet it.
    """
    seconds = _check_seconds("seconds", seconds, MAX_LIFETIME)
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if ready is not None:
        ready.set()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))


def wait_then_clean_up(seconds: float, cleaned_up, ready=None, handle_sigterm: bool = True) -> None:
    """Like :func:`wait_up_to`, with a ``finally`` block that sets the ``cleaned_up`` Event.

    With ``handle_sigterm`` (the default), SIGTERM raises ``SystemExit(128 + SIGTERM)``,
    so the ``finally`` block runs; with ``handle_sigterm=False`` (the control), no handler
    is installed and SIGTERM ends the process as it does by default. ``ready`` is set
    once the handler (or its absence) is in place.
    """
    seconds = _check_seconds("seconds", seconds, MAX_LIFETIME)
    if not isinstance(handle_sigterm, bool):
        raise TypeError(f"handle_sigterm must be a bool, got {type(handle_sigterm).__name__}")

    def stop(signum, frame):
        raise SystemExit(128 + signum)  # an exception: the interpreter unwinds the stack

    if handle_sigterm:
        signal.signal(signal.SIGTERM, stop)
    try:
        if ready is not None:
            ready.set()
        wait_up_to(seconds)
    finally:
        cleaned_up.set()


def clock(out, interval: float = 1.0, max_ticks: int = 5, stop=None) -> None:
    """The original material's clock, made safe: tick every ``interval`` s, at most ``max_ticks`` times.

    Each tick is a ``time.time()`` value put on ``out``; ``None`` follows the
    last one. Setting the ``stop`` Event ends the clock early, between ticks.
    """
    interval = _check_seconds("interval", interval, 10.0)
    _check_int("max_ticks", max_ticks, 1, 1000)
    try:
        for _ in range(max_ticks):
            out.put(time.time())
            if stop is not None:
                if stop.wait(interval):
                    break
            else:
                time.sleep(interval)
    finally:
        out.put(None)


class ClockProcess(mp.Process):
    """The clock as a ``Process`` subclass: the work is in :meth:`run`.

    ``ClockProcess(interval, max_ticks)`` holds everything the parent needs:
    ``start()``, ``stop()`` and ``ticks(timeout)``. Like every subclass of
    ``multiprocessing.Process``, it starts with the default start method; a
    script chooses that with ``multiprocessing.set_start_method`` inside its
    ``if __name__ == "__main__":`` block.
    """

    def __init__(self, interval: float = 1.0, max_ticks: int = 5) -> None:
        super().__init__(name="clock")
        self.interval = _check_seconds("interval", interval, 10.0)
        self.max_ticks = _check_int("max_ticks", max_ticks, 1, 1000)
        self.out = mp.Queue()
        self.stop_event = mp.Event()

    def run(self) -> None:  # runs in the child
        clock(self.out, self.interval, self.max_ticks, self.stop_event)

    def stop(self) -> None:
        self.stop_event.set()

    def ticks(self, timeout: float = 30.0) -> list[float]:
        """All ticks, read until the clock's ``None``; raises ``TimeoutError`` if it stalls."""
        return collect(self.out, timeout=timeout)


def collect(out, count: int | None = None, timeout: float = 30.0) -> list:
    """Read from a queue until ``count`` items, or until ``None`` when count is None.

    Raises ``TimeoutError`` naming how many items arrived if the queue stays
    empty for ``timeout`` seconds, instead of blocking forever.
    """
    import queue

    timeout = _check_seconds("timeout", timeout, 600.0)
    if count is not None:
        _check_int("count", count, 0)
    items: list = []
    deadline = time.monotonic() + timeout
    while count is None or len(items) < count:
        try:
            item = out.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"queue stayed empty for {timeout} s after {len(items)} item(s)") from None
        if count is None and item is None:
            break
        items.append(item)
    return items


class _Captured:
    text: str = ""


def _restart_fork_server() -> None:
    """Stop multiprocessing's fork server, if one runs, so the next forkserver child starts a new one.

    A forkserver child is forked by the server, so it writes to the server's stderr,
    fixed when the server started. Stopping the server (only while none of its
    children runs: the server reports their exit codes) makes the next one inherit
    the stderr in force then. This uses private names of ``multiprocessing``
    (``forkserver._forkserver``, its ``_forkserver_pid`` and ``_stop()``, and a child's
    ``_popen``), because no public API stops the fork server or tells which start method
    a child used; they are present from 3.8 to 3.14, and the unit tests would show a change.
    """
    module = sys.modules.get("multiprocessing.forkserver")  # not imported: no server runs
    server = getattr(module, "_forkserver", None)
    if server is None or getattr(server, "_forkserver_pid", None) is None:
        return
    from multiprocessing.popen_forkserver import Popen as ForkserverPopen

    if any(isinstance(child._popen, ForkserverPopen) for child in mp.active_children()):
        return
    server._stop()


@contextlib.contextmanager
def capture_child_stderr():
    """Send stderr to a temporary file while the block runs; the text is in ``.text`` after.

    Both layers are redirected: file descriptor 2, which a spawned child (a new
    interpreter) writes to, and ``sys.stderr``, the object a forked child inherits.
    (In Jupyter, a forked child's ``sys.stderr`` is the kernel's own stream, which
    forwards to the page; under nbval that output would be lost.) A forkserver
    child writes to the fork server's stderr instead, so the server is restarted
    on entry and on exit, when none of its children is running. Children started
    inside the block write their tracebacks to the file, so a notebook can show
    them as ordinary, checked output.
    """
    captured = _Captured()
    # Swapping file descriptor 2 is process-wide: while the block runs, whatever any thread
    # of this process (the Jupyter kernel's included) writes to stderr also lands in the file.
    sys.stderr.flush()
    saved_fd = os.dup(2)
    saved_stream = sys.stderr
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="replace")
        _restart_fork_server()
        try:
            yield captured
        finally:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = saved_stream
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            _restart_fork_server()
            tmp.seek(0)
            captured.text = tmp.read().decode(errors="replace")


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain_text(text: str) -> str:
    """``text`` without ANSI colour codes.

    From Python 3.13 a traceback is coloured when ``FORCE_COLOR`` is set, and a
    Jupyter kernel sets it for every program it starts, so a child's stderr comes
    back coloured on 3.13 and plain on 3.11 and 3.12.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _ANSI_ESCAPE.sub("", text)


def child_error_line(text: str) -> str:
    """The last non-empty line of a traceback, without colour codes: the exception and its message."""
    lines = [line for line in plain_text(text).splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def join_all(processes: list[BaseProcess], timeout: float = 30.0) -> list[int | None]:
    """Join every process within one shared deadline; return their exit codes.

    A process still alive at the deadline is terminated, and ``TimeoutError``
    names it, so a stuck child never hangs the notebook. Terminating is a last
    resort: a child stopped while it held a shared lock, or while it was using
    a queue or pipe, can leave that lock held and that queue or pipe broken for
    every other process (see ``Process.terminate`` in the docs), so after this
    error, start afresh (restart the kernel) rather than reuse them.
    """
    timeout = _check_seconds("timeout", timeout, 600.0)
    deadline = time.monotonic() + timeout
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
    stuck = [p for p in processes if p.is_alive()]
    for p in stuck:
        p.terminate()
        p.join(5)
    if stuck:
        raise TimeoutError(f"still running after {timeout} s, terminated: {[p.name for p in stuck]}")
    return [p.exitcode for p in processes]


def put_squares(out, numbers: list[int]) -> None:
    """Put ``n * n`` on ``out`` (a ``Queue`` or a ``SimpleQueue``) for each number.

    The target of chapter 01's exercise, and chapter 04's producer for both queue kinds.
    """
    if isinstance(numbers, (str, bytes)) or not hasattr(numbers, "__iter__"):
        raise TypeError(f"numbers must be a list of numbers, got {type(numbers).__name__}")
    for n in numbers:
        out.put(square(n))


def has_ended(pid: int) -> bool:
    """True if process ``pid`` no longer runs: it is gone, or it is a zombie.

    A zombie has ended; it lingers in the process table only until its parent (for an
    orphan, the init process or a subreaper, which may never do it) calls ``wait()``.
    """
    import psutil

    _check_int("pid", pid, 1)
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
