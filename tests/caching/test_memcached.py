"""helpers.caching.memcached: chapter 13's clients, workers and measurements, on real memcached."""

from __future__ import annotations

import multiprocessing as mp
import queue

import pytest
from pymemcache.serde import pickle_serde

from helpers.caching import memcached as md
from helpers.instruments.services import start_memcached
from helpers.processes.basics import collect, join_all

METHODS = [m for m in ("fork", "spawn") if m in mp.get_all_start_methods()]


@pytest.fixture(scope="module")
def server():
    with start_memcached(use_env=False) as service:
        yield service


@pytest.fixture
def client(server):
    c = md.make_client(server)
    c.flush_all(noreply=False)
    yield c
    c.close()


def test_server_address_forms(server):
    assert md.server_address(server) == (server.host, server.port)
    assert md.server_address("127.0.0.1:11211") == ("127.0.0.1", 11211)
    assert md.server_address(("localhost", 1)) == ("localhost", 1)


@pytest.mark.parametrize(
    "bad, error",
    [
        ("nohost", ValueError),
        (":11", ValueError),
        ("h:port", ValueError),
        (("h", 0), ValueError),
        (("", 5), ValueError),
        (11211, TypeError),
        (("h", "5"), TypeError),
        (("h", 1, 2), TypeError),
    ],
)
def test_server_address_rejects(bad, error):
    with pytest.raises(error):
        md.server_address(bad)


def test_make_client_checks_arguments(server):
    with pytest.raises(ValueError):
        md.make_client(server, timeout=0)
    with pytest.raises(TypeError):
        md.make_client(server, timeout="1")
    with pytest.raises(TypeError):
        md.make_client(server, noreply=1)
    with pytest.raises(TypeError):
        md.make_client(server, serde=object())


def test_client_reports_real_answers(client):
    assert client.set("a", b"1") is True
    assert client.add("a", b"2") is False  # noreply off: the server's NOT_STORED comes back
    assert client.replace("missing", b"x") is False
    assert client.incr("missing", 1) is None
    assert client.get("a") == b"1"


def test_make_client_passes_the_serde(server):
    pickling = md.make_client(server, serde=pickle_serde)
    try:
        pickling.set("doc", {"a": (1, 2)})
        assert pickling.get("doc") == {"a": (1, 2)}
    finally:
        pickling.close()


def test_make_keys():
    assert md.make_keys("k", 3) == ["k:0000", "k:0001", "k:0002"]
    assert md.make_keys("k", 0) == []
    with pytest.raises(ValueError):
        md.make_keys("has space", 1)
    with pytest.raises(ValueError):
        md.make_keys("k", -1)
    with pytest.raises(TypeError):
        md.make_keys(5, 1)
    with pytest.raises(ValueError):
        md.make_keys("k", md.MAX_KEYS + 1)


def test_cas_and_naive_increment_in_one_process(client):
    assert md.cas_increment(client, "n") == 0  # created with add
    assert md.cas_increment(client, "n") == 0
    md.naive_increment(client, "n")
    assert client.get("n") == b"3"
    md.naive_increment(client, "fresh")
    assert client.get("fresh") == b"1"
    with pytest.raises(ValueError):
        md.cas_increment(client, "n", max_retries=-1)
    with pytest.raises(TypeError):
        md.cas_increment(client, b"n")
    with pytest.raises(ValueError):
        md.naive_increment(client, "")


class _AlwaysConflicting:
    """A fake client whose cas never wins: cas_increment must give up, not loop forever."""

    def gets(self, key):
        return b"1", b"7"

    def cas(self, key, value, token, noreply=False):
        return False


def test_cas_increment_gives_up_after_max_retries():
    with pytest.raises(RuntimeError, match="3 retries"):
        md.cas_increment(_AlwaysConflicting(), "n", max_retries=3)


@pytest.mark.parametrize("method", METHODS)
def test_increment_workers_lose_nothing_with_cas(server, client, method):
    ctx = mp.get_context(method)
    out, start = ctx.Queue(), ctx.Barrier(4)
    workers = [
        ctx.Process(target=md.increment_worker, args=(server.address, "shared", 200, "cas", out, start))
        for _ in range(3)
    ]
    for p in workers:
        p.start()
    start.wait(30)
    reports = collect(out, count=3, timeout=60)
    assert join_all(workers, timeout=30) == [0, 0, 0]
    assert [r.error for r in reports] == ["", "", ""]
    assert sum(r.increments for r in reports) == 600
    assert client.get("shared") == b"600"


def test_increment_worker_reports_errors_instead_of_raising():
    out = queue.Queue()
    md.increment_worker("127.0.0.1:1", "k", 5, "naive", out, timeout=1.0)  # nothing listens on port 1
    report = out.get(timeout=5)
    assert report.increments == 0 and report.error
    with pytest.raises(ValueError):
        md.increment_worker("127.0.0.1:1", "k", 5, "sometimes", out)
    with pytest.raises(ValueError):
        md.increment_worker("127.0.0.1:1", "k", -1, "cas", out)


def test_timing_helpers(client):
    keys = md.make_keys("t", 10)
    client.set_many({k: b"v" for k in keys})
    assert len(md.time_single_gets(client, keys, 2)) == 2
    assert len(md.time_get_many(client, keys, 3)) == 3
    result = md.compare_get_many(client, keys, 3)
    assert result.keys == 10 and result.repeat == 3 and result.ratio > 0
    with pytest.raises(RuntimeError):
        md.time_single_gets(client, ["absent"], 1)
    with pytest.raises(RuntimeError):
        md.time_get_many(client, ["absent"], 1)
    with pytest.raises(ValueError):
        md.compare_get_many(client, [], 1)
    with pytest.raises(ValueError):
        md.time_get_many(client, keys, 0)
    with pytest.raises(TypeError):
        md.time_single_gets(client, keys, 1.5)
