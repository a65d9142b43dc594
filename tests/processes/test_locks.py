"""helpers.processes.locks: chapter 02's lock, semaphore and shared-file targets, under fork and spawn."""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time

import pytest

from helpers.instruments.timeline import max_overlap
from helpers.processes.basics import collect, join_all
from helpers.processes.locks import (
    LINE_PATTERN,
    NoLock,
    PausedLock,
    add_many,
    append_in_pieces,
    append_try_finally,
    append_with,
    check_lines,
    deposit,
    deposit_all,
    format_line,
    grab_two,
    hold_lock,
    use_resource,
)

METHODS = [m for m in ("fork", "spawn") if m in mp.get_all_start_methods()]


def start_all(processes):
    for p in processes:
        p.start()
    return processes


@pytest.mark.parametrize("method", METHODS)
def test_add_many_locked_is_exact(method):
    ctx = mp.get_context(method)
    counter = ctx.Value("i", 0)
    start = ctx.Barrier(3)
    procs = start_all(
        [ctx.Process(target=add_many, args=(counter, 2_000), kwargs={"locked": True, "start": start}) for _ in range(3)]
    )
    assert join_all(procs, timeout=30) == [0, 0, 0]
    assert counter.value == 6_000


def test_add_many_unlocked_never_gains():
    ctx = mp.get_context(METHODS[0])
    counter = ctx.Value("i", 0)
    start = ctx.Event()
    procs = start_all(
        [
            ctx.Process(target=add_many, args=(counter, 2_000), kwargs={"locked": False, "start": start})
            for _ in range(2)
        ]
    )
    start.set()
    assert join_all(procs, timeout=30) == [0, 0]
    assert 0 < counter.value <= 4_000  # updates can be lost, never invented


@pytest.mark.parametrize("method", METHODS)
def test_add_many_with_pause_loses_updates_unless_locked(method):
    ctx = mp.get_context(method)
    totals = {}
    for locked in (False, True):
        counter, start = ctx.Value("i", 0), ctx.Barrier(3)
        procs = start_all(
            [
                ctx.Process(
                    target=add_many, args=(counter, 500), kwargs={"locked": locked, "pause": True, "start": start}
                )
                for _ in range(3)
            ]
        )
        assert join_all(procs, timeout=60) == [0, 0, 0]
        totals[locked] = counter.value
    assert 0 < totals[False] < 1_500 and totals[True] == 1_500


def test_no_lock_never_blocks():
    no_lock = NoLock()
    assert no_lock.acquire() and no_lock.acquire(timeout=0.1) and no_lock.acquire(False)
    with no_lock as entered, no_lock:
        assert entered is True
    assert no_lock.release() is None and repr(no_lock) == "NoLock()"


def test_paused_lock_pauses_after_each_acquire():
    inner = threading.Lock()
    paused = PausedLock(inner, 0.05)
    started = time.monotonic()
    assert paused.acquire() is True
    assert time.monotonic() - started >= 0.05 and inner.locked()
    assert paused.acquire(timeout=0.01) is False  # held: no pause, just False
    paused.release()
    assert paused.acquire(timeout=1) is True
    paused.release()
    assert not inner.locked()
    with pytest.raises(TypeError):
        PausedLock(object(), 0.1)
    with pytest.raises(ValueError):
        PausedLock(inner, 5.0)


def test_add_many_in_process_and_zero_times():
    counter = mp.Value("i", 5)
    add_many(counter, 0, locked=True)
    add_many(counter, 3, locked=False)
    add_many(counter, 2, locked=True, pause=True)
    assert counter.value == 10


def test_deposit_all_with_rlock_and_lock():
    balance = mp.Value("i", 0, lock=False)
    out = queue.Queue()
    deposit_all(out, balance, mp.RLock(), [1, 2, 3], timeout=0.05)
    assert out.get(timeout=1) == [True, True, True] and balance.value == 6
    began = time.monotonic()
    deposit_all(out, balance, mp.Lock(), [10, 20], timeout=0.05)
    assert out.get(timeout=1) == [False, False] and balance.value == 6
    assert time.monotonic() - began < 5


def test_deposit_gives_up_when_lock_is_busy():
    lock = mp.Lock()
    balance = mp.Value("i", 0, lock=False)
    assert lock.acquire(timeout=1)
    try:
        assert deposit(balance, lock, 5, timeout=0.05) is False
    finally:
        lock.release()
    assert deposit(balance, lock, 5, timeout=1) is True and balance.value == 5


@pytest.mark.parametrize("method", METHODS)
def test_deposit_all_in_a_child(method):
    ctx = mp.get_context(method)
    balance = ctx.Value("i", 0, lock=False)
    out, rlock = ctx.Queue(), ctx.RLock()  # keep a reference: spawn unpickles it later
    p = ctx.Process(target=deposit_all, args=(out, balance, rlock, [4, 5], 1.0))
    p.start()
    result = collect(out, count=1, timeout=30)[0]
    assert join_all([p], timeout=30) == [0]
    assert result == [True, True] and balance.value == 9


@pytest.mark.parametrize("method", METHODS)
def test_hold_lock_blocks_then_lets_go(method):
    ctx = mp.get_context(method)
    lock, holding, let_go = ctx.Lock(), ctx.Event(), ctx.Event()
    p = ctx.Process(target=hold_lock, args=(lock, holding, let_go, 30.0))
    p.start()
    try:
        assert holding.wait(30)
        assert lock.acquire(timeout=0.05) is False
    finally:
        let_go.set()
    assert lock.acquire(timeout=30) is True
    lock.release()
    assert join_all([p], timeout=30) == [0]


@pytest.mark.parametrize("method", METHODS)
def test_use_resource_respects_the_limit(method):
    ctx = mp.get_context(method)
    semaphore, out = ctx.Semaphore(2), ctx.Queue()
    procs = start_all([ctx.Process(target=use_resource, args=(out, semaphore, i, 0.05)) for i in range(4)])
    records = collect(out, count=4, timeout=30)
    assert join_all(procs, timeout=30) == [0, 0, 0, 0]
    assert sorted(r.task for r in records) == [0, 1, 2, 3]
    assert all(r.result is not None and r.result >= 0 for r in records)
    assert 1 <= max_overlap(records) <= 2


def test_use_resource_times_out():
    semaphore, out = threading.Semaphore(0), queue.Queue()
    use_resource(out, semaphore, 1, 0.0, timeout=0.05)
    assert out.get(timeout=1).result is None


@pytest.mark.parametrize("method", METHODS)
def test_grab_two_deadlocks_with_opposite_orders(method):
    ctx = mp.get_context(method)
    a, b, meet, out = ctx.Lock(), ctx.Lock(), ctx.Barrier(2), ctx.Queue()
    procs = start_all(
        [
            ctx.Process(target=grab_two, args=(out, "one", a, b), kwargs={"timeout": 0.2, "meet": meet}),
            ctx.Process(target=grab_two, args=(out, "two", b, a), kwargs={"timeout": 0.2, "meet": meet}),
        ]
    )
    results = collect(out, count=2, timeout=30)
    assert join_all(procs, timeout=30) == [0, 0]
    assert sorted(r["got_both"] for r in results) == [0, 0]


@pytest.mark.parametrize("method", METHODS)
def test_grab_two_with_one_order_always_succeeds(method):
    ctx = mp.get_context(method)
    a, b, out, start = ctx.Lock(), ctx.Lock(), ctx.Queue(), ctx.Barrier(2)
    procs = start_all(
        [
            ctx.Process(
                target=grab_two, args=(out, name, a, b), kwargs={"timeout": 10.0, "rounds": 200, "start": start}
            )
            for name in ("x", "y")
        ]
    )
    results = collect(out, count=2, timeout=30)
    assert join_all(procs, timeout=30) == [0, 0]
    assert sorted((r["worker"], r["got_both"]) for r in results) == [("x", 200), ("y", 200)]


@pytest.mark.parametrize("method", METHODS)
def test_grab_two_holding_first_lock_misses_rounds_only_in_opposite_orders(method):
    ctx = mp.get_context(method)
    a, b = ctx.Lock(), ctx.Lock()
    got = {}
    for label, second_order in (("same", (a, b)), ("opposite", (b, a))):
        out, start = ctx.Queue(), ctx.Barrier(2)
        kwargs = {"timeout": 0.01, "rounds": 50, "start": start, "hold": 0.0005}
        procs = start_all(
            [
                ctx.Process(target=grab_two, args=(out, "one", a, b), kwargs=kwargs),
                ctx.Process(target=grab_two, args=(out, "two", *second_order), kwargs=kwargs),
            ]
        )
        got[label] = sum(r["got_both"] for r in collect(out, count=2, timeout=30))
        assert join_all(procs, timeout=30) == [0, 0]
    assert got["same"] == 100 and got["opposite"] < 100


@pytest.mark.parametrize("method", METHODS)
def test_two_writers_without_a_lock_tear_lines(method, tmp_path):
    ctx = mp.get_context(method)
    path, no_lock, out, start = tmp_path / "shared.txt", NoLock(), ctx.Queue(), ctx.Barrier(2)
    procs = start_all(
        [
            ctx.Process(target=append_with, args=(out, path, no_lock, "with", 100), kwargs={"start": start}),
            ctx.Process(target=append_try_finally, args=(out, path, no_lock, "try", 100), kwargs={"start": start}),
        ]
    )
    assert dict(collect(out, count=2, timeout=30)) == {"with": 100, "try": 100}
    assert join_all(procs, timeout=30) == [0, 0]
    assert check_lines(path.read_text(encoding="utf-8"))["torn"] != []


@pytest.mark.parametrize("method", METHODS)
def test_two_writers_one_file(method, tmp_path):
    ctx = mp.get_context(method)
    path, lock, out = tmp_path / "shared.txt", ctx.Lock(), ctx.Queue()
    procs = start_all(
        [
            ctx.Process(target=append_with, args=(out, str(path), lock, "with", 100)),
            ctx.Process(target=append_try_finally, args=(out, path, lock, "try", 100)),
        ]
    )
    written = dict(collect(out, count=2, timeout=30))
    assert join_all(procs, timeout=30) == [0, 0]
    report = check_lines(path.read_text(encoding="utf-8"))
    assert written == {"with": 100, "try": 100}
    assert report["lines"] == 200 and report["torn"] == []
    assert report["per_writer"] == {"try": 100, "with": 100}
    assert report["in_order"] == {"try": True, "with": True}


def test_append_try_finally_stops_when_lock_is_busy(tmp_path):
    lock, out = threading.Lock(), queue.Queue()
    lock.acquire()
    try:
        append_try_finally(out, tmp_path / "x.txt", lock, "busy", 3, timeout=0.05)
    finally:
        lock.release()
    assert out.get(timeout=1) == ("busy", 0) and not (tmp_path / "x.txt").exists()


def test_append_in_pieces_appends_the_whole_line(tmp_path):
    path = tmp_path / "log.txt"
    append_in_pieces(path, format_line("ab", 1))
    append_in_pieces(str(path), format_line("cd", 2))
    assert path.read_text(encoding="utf-8") == format_line("ab", 1) + format_line("cd", 2)
    with pytest.raises(ValueError):
        append_in_pieces(path, "not a line\n")
    with pytest.raises(TypeError):
        append_in_pieces(3, format_line("ab", 1))


def test_format_and_check_lines():
    line = format_line("ab", 7)
    assert line.endswith("\n") and LINE_PATTERN.match(line.rstrip("\n"))
    report = check_lines(line + format_line("ab", 1) + "ab 00002 ##\n")
    assert report["lines"] == 3 and report["torn"] == ["ab 00002 ##"]
    assert report["per_writer"] == {"ab": 2} and report["in_order"] == {"ab": False}
    assert check_lines("") == {"lines": 0, "torn": [], "per_writer": {}, "in_order": {}}


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: add_many(mp.Value("i", 0), -1, locked=True), ValueError),
        (lambda: add_many(mp.Value("i", 0), 1.5, locked=True), TypeError),
        (lambda: add_many(mp.Value("i", 0), 1, locked="yes"), TypeError),
        (lambda: add_many(mp.Value("i", 0, lock=False), 1, locked=False), TypeError),
        (lambda: add_many(mp.Value("i", 0), 1, locked=True, timeout=-1), ValueError),
        (lambda: add_many(mp.Value("i", 0), 1, locked=True, pause=1), TypeError),
        (lambda: deposit(mp.Value("i", 0), object(), 1), TypeError),
        (lambda: deposit(mp.Value("i", 0), mp.Lock(), -5), ValueError),
        (lambda: deposit_all(queue.Queue(), mp.Value("i", 0), mp.RLock(), []), ValueError),
        (lambda: deposit_all(queue.Queue(), mp.Value("i", 0), mp.RLock(), [1], timeout=1e6), ValueError),
        (lambda: hold_lock(None, None, None), TypeError),
        (lambda: use_resource(queue.Queue(), threading.Semaphore(1), -1), ValueError),
        (lambda: use_resource(queue.Queue(), threading.Semaphore(1), 0, seconds=60), ValueError),
        (lambda: grab_two(queue.Queue(), 1, mp.Lock(), mp.Lock()), TypeError),
        (lambda: grab_two(queue.Queue(), "a", mp.Lock(), mp.Lock(), rounds=0), ValueError),
        (lambda: grab_two(queue.Queue(), "a", mp.Lock(), mp.Lock(), hold=2.0), ValueError),
        (lambda: format_line("Bad Writer", 1), ValueError),
        (lambda: format_line(3, 1), TypeError),
        (lambda: format_line("ok", 100_000), ValueError),
        (lambda: append_with(None, "x", mp.Lock(), "w", 1), TypeError),
        (lambda: append_with(queue.Queue(), 42, mp.Lock(), "w", 1), TypeError),
        (lambda: append_try_finally(queue.Queue(), "x", mp.Lock(), "w", -1), ValueError),
        (lambda: check_lines(b"bytes"), TypeError),
    ],
)
def test_bad_arguments(call, error):
    with pytest.raises(error):
        call()


def test_nothing_left_behind():
    assert mp.active_children() == []
