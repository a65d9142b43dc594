"""helpers.processes.pools: chapter 03's pool targets and tools, under fork and spawn."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pytest

from helpers.instruments.speedup import JobRun
from helpers.instruments.timeline import TaskRecord
from helpers.instruments.workloads import count_primes
from helpers.processes.pools import (
    die_now,
    fail_if,
    init_worker,
    join_pool,
    nap,
    prime_chunks,
    put_square,
    ready_pool,
    return_a_lock,
    run_primes_on_pool,
    sleep_then_square,
    start_waves,
    timed_prime_chunk,
    wait_for_all_workers,
    worker_info,
)

METHODS = [m for m in ("fork", "spawn") if m in mp.get_all_start_methods()]


def test_plain_functions_in_this_process():
    assert sleep_then_square(7) == 49 and sleep_then_square(3, 0.01) == 9
    assert fail_if(4, 3) == 16
    with pytest.raises(ValueError, match="task 3 refuses"):
        fail_if(3, 3)
    rec = timed_prime_chunk(5, 0, 100)
    assert isinstance(rec, TaskRecord) and rec.task == 5 and rec.result == 25 and rec.pid == os.getpid()


def test_nap_and_start_waves():
    assert nap(0) == 0 and nap(0.01) == 0.01
    records = [TaskRecord(i, 1, "t", 10 + 0.2 * (i // 5) + 0.001 * i, 10.2 + 0.2 * (i // 5)) for i in range(15)]
    waves = start_waves(reversed(records), gap=0.1)
    assert [[r.task for r in wave] for wave in waves] == [list(range(0, 5)), list(range(5, 10)), list(range(10, 15))]


def test_worker_info_without_and_with_initializer(monkeypatch):
    import helpers.processes.pools as pools

    monkeypatch.setattr(pools, "_WORKER_STATE", None)
    assert worker_info(1) == {"x": 1, "pid": os.getpid(), "label": None, "tasks": 0}
    init_worker("here")
    assert worker_info(2)["tasks"] == 1 and worker_info(3) == {"x": 3, "pid": os.getpid(), "label": "here", "tasks": 2}


@pytest.mark.parametrize("limit, chunks", [(10, 1), (10, 3), (600_000, 24), (7, 7)])
def test_prime_chunks_cover_the_range(limit, chunks):
    ranges = prime_chunks(limit, chunks)
    assert len(ranges) == chunks and ranges[0][0] == 0 and ranges[-1][1] == limit
    assert all(a < b for a, b in ranges) and all(r[1] == s[0] for r, s in zip(ranges, ranges[1:]))


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: prime_chunks(10, 11), ValueError),
        (lambda: prime_chunks(0, 1), ValueError),
        (lambda: prime_chunks(10, 0), ValueError),
        (lambda: prime_chunks(10.0, 2), TypeError),
        (lambda: sleep_then_square(2, -1), ValueError),
        (lambda: sleep_then_square("2"), TypeError),
        (lambda: fail_if(1, None), TypeError),
        (lambda: die_now(256), ValueError),
        (lambda: die_now("1"), TypeError),
        (lambda: init_worker(3), TypeError),
        (lambda: worker_info(-1), ValueError),
        (lambda: ready_pool(0), ValueError),
        (lambda: ready_pool(2, initializer=print), ValueError),
        (lambda: run_primes_on_pool(0), ValueError),
        (lambda: join_pool("pool"), TypeError),
        (lambda: nap(-0.5), ValueError),
        (lambda: put_square(None, "3"), TypeError),
        (lambda: return_a_lock(None), TypeError),
        (lambda: start_waves([], 0.1), ValueError),
        (lambda: start_waves(["x"], 0.1), TypeError),
        (lambda: start_waves([TaskRecord(0, 1, "t", 0.0, 1.0)], 0), ValueError),
        (lambda: wait_for_all_workers(None, timeout=-1), ValueError),
    ],
)
def test_bad_arguments_are_refused(call, error):
    with pytest.raises(error):
        call()


@pytest.mark.parametrize("method", METHODS)
def test_ready_pool_replacement_workers_do_not_wait_at_the_barrier(method):
    pool = ready_pool(1, ctx=mp.get_context(method), timeout=20, maxtasksperchild=1)
    try:
        began = time.monotonic()
        pids = {pool.apply_async(os.getpid).get(timeout=60) for _ in range(3)}
        elapsed = time.monotonic() - began
    finally:
        pool.terminate()
        join_pool(pool, 10)
    assert len(pids) == 3  # three workers: the first and two replacements
    assert elapsed < 20, elapsed  # a replacement stuck at the barrier would wait out the 20 s timeout


def test_put_square_and_return_a_lock():
    import queue
    import threading

    out = queue.Queue()
    assert put_square(out, 3) == 3 and out.get_nowait() == 9
    assert isinstance(return_a_lock(1), type(threading.Lock()))


@pytest.mark.parametrize("method", METHODS)
def test_pool_task_arguments_and_results_that_cannot_travel(method):
    from multiprocessing.pool import MaybeEncodingError

    ctx = mp.get_context(method)
    with ctx.Pool(1) as pool:
        with pytest.raises(RuntimeError, match="through inheritance"):
            pool.apply_async(put_square, (ctx.Queue(), 3)).get(timeout=30)
        with pytest.raises(MaybeEncodingError, match="cannot pickle"):
            pool.apply_async(return_a_lock, (1,)).get(timeout=30)
        with ctx.Manager() as manager:
            managed = manager.Queue()
            assert pool.apply_async(put_square, (managed, 3)).get(timeout=30) == 3
            assert managed.get(timeout=10) == 9


def test_join_pool_needs_close_first():
    pool = mp.get_context("fork" if "fork" in METHODS else "spawn").Pool(1)
    try:
        with pytest.raises(ValueError, match="close"):
            join_pool(pool, 5)
    finally:
        pool.terminate()
        join_pool(pool, 10)


@pytest.mark.parametrize("method", METHODS)
def test_initializer_state_and_maxtasksperchild(method):
    ctx = mp.get_context(method)
    with ctx.Pool(2, initializer=init_worker, initargs=("w",), maxtasksperchild=1) as pool:
        fresh = pool.map_async(worker_info, range(4), chunksize=1).get(60)
        pool.close()
        join_pool(pool, 30)
    assert [r["x"] for r in fresh] == [0, 1, 2, 3]
    assert len({r["pid"] for r in fresh}) == 4 and {r["tasks"] for r in fresh} == {1}
    assert {r["label"] for r in fresh} == {"w"}


@pytest.mark.parametrize("method", METHODS)
def test_ready_pool_and_prime_job(method):
    ctx = mp.get_context(method)
    pool = ready_pool(2, ctx=ctx, timeout=60)
    try:
        assert len({r["pid"] for r in pool.map_async(worker_info, range(6)).get(60)}) <= 2
        pool.close()
        join_pool(pool, 30)
    finally:
        pool.terminate()
    run = run_primes_on_pool(2, limit=20_000, chunks=6, ctx=ctx)
    assert isinstance(run, JobRun) and run.workers == 2 and run.result == count_primes(20_000)
    assert sorted(r.task for r in run.records) == list(range(6)) and len({r.pid for r in run.records}) <= 2


@pytest.mark.parametrize("method", METHODS)
def test_task_error_and_dead_worker(method):
    ctx = mp.get_context(method)
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert ex.submit(fail_if, 2, 3).result(60) == 4
        with pytest.raises(ValueError, match="refuses"):
            ex.submit(fail_if, 3, 3).result(60)
        with pytest.raises(BrokenProcessPool):
            ex.submit(die_now, 1).result(60)
    assert mp.active_children() == []
