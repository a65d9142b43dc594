"""helpers.caching.basics: slow source, TTL cache with a manual clock, cache-aside, latency helpers."""

from __future__ import annotations

import re
import threading
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from helpers.caching.basics import (
    KNOWN_MISSING,
    CacheAside,
    ManualClock,
    SlowSource,
    TTLCache,
    format_duration,
    ladder_table,
    median_latency,
    plot_latency_ladder,
)

SANITIZED_DURATION = re.compile(r"[-+]?\b\d+(\.\d+)?(e-?\d+)? ?(s|ms|µs|us|ns|sec|seconds)\b")


def test_slow_source_sleeps_counts_and_writes():
    source = SlowSource(delay=0.02, data={"a": 1})
    start = time.perf_counter()
    assert source("a") == 1
    assert time.perf_counter() - start >= 0.02
    assert source("b") == "value-of-b"
    source.write("a", 2)
    assert source("a") == 2
    assert (source.calls, source.writes) == (3, 1)
    source.reset_counts()
    assert (source.calls, source.writes) == (0, 0)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"delay": -1}, ValueError),
        ({"delay": 11}, ValueError),
        ({"delay": "1"}, TypeError),
        ({"delay": True}, TypeError),
        ({"data": [1]}, TypeError),
    ],
)
def test_slow_source_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        SlowSource(**kwargs)


def test_slow_source_rejects_unhashable_keys():
    source = SlowSource(delay=0)
    with pytest.raises(TypeError):
        source(["a"])
    with pytest.raises(TypeError):
        source.write(["a"], 1)


def test_slow_source_counts_every_read_from_many_threads():
    # The count is guarded by a lock: exact on every build, free-threaded ones included.
    source = SlowSource(delay=0)
    start = threading.Barrier(8, timeout=10)

    def read_many():
        start.wait()
        for _ in range(2_000):
            source("k")

    threads = [threading.Thread(target=read_many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert source.calls == 8 * 2_000


def test_manual_clock():
    clock = ManualClock(10)
    assert clock() == 10.0
    assert clock.advance(2.5) == 12.5 and clock() == 12.5
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(TypeError):
        ManualClock("0")


def test_ttl_cache_expires_entries_on_the_injected_clock():
    clock = ManualClock()
    cache = TTLCache(ttl=10, clock=clock)
    cache.set("k", "v")
    clock.advance(9.9)
    assert cache.get("k") == "v" and "k" in cache
    clock.advance(0.1)
    assert "k" not in cache
    assert cache.get("k", "gone") == "gone"
    assert (cache.hits, cache.misses, cache.expirations) == (1, 1, 1)
    assert len(cache) == 0


def test_ttl_cache_per_entry_ttl_purge_delete_clear():
    clock = ManualClock()
    cache = TTLCache(ttl=10, clock=clock)
    cache.set("short", 1, ttl=1)
    cache.set("long", 2)
    clock.advance(5)
    assert len(cache) == 2 and cache.purge_expired() == 1 and len(cache) == 1
    assert cache.delete("long") and not cache.delete("long")
    cache.set("x", 3)
    cache.clear()
    assert len(cache) == 0 and cache.get("x") is None


def test_ttl_cache_with_the_real_clock():
    cache = TTLCache(ttl=0.05)
    cache.set("k", "v")
    assert cache.get("k") == "v"
    time.sleep(0.08)
    assert cache.get("k") is None


def test_ttl_cache_maxsize_evicts_least_recently_used():
    cache = TTLCache(ttl=60, maxsize=2, clock=ManualClock())
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.set("c", 3)
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.evictions == 1 and len(cache) == 2


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"ttl": 0}, ValueError),
        ({"ttl": -1}, ValueError),
        ({"ttl": "1"}, TypeError),
        ({"ttl": 1, "maxsize": 0}, ValueError),
        ({"ttl": 1, "maxsize": 1.5}, TypeError),
        ({"ttl": 1, "clock": 5}, TypeError),
    ],
)
def test_ttl_cache_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        TTLCache(**kwargs)


def test_ttl_cache_rejects_bad_set():
    cache = TTLCache(ttl=1)
    with pytest.raises(TypeError):
        cache.set(["unhashable"], 1)
    with pytest.raises(ValueError):
        cache.set("k", 1, ttl=0)


def test_cache_aside_loads_once_and_deletes_on_write():
    source = SlowSource(delay=0)
    store: dict = {}
    aside = CacheAside(source, store.get, store.__setitem__, lambda k: store.pop(k, None), save=source.write)
    assert [aside.read("k") for _ in range(3)] == ["value-of-k"] * 3
    assert source.calls == 1 and (aside.hits, aside.misses) == (2, 1)
    aside.write("k", "new")
    assert "k" not in store and aside.read("k") == "new" and source.calls == 2


def test_cache_aside_without_invalidation_reads_stale_values():
    source = SlowSource(delay=0)
    cache = TTLCache(ttl=60, clock=ManualClock())
    aside = CacheAside(source, cache.get, cache.set, cache.delete)
    aside.read("k")
    source.write("k", "new")
    assert aside.read("k") == "value-of-k"  # stale
    aside.invalidate("k")
    assert aside.read("k") == "new"


def test_cache_aside_encode_decode():
    store: dict = {}
    aside = CacheAside(lambda k: f"v{k}", store.get, store.__setitem__, encode=str.encode, decode=bytes.decode)
    assert aside.read(1) == "v1" and store[1] == b"v1" and aside.read(1) == "v1"


def test_slow_source_known_only_reads_missing_keys_as_none():
    source = SlowSource(delay=0, data={"a": 1}, known_only=True)
    assert source("a") == 1 and source("b") is None and source.calls == 2
    with pytest.raises(TypeError):
        SlowSource(delay=0, known_only=1)


def test_cache_aside_negative_caching_with_its_own_ttl():
    clock = ManualClock()
    source = SlowSource(delay=0, known_only=True)
    cache = TTLCache(ttl=60, clock=clock)
    aside = CacheAside(source, cache.get, cache.set, set_missing=lambda k, marker: cache.set(k, marker, ttl=5))
    assert [aside.read("ghost") for _ in range(3)] == [None] * 3
    assert source.calls == 1 and cache.get("ghost") == KNOWN_MISSING
    assert (aside.hits, aside.misses, aside.missing_hits) == (2, 1, 2)
    clock.advance(5)  # the marker's own short TTL ends; the next read asks the source again
    source.write("ghost", "now here")
    assert aside.read("ghost") == "now here" and source.calls == 2


def test_cache_aside_negative_caching_encodes_the_marker():
    store: dict = {}
    aside = CacheAside(
        lambda k: None,
        store.get,
        store.__setitem__,
        encode=str.encode,
        decode=bytes.decode,
        set_missing=store.__setitem__,
    )
    assert aside.read("k") is None and store["k"] == KNOWN_MISSING.encode()
    assert aside.read("k") is None and aside.missing_hits == 1
    with pytest.raises(TypeError):
        CacheAside(str, store.get, store.__setitem__, set_missing="no")


def test_cache_aside_errors():
    store: dict = {}
    with pytest.raises(TypeError):
        CacheAside("not callable", store.get, store.__setitem__)
    with pytest.raises(TypeError):
        CacheAside(str, store.get, store.__setitem__, save=3)
    aside = CacheAside(lambda k: None, store.get, store.__setitem__)
    with pytest.raises(ValueError):
        aside.read("k")
    with pytest.raises(TypeError):
        aside.invalidate("k")
    with pytest.raises(TypeError):
        aside.write("k", 1)


def test_median_latency_of_a_sleep():
    seconds = median_latency(lambda: time.sleep(0.002), number=2, repeat=3)
    assert 0.002 <= seconds < 0.5
    assert median_latency(lambda: None, number=1000, repeat=3) < 1e-3


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"operation": 1}, TypeError),
        ({"operation": print, "number": 0}, ValueError),
        ({"operation": print, "repeat": 0}, ValueError),
        ({"operation": print, "number": 1.0}, TypeError),
    ],
)
def test_median_latency_rejects_bad_arguments(kwargs, error):
    operation = kwargs.pop("operation")
    with pytest.raises(error):
        median_latency(operation, **kwargs)


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0 ns"),
        (8.5e-8, "85 ns"),
        (3.14e-6, "3.14 µs"),
        (5.2e-2, "52.0 ms"),
        (0.25, "250 ms"),
        (1.2, "1.20 s"),
        (150, "150 s"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
    assert SANITIZED_DURATION.fullmatch(text)


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1e7, ValueError), ("1", TypeError), (None, TypeError)])
def test_format_duration_rejects_bad_input(value, error):
    with pytest.raises(error):
        format_duration(value)


def test_ladder_table_sanitizes_to_the_same_text():
    one = ladder_table({"dict hit": 5e-8, "slow source": 0.05})
    other = ladder_table({"dict hit": 9.1e-8, "slow source": 0.0512})

    def hide(text):
        return re.sub(r"\b\d+(\.\d+)?×", "<ratio>×", SANITIZED_DURATION.sub("<time>", text))

    assert hide(one) == hide(other)
    assert "1.0×" in one and "1000000×" in one


@pytest.mark.parametrize(
    "latencies, error",
    [
        ({}, TypeError),
        ([1], TypeError),
        ({"a": 0}, ValueError),
        ({"a": "1"}, ValueError),
        ({1: 1.0}, TypeError),
    ],
)
def test_ladder_helpers_reject_bad_input(latencies, error):
    with pytest.raises(error):
        ladder_table(latencies)
    with pytest.raises(error):
        plot_latency_ladder(latencies)


def test_plot_latency_ladder_uses_a_log_scale():
    ax = plot_latency_ladder({"a": 1e-7, "b": 1e-3})
    try:
        assert ax.get_xscale() == "log" and len(ax.patches) == 2
    finally:
        plt.close(ax.figure)
