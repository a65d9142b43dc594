"""Unit tests for helpers.coroutines.gevent_basics and the gevent scripts (chapter 10)."""

from __future__ import annotations

import json
import subprocess
import sys

import gevent
import pytest

from helpers.coroutines import gevent_basics as gd
from helpers.instruments.timeline import TaskRecord, max_overlap
from helpers.scripts import many_sleeps


@pytest.fixture(autouse=True)
def no_greenlets_left():
    yield
    left = gd.unfinished_gevent_greenlets()
    gevent.killall(left, timeout=2)
    assert left == [], f"a test left greenlets running: {left}"


def _fail(message: str) -> None:
    gevent.sleep(0)
    raise ValueError(message)


# --------------------------------------------------------------------------- failures and the hub


def test_quiet_hub_records_failure_and_restores(capsys):
    hub = gevent.get_hub()
    before = hub.NOT_ERROR
    with gd.quiet_hub(ValueError):
        g = gevent.spawn(_fail, "boom")
        g.join(timeout=2)
    assert hub.NOT_ERROR == before
    assert not g.successful() and str(g.exception) == "boom"
    assert capsys.readouterr().err == ""


def test_capture_hub_errors_captures_and_restores(capsys):
    hub = gevent.get_hub()
    with gd.capture_hub_errors() as stream:
        g = gevent.spawn(_fail, "captured")
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


# --------------------------------------------------------------------------- timelines


def test_pack_into_lanes_uses_the_fewest_lanes():
    spans = [(0, 0.0, 1.0), (1, 0.5, 1.5), (2, 1.0, 2.0), (3, 1.5, 2.5), (4, 2.0, 3.0)]
    records = [TaskRecord(task, 1, "MainThread", start, end) for task, start, end in spans]
    packed = gd.pack_into_lanes(records)
    assert {r.thread for r in packed} == {"slot 0", "slot 1"} and max_overlap(records) == 2
    assert sorted(r.task for r in packed) == list(range(5))
    # no two tasks in one lane overlap
    for lane in {r.thread for r in packed}:
        in_lane = sorted((r for r in packed if r.thread == lane), key=lambda r: r.start)
        assert all(a.end <= b.start for a, b in zip(in_lane, in_lane[1:]))
    assert {r.thread for r in gd.pack_into_lanes(records, prefix="lane")} == {"lane 0", "lane 1"}


def test_pack_into_lanes_rejects_bad_input():
    with pytest.raises(TypeError):
        gd.pack_into_lanes([])
    with pytest.raises(TypeError):
        gd.pack_into_lanes([("not", "a record")])
    with pytest.raises(TypeError):
        gd.pack_into_lanes([TaskRecord(0, 1, "t", 0.0, 1.0)], prefix=3)


# --------------------------------------------------------------------------- many sleeps


@pytest.mark.parametrize("kind, n", [("gevent", 300), ("asyncio", 300), ("threads", 50), ("threads-gated", 50)])
def test_sleep_many_in_process(kind, n):
    result = many_sleeps.sleep_many(kind, n, 0.02, timeout=10)
    assert result["kind"] == kind and result["completed"] == n and result["error"] == ""
    assert 1 <= result["peak_concurrent"] <= n
    assert result["maxrss_kib"] >= result["baseline_kib"] >= 0
    assert result["elapsed"] < 5


# gevent and asyncio: a delay far shorter than starting n takes, so without the gate the first
# would wake early; gated threads pass their gate one by one, so they need a longer sleep
@pytest.mark.parametrize(
    "kind, n, delay", [("threads-gated", 50, 0.2), ("gevent", 2000, 0.001), ("asyncio", 2000, 0.001)]
)
def test_gated_kinds_are_all_asleep_at_once(kind, n, delay):
    result = many_sleeps.sleep_many(kind, n, delay, timeout=10)
    assert result["completed"] == result["peak_concurrent"] == n


@pytest.mark.parametrize("kind", ["gevent", "asyncio"])
def test_sleep_many_reports_a_timeout(kind):
    """A run that outlives its timeout returns what it got and says so; it does not raise."""
    result = many_sleeps.sleep_many(kind, 20, delay=2.0, timeout=0.2)
    assert result["completed"] == 0 and result["peak_concurrent"] == 20
    assert result["error"] == "timed out after 0.2 s: 0 of 20 sleeps finished"
    assert result["elapsed"] < 1.5  # it stopped at the timeout, not after the 2 s sleeps


def test_measure_sleeps_runs_a_child():
    run = gd.measure_sleeps("gevent", 200, 0.02, timeout=60)
    assert isinstance(run, gd.SleepRun)
    assert run.completed == 200 and run.peak_concurrent == 200 and run.error == ""
    assert run.maxrss_mib > 0 and run.growth_mib >= 0
    assert gd.SLEEP_KINDS == many_sleeps.SLEEP_KINDS


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: many_sleeps.sleep_many("fibers", 10), ValueError),
        (lambda: many_sleeps.sleep_many("gevent", -1), ValueError),
        (lambda: many_sleeps.sleep_many("gevent", 10, delay=10), ValueError),
        (lambda: many_sleeps.sleep_many("gevent", "10"), TypeError),
        (lambda: many_sleeps.sleep_many("gevent", True), TypeError),
        (lambda: many_sleeps.sleep_many("gevent", 10, timeout=61), ValueError),
        (lambda: gd.measure_sleeps("fibers", 10), ValueError),
        (lambda: gd.measure_sleeps("gevent", 10**6), ValueError),
        (lambda: gd.measure_sleeps("gevent", 10, delay="0.1"), TypeError),
    ],
)
def test_sleep_helpers_reject_bad_input(call, error):
    with pytest.raises(error):
        call()


def test_many_sleeps_script_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "helpers.scripts.many_sleeps"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "KIND N" in proc.stderr


# --------------------------------------------------------------------------- the patched script


@pytest.mark.parametrize("flag", [[], ["--no-patch"]])
def test_gevent_patched_script(flag):
    proc = subprocess.run(
        [sys.executable, "-m", "helpers.scripts.gevent_patched", *flag], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stderr == ""
    report = json.loads(proc.stdout)
    assert report["loaded before patching"] == []  # the helpers packages import nothing
    if flag:
        assert report["time.sleep is gevent.sleep"] is False
        assert report["threading patched"] is False and report["threading.get_ident is gevent's"] is False
        assert report["thread OS threads"] == report["sleepers"] == 10  # real threads
        assert report["greenlet sleeps seconds"] >= 0.95
    else:
        assert report["time.sleep is gevent.sleep"] is True
        assert report["socket.socket is gevent.socket.socket"] is True
        assert report["threading patched"] is True and report["threading.get_ident is gevent's"] is True
        assert report["thread OS threads"] == 1  # 100 "threads", all greenlets of one OS thread
        assert report["greenlet sleeps seconds"] < 5  # about 0.1 s; 10 s if it did not overlap
        assert report["echoed correctly"] == report["echo clients"] == 50
        assert report["os.fork is gevent's"] is True and report["forked child's greenlets finished"] == 10
        assert report["http answered correctly"] == report["http requests"] == 20
        assert report["http most in the handler at once"] == 20  # every request in the handler at once
        assert report["http seconds"] >= report["http handler seconds"] == 0.2


def test_gevent_patched_monitor_reports_the_blocking_function():
    proc = subprocess.run(
        [sys.executable, "-m", "helpers.scripts.gevent_patched", "--monitor"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    assert report["monitor thread running"] is True
    assert report["ticker's longest gap"] >= 0.45  # the hub was blocked for the whole computation
    assert "crunch_numbers(0.5)> appears to be blocked" in proc.stderr
    assert "in crunch_numbers\n" in proc.stderr


def test_gevent_patched_script_reports_a_module_imported_too_early():
    """The "loaded before patching" check can fail: import threading first, then run the script."""
    code = (
        "import threading, runpy, sys; sys.argv = ['gevent_patched', '--no-patch'];"
        " runpy.run_module('helpers.scripts.gevent_patched', run_name='__main__')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    assert json.loads(proc.stdout)["loaded before patching"] == ["threading"]


# --------------------------------------------------------------------------- clean-up


def test_unfinished_gevent_greenlets_sees_a_paused_one():
    paused = gevent.spawn(gevent.sleep, 30)
    gevent.sleep(0)
    assert paused in gd.unfinished_gevent_greenlets()
    paused.kill(timeout=2)
    assert paused not in gd.unfinished_gevent_greenlets()
