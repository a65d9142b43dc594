"""gevent's plumbing for chapter 10: the hub's error printing, pool lanes, sleep counts, clean-up.

Used by chapter 10 (gevent) and by ``bench/coroutine_sleeps.py``.

The greenlets chapter 10 teaches with (its tasks, queue and event users, the echo
server's handler and its clients) are written in the chapter's own cells. What is
left here watches them, and never calls ``gevent.monkey.patch_all()``, so it is
safe to import in a Jupyter kernel. The patched programs live in
``helpers/scripts/gevent_patched.py`` and ``helpers/scripts/many_sleeps.py`` and
run as subprocesses.

* :func:`quiet_hub` and :func:`capture_hub_errors`: keep a failing greenlet's
  traceback off stderr (the hub prints it there by default).
* :func:`pack_into_lanes` puts :class:`~helpers.instruments.timeline.TaskRecord` values into
  as few lanes as possible, so a pool's timeline shows one lane per slot.
* :func:`measure_sleeps` runs ``helpers/scripts/many_sleeps.py`` in a fresh Python
  process (many concurrent sleeps under gevent, asyncio or threads) and returns its
  numbers as a :class:`SleepRun`: wall time, how many slept at once, peak memory.
* :func:`unfinished_gevent_greenlets` lists gevent greenlets not yet dead.

Nothing here prints.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import gevent

from helpers.instruments.timeline import TaskRecord
from helpers.scripts.many_sleeps import MAX_SLEEPS, SLEEP_KINDS

__all__ = [
    "quiet_hub",
    "capture_hub_errors",
    "pack_into_lanes",
    "SLEEP_KINDS",
    "SleepRun",
    "measure_sleeps",
    "unfinished_gevent_greenlets",
]

#: Upper bound on a child's run, so that no measurement runs away.
MAX_SECONDS = 600.0


def _check_int(name: str, value: Any, *, minimum: int = 0, maximum: int = MAX_SLEEPS) -> int:
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


@dataclass(frozen=True)
class SleepRun:
    """One run of ``helpers/scripts/many_sleeps.py`` (its ``sleep_many``), read back from the child."""

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
    """Run ``helpers/scripts/many_sleeps.py`` in a fresh Python process and return its numbers.

    Raises RuntimeError (with the child's last stderr line) if the child fails.
    """
    if kind not in SLEEP_KINDS:
        raise ValueError(f"kind must be one of {SLEEP_KINDS}, got {kind!r}")
    n = _check_int("n", n)
    delay, timeout = _check_seconds("delay", delay, maximum=5.0), _check_seconds("timeout", timeout)
    proc = subprocess.run(
        [sys.executable, "-m", "helpers.scripts.many_sleeps", kind, str(n), str(delay)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
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
