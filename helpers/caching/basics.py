"""Caching building blocks: a slow source, a TTL cache, cache-aside, and a latency ladder.

Used by chapter 12 (stop doing slow work twice: caching); chapter 14 (Redis) reuses
:class:`SlowSource` behind its cache-aside and cache-stampede examples.

* :class:`SlowSource` is the "database": every read sleeps, and is counted (safely, when
  many threads read at once).
* :class:`TTLCache` is a small in-process cache whose entries expire after a
  time-to-live, with an injectable clock (:class:`ManualClock`) so tests need no sleeps.
* :class:`CacheAside` wraps any ``get``/``set``/``delete`` backend (a ``TTLCache``,
  a ``dict``, redis-py, pymemcache) in the cache-aside pattern, and counts hits and misses;
  with ``set_missing`` it also caches "known missing" (negative caching).
* :func:`median_latency`, :func:`format_duration`, :func:`ladder_table` and
  :func:`plot_latency_ladder` measure and show how long one operation takes.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from helpers.instruments.workloads import _check_int

__all__ = [
    "SlowSource",
    "ManualClock",
    "TTLCache",
    "CacheAside",
    "KNOWN_MISSING",
    "median_latency",
    "format_duration",
    "ladder_table",
    "plot_latency_ladder",
]

_MISSING = object()

#: What :class:`CacheAside` stores for a key the source does not have (negative caching).
#: A string, so that every backend (Redis, memcached, a dict) can hold it.
KNOWN_MISSING = "\x00known-missing"


def _check_seconds(name: str, value: float, upper: float, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= upper):
        bound = "[0" if allow_zero else "(0"
        raise ValueError(f"{name} must be in {bound}, {upper}] seconds, got {value!r}")
    return float(value)


def _check_callable(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")


class SlowSource:
    """A deliberately slow data source: each read sleeps ``delay`` seconds and is counted.

    ``source(key)`` returns the stored value (or ``"value-of-<key>"`` for a key never
    written); ``source.write(key, value)`` changes the data, as an update to a
    database would. With ``known_only=True`` a key never written reads as ``None``,
    like a row that does not exist. ``calls`` counts reads, ``writes`` counts writes.
    The counts are exact when many threads read at once (chapter 14's twenty readers do).
    """

    def __init__(self, delay: float = 0.05, data: dict | None = None, *, known_only: bool = False) -> None:
        self.delay = _check_seconds("delay", delay, 10.0, allow_zero=True)
        if data is not None and not isinstance(data, dict):
            raise TypeError(f"data must be a dict or None, got {type(data).__name__}")
        if not isinstance(known_only, bool):
            raise TypeError(f"known_only must be a bool, got {type(known_only).__name__}")
        self.data: dict = dict(data or {})
        self.known_only = known_only
        self.calls = 0
        self.writes = 0
        self._guard = threading.Lock()  # `self.calls += 1` alone can lose a count between threads

    def __call__(self, key: Hashable) -> Any:
        if not isinstance(key, Hashable):
            raise TypeError(f"key must be hashable, got {type(key).__name__}")
        time.sleep(self.delay)  # the slow work: a query, a remote call, a big computation
        with self._guard:
            self.calls += 1
        return self.data.get(key, None if self.known_only else f"value-of-{key}")

    def write(self, key: Hashable, value: Any) -> None:
        """Change the source's data (fast: only reads are slow here)."""
        if not isinstance(key, Hashable):
            raise TypeError(f"key must be hashable, got {type(key).__name__}")
        self.data[key] = value
        self.writes += 1

    def reset_counts(self) -> None:
        self.calls = 0
        self.writes = 0

    def __repr__(self) -> str:
        return f"SlowSource(delay={self.delay}, calls={self.calls}, writes={self.writes})"


class ManualClock:
    """A clock for tests: it only moves when told to. ``clock()`` returns the time."""

    def __init__(self, start: float = 0.0) -> None:
        if isinstance(start, bool) or not isinstance(start, (int, float)):
            raise TypeError(f"start must be a number, got {type(start).__name__}")
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (>= 0) and return the new time."""
        self.now += _check_seconds("seconds", seconds, 1e9, allow_zero=True)
        return self.now


class TTLCache:
    """A small in-process cache whose entries expire ``ttl`` seconds after they were set.

    ``maxsize`` (optional) bounds the number of entries; when full, the least recently
    used entry is evicted. ``clock`` is any zero-argument function returning seconds
    (``time.monotonic`` by default; a :class:`ManualClock` in tests). ``hits``,
    ``misses``, ``expirations`` and ``evictions`` count what happened.
    """

    def __init__(
        self,
        ttl: float,
        *,
        maxsize: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = _check_seconds("ttl", ttl, 86_400.0 * 365)
        if maxsize is not None:
            _check_int("maxsize", maxsize, 1, 10_000_000)
        _check_callable("clock", clock)
        self.maxsize = maxsize
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self.hits = self.misses = self.expirations = self.evictions = 0

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value of ``key`` if present and not expired; otherwise ``default``."""
        entry = self._entries.get(key, _MISSING)
        if entry is _MISSING:
            self.misses += 1
            return default
        expires_at, value = entry
        if self.clock() >= expires_at:
            del self._entries[key]
            self.expirations += 1
            self.misses += 1
            return default
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def set(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (the cache's ttl by default)."""
        if not isinstance(key, Hashable):
            raise TypeError(f"key must be hashable, got {type(key).__name__}")
        lifetime = self.ttl if ttl is None else _check_seconds("ttl", ttl, 86_400.0 * 365)
        self._entries[key] = (self.clock() + lifetime, value)
        self._entries.move_to_end(key)
        if self.maxsize is not None:
            while len(self._entries) > self.maxsize:  # bounded: at most one extra entry
                self._entries.popitem(last=False)
                self.evictions += 1

    def delete(self, key: Hashable) -> bool:
        """Remove ``key``; True when it was there."""
        return self._entries.pop(key, _MISSING) is not _MISSING

    def purge_expired(self) -> int:
        """Drop every expired entry now; return how many were dropped."""
        now = self.clock()
        dead = [key for key, (expires_at, _) in self._entries.items() if now >= expires_at]
        for key in dead:
            del self._entries[key]
        self.expirations += len(dead)
        return len(dead)

    def clear(self) -> None:
        self._entries.clear()

    def __contains__(self, key: Hashable) -> bool:
        entry = self._entries.get(key, _MISSING)
        return entry is not _MISSING and self.clock() < entry[0]

    def __len__(self) -> int:
        """Entries stored, including expired ones not yet purged."""
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"TTLCache(ttl={self.ttl}, maxsize={self.maxsize}, entries={len(self)}, "
            f"hits={self.hits}, misses={self.misses})"
        )


class CacheAside:
    """The cache-aside pattern over any backend, with hit and miss counters.

    ``read(key)`` asks the cache (``get``); on a miss (``get`` returned ``None``) it
    loads the value from the source (``load``) and stores it (``set``). ``write(key,
    value)`` saves to the source (``save``) and then deletes the cached copy
    (``delete``): the next read loads the new value. ``encode`` and ``decode`` turn
    values into what the backend stores (for example ``str.encode`` and
    ``bytes.decode`` for memcached).

    ``None`` from ``load`` means the source has no such key. Without ``set_missing``
    that is an error (``None`` is what ``get`` returns on a miss, so it cannot be
    cached). With ``set_missing(key, marker)``, which should store ``marker`` with a
    short TTL of its own, ``read`` caches :data:`KNOWN_MISSING` instead and returns
    ``None``; ``missing_hits`` counts the reads answered "known missing" from the cache.
    """

    def __init__(
        self,
        load: Callable[[Any], Any],
        get: Callable[[Any], Any],
        set: Callable[[Any, Any], Any],
        delete: Callable[[Any], Any] | None = None,
        *,
        save: Callable[[Any, Any], Any] | None = None,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
        set_missing: Callable[[Any, Any], Any] | None = None,
    ) -> None:
        for name, fn in (("load", load), ("get", get), ("set", set)):
            _check_callable(name, fn)
        optional = (("delete", delete), ("save", save), ("encode", encode), ("decode", decode))
        for name, fn in (*optional, ("set_missing", set_missing)):
            _check_callable(name, fn, optional=True)
        self.load, self._get, self._set, self._delete = load, get, set, delete
        self.save, self.encode, self.decode, self._set_missing = save, encode, decode, set_missing
        self.hits = self.misses = self.missing_hits = 0

    def read(self, key: Any) -> Any:
        cached = self._get(key)
        if cached is not None:
            self.hits += 1
            value = cached if self.decode is None else self.decode(cached)
            if isinstance(value, str) and value == KNOWN_MISSING:  # negative caching: the source has no such key
                self.missing_hits += 1
                return None
            return value
        self.misses += 1
        value = self.load(key)
        if value is None:
            if self._set_missing is None:
                raise ValueError(f"the source returned None for {key!r}; pass set_missing= to cache that")
            self._set_missing(key, KNOWN_MISSING if self.encode is None else self.encode(KNOWN_MISSING))
            return None
        self._set(key, value if self.encode is None else self.encode(value))
        return value

    def invalidate(self, key: Any) -> None:
        """Delete the cached copy of ``key`` (the next read goes to the source)."""
        if self._delete is None:
            raise TypeError("this CacheAside has no delete function; pass delete=...")
        self._delete(key)

    def write(self, key: Any, value: Any) -> None:
        """Save to the source first, then delete the cached copy (delete on write)."""
        if self.save is None:
            raise TypeError("this CacheAside has no save function; pass save=...")
        self.save(key, value)
        self.invalidate(key)

    def __repr__(self) -> str:
        return f"CacheAside(hits={self.hits}, misses={self.misses})"


def median_latency(operation: Callable[[], Any], *, number: int = 100, repeat: int = 25) -> float:
    """Median seconds per call of ``operation()``, over ``repeat`` batches of ``number`` calls.

    Batching makes operations far shorter than the clock's resolution measurable; the
    median ignores the batches that a busy machine slowed down. Each call includes the
    cost of calling ``operation`` itself (tens of nanoseconds in CPython).
    """
    _check_callable("operation", operation)
    _check_int("number", number, 1, 10_000_000)
    _check_int("repeat", repeat, 1, 10_000)
    per_call = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            operation()
        per_call.append((time.perf_counter() - start) / number)
    return statistics.median(per_call)


def format_duration(seconds: float) -> str:
    """``'85 ns'``, ``'3.1 µs'``, ``'52 ms'`` or ``'1.20 s'``: three significant figures at most."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
    if not 0 <= seconds < 1e6:
        raise ValueError(f"seconds must be in [0, 1e6), got {seconds!r}")
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):  # noqa: B007 (unit is read after break)
        if seconds >= scale:
            value = seconds / scale
            break
    else:
        unit, value = "ns", seconds / 1e-9
    if value >= 100 or unit == "ns":
        return f"{value:.0f} {unit}"
    return f"{value:.1f} {unit}" if value >= 10 else f"{value:.2f} {unit}"


def _check_latencies(latencies: dict) -> dict[str, float]:
    if not isinstance(latencies, dict) or not latencies:
        raise TypeError("latencies must be a non-empty dict of name -> seconds")
    for name, value in latencies.items():
        if not isinstance(name, str):
            raise TypeError(f"latency names must be strings, got {type(name).__name__}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"latency of {name!r} must be a positive number of seconds, got {value!r}")
    return latencies


def ladder_table(latencies: dict[str, float]) -> str:
    """A text table: each step's median, and how many times the first step it takes.

    The varying values end each line, unpadded, so that a sanitized output (durations
    and ratios replaced) is the same on every run.
    """
    latencies = _check_latencies(latencies)
    base = next(iter(latencies.values()))
    width = max(len(name) for name in latencies)
    lines = [f"{'operation':<{width}}  median, and times the first row"]
    for name, seconds in latencies.items():
        ratio = seconds / base
        shown = f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.1f}×"
        lines.append(f"{name:<{width}}  {format_duration(seconds)}, {shown}")
    return "\n".join(lines)


def plot_latency_ladder(latencies: dict[str, float], ax=None, title: str = "The latency ladder"):
    """Horizontal bars of each step's median on a log scale; returns the Axes."""
    latencies = _check_latencies(latencies)
    import matplotlib.pyplot as plt  # only the plot needs matplotlib

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 0.5 * len(latencies) + 1.4), layout="constrained")
    names = list(latencies)
    values = [latencies[name] for name in names]
    ax.barh(names, values, color=[f"C{i % 10}" for i in range(len(names))])
    ax.set_xscale("log")
    ax.invert_yaxis()
    for y, seconds in enumerate(values):
        ax.annotate(
            format_duration(seconds), (seconds, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8
        )
    ax.set_xlim(min(values) / 3, max(values) * 30)
    ax.set_xlabel("seconds per operation (median, log scale)")
    ax.set_title(title)
    return ax
