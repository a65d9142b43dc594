"""helpers.coroutines.asyncio_basics and the chapter-11 scripts: coroutines run with asyncio.run."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from helpers.coroutines.asyncio_basics import (
    EchoStats, HeartbeatRun, blocking_sleep, echo_client, fetch, heartbeat, limited_run,
    make_echo_handler, offloaded_sleep, our_pending_tasks, polite_sleep, producer_consumer,
    server_port, start_echo_server, timed_sleep, watch_heartbeat,
)
from helpers.scripts import asyncio_sleeps
from helpers.instruments.timeline import max_overlap


def test_fetch_returns_fails_and_logs():
    log: list[str] = []
    assert asyncio.run(fetch("a", 0, log=log)) == "a ok"
    with pytest.raises(ValueError, match="b failed"):
        asyncio.run(fetch("b", 0, fail=True, log=log))
    assert log == ["a done", "b failed"]


def test_fetch_logs_cancellation():
    log: list[str] = []

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(fetch("slow", 5, log=log), timeout=0.01)

    asyncio.run(main())
    assert log == ["slow cancelled"]


def test_fetch_rejects_bad_input():
    for bad in [("", 0), ("a", -1), ("a", "1"), ("a", float("nan")), (3, 0)]:
        with pytest.raises((TypeError, ValueError)):
            asyncio.run(fetch(*bad))
    with pytest.raises(TypeError):
        asyncio.run(fetch("a", 0, log="not a list"))


def test_limited_run_respects_the_limit():
    records = asyncio.run(limited_run(7, 3, 0.02))
    assert sorted(r.task for r in records) == list(range(7))
    assert max_overlap(records) == 3
    assert all(r.duration >= 0.02 for r in records)
    with pytest.raises(ValueError):
        asyncio.run(limited_run(0, 3, 0.01))
    with pytest.raises(TypeError):
        asyncio.run(limited_run(3, "3", 0.01))
    with pytest.raises(TypeError):
        asyncio.run(timed_sleep(1, 0.0, semaphore="no"))
    with pytest.raises(TypeError):
        asyncio.run(timed_sleep(True, 0.0))


def test_producer_consumer_handles_every_item_once():
    handled = asyncio.run(producer_consumer(25, 3, maxsize=4, work_seconds=0.0))
    items = [i for got in handled.values() for i in got]
    assert sorted(items) == list(range(25))
    assert set(handled) == {"consumer 0", "consumer 1", "consumer 2"}
    assert asyncio.run(producer_consumer(0, 2)) == {"consumer 0": [], "consumer 1": []}
    with pytest.raises(ValueError):
        asyncio.run(producer_consumer(5, 0))
    with pytest.raises(ValueError):
        asyncio.run(producer_consumer(5, 1, work_seconds=2.0))


def test_heartbeat_sees_a_blocked_loop_and_not_a_polite_one():
    blocked = asyncio.run(watch_heartbeat(blocking_sleep(0.2), interval=0.01))
    assert isinstance(blocked, HeartbeatRun)
    assert blocked.result >= 0.2 and blocked.max_gap >= 0.2
    polite = asyncio.run(watch_heartbeat(polite_sleep(0.2), interval=0.01))
    assert polite.max_gap < blocked.max_gap
    assert len(polite.ticks) > len(blocked.ticks)
    offloaded = asyncio.run(watch_heartbeat(offloaded_sleep(0.1), interval=0.01))
    assert offloaded.result >= 0.1 and len(offloaded.gaps) == len(offloaded.ticks) - 1


def test_heartbeat_rejects_bad_input():
    async def main():
        stop = asyncio.Event()
        with pytest.raises(TypeError):
            await heartbeat("ticks", 0.01, stop)
        with pytest.raises(TypeError):
            await heartbeat([], 0.01, "stop")
        with pytest.raises(ValueError):
            await heartbeat([], 5.0, stop)
        with pytest.raises(TypeError):
            await watch_heartbeat(lambda: None)
        coro = polite_sleep(0)
        with pytest.raises(ValueError):
            await watch_heartbeat(coro, interval=0)
        coro.close()
        stop.set()
        assert await heartbeat([], 0.01, stop) == 0

    asyncio.run(main())
    with pytest.raises(ValueError):
        asyncio.run(blocking_sleep(10))


def test_echo_server_echoes_every_client_and_closes():
    async def main():
        stats = EchoStats()
        server = await start_echo_server(stats)
        port = server_port(server)
        try:
            replies = await asyncio.gather(*(echo_client("127.0.0.1", port, f"hi {i}")
                                             for i in range(50)))
        finally:
            server.close()
            await asyncio.wait_for(server.wait_closed(), 10)
        assert replies == [f"hi {i}" for i in range(50)]
        assert (stats.connections, stats.lines, stats.open_now, stats.errors) == (50, 50, 0, [])
        assert not server.is_serving()
        with pytest.raises(OSError):
            await echo_client("127.0.0.1", port, "anyone?", timeout=2)

    asyncio.run(main())


def test_echo_rejects_bad_input():
    with pytest.raises(TypeError):
        make_echo_handler("stats")
    with pytest.raises(ValueError):
        asyncio.run(echo_client("127.0.0.1", 1, "two\nlines"))
    with pytest.raises(ValueError):
        asyncio.run(echo_client("127.0.0.1", 70_000, "x"))
    with pytest.raises(ValueError):
        asyncio.run(start_echo_server(EchoStats(), port=-1))
    with pytest.raises(ValueError):
        server_port("not a server")


def test_our_pending_tasks_finds_a_leftover():
    async def main():
        baseline = asyncio.all_tasks()
        assert our_pending_tasks(baseline) == []
        sleeper = asyncio.create_task(asyncio.sleep(5))
        assert our_pending_tasks(baseline) == [sleeper]
        sleeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeper
        assert our_pending_tasks(baseline) == []
        with pytest.raises(TypeError):
            our_pending_tasks([])

    asyncio.run(main())


@pytest.mark.parametrize("module", ["asyncio_sleeps", "asyncio_vs_gevent_sleeps"])
def test_sleep_scripts_print_one_json_line(module):
    run = subprocess.run([sys.executable, "-m", f"helpers.scripts.{module}", "--tasks", "200",
                          "--seconds", "0.05"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stderr == ""
    result = json.loads(run.stdout)
    assert result["completed"] == result["tasks"] == 200
    assert result["wall_s"] >= 0.05
    assert result["peak_rss_mib"] >= result["rss_before_mib"] > 0


def test_sleep_script_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        asyncio_sleeps.parse_args(["--tasks", "0"], "test")
    with pytest.raises(SystemExit):
        asyncio_sleeps.parse_args(["--seconds", "-1"], "test")
    assert asyncio_sleeps.peak_rss_mib() > 0
