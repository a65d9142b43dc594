"""helpers.instruments.services: real servers start, answer, stop, and fail clearly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from helpers.instruments import services
from helpers.instruments.services import ServiceError, start_memcached, start_memcached_cluster, start_redis


# The tests start their own servers; a REDIS_URL or MEMCACHED_SERVERS in the environment
# must not change what they test.
@pytest.fixture(autouse=True)
def no_env_overrides(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("MEMCACHED_SERVERS", raising=False)


def roundtrip(host: str, port: int, request: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(request)
        time.sleep(0.05)
        return sock.recv(1024)


def test_redis_starts_answers_and_stops():
    with start_redis() as redis:
        assert redis.kind == "redis" and redis.host == "127.0.0.1"
        assert redis.url == f"redis://127.0.0.1:{redis.port}/0"
        assert redis.is_running() and redis.ping()
        assert roundtrip(redis.host, redis.port, b"SET k v\r\nGET k\r\n") == b"+OK\r\n$1\r\nv\r\n"
        # Nothing on disk: snapshots and the append-only file are both off.
        reply = roundtrip(redis.host, redis.port, b"CONFIG GET save\r\nCONFIG GET appendonly\r\n")
        assert b"$0\r\n\r\n" in reply and b"no" in reply
        pid, workdir = redis.pid, redis.workdir
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not redis.ping() and not redis.is_running()
    assert not workdir.exists()
    redis.close()  # closing twice is harmless


def test_memcached_starts_answers_and_stops():
    mc = start_memcached(memory_mb=8)
    try:
        assert mc.url == f"127.0.0.1:{mc.port}"
        assert roundtrip(mc.host, mc.port, b"set k 0 0 1\r\nv\r\nget k\r\n").startswith(b"STORED\r\nVALUE k 0 1\r\nv")
        cmdline = psutil.Process(mc.pid).cmdline()
        assert "-U" in cmdline and cmdline[cmdline.index("-U") + 1] == "0"  # UDP off
        process = psutil.Process(mc.pid)
        if os.geteuid() == 0:  # memcached refuses root: it runs as nobody, by setpriv or its own -u
            assert process.username() == "nobody"
            assert ("-u" in cmdline) == (services.pdeathsig_prefix() == [])
        else:
            assert "-u" not in cmdline and process.uids().real == os.getuid()
        assert cmdline[cmdline.index("-m") + 1] == "8"
    finally:
        mc.close()
    assert mc not in services.running_services()
    assert not mc.ping()


def test_cluster_of_three_distinct_ports():
    cluster = start_memcached_cluster(3, memory_mb=8)
    try:
        assert len({s.port for s in cluster}) == 3
        assert all(s.ping() for s in cluster)
    finally:
        for s in cluster:
            s.close()
    assert not any(s.ping() for s in cluster)


def test_stop_all_stops_every_private_server():
    a, b = start_redis(), start_memcached()
    assert {a, b} <= set(services.running_services())
    services.stop_all()
    assert not a.is_running() and not b.is_running()


def test_explicit_port_already_taken_is_a_clear_error():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(ServiceError, match=f"port {port} .* already in use"):
            start_redis(port=port)
        with pytest.raises(ServiceError, match="already in use"):
            start_memcached(port=port)


def test_explicit_free_port_is_used():
    port = services.free_port()
    with start_memcached(port=port) as mc:
        assert mc.port == port and mc.ping()


def test_server_that_dies_at_start_reports_its_log():
    started = time.monotonic()
    with pytest.raises(ServiceError, match=r"exited with code \d+ at start(.|\n)*no-such-option"):
        start_redis(extra_args=["--no-such-option", "1"])
    with pytest.raises(ServiceError, match="exited with code"):
        start_memcached(extra_args=["--no-such-flag"])
    assert time.monotonic() - started < 10
    assert services.running_services() == []


def test_redis_url_override_uses_existing_server(monkeypatch):
    with start_redis() as real:
        monkeypatch.setenv("REDIS_URL", real.url)
        pointer = start_redis()
        assert pointer.external and pointer.port == real.port and pointer.pid is None
        pointer.close()  # must leave the existing server running
        assert real.ping()


def test_redis_url_keeps_its_password_and_db(monkeypatch):
    with start_redis(extra_args=["--requirepass", "s3cret"]) as real:
        url = f"redis://:s3cret@127.0.0.1:{real.port}/2"
        monkeypatch.setenv("REDIS_URL", url)
        pointer = start_redis()
        assert pointer.external and pointer.url == url and pointer.ping()
        monkeypatch.setenv("REDIS_URL", f"redis://:wrong@127.0.0.1:{real.port}/0")
        with pytest.raises(ServiceError, match=r"redis://:\*\*\*@.*refuses its password") as failure:
            start_redis()
        assert "wrong" not in str(failure.value)


@pytest.mark.skipif(not services.pdeathsig_prefix(), reason="needs Linux and util-linux's setpriv")
def test_servers_die_with_the_process_that_started_them():
    # A parent that starts both servers and is then SIGKILLed: no atexit, no close().
    script = (
        "import sys, time\n"
        "from helpers.instruments.services import start_memcached, start_redis\n"
        "r, m = start_redis(use_env=False), start_memcached(use_env=False)\n"
        "print(r.pid, m.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        time.sleep(1)  # memcached may answer before it drops root: let it settle first
    finally:
        parent.kill()
        parent.wait(timeout=10)
        parent.stdout.close()

    def ended(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    deadline = time.monotonic() + 10
    while not all(ended(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [p for p in pids if not ended(p)]
    for pid in survivors:
        psutil.Process(pid).kill()
    assert survivors == []


def test_memcached_servers_override(monkeypatch):
    a, b = start_memcached(), start_memcached()
    try:
        monkeypatch.setenv("MEMCACHED_SERVERS", f"{a.address},{b.address}")
        first = start_memcached()
        assert first.external and first.port == a.port
        both = start_memcached_cluster(3)  # the list wins over the count
        assert [s.port for s in both] == [a.port, b.port]
        for s in both:
            s.close()
        assert a.ping() and b.ping()
    finally:
        a.close()
        b.close()


def test_overrides_that_do_not_answer_fail_fast(monkeypatch):
    port = services.free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    with pytest.raises(ServiceError, match="does not answer"):
        start_redis()
    monkeypatch.setenv("MEMCACHED_SERVERS", f"127.0.0.1:{port}")
    with pytest.raises(ServiceError, match="does not answer"):
        start_memcached()
    monkeypatch.setenv("MEMCACHED_SERVERS", "no-port-here")
    with pytest.raises(ValueError, match="host:port"):
        start_memcached()
    monkeypatch.setenv("REDIS_URL", "http://example:1")
    with pytest.raises(ValueError, match="redis://"):
        start_redis()


@pytest.mark.parametrize(
    "start, binary, package",
    [
        (start_redis, "redis-server", "redis-server"),
        (start_memcached, "memcached", "memcached"),
    ],
)
def test_missing_binary_names_the_package_at_once(monkeypatch, tmp_path, start, binary, package):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no server binaries
    began = time.monotonic()
    with pytest.raises(ServiceError, match=f"{binary} was not found.*apt-get install -y {package}"):
        start()
    assert time.monotonic() - began < 1.0


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: start_redis(port="6379"), TypeError),
        (lambda: start_redis(port=0), ValueError),
        (lambda: start_redis(port=70000), ValueError),
        (lambda: start_redis(timeout=0), ValueError),
        (lambda: start_redis(timeout="5"), TypeError),
        (lambda: start_redis(extra_args="--port 1"), TypeError),
        (lambda: start_redis(maxmemory=5), TypeError),
        (lambda: start_memcached(memory_mb=0), ValueError),
        (lambda: start_memcached(memory_mb=1.5), TypeError),
        (lambda: start_memcached_cluster(0), ValueError),
        (lambda: start_memcached_cluster("3"), TypeError),
        (lambda: services.port_is_free(-1), ValueError),
    ],
)
def test_bad_arguments_raise_clear_errors(call, error):
    with pytest.raises(error):
        call()
