"""helpers.processes.sharing: chapter 04's child targets and measurements, under fork and spawn."""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
from multiprocessing import shared_memory

import pytest

from helpers.processes import sharing
from helpers.processes.basics import collect, join_all, put_squares
from helpers.processes.sharing import (
    MECHANISMS,
    add_to_each,
    add_to_value,
    bulk_transfer_seconds,
    double_shareable_list,
    echo_upper,
    format_seconds,
    make_payload,
    put_payload,
    record_visits,
    segment_exists,
    send_numbers,
    small_updates_seconds,
    square_tasks,
    sum_shared_bytes,
)

METHODS = [m for m in ("fork", "spawn") if m in mp.get_all_start_methods()]


@pytest.mark.parametrize("method", METHODS)
def test_value_and_array_with_their_locks(method):
    ctx = mp.get_context(method)
    counter = ctx.Value("i", 0)
    cells = ctx.Array("i", 3)
    procs = [ctx.Process(target=add_to_value, args=(counter, 2_000)) for _ in range(2)]
    procs += [ctx.Process(target=add_to_each, args=(cells, 500, 2)) for _ in range(2)]
    for p in procs:
        p.start()
    assert join_all(procs, timeout=30) == [0, 0, 0, 0]
    assert counter.value == 4_000
    assert list(cells) == [2_000, 2_000, 2_000]


@pytest.mark.parametrize("method", METHODS)
def test_lined_up_racers_lose_updates_without_the_lock(method):
    ctx = mp.get_context(method)
    counts = {}
    for use_lock in (False, True):
        counter, start = ctx.Value("i", 0), ctx.Barrier(2)
        kwargs = {"use_lock": use_lock, "start": start, "pause": 0.0001}
        procs = [ctx.Process(target=add_to_value, args=(counter, 500), kwargs=kwargs) for _ in range(2)]
        for p in procs:
            p.start()
        assert join_all(procs, timeout=30) == [0, 0]
        counts[use_lock] = counter.value
    assert counts[True] == 1_000  # the lock closes even the widened window
    assert counts[False] < 1_000  # lined up, with a pause between read and write: updates lost


def test_segment_exists_on_both_branches(monkeypatch):
    shm = shared_memory.SharedMemory(create=True, size=16)
    try:
        assert segment_exists(shm.name) and segment_exists("/" + shm.name)
        monkeypatch.setattr(sharing, "_POSIX_SHM", False)  # the attach-and-close branch (Windows)
        assert segment_exists(shm.name)
    finally:
        shm.close()
        shm.unlink()
    assert not segment_exists(shm.name)
    monkeypatch.setattr(sharing, "_POSIX_SHM", True)
    assert not segment_exists(shm.name)


@pytest.mark.parametrize("method", METHODS)
def test_joinable_queue_simple_queue_and_pipes(method):
    ctx = mp.get_context(method)
    tasks, results = ctx.JoinableQueue(), ctx.Queue()
    worker = ctx.Process(target=square_tasks, args=(tasks, results, 100, 10.0))
    worker.start()
    for n in range(5):
        tasks.put(n)
    tasks.put(None)
    joiner = threading.Thread(target=tasks.join, daemon=True)  # join() has no timeout of its own
    joiner.start()
    joiner.join(30)
    assert not joiner.is_alive()  # square_tasks marked every item done, the None included
    assert sorted(collect(results, count=5, timeout=30)) == [(n, n * n) for n in range(5)]

    simple = ctx.SimpleQueue()
    squarer = ctx.Process(target=put_squares, args=(simple, [1, 2, 3]))
    squarer.start()
    reader, writer = ctx.Pipe(duplex=False)
    sender = ctx.Process(target=send_numbers, args=(writer, 4))
    sender.start()
    writer.close()
    here, there = ctx.Pipe()
    echo = ctx.Process(target=echo_upper, args=(there, 10, 10.0))
    echo.start()
    there.close()
    got = []
    while reader.poll(10):
        item = reader.recv()
        if item is None:
            break
        got.append(item)
    here.send("abc")
    assert here.poll(10) and here.recv() == "ABC"
    here.send(None)
    assert join_all([worker, squarer, sender, echo], timeout=30) == [0, 0, 0, 0]
    squares = []
    while not simple.empty():
        squares.append(simple.get())
    assert squares == [1, 4, 9] and got == [0, 1, 2, 3]
    for conn in (reader, here):
        conn.close()
    simple.close()
    tasks.close()
    results.close()


# Not under fork: a forked child inherits the parent's end too, and its own copy keeps the pipe open.
@pytest.mark.parametrize("method", [m for m in METHODS if m != "fork"])
def test_echo_upper_ends_when_the_other_end_closes(method):
    ctx = mp.get_context(method)
    here, there = ctx.Pipe()
    echo = ctx.Process(target=echo_upper, args=(there, 10, 30.0))
    echo.start()
    there.close()
    here.close()  # no None sent: the child sees end-of-file instead
    assert join_all([echo], timeout=20) == [0]


@pytest.mark.parametrize("method", METHODS)
def test_a_queue_producer_waits_at_exit_until_its_big_item_is_read(method):
    ctx = mp.get_context(method)
    out, sent = ctx.Queue(), ctx.Event()
    producer = ctx.Process(target=put_payload, args=(out, 1_000_000, sent))
    producer.start()
    assert sent.wait(timeout=30)
    producer.join(timeout=1)
    assert producer.is_alive()  # its feeder thread still holds most of the megabyte
    assert out.get(timeout=30) == make_payload(1_000_000)
    assert join_all([producer], timeout=30) == [0]
    out.close()
    out.join_thread()


@pytest.mark.parametrize("method", METHODS)
def test_manager_objects_are_shared(method):
    ctx = mp.get_context(method)
    with ctx.Manager() as manager:
        d, lst, ns, lock = manager.dict(), manager.list(), manager.Namespace(), manager.Lock()
        ns.total = 0
        procs = [ctx.Process(target=record_visits, args=(d, lst, ns, lock, f"w{i}", 20)) for i in range(2)]
        for p in procs:
            p.start()
        assert join_all(procs, timeout=30) == [0, 0]
        assert dict(d) == {"w0": 20, "w1": 20} and len(lst) == 40 and ns.total == 40


@pytest.mark.parametrize("method", METHODS)
def test_shared_memory_attach_by_name_and_unlink(method):
    ctx = mp.get_context(method)
    out = ctx.Queue()
    shm = shared_memory.SharedMemory(create=True, size=1000)
    numbers = shared_memory.ShareableList([1, 2, 3])
    try:
        shm.buf[:1000] = make_payload(1000)
        procs = [
            ctx.Process(target=sum_shared_bytes, args=(shm.name, 0, 500, out)),
            ctx.Process(target=sum_shared_bytes, args=(shm.name, 500, 1000, out)),
            ctx.Process(target=double_shareable_list, args=(numbers.shm.name, out)),
        ]
        for p in procs:
            p.start()
        assert join_all(procs, timeout=30) == [0, 0, 0]
        parts = collect(out, count=3, timeout=10)
        assert sorted(parts) == sorted([sum(make_payload(1000)[:500]), sum(make_payload(1000)[500:]), 3])
        assert list(numbers) == [2, 4, 6]
        assert segment_exists(shm.name) and segment_exists(numbers.shm.name)
    finally:
        for segment in (shm, numbers.shm):
            segment.close()
            segment.unlink()
    assert not segment_exists(shm.name) and not segment_exists(numbers.shm.name)
    out.close()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_measurements_check_their_data(method, mechanism):
    ctx = mp.get_context(method)
    assert 0 < bulk_transfer_seconds(mechanism, 100_000, ctx=ctx, timeout=30) < 30
    assert 0 < small_updates_seconds(mechanism, 200, ctx=ctx, timeout=30) < 30
    assert mp.active_children() == []


def test_format_seconds():
    assert [format_seconds(x) for x in (2.5, 0.0123, 4.56e-5)] == ["2.50 s", "12.3 ms", "45.6 µs"]


def test_payload():
    assert make_payload(0) == b"" and make_payload(258) == bytes(range(256)) + b"\x00\x01"


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: add_to_value(5, 1), TypeError),
        (lambda: add_to_value(mp.Value("i", 0), -1), ValueError),
        (lambda: add_to_value(mp.Value("i", 0), 1, use_lock="yes"), TypeError),
        (lambda: add_to_value(mp.Value("i", 0, lock=False), 1), TypeError),
        (lambda: add_to_value(mp.Value("i", 0), 1, start="now"), TypeError),
        (lambda: add_to_value(mp.Value("i", 0), 1, pause=-0.1), ValueError),
        (lambda: add_to_each(mp.Array("i", 2), 1, amount=1.5), TypeError),
        (lambda: add_to_each([1, 2], 1), TypeError),
        (lambda: square_tasks(queue.SimpleQueue(), queue.Queue()), TypeError),
        (lambda: square_tasks(queue.Queue(), queue.Queue(), max_tasks=0), ValueError),
        (lambda: send_numbers(None, -1), ValueError),
        (lambda: echo_upper(None, max_messages=0), ValueError),
        (lambda: put_payload(None, -1), ValueError),
        (lambda: record_visits({}, [], None, None, 7, 1), TypeError),
        (lambda: sum_shared_bytes(123, 0, 1, None), TypeError),
        (lambda: sum_shared_bytes("psm_x", 5, 1, None), ValueError),
        (lambda: sum_shared_bytes("a/b", 0, 1, None), ValueError),
        (lambda: double_shareable_list("", None), ValueError),
        (lambda: segment_exists(None), TypeError),
        (lambda: make_payload(-1), ValueError),
        (lambda: format_seconds("1 s"), TypeError),
        (lambda: format_seconds(float("nan")), ValueError),
        (lambda: bulk_transfer_seconds("carrier pigeon", 10), ValueError),
        (lambda: bulk_transfer_seconds(3, 10), TypeError),
        (lambda: bulk_transfer_seconds("queue", 0), ValueError),
        (lambda: bulk_transfer_seconds("queue", 10, ctx="fork"), TypeError),
        (lambda: small_updates_seconds("pipe", 10, timeout="soon"), TypeError),
        (lambda: small_updates_seconds("pipe", 10**9), ValueError),
    ],
)
def test_bad_input_is_rejected(call, error):
    with pytest.raises(error):
        call()
