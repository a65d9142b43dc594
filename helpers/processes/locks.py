"""Targets for chapter 02 (protect shared state with process locks, 进程锁).

Every function here except :func:`format_line` and :func:`check_lines` runs in
a child process, so it lives in a module a spawned child can import; chapter 02
shows each one's source (``show_source``) where it first runs. None of
them prints: results go back through a queue (or are the shared value itself).
Every loop is bounded and every ``acquire``/``wait`` has a timeout, so a
mistake ends as a ``False`` or a count instead of a hung notebook.

* :func:`add_many`: the lost-update race, with and without the value's lock.
* :class:`NoLock`: a stand-in with a lock's methods that never locks, for control runs.
* :func:`deposit` and :func:`deposit_all`: why ``RLock`` exists (re-entry).
* :func:`hold_lock`: keep a lock busy so the parent can show ``acquire(timeout=...)``.
* :func:`use_resource`: a ``Semaphore`` admitting at most *n* processes at once.
* :func:`grab_two`: two locks, taken in either order; a deadlock, or none
  (:class:`PausedLock` widens the window between the two).
* :func:`append_with` and :func:`append_try_finally`: two processes, one file
  (each line written by :func:`append_in_pieces`).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from helpers.instruments.timeline import TaskRecord
from helpers.instruments.workloads import _check_int, _check_seconds

__all__ = [
    "add_many",
    "NoLock",
    "deposit",
    "deposit_all",
    "take_two_locks",
    "hold_lock",
    "use_resource",
    "grab_two",
    "PausedLock",
    "format_line",
    "append_in_pieces",
    "append_with",
    "append_try_finally",
    "check_lines",
    "LINE_PATTERN",
]

MAX_TIMES = 10_000_000  # bound on every loop's length
MAX_WAIT = 120.0  # seconds: the longest any acquire or wait here may block
LINE_WIDTH = 40  # the '#' padding of each line appended to the shared file
PIECE_PAUSE = 0.0001  # seconds between the three writes of one line, as a slower writer would take
LINE_PATTERN = re.compile(rf"^([a-z]{{1,16}}) (\d{{5}}) (#{{{LINE_WIDTH}}})$")


def _check_lock(name: str, lock: Any) -> Any:
    if not (callable(getattr(lock, "acquire", None)) and callable(getattr(lock, "release", None))):
        raise TypeError(f"{name} must be a lock (something with acquire() and release()), got {type(lock).__name__}")
    return lock


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return value


def _check_writer(writer: Any) -> str:
    if not isinstance(writer, str):
        raise TypeError(f"writer must be a str, got {type(writer).__name__}")
    if not re.fullmatch(r"[a-z]{1,16}", writer):
        raise ValueError(f"writer must be 1-16 lowercase letters, got {writer!r}")
    return writer


def _check_path(path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return os.fspath(path)


def _wait_at(meet: Any, timeout: float) -> None:
    """Wait at a Barrier (raises BrokenBarrierError after ``timeout``) or an Event."""
    if isinstance(getattr(meet, "parties", None), int):
        meet.wait(timeout)
    elif not meet.wait(timeout):
        raise TimeoutError(f"start event not set within {timeout} s")


# --- the lost update ---------------------------------------------------------------


def add_many(
    counter: Any, times: int, *, locked: bool, pause: bool = False, start: Any = None, timeout: float = 30.0
) -> None:
    """Add 1 to a shared ``multiprocessing.Value`` ``times`` times.

    ``counter`` is a synchronized Value (``Value('i', 0)``, the default
    ``lock=True``). The work is done on ``counter.get_obj()``, the raw shared
    integer; ``locked=True`` holds ``counter.get_lock()`` around each
    increment, ``locked=False`` does not. ``pause=True`` spells the increment
    out as read, ``time.sleep(0)``, write: the pause invites the OS to run
    another process between the read and the write, which widens the window
    in which an update can be lost (chapter 02 uses it so that the race shows
    on every run). ``start`` (a Barrier or Event) lines the processes up so
    that they really run at the same time.
    """
    _check_int("times", times, 0, MAX_TIMES)
    _check_bool("locked", locked)
    _check_bool("pause", pause)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    if not (callable(getattr(counter, "get_obj", None)) and callable(getattr(counter, "get_lock", None))):
        raise TypeError(
            "counter must be a synchronized multiprocessing.Value (created with the default "
            f"lock=True), got {type(counter).__name__}"
        )
    shared = counter.get_obj()  # the integer in shared memory, with no lock around it
    lock = counter.get_lock()
    if start is not None:
        _wait_at(start, timeout)
    for _ in range(times):
        if locked:
            lock.acquire()
        try:
            if pause:
                value = shared.value  # read
                time.sleep(0)  # let another process run here
                shared.value = value + 1  # write: whatever was written since the read is lost
            else:
                shared.value += 1  # read, add, write: another process can write in between
        finally:
            if locked:
                lock.release()


class NoLock:
    """A stand-in with the methods of a lock that never waits and guards nothing.

    Passed where a lock is expected, it removes the lock and keeps the rest of
    the code the same: chapter 02's control run of the two file writers.
    """

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        return True

    def release(self) -> None:
        return None

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc_info: object) -> None:
        return None

    def __repr__(self) -> str:
        return "NoLock()"


# --- re-entry: why RLock exists -----------------------------------------------------


def deposit(balance: Any, lock: Any, amount: int, timeout: float = 0.2) -> bool:
    """Add ``amount`` to ``balance.value`` while holding ``lock``.

    Returns False, without changing the balance, if the lock did not come
    within ``timeout`` seconds.
    """
    _check_lock("lock", lock)
    _check_int("amount", amount, 0, MAX_TIMES)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    if not lock.acquire(timeout=timeout):
        return False
    try:
        balance.value += amount
        return True
    finally:
        lock.release()


def deposit_all(out: Any, balance: Any, lock: Any, amounts: Sequence[int], timeout: float = 0.2) -> None:
    """Hold ``lock`` for a whole batch, calling :func:`deposit` (which takes it again).

    Puts the list of :func:`deposit` results on ``out``. With an ``RLock``
    every inner acquire succeeds (this process already owns it); with a plain
    ``Lock`` every one of them times out: the lock is held, and a plain lock
    has no owner, so it cannot tell that the holder is the one asking again.
    """
    _check_lock("lock", lock)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    amounts = list(amounts)
    if not 1 <= len(amounts) <= 1000:
        raise ValueError(f"amounts must hold 1..1000 numbers, got {len(amounts)}")
    for amount in amounts:
        _check_int("amount", amount, 0, MAX_TIMES)
    if not lock.acquire(timeout=timeout):
        out.put(None)
        return
    try:
        results = [deposit(balance, lock, amount, timeout) for amount in amounts]
    finally:
        lock.release()
    out.put(results)


# --- acquire(timeout=...) -----------------------------------------------------------


def hold_lock(lock: Any, holding: Any, let_go: Any, max_seconds: float = 30.0) -> None:
    """Take ``lock``, set the ``holding`` Event, keep the lock until ``let_go`` is set.

    The lock is released after ``max_seconds`` even if ``let_go`` never comes.
    """
    _check_lock("lock", lock)
    max_seconds = _check_seconds("max_seconds", max_seconds, MAX_WAIT)
    if not lock.acquire(timeout=max_seconds):
        return
    try:
        holding.set()
        let_go.wait(max_seconds)
    finally:
        lock.release()


# --- Semaphore ----------------------------------------------------------------------


def use_resource(out: Any, semaphore: Any, task: int, seconds: float = 0.3, timeout: float = 30.0) -> None:
    """Use a resource that admits few processes at once: wait for ``semaphore``, then sleep.

    Puts a :class:`~helpers.instruments.timeline.TaskRecord` on ``out``: ``start`` is when
    the semaphore was granted, ``end`` is taken before it is released, and
    ``result`` is how long the task waited (``None`` if it never got in).
    """
    _check_lock("semaphore", semaphore)
    _check_int("task", task)
    seconds = _check_seconds("seconds", seconds, 10.0)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    me = dict(task=task, pid=os.getpid(), thread=threading.current_thread().name)
    asked = time.time()
    if not semaphore.acquire(timeout=timeout):
        out.put(TaskRecord(**me, start=asked, end=max(asked, time.time()), result=None))
        return
    try:
        start = time.time()
        time.sleep(seconds)
        end = time.time()
    finally:
        semaphore.release()
    out.put(TaskRecord(**me, start=start, end=max(start, end), result=start - asked))


# --- two locks: deadlock and lock ordering -----------------------------------------


def take_two_locks(
    first: Any, second: Any, rounds: int, *, timeout: float, meet: Any = None, patience: float = 30.0
) -> int:
    """Take ``first``, then ``second``, ``rounds`` times; return how many rounds got both.

    The second lock is waited for at most ``timeout`` seconds, so a deadlock
    becomes a missed round instead of a hang. ``meet`` is a Barrier (from
    ``threading`` or ``multiprocessing``: both work) that every worker reaches
    while holding its first lock, and again after trying its second.
    ``patience`` bounds the other waits. Chapters 02 (processes) and 06
    (threads) both run this same loop.
    """
    got_both = 0
    for _ in range(rounds):
        if not first.acquire(timeout=patience):
            continue
        try:
            if meet is not None:
                meet.wait(patience)  # everyone holds a first lock now
            got = second.acquire(timeout=timeout)
            try:
                if meet is not None:
                    meet.wait(patience)  # everyone has tried a second lock
                got_both += got
            finally:
                if got:
                    second.release()
        finally:
            first.release()
    return got_both


class PausedLock:
    """Wrap ``lock`` so that each successful ``acquire`` pauses ``pause`` seconds before returning.

    Used by :func:`grab_two` (chapter 02): the pause widens the window between
    taking a first lock and reaching for a second, so that a bad lock order
    shows on every run instead of once in a while.
    """

    def __init__(self, lock: Any, pause: float) -> None:
        self.lock = _check_lock("lock", lock)
        self.pause = _check_seconds("pause", pause, 1.0)

    def acquire(self, timeout: float | None = None) -> bool:
        got = self.lock.acquire() if timeout is None else self.lock.acquire(timeout=timeout)
        if got:
            time.sleep(self.pause)
        return got

    def release(self) -> None:
        self.lock.release()


def grab_two(
    out: Any,
    name: str,
    first: Any,
    second: Any,
    *,
    timeout: float = 0.5,
    rounds: int = 1,
    meet: Any = None,
    start: Any = None,
    hold: float = 0.0,
) -> None:
    """Take ``first``, then ``second`` (with a timeout), ``rounds`` times.

    Puts ``{"worker": name, "rounds": rounds, "got_both": n}`` on ``out``.
    ``meet`` (a Barrier shared by all workers) makes every worker hold its
    first lock before anyone tries a second one, and keeps it until everyone
    has tried: with two workers taking two locks in opposite orders, that is
    a deadlock every time, which the timeout turns into ``got_both == 0``.
    ``start`` (a Barrier or Event, waited for once) only lines the workers up
    so that their rounds overlap. ``hold`` (seconds, default 0) makes every
    acquire of ``first`` pause that long before it returns (:class:`PausedLock`),
    so the worker sits on its first lock a moment before reaching for the
    second: the other worker then has time to take its own first lock.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    _check_lock("first", first)
    _check_lock("second", second)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    _check_int("rounds", rounds, 1, MAX_TIMES)
    hold = _check_seconds("hold", hold, 1.0)
    barrier_timeout = timeout + 30.0  # the other worker may spend `timeout` failing first
    if hold:
        first = PausedLock(first, hold)
    if start is not None:
        _wait_at(start, barrier_timeout)
    got_both = take_two_locks(first, second, rounds, timeout=timeout, meet=meet, patience=barrier_timeout)
    out.put({"worker": name, "rounds": rounds, "got_both": got_both})


# --- two processes, one file --------------------------------------------------------


def format_line(writer: str, number: int) -> str:
    """One line of the shared file: ``'<writer> <number, 5 digits> <40 #>'`` and a newline."""
    _check_writer(writer)
    _check_int("number", number, 0, 99_999)
    return f"{writer} {number:05d} {'#' * LINE_WIDTH}\n"


def append_in_pieces(path: str, line: str) -> None:
    """Append one :func:`format_line` line to ``path`` in three writes, flushing each.

    Three writes per line, ``PIECE_PAUSE`` seconds apart, so that an unlocked
    writer can land between them.
    """
    _check_path(path)
    if not isinstance(line, str) or LINE_PATTERN.match(line.rstrip("\n")) is None:
        raise ValueError(f"line must be a format_line() line, got {line!r}")
    head, number, tail = line.split(" ", 2)
    with open(path, "a", encoding="utf-8") as f:
        for index, part in enumerate((head + " ", number + " ", tail)):
            if index:
                time.sleep(PIECE_PAUSE)
            f.write(part)
            f.flush()


def _check_append_args(out: Any, path: Any, lock: Any, writer: Any, count: Any, timeout: Any) -> tuple[str, float]:
    if not callable(getattr(out, "put", None)):
        raise TypeError(f"out must be a queue, got {type(out).__name__}")
    _check_lock("lock", lock)
    _check_writer(writer)
    _check_int("count", count, 0, 99_999)
    return _check_path(path), _check_seconds("timeout", timeout, MAX_WAIT)


def append_with(out: Any, path: str, lock: Any, writer: str, count: int, *, start: Any = None) -> None:
    """Append ``count`` lines to ``path``, each inside ``with lock:``; put (writer, written) on ``out``.

    ``with lock:`` has no timeout: it suits a lock that is only ever held for a moment.
    ``start`` (a Barrier or Event) lines the writers up so that they write at the same time.
    """
    path, _ = _check_append_args(out, path, lock, writer, count, MAX_WAIT)
    if start is not None:
        _wait_at(start, MAX_WAIT)
    written = 0
    for number in range(count):
        with lock:
            append_in_pieces(path, format_line(writer, number))
        written += 1
    out.put((writer, written))


def append_try_finally(
    out: Any, path: str, lock: Any, writer: str, count: int, timeout: float = 10.0, *, start: Any = None
) -> None:
    """Append ``count`` lines, each between ``lock.acquire(timeout=...)`` and ``release()``.

    Stops early, and says so in the count it puts on ``out``, if the lock
    does not come within ``timeout`` seconds. ``start`` as for :func:`append_with`.
    """
    path, timeout = _check_append_args(out, path, lock, writer, count, timeout)
    if start is not None:
        _wait_at(start, MAX_WAIT)
    written = 0
    for number in range(count):
        if not lock.acquire(timeout=timeout):
            break
        try:
            append_in_pieces(path, format_line(writer, number))
        finally:
            lock.release()
        written += 1
    out.put((writer, written))


def check_lines(text: str) -> dict:
    """Check the shared file's text line by line.

    Returns ``{"lines": n, "torn": [bad lines], "per_writer": {writer: count},
    "in_order": {writer: bool}}``; ``in_order`` is True when a writer's
    numbers read 0, 1, 2, ... with none missing or repeated.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    lines = text.splitlines()
    torn: list[str] = []
    numbers: dict[str, list[int]] = {}
    for line in lines:
        match = LINE_PATTERN.match(line)
        if match is None:
            torn.append(line)
            continue
        numbers.setdefault(match.group(1), []).append(int(match.group(2)))
    per_writer = Counter({w: len(ns) for w, ns in numbers.items()})
    return {
        "lines": len(lines),
        "torn": torn,
        "per_writer": dict(sorted(per_writer.items())),
        "in_order": {w: ns == list(range(len(ns))) for w, ns in sorted(numbers.items())},
    }
