"""Redis as a cache, a queue and a lock: the workers and patterns of chapter 14.

Used by chapter 14 (``notebooks/14-redis.ipynb``, "Use Redis as a cache, a queue and
a lock") and by ``bench/redis_pipeline.py``.

Everything that runs in a child process lives here, so the chapter works under the
``spawn`` start method: each worker receives the server's URL (a string), opens its
own client, returns its result through a queue (it never prints), and closes its
client. Every loop is bounded by a count and a deadline, and every wait has a timeout.
The ``run_*`` functions start the workers, collect their results, and join them.
"""
from __future__ import annotations

import multiprocessing as mp
import random
import re
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import redis

from helpers.processes.basics import collect, join_all

__all__ = [
    "connect",
    "time_sets",
    "redis_benchmark",
    "incr_worker",
    "run_incr",
    "transfer",
    "transfer_worker",
    "run_transfers",
    "wait_for_subscribers",
    "subscriber",
    "run_pubsub",
    "QUEUE_STOP",
    "queue_producer",
    "queue_consumer",
    "run_work_queue",
    "stream_consumer",
    "StreamReport",
    "run_stream_group",
    "FencedResource",
    "SlowSource",
    "CacheStats",
    "cache_aside_get",
    "cache_aside_get_locked",
    "run_readers",
    "fill_keys",
]

MAX_SECONDS = 120.0  # no worker or wait here lasts longer than this
SET_MODES = ("round-trips", "pipeline", "mset")


# --- argument checks ---------------------------------------------------------------

def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def _check_seconds(name: str, value: Any, high: float = MAX_SECONDS) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not 0 <= value <= high:
        raise ValueError(f"{name} must be in [0, {high}] seconds, got {value!r}")
    return float(value)


def _check_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _check_url(url: Any) -> str:
    _check_str("url", url)
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError(f"url must look like redis://host:port/0, got {url!r}")
    return url


def _check_client(r: Any) -> redis.Redis:
    if not isinstance(r, redis.Redis):
        raise TypeError(f"r must be a redis.Redis client, got {type(r).__name__}")
    return r


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """A ``redis.Redis`` client for ``url`` that returns ``str``, with bounded socket waits."""
    _check_url(url)
    options: dict[str, Any] = {"decode_responses": True, "socket_timeout": 10.0,
                               "socket_connect_timeout": 2.0}
    options.update(kwargs)
    return redis.Redis.from_url(url, **options)


def _run_children(target: Callable, args_list: list[tuple], timeout: float,
                  names: list[str] | None = None) -> list:
    """Start one process per argument tuple (the queue is appended), collect one result each."""
    ctx = mp.get_context()
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, out),
                         name=names[i] if names else f"{target.__name__}-{i}")
             for i, args in enumerate(args_list)]
    try:
        for p in procs:
            p.start()
        results = collect(out, count=len(procs), timeout=timeout)
    finally:
        try:
            join_all(procs, timeout=timeout)
        finally:
            out.close()
            out.join_thread()
    return results


# --- pipelines ------------------------------------------------------------------

def time_sets(r: redis.Redis, count: int, mode: str, prefix: str = "bench") -> float:
    """Write ``count`` keys ``prefix:0..`` one of three ways; return the seconds taken.

    ``mode`` is ``"round-trips"`` (one SET, one reply, then the next), ``"pipeline"``
    (all SETs sent in one batch, replies read after) or ``"mset"`` (one command).
    """
    _check_client(r)
    _check_int("count", count, 1, 1_000_000)
    if mode not in SET_MODES:
        raise ValueError(f"mode must be one of {SET_MODES}, got {mode!r}")
    _check_str("prefix", prefix)
    keys = [f"{prefix}:{i}" for i in range(count)]
    start = time.perf_counter()
    if mode == "round-trips":
        for i, key in enumerate(keys):
            r.set(key, i)
    elif mode == "pipeline":
        with r.pipeline(transaction=False) as pipe:
            for i, key in enumerate(keys):
                pipe.set(key, i)
            pipe.execute()
    else:
        r.mset({key: i for i, key in enumerate(keys)})
    return time.perf_counter() - start


_RPS = re.compile(r"SET: ([\d.]+) requests per second")


def redis_benchmark(host: str, port: int, *, requests: int = 100_000, pipeline: int = 16,
                    clients: int = 1, timeout: float = 60.0) -> float | None:
    """Run ``redis-benchmark -c clients -P pipeline -t set -n requests -q``; SETs per second.

    Returns ``None`` when the ``redis-benchmark`` binary (Debian package redis-tools)
    is not installed.
    """
    _check_str("host", host)
    _check_int("port", port, 1, 65535)
    _check_int("requests", requests, 1, 10_000_000)
    _check_int("pipeline", pipeline, 1, 10_000)
    _check_int("clients", clients, 1, 1_000)
    _check_seconds("timeout", timeout, 600.0)
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    done = subprocess.run(
        [binary, "-h", host, "-p", str(port), "-c", str(clients), "-P", str(pipeline),
         "-t", "set", "-n", str(requests), "-q"],
        capture_output=True, text=True, timeout=timeout, check=True)
    found = _RPS.findall(done.stdout)
    if not found:
        raise RuntimeError(f"could not read redis-benchmark's output: {done.stdout[-200:]!r}")
    return float(found[-1])


# --- INCR from several processes ----------------------------------------------------

def incr_worker(url: str, key: str, times: int, out) -> None:
    """Child: ``INCR key`` ``times`` times; put the number of increments on ``out``."""
    r = connect(url)
    try:
        for _ in range(times):
            r.incr(key)
    finally:
        r.close()
    out.put(times)


def run_incr(url: str, key: str, processes: int = 4, times: int = 1_000,
             timeout: float = 60.0) -> list[int]:
    """``processes`` children each INCR ``key`` ``times`` times; their reported counts."""
    _check_url(url)
    _check_str("key", key)
    _check_int("processes", processes, 1, 32)
    _check_int("times", times, 0, 1_000_000)
    _check_seconds("timeout", timeout)
    return _run_children(incr_worker, [(url, key, times)] * processes, timeout)


# --- WATCH / MULTI / EXEC ------------------------------------------------------------

def transfer(r: redis.Redis, source: str, target: str, amount: int, *, max_retries: int = 1_000,
             between: Callable[[], None] | None = None) -> tuple[bool, int]:
    """Move ``amount`` from ``source`` to ``target`` if ``source`` holds enough.

    Optimistic locking: WATCH both keys, read, then MULTI/EXEC the change. If another
    client wrote a watched key in between, EXEC fails with ``WatchError`` and we start
    again. ``between`` (for demonstrations) runs after the read, before MULTI.
    Returns ``(moved, retries)``.
    """
    _check_client(r)
    _check_str("source", source)
    _check_str("target", target)
    if source == target:
        raise ValueError("source and target must be different keys")
    _check_int("amount", amount, 1)
    _check_int("max_retries", max_retries, 0, 100_000)
    if between is not None and not callable(between):
        raise TypeError("between must be callable or None")
    with r.pipeline() as pipe:
        for attempt in range(max_retries + 1):
            try:
                pipe.watch(source, target)
                balance = int(pipe.get(source) or 0)
                if balance < amount:
                    pipe.unwatch()
                    return False, attempt
                if between is not None:
                    between()
                pipe.multi()
                pipe.decrby(source, amount)
                pipe.incrby(target, amount)
                pipe.execute()
                return True, attempt
            except redis.WatchError:
                continue  # a watched key changed: read again
    raise RuntimeError(f"transfer gave up after {max_retries} retries")


def transfer_worker(url: str, keys: tuple[str, str], transfers: int, seed: int, out) -> None:
    """Child: ``transfers`` random transfers (1-5 units, either direction) between two keys.

    Puts ``{"moved": n, "declined": n, "retries": n}`` on ``out``.
    """
    rng = random.Random(seed)
    moved = declined = retries = 0
    r = connect(url)
    try:
        for _ in range(transfers):
            source, target = keys if rng.random() < 0.5 else keys[::-1]
            ok, tries = transfer(r, source, target, rng.randint(1, 5))
            moved += ok
            declined += not ok
            retries += tries
    finally:
        r.close()
    out.put({"moved": moved, "declined": declined, "retries": retries})


def run_transfers(url: str, keys: tuple[str, str], processes: int = 4, transfers: int = 300,
                  timeout: float = 60.0) -> list[dict]:
    """``processes`` children run :func:`transfer_worker`; their reports."""
    _check_url(url)
    if not (isinstance(keys, (tuple, list)) and len(keys) == 2
            and all(isinstance(k, str) and k for k in keys) and keys[0] != keys[1]):
        raise TypeError("keys must be a pair of two different key names")
    _check_int("processes", processes, 1, 32)
    _check_int("transfers", transfers, 0, 100_000)
    _check_seconds("timeout", timeout)
    args = [(url, tuple(keys), transfers, seed) for seed in range(processes)]
    return _run_children(transfer_worker, args, timeout)


# --- pub/sub ------------------------------------------------------------------------

def wait_for_subscribers(r: redis.Redis, channel: str, count: int = 1, timeout: float = 10.0) -> int:
    """Poll ``PUBSUB NUMSUB channel`` until it reaches ``count``; return it, or raise TimeoutError."""
    _check_client(r)
    _check_str("channel", channel)
    _check_int("count", count, 1, 10_000)
    timeout = _check_seconds("timeout", timeout)
    deadline = time.monotonic() + timeout
    while True:
        subscribed = dict(r.pubsub_numsub(channel)).get(channel, 0)
        if subscribed >= count:
            return subscribed
        if time.monotonic() > deadline:
            raise TimeoutError(f"{subscribed} of {count} subscriber(s) on {channel!r} after {timeout} s")
        time.sleep(0.01)


def subscriber(url: str, channel: str, expected: int, timeout: float, out) -> None:
    """Child: SUBSCRIBE, receive ``expected`` messages (or stop at ``timeout``); put them on ``out``."""
    received: list[str] = []
    r = connect(url)
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel)
        deadline = time.monotonic() + timeout
        while len(received) < expected and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "message":
                received.append(message["data"])
    finally:
        pubsub.close()
        r.close()
    out.put(received)


def run_pubsub(url: str, channel: str, messages: list[str], timeout: float = 20.0) -> dict:
    """A subscriber process, and this process publishing ``messages`` once it is subscribed.

    Returns ``{"receivers": [...], "received": [...]}``: PUBLISH's reply (how many
    subscribers got each message) and what the subscriber process received.
    """
    _check_url(url)
    _check_str("channel", channel)
    if not isinstance(messages, list) or not all(isinstance(m, str) for m in messages):
        raise TypeError("messages must be a list of str")
    timeout = _check_seconds("timeout", timeout)
    ctx = mp.get_context()
    out = ctx.Queue()
    proc = ctx.Process(target=subscriber, args=(url, channel, len(messages), timeout, out),
                       name="subscriber")
    r = connect(url)
    try:
        proc.start()
        wait_for_subscribers(r, channel, 1, timeout)  # without this, early messages are lost
        receivers = [r.publish(channel, m) for m in messages]
        received = collect(out, count=1, timeout=timeout)[0]
    finally:
        r.close()
        try:
            join_all([proc], timeout=timeout)
        finally:
            out.close()
            out.join_thread()
    return {"receivers": receivers, "received": received}


# --- a list as a work queue --------------------------------------------------------

QUEUE_STOP = "stop"  # one per consumer, pushed after the work items


def queue_producer(url: str, key: str, items: int, consumers: int, out) -> None:
    """Child: LPUSH the work items ``0..items-1``, then one :data:`QUEUE_STOP` per consumer."""
    r = connect(url)
    try:
        for item in range(items):
            r.lpush(key, item)
        for _ in range(consumers):
            r.lpush(key, QUEUE_STOP)
    finally:
        r.close()
    out.put({"role": "producer", "pushed": items})


def queue_consumer(url: str, key: str, name: str, timeout: float, out) -> None:
    """Child: BRPOP items (1 s timeout per wait) until :data:`QUEUE_STOP` or ``timeout``."""
    done: list[int] = []
    stopped = False
    r = connect(url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            popped = r.brpop(key, timeout=1)  # None after 1 s with nothing to take
            if popped is None:
                continue
            _, value = popped
            if value == QUEUE_STOP:
                stopped = True
                break
            done.append(int(value))
    finally:
        r.close()
    out.put({"role": "consumer", "name": name, "items": done, "stopped": stopped})


def run_work_queue(url: str, key: str, items: int = 200, consumers: int = 3,
                   timeout: float = 30.0) -> dict[str, list[int]]:
    """Consumers first, then a producer; returns each consumer's processed items by name."""
    _check_url(url)
    _check_str("key", key)
    _check_int("items", items, 0, 100_000)
    _check_int("consumers", consumers, 1, 16)
    timeout = _check_seconds("timeout", timeout)
    names = [f"consumer-{i}" for i in range(consumers)]
    targets = [(queue_consumer, (url, key, n, timeout)) for n in names]
    targets.append((queue_producer, (url, key, items, consumers)))
    ctx = mp.get_context()
    out = ctx.Queue()
    procs = [ctx.Process(target=t, args=(*a, out), name=f"queue-{i}") for i, (t, a) in enumerate(targets)]
    try:
        for p in procs:
            p.start()
        reports = collect(out, count=len(procs), timeout=timeout + 5)
    finally:
        try:
            join_all(procs, timeout=timeout + 5)
        finally:
            out.close()
            out.join_thread()
    consumers_done = {rep["name"]: rep["items"] for rep in reports if rep["role"] == "consumer"}
    if not all(rep.get("stopped", True) for rep in reports):
        raise TimeoutError("a consumer never received its stop item")
    return dict(sorted(consumers_done.items()))


# --- streams with a consumer group ---------------------------------------------------

def _process_message(r: redis.Redis, stream: str, consumer: str, msg_id: str, fields: dict) -> None:
    """The work: square ``n`` and store it. Idempotent (HSET), so doing it twice is harmless."""
    n = int(fields["n"])
    with r.pipeline(transaction=False) as pipe:
        pipe.hset(f"{stream}:results", msg_id, n * n)
        pipe.rpush(f"{stream}:processed", f"{consumer} {msg_id}")
        pipe.execute()


def _ack(r: redis.Redis, stream: str, group: str, consumer: str, msg_id: str) -> None:
    if r.xack(stream, group, msg_id) == 1:  # 1: it was pending and now is not
        r.rpush(f"{stream}:acks", f"{consumer} {msg_id}")


def stream_consumer(url: str, stream: str, group: str, consumer: str, batch: int,
                    min_idle_ms: int, timeout: float, die_after_acks: int | None,
                    ready, out) -> None:
    """Child: a consumer of ``group``. Processes and XACKs each message it is given.

    It reads new messages with XREADGROUP (``>``); when there are none, it takes over
    messages left pending by other consumers for at least ``min_idle_ms`` with
    XAUTOCLAIM; it stops once nothing is pending for the group. Each processing and
    each successful XACK is logged in Redis (``<stream>:processed``, ``<stream>:acks``).

    With ``die_after_acks=k``, it reads one batch, processes all of it, acks only the
    first ``k``, sets ``ready`` and sleeps, so that its parent can kill it mid-work.
    """
    read: list[str] = []
    claimed: list[str] = []
    r = connect(url)
    try:
        deadline = time.monotonic() + timeout
        if die_after_acks is not None:
            reply = r.xreadgroup(group, consumer, {stream: ">"}, count=batch, block=1000)
            messages = reply[0][1] if reply else []
            for msg_id, fields in messages:
                _process_message(r, stream, consumer, msg_id, fields)
            for msg_id, _ in messages[:die_after_acks]:
                _ack(r, stream, group, consumer, msg_id)
            ready.set()
            while time.monotonic() < deadline:  # "still working" until killed
                time.sleep(0.05)
            return  # not reached in the demo: the parent kills us first
        for _ in range(100_000):
            if time.monotonic() > deadline:
                break
            reply = r.xreadgroup(group, consumer, {stream: ">"}, count=batch, block=100)
            messages = reply[0][1] if reply else []
            read += [msg_id for msg_id, _ in messages]
            if not messages:
                _, messages, _deleted = r.xautoclaim(stream, group, consumer, min_idle_time=min_idle_ms,
                                                     start_id="0-0", count=batch)
                messages = [(msg_id, fields) for msg_id, fields in messages if fields is not None]
                claimed += [msg_id for msg_id, _ in messages]
            if not messages:
                if r.xpending(stream, group)["pending"] == 0:
                    break
                continue
            for msg_id, fields in messages:
                _process_message(r, stream, consumer, msg_id, fields)
                _ack(r, stream, group, consumer, msg_id)
    finally:
        r.close()
    out.put({"consumer": consumer, "read": read, "claimed": claimed})


@dataclass
class StreamReport:
    """What happened to every message of a stream demo (see :func:`run_stream_group`)."""

    ids: list[str]
    dead_consumer_exitcode: int | None
    pending_after_death: dict
    consumers: dict[str, dict]
    processed: list[tuple[str, str]]
    acks: list[tuple[str, str]]
    results: dict[str, int]
    pending_at_end: int

    @property
    def claimed(self) -> list[str]:
        return sorted(i for c in self.consumers.values() for i in c["claimed"])


def run_stream_group(url: str, stream: str = "jobs", group: str = "workers", messages: int = 20,
                     batch: int = 5, acks_before_death: int = 2, survivors: int = 2,
                     min_idle_ms: int = 300, timeout: float = 30.0) -> StreamReport:
    """XADD ``messages`` jobs; a consumer dies mid-batch; ``survivors`` finish and claim its work.

    1. ``XADD`` jobs ``{"n": i}`` and ``XGROUP CREATE`` the group at the start of the stream.
    2. Consumer ``dies`` reads ``batch`` jobs, processes them, acks ``acks_before_death``,
       and is killed (SIGKILL) while its other jobs are still pending.
    3. ``survivors`` consumers read the rest and XAUTOCLAIM the dead one's pending jobs
       once they have been idle for ``min_idle_ms``.
    """
    _check_url(url)
    _check_str("stream", stream)
    _check_str("group", group)
    _check_int("messages", messages, 1, 10_000)
    _check_int("batch", batch, 1, messages)
    _check_int("acks_before_death", acks_before_death, 0, batch)
    _check_int("survivors", survivors, 1, 8)
    _check_int("min_idle_ms", min_idle_ms, 0, 60_000)
    timeout = _check_seconds("timeout", timeout)
    r = connect(url)
    ctx = mp.get_context()
    out = ctx.Queue()
    ready = ctx.Event()
    procs: list = []
    try:
        r.delete(stream, f"{stream}:results", f"{stream}:processed", f"{stream}:acks")
        ids = [r.xadd(stream, {"n": i}) for i in range(messages)]
        r.xgroup_create(stream, group, id="0")
        doomed = ctx.Process(target=stream_consumer, name="dies",
                             args=(url, stream, group, "dies", batch, min_idle_ms, timeout,
                                   acks_before_death, ready, out))
        procs.append(doomed)
        doomed.start()
        if not ready.wait(timeout):
            raise TimeoutError("the consumer that should die never finished its first batch")
        doomed.kill()  # SIGKILL: no clean-up, no goodbye, like a crash or an OOM kill
        doomed.join(timeout)
        pending_after_death = r.xpending(stream, group)
        names = [f"survivor-{i}" for i in range(survivors)]
        for name in names:
            p = ctx.Process(target=stream_consumer, name=name,
                            args=(url, stream, group, name, batch, min_idle_ms, timeout,
                                  None, ready, out))
            procs.append(p)
            p.start()
        reports = collect(out, count=survivors, timeout=timeout + 5)
        processed = [tuple(x.split(" ")) for x in r.lrange(f"{stream}:processed", 0, -1)]
        acks = [tuple(x.split(" ")) for x in r.lrange(f"{stream}:acks", 0, -1)]
        results = {k: int(v) for k, v in r.hgetall(f"{stream}:results").items()}
        pending_at_end = r.xpending(stream, group)["pending"]
    finally:
        try:
            join_all(procs, timeout=timeout + 5)
        finally:
            out.close()
            out.join_thread()
            r.close()
    return StreamReport(ids=ids, dead_consumer_exitcode=doomed.exitcode,
                        pending_after_death=pending_after_death,
                        consumers={rep["consumer"]: rep for rep in sorted(reports, key=lambda x: x["consumer"])},
                        processed=processed, acks=acks, results=results, pending_at_end=pending_at_end)


# --- fencing tokens ---------------------------------------------------------------

class FencedResource:
    """A store that remembers the highest fencing token it has accepted.

    A write carrying an older token than one already seen comes from a client whose
    lock has expired (someone else has been given a newer token since): it is refused.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.highest_token = 0
        self.value: str | None = None
        self.log: list[tuple[int, str, bool]] = []

    def write(self, token: int, value: str) -> bool:
        """Store ``value`` if ``token`` is at least the highest seen; True when accepted."""
        _check_int("token", token, 1)
        if not isinstance(value, str):
            raise TypeError(f"value must be a str, got {type(value).__name__}")
        with self._guard:
            accepted = token >= self.highest_token
            if accepted:
                self.highest_token = token
                self.value = value
            self.log.append((token, value, accepted))
        return accepted


# --- cache-aside -------------------------------------------------------------------

class SlowSource:
    """The expensive "database" behind a cache: counts how often it is asked."""

    def __init__(self, delay: float = 0.2) -> None:
        self.delay = _check_seconds("delay", delay, 10.0)
        self.hits = 0
        self._guard = threading.Lock()

    def load(self, key: str) -> str:
        _check_str("key", key)
        with self._guard:
            self.hits += 1
        time.sleep(self.delay)
        return f"value of {key}"


@dataclass
class CacheStats:
    """Counts kept by :func:`cache_aside_get` (thread-safe)."""

    hits: int = 0
    misses: int = 0
    late_hits: int = 0  # found in the cache after waiting for the lock
    errors: list[str] = field(default_factory=list)  # exception type names, cache unreachable
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, error: BaseException | None = None) -> None:
        with self._guard:
            if error is not None:
                self.errors.append(type(error).__name__)
            else:
                setattr(self, name, getattr(self, name) + 1)


def _check_cache_args(r, key, load, ttl, stats, after_miss) -> CacheStats:
    _check_client(r)
    _check_str("key", key)
    if not callable(load):
        raise TypeError("load must be callable: load(key) -> str")
    _check_int("ttl", ttl, 1)
    if stats is not None and not isinstance(stats, CacheStats):
        raise TypeError(f"stats must be a CacheStats or None, got {type(stats).__name__}")
    if after_miss is not None and not callable(after_miss):
        raise TypeError("after_miss must be callable or None")
    return stats if stats is not None else CacheStats()


def cache_aside_get(r: redis.Redis, key: str, load: Callable[[str], str], *, ttl: int = 60,
                    stats: CacheStats | None = None,
                    after_miss: Callable[[], Any] | None = None) -> str:
    """Cache-aside read: GET; on a miss, ``load(key)`` and SET it with a TTL.

    If Redis cannot be reached, the cache is skipped (the ``ConnectionError`` is counted
    in ``stats.errors``) and the value comes from the source: a cache is an optimisation,
    never the only way to an answer. ``after_miss`` is a hook for demonstrations.
    """
    stats = _check_cache_args(r, key, load, ttl, stats, after_miss)
    try:
        cached = r.get(key)
    except redis.ConnectionError as error:
        stats.add("errors", error)
        return load(key)
    if cached is not None:
        stats.add("hits")
        return cached
    stats.add("misses")
    if after_miss is not None:
        after_miss()
    value = load(key)
    try:
        r.set(key, value, ex=ttl)
    except redis.ConnectionError as error:
        stats.add("errors", error)
    return value


def cache_aside_get_locked(r: redis.Redis, key: str, load: Callable[[str], str], *, ttl: int = 60,
                           stats: CacheStats | None = None,
                           after_miss: Callable[[], Any] | None = None,
                           lock_timeout: float = 10.0, wait: float = 20.0) -> str:
    """Cache-aside with stampede protection: on a miss, only the holder of a lock loads.

    The others wait for the lock (at most ``wait`` seconds), then find the value that
    the first reader stored, so the source is asked once however many readers missed.
    """
    stats = _check_cache_args(r, key, load, ttl, stats, after_miss)
    _check_seconds("lock_timeout", lock_timeout)
    _check_seconds("wait", wait)
    cached = r.get(key)
    if cached is not None:
        stats.add("hits")
        return cached
    stats.add("misses")
    if after_miss is not None:
        after_miss()
    lock = r.lock(f"lock:{key}", timeout=lock_timeout, blocking_timeout=wait, sleep=0.01)
    if not lock.acquire():
        raise TimeoutError(f"no lock on {key!r} within {wait} s")
    try:
        cached = r.get(key)  # double-check: the holder before us may have filled it
        if cached is not None:
            stats.add("late_hits")
            return cached
        value = load(key)
        r.set(key, value, ex=ttl)
        return value
    finally:
        lock.release()


def run_readers(url: str, key: str, readers: int = 20, *, protected: bool, delay: float = 0.2,
                timeout: float = 30.0) -> dict:
    """``readers`` threads read one cold key at once; how often did the source get asked?

    A ``Barrier`` in the ``after_miss`` hook makes every reader check the cache before
    any of them loads: the worst case, built on purpose, so the counts are exact.
    Returns ``{"source_hits", "values", "stats"}``.
    """
    _check_url(url)
    _check_str("key", key)
    _check_int("readers", readers, 1, 100)
    if not isinstance(protected, bool):
        raise TypeError("protected must be True or False")
    timeout = _check_seconds("timeout", timeout)
    source = SlowSource(delay)
    stats = CacheStats()
    all_missed = threading.Barrier(readers, timeout=timeout)
    read = cache_aside_get_locked if protected else cache_aside_get
    r = connect(url)
    try:
        r.delete(key)
        with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="reader") as pool:
            futures = [pool.submit(read, r, key, source.load, stats=stats, after_miss=all_missed.wait)
                       for _ in range(readers)]
            values = [f.result(timeout=timeout) for f in futures]
    finally:
        r.close()
    return {"source_hits": source.hits, "values": values, "stats": stats}


# --- memory ----------------------------------------------------------------------------

def fill_keys(r: redis.Redis, count: int, size: int, prefix: str = "fill", batch: int = 500) -> int:
    """SET ``count`` keys of ``size`` bytes each, pipelined ``batch`` at a time; returns count."""
    _check_client(r)
    _check_int("count", count, 0, 10_000_000)
    _check_int("size", size, 1, 10_000_000)
    _check_str("prefix", prefix)
    _check_int("batch", batch, 1, 100_000)
    value = "x" * size
    for start in range(0, count, batch):
        with r.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + batch, count)):
                pipe.set(f"{prefix}:{i}", value)
            pipe.execute()
    return count
