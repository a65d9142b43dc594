"""Unit tests for helpers.coroutines.gevent_basics and the gevent scripts (chapter 10)."""
from __future__ import annotations

import json
import subprocess
import sys

import gevent
import gevent.event
import gevent.lock
import gevent.pool
import gevent.queue
import pytest

from helpers.coroutines import gevent_basics as gd
from helpers.instruments.timeline import TaskRecord, max_overlap


@pytest.fixture(autouse=True)
def no_greenlets_left():
    yield
    left = gd.unfinished_gevent_greenlets()
    gevent.killall(left, timeout=2)
    assert left == [], f"a test left greenlets running: {left}"


# --------------------------------------------------------------------------- small tasks

def test_fetch_overlaps_and_returns():
    greenlets = [gevent.spawn(gd.fetch, name, 0.1) for name in "abc"]
    done = gevent.joinall(greenlets, timeout=5)
    assert len(done) == 3
    assert [g.value for g in greenlets] == ["a: done", "b: done", "c: done"]


@pytest.mark.parametrize("args, error", [
    ((1, 0.1), TypeError), (("x", -1), ValueError), (("x", True), TypeError),
    (("x", "0.1"), TypeError), (("x", 61), ValueError),
])
def test_fetch_rejects_bad_input(args, error):
    with pytest.raises(error):
        gd.fetch(*args)


def test_take_turns_alternates():
    log = []
    gevent.joinall([gevent.spawn(gd.take_turns, "a", 2, log),
                    gevent.spawn(gd.take_turns, "b", 2, log)], timeout=5)
    assert log == ["a0", "b0", "a1", "b1"]


@pytest.mark.parametrize("args, error", [
    ((1, 2, []), TypeError), (("a", 2, ()), TypeError), (("a", -1, []), ValueError),
    (("a", 1.5, []), TypeError), (("a", 10_000, []), ValueError),
])
def test_take_turns_rejects_bad_input(args, error):
    with pytest.raises(error):
        gd.take_turns(*args)


def test_ticker_returns_start_and_ticks():
    times = gd.ticker(0.001, 5)
    assert len(times) == 6 and times == sorted(times)
    with pytest.raises(ValueError):
        gd.ticker(0.01, -1)


def test_block_thread_blocks_and_is_bounded():
    assert gd.block_thread(0.01) >= 0.01
    with pytest.raises(ValueError):
        gd.block_thread(3)


def test_nap_record_and_pack_into_lanes():
    pool = gevent.pool.Pool(2)
    records = list(pool.imap_unordered(gd.nap_record, range(5), [0.02, 0.04, 0.02, 0.04, 0.02]))
    assert all(isinstance(r, TaskRecord) for r in records)
    assert max_overlap(records) <= 2
    packed = gd.pack_into_lanes(records)
    assert {r.thread for r in packed} <= {"slot 0", "slot 1"}
    assert sorted(r.task for r in packed) == list(range(5))
    # no two tasks in one lane overlap
    for lane in {r.thread for r in packed}:
        in_lane = sorted((r for r in packed if r.thread == lane), key=lambda r: r.start)
        assert all(a.end <= b.start for a, b in zip(in_lane, in_lane[1:]))


def test_pack_into_lanes_rejects_bad_input():
    with pytest.raises(TypeError):
        gd.pack_into_lanes([])
    with pytest.raises(TypeError):
        gd.pack_into_lanes([("not", "a record")])


# --------------------------------------------------------------------------- failures and the hub

def test_quiet_hub_records_failure_and_restores(capsys):
    hub = gevent.get_hub()
    before = hub.NOT_ERROR
    with gd.quiet_hub(ValueError):
        g = gevent.spawn(gd.fail_after, 0, "boom")
        g.join(timeout=2)
    assert hub.NOT_ERROR == before
    assert not g.successful() and str(g.exception) == "boom"
    assert capsys.readouterr().err == ""


def test_capture_hub_errors_captures_and_restores(capsys):
    hub = gevent.get_hub()
    with gd.capture_hub_errors() as stream:
        g = gevent.spawn(gd.fail_after, 0, "captured")
        g.join(timeout=2)
    assert "ValueError: captured" in stream.getvalue()
    assert "exception_stream" not in vars(hub)
    assert capsys.readouterr().err == ""


def test_quiet_hub_rejects_bad_input():
    with pytest.raises(ValueError):
        with gd.quiet_hub():
            pass
    with pytest.raises(TypeError):
        with gd.quiet_hub("ValueError"):
            pass


def test_fail_after_rejects_bad_message():
    with pytest.raises(TypeError):
        gd.fail_after(0, 42)


# --------------------------------------------------------------------------- queue, event, semaphore

def test_produce_and_consume_share_every_item():
    queue = gevent.queue.Queue(maxsize=2)
    producer = gevent.spawn(gd.produce, queue, list(range(8)), 2)
    consumers = [gevent.spawn(gd.consume, queue, 0.001) for _ in range(2)]
    gevent.joinall([producer, *consumers], timeout=5)
    assert producer.value == 8
    assert sorted(consumers[0].value + consumers[1].value) == list(range(8))


def test_consume_times_out_on_silent_producer():
    with pytest.raises(gevent.queue.Empty):
        gd.consume(gevent.queue.Queue(), 0, timeout=0.01)


@pytest.mark.parametrize("call", [
    lambda: gd.produce([], [1], 1), lambda: gd.produce(gevent.queue.Queue(), [1], 0),
    lambda: gd.consume([], 0),
])
def test_queue_helpers_reject_bad_input(call):
    with pytest.raises((TypeError, ValueError)):
        call()


def test_wait_for_event():
    event = gevent.event.Event()
    waiter = gevent.spawn(gd.wait_for_event, event, 2)
    gevent.sleep(0.01)
    event.set()
    assert waiter.get(timeout=2)[0] is True
    assert gd.wait_for_event(gevent.event.Event(), 0.01)[0] is False
    with pytest.raises(TypeError):
        gd.wait_for_event(object(), 1)


def test_deliver_value_and_error():
    result = gevent.event.AsyncResult()
    gevent.spawn(gd.deliver, result, "v", 0.01)
    assert result.get(timeout=2) == "v"
    failed = gevent.event.AsyncResult()
    gevent.spawn(gd.deliver, failed, None, 0.01, error=KeyError("k"))
    with pytest.raises(KeyError):
        failed.get(timeout=2)
    with pytest.raises(TypeError):
        gd.deliver(object(), 1, 0)
    with pytest.raises(TypeError):
        gd.deliver(gevent.event.AsyncResult(), 1, 0, error="not an exception")


def test_use_connection_respects_the_limit():
    semaphore = gevent.lock.BoundedSemaphore(2)
    tracker = gd.ConcurrencyTracker()
    users = [gevent.spawn(gd.use_connection, semaphore, tracker, 0.01) for _ in range(5)]
    gevent.joinall(users, timeout=5)
    assert all(u.value for u in users)
    assert tracker.peak == 2 and tracker.entered == 5 and tracker.active == 0


def test_use_connection_times_out_and_rejects_bad_input():
    semaphore = gevent.lock.BoundedSemaphore(1)
    semaphore.acquire(timeout=1)
    try:
        assert gd.use_connection(semaphore, gd.ConcurrencyTracker(), 0, timeout=0.01) is False
    finally:
        semaphore.release()
    with pytest.raises(TypeError):
        gd.use_connection(object(), gd.ConcurrencyTracker(), 0)
    with pytest.raises(TypeError):
        gd.use_connection(semaphore, object(), 0)


# --------------------------------------------------------------------------- echo server

def test_echo_server_serves_concurrent_clients():
    handler = gd.EchoHandler(read_timeout=5)
    server = gd.start_echo_server(handler=handler)
    try:
        assert server.address[0] == "127.0.0.1" and server.address[1] > 0
        report = gd.run_echo_clients(server.address, 30, timeout=10, pause=0.02)
        assert gd.echo_once(server.address, b"x" * 10_000, timeout=5) == b"x" * 10_000
    finally:
        server.stop(timeout=5)
    assert server.closed
    assert report.echoed_correctly == 30 and report.failures == []
    assert handler.served == 31 and handler.errors == [] and handler.peak > 1


def test_echo_server_with_a_pool_limits_handlers():
    handler = gd.EchoHandler()
    server = gd.start_echo_server(handler=handler, spawn=gevent.pool.Pool(3))
    try:
        report = gd.run_echo_clients(server.address, 12, timeout=10, pause=0.01)
    finally:
        server.stop(timeout=5)
    assert report.echoed_correctly == 12 and handler.peak <= 3


def test_run_echo_clients_reports_refused_connections():
    server = gd.start_echo_server()
    address = server.address
    server.stop(timeout=5)  # nobody listens there now
    report = gd.run_echo_clients(address, 3, timeout=5, pause=0)
    assert report.echoed_correctly == 0 and len(report.failures) == 3


@pytest.mark.parametrize("call, error", [
    (lambda: gd.start_echo_server(host=1), TypeError),
    (lambda: gd.start_echo_server(port=70_000), ValueError),
    (lambda: gd.start_echo_server(handler=print), TypeError),
    (lambda: gd.echo_once(("127.0.0.1", 1), "text"), TypeError),
    (lambda: gd.echo_once("127.0.0.1:1", b"x"), TypeError),
    (lambda: gd.echo_once(("127.0.0.1", 1), b"x" * (gd.MAX_MESSAGE + 1)), ValueError),
    (lambda: gd.run_echo_clients(("127.0.0.1", 1), 0), ValueError),
    (lambda: gd.EchoHandler(read_timeout=-1), ValueError),
])
def test_echo_helpers_reject_bad_input(call, error):
    with pytest.raises(error):
        call()


# --------------------------------------------------------------------------- many sleeps

@pytest.mark.parametrize("kind, n", [("gevent", 300), ("asyncio", 300), ("threads", 50),
                                     ("threads-gated", 50)])
def test_sleep_many_in_process(kind, n):
    result = gd.sleep_many(kind, n, 0.02, timeout=10)
    assert result["kind"] == kind and result["completed"] == n and result["error"] == ""
    assert 1 <= result["peak_concurrent"] <= n
    assert result["maxrss_kib"] >= result["baseline_kib"] >= 0
    assert result["elapsed"] < 5


def test_measure_sleeps_runs_a_child():
    run = gd.measure_sleeps("gevent", 200, 0.02, timeout=60)
    assert isinstance(run, gd.SleepRun)
    assert run.completed == 200 and run.peak_concurrent == 200 and run.error == ""
    assert run.maxrss_mib > 0 and run.growth_mib >= 0


@pytest.mark.parametrize("call, error", [
    (lambda: gd.sleep_many("fibers", 10), ValueError),
    (lambda: gd.sleep_many("gevent", -1), ValueError),
    (lambda: gd.sleep_many("gevent", 10, delay=10), ValueError),
    (lambda: gd.sleep_many("gevent", "10"), TypeError),
    (lambda: gd.measure_sleeps("fibers", 10), ValueError),
    (lambda: gd.measure_sleeps("gevent", 10**6), ValueError),
])
def test_sleep_helpers_reject_bad_input(call, error):
    with pytest.raises(error):
        call()


def test_many_sleeps_script_usage_error():
    proc = subprocess.run([sys.executable, "-m", "helpers.scripts.many_sleeps"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "KIND N" in proc.stderr


# --------------------------------------------------------------------------- the patched script

@pytest.mark.parametrize("flag", [[], ["--no-patch"]])
def test_gevent_patched_script(flag):
    proc = subprocess.run([sys.executable, "-m", "helpers.scripts.gevent_patched", *flag],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    report = json.loads(proc.stdout)
    if flag:
        assert report["time.sleep is gevent.sleep"] is False
        assert report["greenlet sleeps seconds"] >= 0.95
    else:
        assert report["time.sleep is gevent.sleep"] is True
        assert report["socket.socket is gevent.socket.socket"] is True
        assert report["greenlet sleeps seconds"] < 5  # about 0.1 s; 10 s if it did not overlap
        assert report["echoed correctly"] == report["echo clients"] == 50


def test_unfinished_gevent_greenlets_sees_a_paused_one():
    paused = gevent.spawn(gd.fetch, "x", 30)
    gevent.sleep(0)
    assert paused in gd.unfinished_gevent_greenlets()
    paused.kill(timeout=2)
    assert paused not in gd.unfinished_gevent_greenlets()
