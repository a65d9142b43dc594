"""helpers.threads.pools: the delay server, fetch, run_fetches and the small tools."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.error import HTTPError

import pytest

from helpers.instruments.speedup import JobRun
from helpers.instruments.timeline import TaskRecord, max_overlap
from helpers.threads.pools import (
    SERVER_THREAD_PREFIX,
    DelayServer,
    fetch,
    is_listening,
    run_fetches,
    timed_fetch,
    wait_until,
)

SCRIPTS = Path(__file__).resolve().parents[2] / "helpers" / "scripts"


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(SERVER_THREAD_PREFIX)]


@pytest.fixture
def server():
    with DelayServer(delay=0.02) as srv:
        yield srv
    assert _server_threads() == []


def test_fetch_returns_the_path_after_the_delay(server):
    assert server.running and server.url == f"http://127.0.0.1:{server.port}"
    start = time.perf_counter()
    assert fetch(server.url_for("/hello?x=1"), timeout=5) == "/hello?x=1"
    assert time.perf_counter() - start >= 0.02
    assert fetch(server.url_for("/slow", delay=0.05), timeout=5) == "/slow?delay=0.05"
    assert server.served == 2 and server.errors == []


def test_timeout_status_and_bad_delay(server):
    with pytest.raises(TimeoutError):
        fetch(server.url_for("/late", delay=1.0), timeout=0.1)
    with pytest.raises(HTTPError) as info:
        fetch(server.url_for("/status/404"), timeout=5)
    assert info.value.code == 404
    with pytest.raises(HTTPError) as info:
        fetch(server.url + "/x?delay=99", timeout=5)  # above max_delay
    assert info.value.code == 400
    with pytest.raises(HTTPError) as info:
        fetch(server.url + "/x?delay=abc", timeout=5)
    assert info.value.code == 400
    # the late request's thread finishes its sleep, fails to answer, and is counted silently
    assert wait_until(lambda: server.request_threads_alive() == 0, timeout=5)
    assert server.errors in ([], ["BrokenPipeError"], ["ConnectionResetError"])


def test_timed_fetch_and_run_fetches(server):
    rec = timed_fetch(3, server.url_for("/a"), 5)
    assert isinstance(rec, TaskRecord) and rec.task == 3 and rec.result == "/a"
    assert rec.thread == threading.current_thread().name
    server.reset_stats()
    run = run_fetches(4, server.url + "/", requests=12)
    assert isinstance(run, JobRun) and run.workers == 4
    assert run.result == [f"/item/{i}" for i in range(12)]
    assert {r.thread for r in run.records} <= {f"fetch4_{i}" for i in range(4)}
    assert max_overlap(run.records) <= 4 and 1 <= server.peak_in_flight <= 4
    assert server.served == 12
    assert not any(t.name.startswith("fetch4_") for t in threading.enumerate())


def test_reset_peak_keeps_the_served_count(server):
    server.reset_stats()
    run_fetches(4, server.url + "/", requests=8)
    assert server.peak_in_flight >= 2 and server.served == 8
    server.reset_peak()
    assert server.peak_in_flight == 0 and server.served == 8
    run_fetches(1, server.url + "/", requests=2)
    assert server.peak_in_flight == 1 and server.served == 10


def test_stop_closes_the_port_and_is_idempotent():
    srv = DelayServer(delay=0)
    assert "not started" in repr(srv)
    with pytest.raises(RuntimeError):
        _ = srv.port
    srv.start()
    port = srv.port
    with pytest.raises(RuntimeError):
        srv.start()
    assert is_listening(port) and "running" in repr(srv)
    srv.stop()
    srv.stop()
    assert not srv.running and not is_listening(port) and _server_threads() == []
    with pytest.raises(RuntimeError):
        _ = srv.served


def test_wait_until():
    assert wait_until(lambda: True, timeout=0)
    assert not wait_until(lambda: False, timeout=0.02, interval=0.005)
    flag = threading.Event()
    timer = threading.Timer(0.02, flag.set)
    timer.start()
    assert wait_until(flag.is_set, timeout=5)
    timer.join(5)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: DelayServer(delay=-1), ValueError),
        (lambda: DelayServer(delay="1"), TypeError),
        (lambda: DelayServer(delay=10, max_delay=5), ValueError),
        (lambda: DelayServer(delay=float("nan")), ValueError),
        (lambda: DelayServer(host=1), TypeError),
        (lambda: fetch(123), TypeError),
        (lambda: fetch("ftp://x"), ValueError),
        (lambda: fetch("http://127.0.0.1:1/", timeout=0), ValueError),
        (lambda: fetch("http://127.0.0.1:1/", timeout=True), TypeError),
        (lambda: timed_fetch(-1, "http://127.0.0.1:1/"), ValueError),
        (lambda: run_fetches(0, "http://127.0.0.1:1"), ValueError),
        (lambda: run_fetches(2.0, "http://127.0.0.1:1"), TypeError),
        (lambda: run_fetches(2, "http://127.0.0.1:1", requests=0), ValueError),
        (lambda: wait_until(1), TypeError),
        (lambda: wait_until(lambda: True, interval=0), ValueError),
        (lambda: is_listening("80"), TypeError),
        (lambda: is_listening(0), ValueError),
    ],
)
def test_bad_input(call, error):
    with pytest.raises(error):
        call()


def test_url_for_checks_its_path():
    srv = DelayServer(delay=0, max_delay=1)
    with srv:
        assert srv.url_for("/a?b=2", delay=0.5).endswith("/a?b=2&delay=0.5")
        with pytest.raises(ValueError):
            srv.url_for("a")
        with pytest.raises(TypeError):
            srv.url_for(None)
        with pytest.raises(ValueError):
            srv.url_for("/a", delay=2)
    with pytest.raises(ValueError):
        srv.stop(timeout=0)


def test_load_stats_and_table():
    from helpers.threads.pools import LoadStats, format_throughput_table, load_stats

    recs = tuple(TaskRecord(i, 1, "t", 10.0 + 0.1 * (i // 2), 10.1 + 0.1 * (i // 2)) for i in range(8))
    run = JobRun(workers=2, elapsed=0.4, records=recs)
    stats = load_stats(run)
    assert isinstance(stats, LoadStats) and stats.requests == 8
    assert stats.throughput == pytest.approx(20.0) and stats.mean_latency == pytest.approx(0.1)
    assert stats.in_flight == pytest.approx(2.0)
    one = JobRun(workers=1, elapsed=0.8, records=recs)
    table = format_throughput_table([run, one]).splitlines()
    assert table[2].startswith("| 1 | 0.80 s | 10 | 100.0 ms | 1.0 | 1.00× |")
    assert table[3].endswith("| 2.00× |")
    with pytest.raises(TypeError):
        load_stats("run")
    with pytest.raises(ValueError):
        load_stats(JobRun(workers=1, elapsed=1.0))
    with pytest.raises(ValueError):
        format_throughput_table([])


def test_fetch_timeout_bounds_each_read_not_the_whole_request():
    """A server that sends its answer a byte every 0.1 s: no read waits 0.3 s, the request takes 0.5 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            conn.recv(4096)  # the request
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n")
            for byte in b"hello":
                time.sleep(0.1)
                conn.sendall(bytes([byte]))

    thread = threading.Thread(target=trickle, name="test-trickle", daemon=True)
    thread.start()
    try:
        start = time.perf_counter()
        assert fetch(f"http://127.0.0.1:{port}/", timeout=0.3) == "hello"
        assert time.perf_counter() - start >= 0.5  # longer than the timeout, and no TimeoutError
    finally:
        thread.join(5)
        listener.close()
    assert not thread.is_alive()


def test_pool_exit_wait_script_waits_for_the_task():
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "pool_exit_wait.py")], capture_output=True, text=True, timeout=60
    )
    elapsed = time.perf_counter() - start
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == [
        "main: 1 worker thread; daemon: [False]",
        "main: shutdown(wait=False) returned; the script ends here",
        "task: slept 0.5 s, after the main thread had finished",
    ]
    assert elapsed >= 0.5


def test_pool_exit_wait_script_rejects_arguments():
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "pool_exit_wait.py"), "--bogus"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "usage" in result.stderr
