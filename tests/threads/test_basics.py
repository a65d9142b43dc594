"""Unit tests of helpers.threads.basics (chapter 05's child-process target and GIL runs; the thread plumbing)."""

from __future__ import annotations

import multiprocessing as mp
import threading

import pytest

from helpers.threads import basics as th
from helpers.threads.basics import (
    GilRun,
    append_shared,
    format_gil_table,
    measure_gil,
    reset_shared,
    run_named_threads,
    run_with,
    threads_alive,
)


def test_append_shared_thread_changes_the_parent_list():
    reset_shared()
    worker = threading.Thread(target=append_shared, args=("from a thread",))
    worker.start()
    worker.join(timeout=10)
    assert th.SHARED_LIST == ["from a thread"]
    reset_shared()
    assert th.SHARED_LIST == []


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_append_shared_process_changes_only_its_own_copy(method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"{method} is not available here")
    ctx = mp.get_context(method)
    reset_shared()
    th.SHARED_LIST.append("before the child")
    out = ctx.Queue()
    child = ctx.Process(target=append_shared, args=("from a process", out))
    child.start()
    childs_list = out.get(timeout=30)
    child.join(timeout=30)
    out.close()
    out.join_thread()
    assert child.exitcode == 0
    # fork copies the parent's list as it was; spawn imports the module afresh
    expected = ["before the child"] if method == "fork" else []
    assert childs_list == [*expected, "from a process"]
    assert th.SHARED_LIST == ["before the child"]
    reset_shared()


def test_append_shared_reports_its_own_list_in_a_thread():
    import queue

    reset_shared()
    out = queue.Queue()
    append_shared("a", out)
    append_shared("b", out)
    assert [out.get(timeout=1), out.get(timeout=1)] == [["a"], ["a", "b"]]
    assert th.SHARED_LIST == ["a", "b"]
    reset_shared()


def test_append_shared_rejects_non_str():
    with pytest.raises(TypeError):
        append_shared(3)


def test_run_with_threads_overlap_io():
    run = run_with("thread", 4, "io", n=4, size=0.1)
    assert isinstance(run, GilRun) and len(run.records) == 4
    assert sorted(r.task for r in run.records) == [0, 1, 2, 3]
    assert run.elapsed < 0.35  # four 0.1 s waits, overlapped


def test_run_with_processes_cpu():
    run = run_with("process", 2, "cpu", n=2, size=20_000, repeat=2)
    assert [r.result for r in run.records] == [2262, 2262]
    assert len({r.pid for r in run.records}) >= 1
    assert mp.active_children() == []


@pytest.mark.parametrize(
    "args, kwargs, error",
    [
        (("greenlet", 1, "cpu"), {}, ValueError),
        (("thread", 1, "disk"), {}, ValueError),
        (("thread", 0, "cpu"), {}, ValueError),
        (("thread", 1.0, "cpu"), {}, TypeError),
        (("thread", 1, "cpu"), {"n": 0}, ValueError),
        (("thread", 1, "cpu"), {"size": 0.5}, TypeError),
        (("thread", 1, "io"), {"size": -1}, ValueError),
        (("thread", 1, "io"), {"timeout": 0}, ValueError),
        (("thread", 1, "io"), {"repeat": 0}, ValueError),
    ],
)
def test_run_with_bad_input(args, kwargs, error):
    with pytest.raises(error):
        run_with(*args, **kwargs)


def test_format_gil_table():
    one = GilRun("thread", "io", 1, 2, 1.0, ())
    two = GilRun("thread", "io", 2, 2, 0.5, ())
    table = format_gil_table([one, two])
    assert "| io | thread | 2 | 0.50 s | 2.00× |" in table
    with pytest.raises(ValueError):
        format_gil_table([])
    with pytest.raises(ValueError):
        format_gil_table([two])
    with pytest.raises(TypeError):
        format_gil_table([one, "run"])
    faster_serial = GilRun("process", "io", 1, 2, 0.8, ())
    assert "| io | thread | 1 | 1.00 s | 0.80× |" in format_gil_table([one, faster_serial])


def test_threads_alive_counts_and_ignores():
    assert threads_alive(()) == threading.active_count()
    release = threading.Event()
    worker = threading.Thread(target=release.wait, args=(10,))
    before = threads_alive()
    worker.start()
    assert threads_alive() == before + 1
    assert threads_alive(("threading",)) < threads_alive()  # the worker is a threading.Thread
    release.set()
    worker.join(timeout=10)
    assert threads_alive() == before
    with pytest.raises(TypeError):
        threads_alive("zmq.")
    with pytest.raises(TypeError):
        threads_alive([1])


def test_cpu_per_wall_of_cpu_bound_threads_is_about_one_core():
    run = run_with("thread", 2, "cpu", n=2, size=100_000)
    assert run.cpu_seconds > 0
    assert 0 < run.cpu_per_wall < 1.5  # the GIL: two threads, at most one core's worth
    assert GilRun("thread", "io", 1, 1, 0.0, ()).cpu_per_wall == 0.0


def test_measure_gil_small_grid():
    runs = measure_gil(worker_counts=(1, 2), n=2, rounds=1)
    assert [(r.task, r.kind, r.workers) for r in runs] == [
        ("cpu", "thread", 1),
        ("cpu", "thread", 2),
        ("cpu", "process", 1),
        ("cpu", "process", 2),
        ("io", "thread", 1),
        ("io", "thread", 2),
        ("io", "process", 1),
        ("io", "process", 2),
    ]
    assert mp.active_children() == []


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"worker_counts": ()}, ValueError),
        ({"worker_counts": (0,)}, ValueError),
        ({"worker_counts": ("2",)}, TypeError),
        ({"rounds": 0}, ValueError),
    ],
)
def test_measure_gil_bad_input(kwargs, error):
    with pytest.raises(error):
        measure_gil(**kwargs)


def test_run_named_threads_returns_results_in_order_on_named_threads():
    names = run_named_threads(
        [(name, lambda: threading.current_thread().name) for name in ("a", "b", "c")], timeout=10, prefix="test-"
    )
    assert names == ["test-a", "test-b", "test-c"]
    assert not any(t.name.startswith("test-") for t in threading.enumerate())


def test_run_named_threads_reraises_a_body_error_in_the_caller():
    hook_calls = []
    before = threading.excepthook
    threading.excepthook = hook_calls.append
    try:

        def fail():
            raise KeyError("boom")

        with pytest.raises(RuntimeError, match="thread t-bad failed") as info:
            run_named_threads([("ok", lambda: 1), ("bad", fail)], timeout=10, prefix="t-")
    finally:
        threading.excepthook = before
    assert isinstance(info.value.__cause__, KeyError)
    assert hook_calls == []  # kept for the caller, never handed to threading.excepthook


def test_run_named_threads_times_out_on_a_stuck_thread():
    release = threading.Event()
    try:
        with pytest.raises(TimeoutError, match="stuck"):
            run_named_threads([("stuck", lambda: release.wait(10))], timeout=0.05, prefix="t-")
    finally:
        release.set()


def test_run_with_times_out_at_once_and_cancels_the_queued_tasks(monkeypatch):
    started, release = [], threading.Event()

    def held_task(task, **kwargs):  # stands in for timed_task: blocks until released
        started.append(task)
        release.wait(10)
        return task

    monkeypatch.setattr(th, "timed_task", held_task)
    try:
        with pytest.raises(TimeoutError, match=r"3 of 3 io tasks on threads not done after 0\.2 s"):
            run_with("thread", 1, "io", n=3, size=0.1, timeout=0.2)
        # raised while task 0 still held its worker: shutdown did not wait for it
        assert started == [0]
        assert any(t.name.startswith("gil") and t.is_alive() for t in threading.enumerate())
    finally:
        release.set()
        for t in threading.enumerate():
            if t.name.startswith("gil"):
                t.join(timeout=10)
    assert started == [0]  # tasks 1 and 2 were cancelled, never run
    assert not any(t.name.startswith("gil") for t in threading.enumerate())


def test_run_with_reraises_a_task_error(monkeypatch):
    def failing_task(task, **kwargs):
        raise ValueError(f"task {task} failed")

    monkeypatch.setattr(th, "timed_task", failing_task)
    with pytest.raises(ValueError, match="task 0 failed"):
        run_with("thread", 2, "io", n=2, size=0.1)
    assert not any(t.name.startswith("gil") for t in threading.enumerate())


def test_daemon_thread_script_waits_for_the_worker_and_abandons_the_daemon():
    import subprocess
    import sys
    import time
    from pathlib import Path

    import helpers.scripts

    script = Path(helpers.scripts.__file__).parent / "daemon_thread_script.py"
    began = time.perf_counter()
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    took = time.perf_counter() - began
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.splitlines() == [
        "daemon: started a minute of work",
        "main: last line of the script",
        "worker: finished, 0.3 s after the main thread's last line",
        "worker: finally ran",
    ]  # the daemon's finally never ran: it was abandoned asleep
    assert took >= 0.3  # the interpreter waited for the worker's 0.3 s
