"""helpers.processes.basics: chapter 01's child-process targets, under fork and spawn."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.processes.basics import (
    ClockProcess,
    capture_child_stderr,
    child_error_line,
    clock,
    collect,
    describe_self,
    exit_with,
    fail_with,
    has_ended,
    join_all,
    plain_text,
    put_squares,
    record_task,
    wait_then_clean_up,
    wait_up_to,
)

SCRIPTS = Path(__file__).resolve().parents[2] / "helpers" / "scripts"
METHODS = [m for m in ("fork", "spawn") if m in mp.get_all_start_methods()]


@pytest.mark.parametrize("method", METHODS)
def test_describe_self_and_exit_codes(method):
    ctx = mp.get_context(method)
    out = ctx.Queue()
    p = ctx.Process(target=describe_self, args=(out,), kwargs={"greeting": "hi", "repeat": 2}, name="greeter")
    ok = ctx.Process(target=exit_with, args=(0,))
    three = ctx.Process(target=exit_with, args=(3,))
    for proc in (p, ok, three):
        proc.start()
    info = collect(out, count=1, timeout=30)[0]
    assert join_all([p, ok, three], timeout=30) == [0, 0, 3]
    assert info["name"] == "greeter" and info["greeting"] == "hi hi"
    assert info["ppid"] == os.getpid() and info["pid"] == p.pid


def test_clock_process_is_bounded_and_stoppable():
    bounded = ClockProcess(interval=0.01, max_ticks=3)
    bounded.start()
    ticks = bounded.ticks(timeout=30)
    bounded.join(10)
    assert len(ticks) == 3 and ticks == sorted(ticks) and bounded.exitcode == 0

    stoppable = ClockProcess(interval=5.0, max_ticks=100)
    stoppable.start()
    first = collect(stoppable.out, count=1, timeout=30)
    began = time.monotonic()
    stoppable.stop()
    rest = stoppable.ticks(timeout=30)
    stoppable.join(10)
    assert len(first) == 1 and rest == [] and time.monotonic() - began < 4


def test_clock_function_with_plain_queue():
    import queue

    q = queue.Queue()
    clock(q, interval=0.0, max_ticks=2)
    assert len(collect(q, timeout=5)) == 2


def test_record_task_puts_a_record():
    ctx = mp.get_context(METHODS[-1])
    out = ctx.Queue()
    p = ctx.Process(target=record_task, args=(out, 7, 0.0, 100))
    p.start()
    rec = collect(out, count=1, timeout=30)[0]
    join_all([p], timeout=30)
    assert rec.task == 7 and rec.result == 25 and rec.pid == p.pid


def test_terminate_and_kill():
    ctx = mp.get_context(METHODS[0])
    ready = ctx.Event()
    deaf = ctx.Process(target=wait_up_to, args=(30,), kwargs={"ignore_sigterm": True, "ready": ready})
    deaf.start()
    assert ready.wait(30)
    deaf.terminate()
    deaf.join(0.5)
    assert deaf.is_alive()  # SIGTERM ignored
    deaf.kill()
    deaf.join(10)
    assert deaf.exitcode == -signal.SIGKILL


@pytest.mark.parametrize("method", METHODS)
def test_sigterm_handler_that_raises_runs_finally(method):
    ctx = mp.get_context(method)
    results = {}
    for handle in (True, False):  # the control runs the same target, finally included, without the handler
        ready, cleaned_up = ctx.Event(), ctx.Event()
        child = ctx.Process(
            target=wait_then_clean_up, args=(30, cleaned_up), kwargs={"ready": ready, "handle_sigterm": handle}
        )
        child.start()
        assert ready.wait(timeout=30)
        child.terminate()
        child.join(timeout=10)
        results[handle] = (child.exitcode, cleaned_up.is_set())
    assert results == {True: (128 + signal.SIGTERM, True), False: (-signal.SIGTERM, False)}


def test_exit_with_a_string_prints_it_and_exits_with_1():
    ctx = mp.get_context(METHODS[0])
    with capture_child_stderr() as captured:
        child = ctx.Process(target=exit_with, args=("bye",))
        child.start()
        child.join(30)
    assert child.exitcode == 1
    assert plain_text(captured.text).splitlines() == ["bye"]


def test_has_ended_sees_running_gone_and_zombie_processes():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not has_ended(child.pid)
    finally:
        child.kill()
    deadline = time.monotonic() + 10
    while not has_ended(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert has_ended(child.pid)  # not reaped yet: a zombie, which counts as ended
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert has_ended(child.pid)


def test_capture_child_stderr_collects_a_traceback():
    ctx = mp.get_context(METHODS[-1])
    with capture_child_stderr() as captured:
        p = ctx.Process(target=fail_with, args=("boom",))
        p.start()
        p.join(30)
    assert p.exitcode == 1
    assert child_error_line(captured.text) == "RuntimeError: boom"
    assert child_error_line("") == ""


@pytest.mark.skipif("forkserver" not in mp.get_all_start_methods(), reason="no forkserver here")
def test_capture_child_stderr_sees_a_forkserver_child_of_a_running_server():
    ctx = mp.get_context("forkserver")
    first = ctx.Process(target=exit_with, args=(0,))
    first.start()  # the fork server now runs, with the stderr of before the block
    first.join(30)
    with capture_child_stderr() as captured:
        p = ctx.Process(target=fail_with, args=("from the fork server",))
        p.start()
        p.join(30)
    assert p.exitcode == 1
    assert child_error_line(captured.text) == "RuntimeError: from the fork server"


def test_child_error_line_drops_colour_codes_of_313_tracebacks():
    coloured = 'Traceback:\n  File \x1b[35m"x.py"\x1b[0m\n\x1b[1;35mRuntimeError\x1b[0m: \x1b[35mboom\x1b[0m\n'
    assert child_error_line(coloured) == "RuntimeError: boom"
    assert plain_text("\x1b[31mred\x1b[0m") == "red"
    with pytest.raises(TypeError, match="str"):
        plain_text(b"bytes")


def test_join_all_times_out_instead_of_hanging():
    ctx = mp.get_context(METHODS[0])
    slow = ctx.Process(target=wait_up_to, args=(30,))
    slow.start()
    began = time.monotonic()
    with pytest.raises(TimeoutError, match="terminated"):
        join_all([slow], timeout=0.3)
    assert time.monotonic() - began < 10 and not slow.is_alive()


def test_collect_times_out():
    q = mp.get_context(METHODS[0]).Queue()
    with pytest.raises(TimeoutError, match="0 item"):
        collect(q, count=1, timeout=0.1)


def test_put_squares_works_on_both_queue_kinds():
    ctx = mp.get_context(METHODS[0])
    plain, simple = ctx.Queue(), ctx.SimpleQueue()
    put_squares(plain, [1, 2, 3])
    put_squares(simple, range(2, 4))
    assert collect(plain, count=3, timeout=5) == [1, 4, 9]
    assert [simple.get(), simple.get()] == [4, 9]
    plain.close()
    plain.join_thread()
    simple.close()


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: exit_with(256), ValueError),
        (lambda: exit_with(1.5), TypeError),
        (lambda: has_ended(0), ValueError),
        (lambda: wait_then_clean_up(1, None, handle_sigterm=1), TypeError),
        (lambda: wait_up_to(-1), ValueError),
        (lambda: wait_up_to(1e6), ValueError),
        (lambda: wait_then_clean_up(-1, None), ValueError),
        (lambda: ClockProcess(interval=-1), ValueError),
        (lambda: ClockProcess(max_ticks=0), ValueError),
        (lambda: collect(None, timeout=-1), ValueError),
        (lambda: child_error_line(b"x"), TypeError),
        (lambda: describe_self(None, repeat=0), ValueError),
        (lambda: put_squares(queue.Queue(), "123"), TypeError),
        (lambda: put_squares(queue.Queue(), [1, "2"]), TypeError),
    ],
)
def test_bad_arguments(call, error):
    with pytest.raises(error):
        call()


def run_script(name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / name)], capture_output=True, text=True, timeout=90)


def test_guarded_clock_script_runs_under_spawn():
    result = run_script("clock_script.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3 ticks over") and "exit code 0" in result.stdout
    assert result.stderr == ""


def test_unguarded_clock_script_fails_with_the_bootstrapping_error():
    result = run_script("clock_unguarded.py")
    assert result.returncode != 0
    assert "bootstrapping phase" in result.stderr and "TimeoutError" in result.stderr


def test_daemon_child_dies_with_its_parent():
    result = run_script("daemon_script.py")
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split("pid ")[1].split()[0])
    time.sleep(0.2)
    assert has_ended(pid)


def test_daemon_child_outlives_a_parent_that_calls_os_exit():
    import psutil

    script = [sys.executable, str(SCRIPTS / "daemon_script.py"), "--os-exit"]
    with subprocess.Popen(script, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as parent:
        said = parent.stdout.readline()  # the orphan keeps the pipe open: read one line, not to EOF
        assert parent.wait(timeout=60) == 0
        orphan = psutil.Process(int(said.split("pid ")[1].split()[0]))
        try:
            assert orphan.is_running() and orphan.status() != psutil.STATUS_ZOMBIE
        finally:
            orphan.kill()
        deadline = time.monotonic() + 10
        while not has_ended(orphan.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # an orphan is reaped by init or a subreaper, if at all: poll, don't wait()
        assert has_ended(orphan.pid)
        assert parent.communicate(timeout=30) == ("", "")


def test_daemon_script_rejects_unknown_arguments():
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "daemon_script.py"), "--bogus"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "usage:" in result.stderr
