"""Share a cache between processes with memcached: the client factory, the workers, the timings.

Used by chapter 13 (memcached) and by ``bench/memcached_get_many.py``. The chapter's
client code that runs in the notebook's own process (the JSON serde, the ``HashClient``
and its failover, the ``stats`` counters) is written in its cells; what is here is what a
child process or the benchmark needs too.

* :func:`make_client` builds a pymemcache client with timeouts on every socket
  operation and, by default, ``noreply`` off, so that a ``set`` or an ``add`` reports
  what the server really answered.
* :func:`cas_increment` is the gets/cas retry loop; :func:`naive_increment` is the
  get+set version that loses updates. :func:`increment_worker` runs either one in a
  child process (it lives here so that the chapter works under ``spawn`` and
  ``forkserver``) and puts an :class:`IncrementReport` on a queue; it never prints and
  never raises.
* :func:`time_single_gets`, :func:`time_get_many` and :func:`compare_get_many`
  time 100 ``get`` calls against one ``get_many`` of the same keys.

Every loop has an upper bound and every socket operation a timeout.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

from pymemcache.client.base import Client

from helpers.instruments.measure import Timer
from helpers.instruments.workloads import _check_int

__all__ = [
    "MAX_KEYS",
    "MAX_RETRIES",
    "server_address",
    "make_client",
    "make_keys",
    "cas_increment",
    "naive_increment",
    "IncrementReport",
    "increment_worker",
    "time_single_gets",
    "time_get_many",
    "GetManyComparison",
    "compare_get_many",
]

MAX_KEYS = 100_000  # upper bound on any key count or loop count in this module
MAX_RETRIES = 10_000  # upper bound on the retries of one compare-and-set increment
MODES = ("cas", "naive")


def _check_seconds(name: str, value, high: float = 600.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not 0 < value <= high:
        raise ValueError(f"{name} must be in (0, {high}] seconds, got {value!r}")
    return float(value)


def _check_key(key) -> str:
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    if not key or len(key) > 250 or any(c.isspace() or ord(c) < 33 for c in key):
        raise ValueError(f"key must be 1-250 printable characters without spaces, got {key!r}")
    return key


# --- Clients -------------------------------------------------------------------------------


def server_address(server) -> tuple[str, int]:
    """``(host, port)`` from a :class:`helpers.instruments.services.Service`, ``"host:port"`` or a tuple."""
    if hasattr(server, "host") and hasattr(server, "port"):
        host, port = server.host, server.port
    elif isinstance(server, str):
        host, sep, port_text = server.rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ValueError(f"server must look like 'host:port', got {server!r}")
        port = int(port_text)
    elif isinstance(server, tuple) and len(server) == 2:
        host, port = server
    else:
        raise TypeError(f"server must be a Service, 'host:port' or (host, port), got {type(server).__name__}")
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty str, got {host!r}")
    _check_int("port", port, 1, 65535)
    return host, port


def make_client(server, *, serde=None, timeout: float = 5.0, noreply: bool = False) -> Client:
    """A pymemcache ``Client`` with connect and read timeouts, ``noreply`` off by default.

    pymemcache's own default is ``default_noreply=True``: ``set``, ``add`` and friends
    then return ``True`` without waiting for the server's answer.
    """
    timeout = _check_seconds("timeout", timeout, high=60.0)
    if not isinstance(noreply, bool):
        raise TypeError(f"noreply must be a bool, got {type(noreply).__name__}")
    if serde is not None and not (hasattr(serde, "serialize") and hasattr(serde, "deserialize")):
        raise TypeError("serde must have serialize(key, value) and deserialize(key, value, flags)")
    return Client(
        server_address(server), serde=serde, connect_timeout=timeout, timeout=timeout, default_noreply=noreply
    )


def make_keys(prefix: str, count: int) -> list[str]:
    """``count`` distinct keys ``prefix:0000``, ``prefix:0001``, ... (fixed, so repeatable)."""
    _check_key(prefix)
    _check_int("count", count, 0, MAX_KEYS)
    return [f"{prefix}:{i:04d}" for i in range(count)]


# --- Counting with gets/cas ----------------------------------------------------------------


def cas_increment(client, key: str, max_retries: int = 1_000) -> int:
    """Add 1 to the integer at ``key`` with gets/cas, retrying until no one else wrote.

    A missing key is created with ``add`` (which also fails if someone else was
    first). Returns how many retries it took; raises ``RuntimeError`` after
    ``max_retries``.
    """
    _check_key(key)
    _check_int("max_retries", max_retries, 0, MAX_RETRIES)
    for attempt in range(max_retries + 1):
        value, token = client.gets(key)
        if value is None:
            if client.add(key, b"1", noreply=False):
                return attempt
        elif client.cas(key, str(int(value) + 1).encode(), token, noreply=False):
            return attempt
    raise RuntimeError(f"cas_increment({key!r}) gave up after {max_retries} retries")


def naive_increment(client, key: str) -> None:
    """Add 1 with a plain get then set: two processes can both read 41 and both write 42."""
    _check_key(key)
    value = client.get(key)
    client.set(key, str(int(value or 0) + 1).encode(), noreply=False)


@dataclass(frozen=True)
class IncrementReport:
    """What one :func:`increment_worker` did."""

    pid: int
    mode: str
    increments: int
    retries: int
    error: str = ""


def increment_worker(server, key: str, times: int, mode: str, out, start=None, timeout: float = 30.0) -> None:
    """Child target: add 1 to ``key`` ``times`` times (``mode`` "cas" or "naive").

    Connects first, then waits at the ``start`` barrier (if given) so that all the
    workers begin together, and puts one :class:`IncrementReport` on ``out``.
    An error is reported in the report, never printed or raised.
    """
    _check_key(key)
    _check_int("times", times, 0, MAX_KEYS)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    timeout = _check_seconds("timeout", timeout)
    done, retries, error = 0, 0, ""
    client = None
    try:
        client = make_client(server, timeout=min(timeout, 10.0))
        client.version()  # connect before the start line
        if start is not None:
            start.wait(timeout)
        deadline = time.monotonic() + timeout
        for _ in range(times):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done} of {times} increments in {timeout} s")
            if mode == "cas":
                retries += cas_increment(client, key)
            else:
                naive_increment(client, key)
            done += 1
    except Exception as exc:  # reported to the parent instead of printed in the child
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if client is not None:
            client.close()
    out.put(IncrementReport(os.getpid(), mode, done, retries, error))


# --- Measurements --------------------------------------------------------------------------


def _check_repeat(repeat) -> int:
    return _check_int("repeat", repeat, 1, 10_000)


def time_single_gets(client, keys, repeat: int = 20) -> list[float]:
    """Seconds for one ``get`` per key, ``repeat`` times (checks every value came back)."""
    keys = list(keys)
    _check_repeat(repeat)
    times = []
    for _ in range(repeat):
        with Timer() as t:
            values = [client.get(k) for k in keys]
        if any(v is None for v in values):
            raise RuntimeError("a key was missing during time_single_gets: set the keys first")
        times.append(t.elapsed)
    return times


def time_get_many(client, keys, repeat: int = 20) -> list[float]:
    """Seconds for one ``get_many(keys)``, ``repeat`` times (checks every value came back)."""
    keys = list(keys)
    _check_repeat(repeat)
    times = []
    for _ in range(repeat):
        with Timer() as t:
            values = client.get_many(keys)
        if len(values) != len(set(keys)):
            raise RuntimeError("a key was missing during time_get_many: set the keys first")
        times.append(t.elapsed)
    return times


@dataclass(frozen=True)
class GetManyComparison:
    """Median seconds of ``len(keys)`` single gets and of one get_many, and their ratio."""

    keys: int
    repeat: int
    single_seconds: float
    many_seconds: float

    @property
    def ratio(self) -> float:
        return self.single_seconds / self.many_seconds


def compare_get_many(client, keys, repeat: int = 20) -> GetManyComparison:
    """Time both ways, interleaved so that a busy moment hurts both alike; medians."""
    keys = list(keys)
    _check_repeat(repeat)
    if not keys:
        raise ValueError("keys must not be empty")
    single, many = [], []
    for _ in range(repeat):
        single += time_single_gets(client, keys, 1)
        many += time_get_many(client, keys, 1)
    return GetManyComparison(len(keys), repeat, statistics.median(single), statistics.median(many))
