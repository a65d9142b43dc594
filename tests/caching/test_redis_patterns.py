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


def test_redis_benchmark_reports_a_rate_or_none(server):
    rate = rd.redis_benchmark(server.host, server.port, requests=2_000, pipeline=16)
    assert rate is None or rate > 0
    with pytest.raises(ValueError):
        rd.redis_benchmark(server.host, 0)
    with pytest.raises(ValueError):
        rd.redis_benchmark(server.host, server.port, pipeline=0)


def test_run_incr_is_exact(server, r):
    replies = rd.run_incr(server.url, "n", processes=3, times=200)
    assert [len(child) for child in replies] == [200, 200, 200]
    assert all(child == sorted(child) for child in replies)  # one client's INCRs run in order
    assert sorted(n for child in replies for n in child) == list(range(1, 601))  # each value once
    assert r.get("n") == "600"


def test_run_incr_replies_continue_from_the_current_value(server, r):
    r.set("n", 10)
    assert rd.run_incr(server.url, "n", processes=1, times=3) == [[11, 12, 13]]


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
