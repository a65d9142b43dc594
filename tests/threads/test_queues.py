"""helpers.threads.queues: chapter 08's producers, stages and consumers, their results, and their argument checks."""
from __future__ import annotations

import multiprocessing as mp
import queue
import threading
from collections import Counter

import pytest

from helpers.threads.queues import (
    HAS_SHUTDOWN, SENTINEL, THREAD_PREFIX, PipelineRun, consume_items, end_stream,
    helper_threads_alive, item_id, join_queue, pipeline_figure, plot_pipeline, produce_items,
    run_pipeline, run_process_pipeline, wait_until_done,
)
from helpers.instruments.timeline import TaskRecord


@pytest.fixture(autouse=True)
def nothing_left():
    before = threading.active_count()
    yield
    assert helper_threads_alive() == []
    assert threading.active_count() == before
    assert mp.active_children() == []


# --- join with a deadline --------------------------------------------------------------

def test_join_queue_true_when_all_done():
    q = queue.Queue()
    for n in range(3):
        q.put(n)
    for _ in range(3):
        q.get_nowait()
        q.task_done()
    assert join_queue(q, timeout=0.5) is True


def test_join_queue_false_without_task_done():
    q = queue.Queue()
    q.put("x")
    q.get_nowait()  # taken but never marked done
    assert join_queue(q, timeout=0.05) is False
    assert q.unfinished_tasks == 1


def test_wait_until_done_on_joinable_queue():
    tasks = mp.JoinableQueue()
    tasks.put(1)
    assert tasks.get(timeout=5) == 1
    assert wait_until_done(tasks, timeout=0.05) is False  # the waiter thread still waits...
    tasks.task_done()
    assert wait_until_done(tasks, timeout=5) is True      # ...and ends once the task is done
    for t in threading.enumerate():
        if t.name.startswith(THREAD_PREFIX):
            t.join(5)
    tasks.close()
    tasks.join_thread()


@pytest.mark.parametrize("args, error", [
    (([], 1.0), TypeError),
    ((queue.Queue(), -1), ValueError),
    ((queue.Queue(), "1"), TypeError),
])
def test_join_queue_bad_input(args, error):
    with pytest.raises(error):
        join_queue(*args)


def test_wait_until_done_bad_input():
    with pytest.raises(TypeError):
        wait_until_done(queue.SimpleQueue(), 1.0)
    with pytest.raises(ValueError):
        wait_until_done(queue.Queue(), 1e9)


# --- the thread pipeline --------------------------------------------------------------

def test_item_id():
    assert item_id(0, 3) == "p0-3"
    with pytest.raises(ValueError):
        item_id(-1, 0)
    with pytest.raises(TypeError):
        item_id(0, "3")


@pytest.mark.parametrize("producers, stages, consumers", [(1, 0, 1), (2, 1, 3), (3, 2, 2)])
def test_pipeline_every_item_exactly_once(producers, stages, consumers):
    run = run_pipeline(producers, stages, consumers, items=15, produce_delay=0.0, stage_delay=0.001,
                       consume_delay=0.002)
    assert isinstance(run, PipelineRun)
    assert run.exactly_once
    assert Counter(run.consumed) == Counter(item_id(p, n) for p in range(producers)
                                            for n in range(len([i for i in run.produced
                                                                if i.startswith(f"p{p}-")])))
    assert len(run.produced) == len(run.consumed) == 15
    assert all(isinstance(r, TaskRecord) for r in run.work + run.waits)
    assert len(run.work) == 15 * (2 + stages)  # produce, each stage, consume
    assert all(size <= 4 for size in run.max_sizes)
    assert len(run.threads()) == producers + stages + consumers
    assert run.threads()[0].startswith(THREAD_PREFIX + "producer")
    assert all(0.0 <= b <= 1.0 for b in run.busy().values())


def test_pipeline_zero_items():
    run = run_pipeline(2, 1, 2, items=0)
    assert run.produced == run.consumed == ()
    assert run.exactly_once


def test_bounded_queue_makes_producer_wait():
    items, capacity, delay = 8, 2, 0.02
    run = run_pipeline(1, 0, 1, items=items, capacity=capacity, produce_delay=0.0, consume_delay=delay)
    assert list(run.consumed) == [item_id(0, n) for n in range(items)]  # one of each: order kept
    assert run.max_sizes[0] <= capacity
    last_put = max(r.end for r in run.waits if r.result == "put")
    # item i can only go in once the consumer has taken item i - capacity, at least i - capacity delays in
    assert last_put - run.start >= 0.9 * (items - 1 - capacity) * delay
    assert run.waited("put") > 0


def test_unbounded_queue_producer_never_full():
    run = run_pipeline(1, 0, 1, items=6, capacity=0, produce_delay=0.0, consume_delay=0.01)
    assert run.waited("put") == 0.0
    assert run.max_sizes[0] >= 1


@pytest.mark.parametrize("kwargs, error", [
    ({"producers": 0}, ValueError),
    ({"consumers": 0}, ValueError),
    ({"stages": -1}, ValueError),
    ({"producers": 1.5}, TypeError),
    ({"items": 10_001}, ValueError),
    ({"capacity": -1}, ValueError),
    ({"consume_delay": -0.1}, ValueError),
    ({"consume_delay": "slow"}, TypeError),
    ({"timeout": 0}, ValueError),
])
def test_pipeline_bad_input(kwargs, error):
    with pytest.raises(error):
        run_pipeline(**kwargs)


def test_waited_bad_kind():
    run = run_pipeline(1, 0, 1, items=1, consume_delay=0.0)
    with pytest.raises(ValueError):
        run.waited("sleep")


# --- ending the stream ------------------------------------------------------------------

def test_one_sentinel_per_consumer():
    end = end_stream(3, 9, ending="sentinels")
    assert end.stopped == {f"consumer-{i}": "sentinel" for i in range(3)}
    assert end.consumed == tuple(range(9))
    assert end.all_stopped_cleanly


def test_too_few_sentinels_leave_consumers_waiting():
    end = end_stream(3, 6, ending="sentinels", sentinels=1, idle_timeout=0.1)
    assert sorted(end.stopped.values()) == ["sentinel", "timed out", "timed out"]
    assert end.consumed == tuple(range(6))
    assert not end.all_stopped_cleanly


def test_auto_ending():
    end = end_stream(2, 4)
    assert end.ending == ("shutdown" if HAS_SHUTDOWN else "sentinels")
    assert end.all_stopped_cleanly and end.consumed == tuple(range(4))


@pytest.mark.skipif(not HAS_SHUTDOWN, reason="Queue.shutdown needs Python 3.13+")
def test_shutdown_ending():
    end = end_stream(3, 9, ending="shutdown")
    assert set(end.stopped.values()) == {"shutdown"}


@pytest.mark.skipif(HAS_SHUTDOWN, reason="only before Python 3.13")
def test_shutdown_refused_before_313():
    with pytest.raises(ValueError, match="3.13"):
        end_stream(2, 2, ending="shutdown")


@pytest.mark.parametrize("kwargs, error", [
    ({"ending": "poison"}, ValueError),
    ({"consumers": 0}, ValueError),
    ({"sentinels": -1}, ValueError),
    ({"idle_timeout": -1}, ValueError),
    ({"items": "9"}, TypeError),
])
def test_end_stream_bad_input(kwargs, error):
    with pytest.raises(error):
        end_stream(**kwargs)


# --- drawing ------------------------------------------------------------------------------

def test_plot_pipeline_and_figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = run_pipeline(2, 1, 2, items=6, produce_delay=0.0, stage_delay=0.001, consume_delay=0.002)
    ax = plot_pipeline(run, title="t", legend=False)
    assert len(ax.get_yticks()) == 5
    fig = pipeline_figure(run)
    assert len(fig.axes) == 2
    plt.close("all")
    with pytest.raises(TypeError):
        plot_pipeline([])
    with pytest.raises(TypeError):
        pipeline_figure("run")


# --- processes --------------------------------------------------------------------------------

def test_process_pipeline_every_item_exactly_once():
    run = run_process_pipeline(2, 2, 10, delay=0.0, timeout=60)
    assert run.exactly_once and run.all_done
    assert sorted(run.produced) == sorted(item_id(p, n) for p in range(2) for n in range(5))
    assert run.exitcodes == (0, 0, 0, 0)
    assert all(isinstance(r, TaskRecord) for r in run.records)


def test_process_workers_in_this_process():
    # The child-side functions are plain functions: run them here, with the sentinel already queued.
    tasks, results, log = mp.JoinableQueue(), mp.Queue(), mp.Queue()
    produce_items(tasks, log, 1, 3)
    tasks.put(SENTINEL)
    consume_items(tasks, results, idle_timeout=5)
    assert log.get(timeout=5) == ["p1-0", "p1-1", "p1-2"]
    records = [results.get(timeout=5) for _ in range(3)]
    assert [r.task for r in records] == ["p1-0", "p1-1", "p1-2"]
    assert wait_until_done(tasks, timeout=5) is True  # every get, the sentinel too, was task_done
    for q in (tasks, results, log):
        q.close()
        q.join_thread()


@pytest.mark.parametrize("call, error", [
    (lambda: run_process_pipeline(0, 1, 1), ValueError),
    (lambda: run_process_pipeline(1, 1, 1, ctx="fork"), TypeError),
    (lambda: run_process_pipeline(1, 1, 1, delay=-1), ValueError),
    (lambda: produce_items([], queue.Queue(), 0, 1), TypeError),
    (lambda: produce_items(queue.Queue(), queue.Queue(), 0, -1), ValueError),
    (lambda: consume_items(queue.SimpleQueue(), queue.Queue()), TypeError),
    (lambda: consume_items(queue.Queue(), queue.Queue(), max_items=0), ValueError),
])
def test_process_bad_input(call, error):
    with pytest.raises(error):
        call()
