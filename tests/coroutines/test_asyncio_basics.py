"""helpers.coroutines.asyncio_basics (the clean-up check) and the chapter-11 scripts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from helpers.coroutines.asyncio_basics import our_pending_tasks
from helpers.scripts import asyncio_sleeps


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
    run = subprocess.run(
        [sys.executable, "-m", f"helpers.scripts.{module}", "--tasks", "200", "--seconds", "0.05"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and run.stderr == ""
    result = json.loads(run.stdout)
    assert result["completed"] == result["tasks"] == 200
    assert result["wall_s"] >= 0.05
    assert result["peak_rss_mib"] >= result["rss_before_mib"] > 0
    if module == "asyncio_vs_gevent_sleeps":
        assert result["loaded_before_patch"] == []  # patch_all() ran before socket, threading...


def test_gevent_sleep_script_reports_a_module_imported_too_early():
    """The ``loaded_before_patch`` check can fail: import socket first, then run the script."""
    code = (
        "import socket, runpy, sys; sys.argv = ['sleeps', '--tasks', '10', '--seconds', '0.01'];"
        " runpy.run_module('helpers.scripts.asyncio_vs_gevent_sleeps', run_name='__main__')"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stderr == ""
    assert "socket" in json.loads(run.stdout)["loaded_before_patch"]


def test_sleep_script_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        asyncio_sleeps.parse_args(["--tasks", "0"], "test")
    with pytest.raises(SystemExit):
        asyncio_sleeps.parse_args(["--seconds", "-1"], "test")
    assert asyncio_sleeps.peak_rss_mib() > 0
