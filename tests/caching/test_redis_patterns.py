"""helpers.caching.redis_patterns: chapter 14's INCR workers, timings and fill, against a real private redis-server."""

from __future__ import annotations

import multiprocessing as mp
import threading

import pytest

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


@pytest.mark.parametrize(
    "args, error",
    [
        ((0, "pipeline"), ValueError),
        ((10, "batch"), ValueError),
        ((1.5, "mset"), TypeError),
    ],
)
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


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"processes": 0}, ValueError),
        ({"times": -1}, ValueError),
        ({"times": "5"}, TypeError),
    ],
)
def test_run_incr_bad_input(server, kwargs, error):
    with pytest.raises(error):
        rd.run_incr(server.url, "n", **kwargs)
