"""helpers.caching.redis_patterns: chapter 14's workers and patterns, against a real private redis-server."""
from __future__ import annotations

import multiprocessing as mp
import threading
from collections import Counter

import pytest
import redis

from helpers.caching import redis_patterns as rd
from helpers.instruments.services import start_redis


@pytest.fixture(scope="module")
def server():
    service = start_redis(use_env=False)
    yield service
    service.close()


@pytest.fixture
def r(server):
    client = rd.connect(server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(autouse=True)
def nothing_left_running():
    threads = threading.active_count()
    yield
    assert mp.active_children() == []
    assert threading.active_count() == threads


def test_connect_decodes_and_checks_url(r):
    r.set("k", "v")
    assert r.get("k") == "v"
    with pytest.raises(ValueError):
        rd.connect("http://localhost:6379")
    with pytest.raises(TypeError):
        rd.connect(6379)


@pytest.mark.parametrize("mode", rd.SET_MODES)
def test_time_sets_writes_every_key(r, mode):
    seconds = rd.time_sets(r, 200, mode, prefix=mode)
    assert seconds > 0
    assert r.get(f"{mode}:199") == "199" and r.dbsize() == 200


@pytest.mark.parametrize("args, error", [
    ((0, "pipeline"), ValueError), ((10, "batch"), ValueError), ((1.5, "mset"), TypeError),
])
def test_time_sets_bad_input(r, args, error):
    with pytest.raises(error):
        rd.time_sets(r, *args)
    with pytest.raises(TypeError):
        rd.time_sets("not a client", 10, "mset")


def test_redis_benchmark_reports_a_rate_or_none(server):
    rate = rd.redis_benchmark(server.host, server.port, requests=2_000, pipeline=16)
    assert rate is None or rate > 0
    with pytest.raises(ValueError):
        rd.redis_benchmark(server.host, 0)
    with pytest.raises(ValueError):
        rd.redis_benchmark(server.host, server.port, pipeline=0)


def test_run_incr_is_exact(server, r):
    assert rd.run_incr(server.url, "n", processes=3, times=200) == [200, 200, 200]
    assert r.get("n") == "600"


@pytest.mark.parametrize("kwargs, error", [
    ({"processes": 0}, ValueError), ({"times": -1}, ValueError), ({"times": "5"}, TypeError),
])
def test_run_incr_bad_input(server, kwargs, error):
    with pytest.raises(error):
        rd.run_incr(server.url, "n", **kwargs)


def test_transfer_retries_after_a_concurrent_write(server, r):
    r.mset({"a": 10, "b": 0})
    other = rd.connect(server.url)
    calls = []

    def meddle():
        if not calls:
            other.incr("a")
        calls.append(1)

    try:
        assert rd.transfer(r, "a", "b", 5, between=meddle) == (True, 1)
    finally:
        other.close()
    assert (r.get("a"), r.get("b")) == ("6", "5")
    assert rd.transfer(r, "b", "a", 50) == (False, 0)  # not enough: declined, unchanged
    assert r.get("b") == "5"


def test_transfer_bad_input(r):
    with pytest.raises(ValueError):
        rd.transfer(r, "a", "a", 1)
    with pytest.raises(ValueError):
        rd.transfer(r, "a", "b", 0)
    with pytest.raises(TypeError):
        rd.transfer(r, "a", "b", 1, between="no")


def test_run_transfers_conserves_the_total(server, r):
    r.mset({"x": 50, "y": 50})
    reports = rd.run_transfers(server.url, ("x", "y"), processes=3, transfers=60)
    assert sum(rep["moved"] + rep["declined"] for rep in reports) == 180
    assert int(r.get("x")) + int(r.get("y")) == 100
    with pytest.raises(TypeError):
        rd.run_transfers(server.url, ("x", "x"))


def test_pubsub_delivers_everything_in_order(server):
    run = rd.run_pubsub(server.url, "chan", ["one", "two", "three"])
    assert run == {"receivers": [1, 1, 1], "received": ["one", "two", "three"]}
    with pytest.raises(TypeError):
        rd.run_pubsub(server.url, "chan", "not a list")


def test_wait_for_subscribers_times_out(r):
    with pytest.raises(TimeoutError):
        rd.wait_for_subscribers(r, "nobody", 1, timeout=0.1)
    with pytest.raises(ValueError):
        rd.wait_for_subscribers(r, "nobody", 0)


def test_work_queue_processes_each_item_once(server, r):
    done = rd.run_work_queue(server.url, "q", items=50, consumers=2)
    assert sorted(done) == ["consumer-0", "consumer-1"]
    assert sorted(i for items in done.values() for i in items) == list(range(50))
    assert r.llen("q") == 0
    with pytest.raises(ValueError):
        rd.run_work_queue(server.url, "q", consumers=0)


def test_stream_group_recovers_a_dead_consumers_work(server):
    report = rd.run_stream_group(server.url, stream="s", messages=8, batch=4, acks_before_death=1,
                                 survivors=1, min_idle_ms=100)
    acked = Counter(msg_id for _, msg_id in report.acks)
    assert sorted(acked) == sorted(report.ids) and set(acked.values()) == {1}
    assert report.pending_after_death["pending"] == 3 and report.pending_at_end == 0
    assert report.claimed == sorted(report.ids[1:4])
    assert report.results == {msg_id: i * i for i, msg_id in enumerate(report.ids)}


@pytest.mark.parametrize("kwargs, error", [
    ({"messages": 0}, ValueError), ({"batch": 3, "acks_before_death": 4}, ValueError),
    ({"survivors": 1.0}, TypeError), ({"min_idle_ms": -1}, ValueError),
])
def test_stream_group_bad_input(server, kwargs, error):
    with pytest.raises(error):
        rd.run_stream_group(server.url, **kwargs)


def test_fenced_resource_rejects_stale_tokens():
    store = rd.FencedResource()
    assert store.write(2, "new") is True
    assert store.write(1, "old") is False
    assert store.write(2, "again") is True
    assert store.value == "again" and store.highest_token == 2
    with pytest.raises(ValueError):
        store.write(0, "x")
    with pytest.raises(TypeError):
        store.write(3, b"x")


def test_cache_aside_hits_after_a_miss(r):
    source = rd.SlowSource(delay=0)
    stats = rd.CacheStats()
    assert rd.cache_aside_get(r, "k", source.load, ttl=5, stats=stats) == "value of k"
    assert rd.cache_aside_get(r, "k", source.load, ttl=5, stats=stats) == "value of k"
    assert source.hits == 1 and (stats.hits, stats.misses) == (1, 1)
    assert 0 < r.ttl("k") <= 5


def test_cache_aside_falls_back_when_redis_is_down():
    service = start_redis(use_env=False)
    client = rd.connect(service.url, socket_connect_timeout=0.5, socket_timeout=0.5)
    service.close()
    try:
        stats = rd.CacheStats()
        source = rd.SlowSource(delay=0)
        assert rd.cache_aside_get(client, "k", source.load, stats=stats) == "value of k"
        assert stats.errors == ["ConnectionError"] and source.hits == 1
    finally:
        client.close()


def test_cache_aside_bad_input(r):
    with pytest.raises(TypeError):
        rd.cache_aside_get(r, "k", "not callable")
    with pytest.raises(ValueError):
        rd.cache_aside_get(r, "k", str, ttl=0)
    with pytest.raises(TypeError):
        rd.cache_aside_get(r, "k", str, stats={})
    with pytest.raises(ValueError):
        rd.SlowSource(delay=-1)


@pytest.mark.parametrize("protected, hits", [(False, 5), (True, 1)])
def test_readers_stampede_counts(server, protected, hits):
    run = rd.run_readers(server.url, "hot", readers=5, protected=protected, delay=0.05)
    assert run["source_hits"] == hits
    assert set(run["values"]) == {"value of hot"}


def test_run_readers_bad_input(server):
    with pytest.raises(TypeError):
        rd.run_readers(server.url, "hot", protected=1)
    with pytest.raises(ValueError):
        rd.run_readers(server.url, "hot", readers=0, protected=True)


def test_fill_keys_under_maxmemory_evicts():
    with start_redis(maxmemory="1mb", maxmemory_policy="allkeys-lru", use_env=False) as small:
        client = rd.connect(small.url)
        try:
            assert rd.fill_keys(client, 2_000, 1_024, prefix="f") == 2_000
            assert int(client.info("stats")["evicted_keys"]) > 0
            assert client.dbsize() < 2_000
        finally:
            client.close()
    with pytest.raises(ValueError):
        unused = redis.Redis()
        try:
            rd.fill_keys(unused, -1, 10)
        finally:
            unused.close()
