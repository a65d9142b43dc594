"""helpers.threads.queues: chapter 08's pipeline log and drawings, its child-process workers, their argument checks."""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading

import pytest

from helpers.instruments.timeline import TaskRecord
from helpers.threads.basics import run_named_threads
from helpers.threads.queues import (
    SENTINEL,
    THREAD_PREFIX,
    PipelineLog,
    PipelineRun,
    StreamEnd,
    consume_items,
    helper_threads_alive,
    item_id,
    pipeline_figure,
    pipeline_widget,
    plot_pipeline,
    produce_items,
    run_process_pipeline,
    wait_until_done,
)


@pytest.fixture(autouse=True)
def nothing_left():
    before = threading.active_count()
    yield
    assert helper_threads_alive() == []
    assert threading.active_count() == before
    assert mp.active_children() == []


# --- join with a deadline --------------------------------------------------------------


def test_wait_until_done_on_joinable_queue():
    tasks = mp.JoinableQueue()
    tasks.put(1)
    assert tasks.get(timeout=5) == 1
    assert wait_until_done(tasks, timeout=0.05) is False  # the waiter thread still waits...
    tasks.task_done()
    assert wait_until_done(tasks, timeout=5) is True  # ...and ends once the task is done
    for t in threading.enumerate():
        if t.name.startswith(THREAD_PREFIX):
            t.join(5)
    tasks.close()
    tasks.join_thread()


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


def _one_to_one(items: int, capacity: int, consume_delay: float) -> PipelineRun:
    """A producer and a consumer thread recording into a PipelineLog, as chapter 08's cells do."""
    q: queue.Queue = queue.Queue(maxsize=capacity)
    log, consumed = PipelineLog([q]), []
    ids = [item_id(0, n) for n in range(items)]

    def produce() -> None:
        for item in ids:
            with log.working_on(item):
                pass
            with log.waiting_in("put", q):
                q.put(item, timeout=10)
        q.put(SENTINEL, timeout=10)

    def consume() -> None:
        for _ in range(items + 1):
            with log.waiting_in("get"):
                item = q.get(timeout=10)
            if item is SENTINEL:
                return
            with log.working_on(item):
                threading.Event().wait(consume_delay)
            consumed.append(item)

    run_named_threads([("producer-0", produce), ("consumer-0", consume)], timeout=30, prefix=THREAD_PREFIX)
    return log.result(1, 0, 1, produced=ids, consumed=consumed)


def test_pipeline_log_records_work_waits_and_sizes():
    items, capacity, delay = 8, 2, 0.02
    run = _one_to_one(items, capacity, delay)
    assert isinstance(run, PipelineRun) and run.exactly_once
    assert list(run.consumed) == [item_id(0, n) for n in range(items)]
    assert all(isinstance(r, TaskRecord) for r in run.work + run.waits)
    assert len(run.work) == 2 * items  # made once, consumed once
    assert {r.result for r in run.work} == {"producer", "consumer"}
    assert {r.result for r in run.waits} <= {"put", "get"}
    assert 1 <= run.max_sizes[0] <= capacity and run.capacity == capacity
    assert run.waited("put") > 0  # the consumer is slower: the producer waited for room
    assert run.threads() == [THREAD_PREFIX + "producer-0", THREAD_PREFIX + "consumer-0"]
    assert all(0.0 <= b <= 1.0 for b in run.busy().values())
    assert run.elapsed >= (items - capacity - 1) * delay and run.start > 0


def test_pipeline_log_role_labels_come_from_thread_names():
    log = PipelineLog()

    def work() -> None:
        with log.working_on("x"):
            pass

    run_named_threads([("stage2-0", work), ("consumer-1", work)], timeout=10, prefix=THREAD_PREFIX)
    assert sorted(r.result for r in log.work) == ["consumer", "stage 2"]


def test_pipeline_log_bad_input():
    q = queue.Queue()
    log = PipelineLog([q])
    with pytest.raises(ValueError):
        with log.waiting_in("sleep"):
            pass
    with pytest.raises(ValueError):
        with log.waiting_in("put", queue.Queue()):  # not one of the log's queues
            pass
    with pytest.raises(TypeError):
        PipelineLog(["not a queue"])
    with pytest.raises(ValueError):
        PipelineLog(min_wait=-1)
    with pytest.raises(ValueError):
        log.result(0, 0, 1, produced=(), consumed=())


def test_waited_bad_kind():
    run = PipelineLog().result(1, 0, 1, produced=(), consumed=())
    assert run.exactly_once and run.throughput == 0.0 and run.max_sizes == ()
    with pytest.raises(ValueError):
        run.waited("sleep")


def test_stream_end_all_stopped_cleanly():
    assert StreamEnd("sentinels", {"consumer-0": "sentinel"}, (0, 1)).all_stopped_cleanly
    assert not StreamEnd("sentinels", {"consumer-0": "timed out"}, ()).all_stopped_cleanly


# --- drawing ------------------------------------------------------------------------------


def test_plot_pipeline_and_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = _one_to_one(6, 2, 0.002)
    ax = plot_pipeline(run, title="t", legend=False)
    assert len(ax.get_yticks()) == 2
    fig = pipeline_figure(run)
    assert len(fig.axes) == 2
    plt.close("all")
    with pytest.raises(TypeError):
        plot_pipeline([])
    with pytest.raises(TypeError):
        pipeline_figure("run")


def test_pipeline_widget_calls_the_run_it_is_given():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calls = []

    def run_pipeline(producers, consumers, items):
        calls.append((producers, consumers, items))
        return _one_to_one(items, 2, 0.0)

    box = pipeline_widget(run_pipeline, max_producers=3, max_consumers=2, items=4)
    assert calls == [(2, 2, 4)]  # drawn once at the sliders' start values
    assert [child.max for child in box.children[0].children] == [3, 2]
    plt.close("all")
    with pytest.raises(TypeError):
        pipeline_widget("run_pipeline")
    with pytest.raises(ValueError):
        pipeline_widget(run_pipeline, max_producers=0)


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


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: run_process_pipeline(0, 1, 1), ValueError),
        (lambda: run_process_pipeline(1, 1, 1, ctx="fork"), TypeError),
        (lambda: run_process_pipeline(1, 1, 1, delay=-1), ValueError),
        (lambda: produce_items([], queue.Queue(), 0, 1), TypeError),
        (lambda: produce_items(queue.Queue(), queue.Queue(), 0, -1), ValueError),
        (lambda: consume_items(queue.SimpleQueue(), queue.Queue()), TypeError),
        (lambda: consume_items(queue.Queue(), queue.Queue(), max_items=0), ValueError),
    ],
)
def test_process_bad_input(call, error):
    with pytest.raises(error):
        call()
