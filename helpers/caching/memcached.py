"""Share a cache between processes with memcached: clients, workers and measurements.

Used by chapter 13 (memcached) and by ``bench/memcached_get_many.py``.

* :func:`make_client` and :func:`make_hash_client` build pymemcache clients with
  timeouts on every socket operation and, by default, ``noreply`` off, so that a
  ``set`` or an ``add`` reports what the server really answered.
* :class:`JsonSerde` stores values as JSON, and refuses to unpickle anything.
* :func:`cas_increment` is the gets/cas retry loop; :func:`naive_increment` is the
  get+set version that loses updates. :func:`increment_worker` runs either one in a
  child process (it lives here so that the chapter works under ``spawn``) and puts
  an :class:`IncrementReport` on a queue; it never prints and never raises.
* :func:`spread_of_keys` counts which server of a ``HashClient`` each key goes to.
* :func:`time_single_gets`, :func:`time_get_many` and :func:`compare_get_many`
  time 100 ``get`` calls against one ``get_many`` of the same keys.

Every loop has an upper bound and every socket operation a timeout.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass

from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient

from helpers.instruments.measure import Timer

__all__ = [
    "MAX_KEYS",
    "MAX_RETRIES",
    "FLAG_JSON",
    "JsonSerde",
    "json_serde",
    "server_address",
    "make_client",
    "make_hash_client",
    "make_keys",
    "cas_increment",
    "naive_increment",
    "IncrementReport",
    "increment_worker",
    "spread_of_keys",
    "stats_numbers",
    "time_single_gets",
    "time_get_many",
    "GetManyComparison",
    "compare_get_many",
]

MAX_KEYS = 100_000  # upper bound on any key count or loop count in this module
MAX_RETRIES = 10_000  # upper bound on the retries of one compare-and-set increment
MODES = ("cas", "naive")
#: The flag bit that marks a JSON value (pymemcache's own serde uses bits 0-4).
FLAG_JSON = 1 << 5


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")
    return value


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


# --- Values: a JSON serde ------------------------------------------------------------------

class JsonSerde:
    """A pymemcache serde that stores ``bytes`` as they are and everything else as JSON.

    Reading a value stored with any other flag (a pickle, for example) raises
    ``ValueError`` instead of running the unpickler on data that anyone who can
    write to the cache controls.
    """

    def serialize(self, key, value) -> tuple[bytes, int]:
        if isinstance(value, bytes):
            return value, 0
        return json.dumps(value, separators=(",", ":")).encode("utf-8"), FLAG_JSON

    def deserialize(self, key, value: bytes, flags: int):
        if flags == 0:
            return value
        if flags == FLAG_JSON:
            return json.loads(value.decode("utf-8"))
        raise ValueError(f"refusing to decode key {key!r}: flags {flags} are not JSON (0 or {FLAG_JSON})")


json_serde = JsonSerde()


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
    return Client(server_address(server), serde=serde, connect_timeout=timeout, timeout=timeout,
                  default_noreply=noreply)


def make_hash_client(
    servers,
    *,
    ignore_exc: bool = True,
    retry_attempts: int = 0,
    retry_timeout: float = 1.0,
    dead_timeout: float = 60.0,
    timeout: float = 1.0,
    serde=None,
) -> HashClient:
    """A ``HashClient`` over ``servers`` (Services, ``"host:port"`` or tuples).

    ``ignore_exc=True`` turns a failed server into a miss (``None``) instead of an
    exception; ``retry_attempts`` failures mark a server dead (0: at the first one),
    after which its keys are hashed onto the others until ``dead_timeout`` passes.
    """
    addresses = [server_address(s) for s in servers]
    if not addresses:
        raise ValueError("servers must name at least one server")
    if len(set(addresses)) != len(addresses):
        raise ValueError("servers must not repeat an address")
    if not isinstance(ignore_exc, bool):
        raise TypeError(f"ignore_exc must be a bool, got {type(ignore_exc).__name__}")
    _check_int("retry_attempts", retry_attempts, 0, 100)
    timeout = _check_seconds("timeout", timeout, high=60.0)
    return HashClient(
        addresses, ignore_exc=ignore_exc, retry_attempts=retry_attempts,
        retry_timeout=_check_seconds("retry_timeout", retry_timeout),
        dead_timeout=_check_seconds("dead_timeout", dead_timeout, high=86_400.0),
        connect_timeout=timeout, timeout=timeout, default_noreply=False, serde=serde,
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


def increment_worker(server, key: str, times: int, mode: str, out, start=None,
                     timeout: float = 30.0) -> None:
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


# --- Many servers --------------------------------------------------------------------------

def spread_of_keys(hash_client, keys, servers) -> list[int]:
    """How many of ``keys`` the ``hash_client`` maps to each of ``servers``, in their order.

    Servers the client no longer uses (marked dead) count 0.
    """
    if not hasattr(hash_client, "hasher"):
        raise TypeError(f"hash_client must be a pymemcache HashClient, got {type(hash_client).__name__}")
    names = ["%s:%s" % server_address(s) for s in servers]
    keys = list(keys)
    if len(keys) > MAX_KEYS:
        raise ValueError(f"at most {MAX_KEYS} keys, got {len(keys)}")
    counts = Counter(hash_client.hasher.get_node(_check_key(k)) for k in keys)
    return [counts.get(name, 0) for name in names]


def stats_numbers(client, names=("curr_items", "get_hits", "get_misses", "evictions")) -> dict[str, int]:
    """The named counters of ``client.stats()`` as ``{name: int}``."""
    if isinstance(names, str):
        raise TypeError("names must be a list of stat names, not one string")
    raw = client.stats()
    out = {}
    for name in names:
        value = raw.get(name.encode(), raw.get(name))
        if value is None:
            raise KeyError(f"memcached reported no stat named {name!r}")
        out[name] = int(value)
    return out


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
