"""Producers, stages and consumers joined by queues, for chapter 08 (connect producers and consumers with queues, 队列).

Two halves:

* **Threads and** :class:`queue.Queue`. :func:`run_pipeline` starts N producers,
  M stages and K consumers, joins them with a timeout and returns a
  :class:`PipelineRun`: every piece of work and every wait in a ``put`` or a
  ``get`` as :class:`~helpers.instruments.timeline.TaskRecord` values, plus the ids produced
  and consumed. :func:`end_stream` shows how consumers learn that the stream is
  over (sentinels, or ``Queue.shutdown`` on Python 3.13+). :func:`join_queue` is
  ``Queue.join()`` with a deadline. :func:`plot_pipeline` draws work and waits,
  :func:`pipeline_widget` puts sliders on :func:`run_pipeline`.
* **Processes and** :class:`multiprocessing.JoinableQueue`. :func:`produce_items`
  and :func:`consume_items` run in child processes (spawn-safe: they are
  top-level functions here); :func:`run_process_pipeline` wires them up and
  waits for every task with :func:`wait_until_done`, a ``join()`` with a timeout.

Nothing here prints. Each thread's body runs in a wrapper that keeps any
exception and re-raises it in the caller after the join, so nothing reaches
``threading.excepthook`` (which would print to stderr). Every loop is bounded
and every ``get``/``put``/``join``/``wait`` has a timeout.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from helpers.processes.basics import collect, join_all
from helpers.threads.basics import run_named_threads
from helpers.instruments.timeline import TaskRecord
from helpers.instruments.workloads import _check_int, _check_seconds

__all__ = [
    "THREAD_PREFIX",
    "SENTINEL",
    "HAS_SHUTDOWN",
    "PipelineRun",
    "StreamEnd",
    "ProcessRun",
    "helper_threads_alive",
    "join_queue",
    "wait_until_done",
    "run_pipeline",
    "end_stream",
    "plot_pipeline",
    "pipeline_figure",
    "pipeline_widget",
    "item_id",
    "produce_items",
    "consume_items",
    "run_process_pipeline",
]

#: Every thread this module starts has a name beginning with this prefix.
THREAD_PREFIX = "ch08-"
#: The end-of-stream marker. ``None`` survives pickling, so processes can use it too.
SENTINEL = None
#: ``queue.Queue.shutdown`` exists from Python 3.13.
HAS_SHUTDOWN = hasattr(queue.Queue, "shutdown")
MAX_ITEMS = 10_000  # bound on every loop's length
MAX_WORKERS = 32
MAX_WAIT = 120.0  # seconds: the longest any get, put, wait or join here may block
MAX_DELAY = 5.0  # seconds of simulated work per item


def _check_queue(name: str, value: Any) -> Any:
    if not (callable(getattr(value, "put", None)) and callable(getattr(value, "get", None))):
        raise TypeError(f"{name} must be a queue (something with put() and get()), got {type(value).__name__}")
    return value


def _check_joinable(name: str, value: Any) -> Any:
    _check_queue(name, value)
    if not (callable(getattr(value, "task_done", None)) and callable(getattr(value, "join", None))):
        raise TypeError(f"{name} must be a joinable queue (with task_done() and join()), "
                        f"got {type(value).__name__}")
    return value


def helper_threads_alive() -> list[str]:
    """Names of the threads this module started that are still alive (should be ``[]``)."""
    return [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


def _run_threads(bodies: Sequence[tuple[str, Callable[[], Any]]], timeout: float) -> list[Any]:
    """:func:`helpers.threads.basics.run_named_threads`, with this chapter's thread-name prefix."""
    return run_named_threads(bodies, timeout, prefix=THREAD_PREFIX)


# --- join with a deadline ----------------------------------------------------------------

def join_queue(q: queue.Queue, timeout: float) -> bool:
    """``q.join()`` with a timeout, for a :class:`queue.Queue`: True once every task is done.

    ``Queue.join()`` has no timeout. It waits on the queue's ``all_tasks_done``
    condition until ``unfinished_tasks`` is 0; this does the same wait with a
    deadline, and no extra thread.
    """
    if not isinstance(q, queue.Queue):
        raise TypeError(f"q must be a queue.Queue (or LifoQueue, PriorityQueue), got {type(q).__name__}")
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    with q.all_tasks_done:
        return q.all_tasks_done.wait_for(lambda: q.unfinished_tasks == 0, timeout)


def wait_until_done(q: Any, timeout: float) -> bool:
    """``q.join()`` with a timeout for any joinable queue, a ``multiprocessing.JoinableQueue`` too.

    A :class:`queue.Queue` goes through :func:`join_queue`. Otherwise a helper
    thread (``ch08-join-waiter``) calls ``join()`` and is joined with the
    timeout. On False that thread keeps waiting, and ends by itself as soon as
    the remaining tasks are marked done.
    """
    if isinstance(q, queue.Queue):
        return join_queue(q, timeout)
    _check_joinable("q", q)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    waiter = threading.Thread(target=q.join, name=THREAD_PREFIX + "join-waiter", daemon=True)
    waiter.start()
    waiter.join(timeout)
    return not waiter.is_alive()


# --- a pipeline of threads ------------------------------------------------------------------

@dataclass(frozen=True)
class PipelineRun:
    """One run of :func:`run_pipeline`.

    ``work`` holds one record per item per worker (``result`` is the role:
    ``"producer"``, ``"stage 1"``..., ``"consumer"``); ``waits`` one record per
    blocking ``put`` (``result="put"``, the queue was full) or ``get``
    (``result="get"``, it was empty). ``max_sizes`` is the largest ``qsize()``
    seen after a put on each queue.
    """

    producers: int
    stages: int
    consumers: int
    capacity: int
    elapsed: float
    produced: tuple[str, ...]
    consumed: tuple[str, ...]
    work: tuple[TaskRecord, ...]
    waits: tuple[TaskRecord, ...]
    max_sizes: tuple[int, ...]
    start: float = 0.0

    @property
    def exactly_once(self) -> bool:
        """Every produced id was consumed exactly once (multiset equality), and nothing else was."""
        return Counter(self.produced) == Counter(self.consumed)

    @property
    def throughput(self) -> float:
        """Items consumed per second of the whole run."""
        return len(self.consumed) / self.elapsed if self.elapsed > 0 else 0.0

    def threads(self) -> list[str]:
        """Thread names, producers first, then each stage, then consumers."""
        names = {r.thread for r in self.work + self.waits}
        order = {"producer": 0, "stage": 1, "consumer": 2}

        def key(name: str):
            role, _, number = name.removeprefix(THREAD_PREFIX).rpartition("-")
            stage = role.removeprefix("stage")
            return (order.get(_role_of(name), 3), int(stage) if stage.isdigit() else 0,
                    int(number) if number.isdigit() else 0)
        return sorted(names, key=key)

    def busy(self) -> dict[str, float]:
        """Fraction of the run each thread spent working (not waiting), by thread name."""
        total = {name: 0.0 for name in self.threads()}
        for rec in self.work:
            total[rec.thread] += rec.duration
        return {name: (t / self.elapsed if self.elapsed > 0 else 0.0) for name, t in total.items()}

    def waited(self, kind: str) -> float:
        """Seconds spent blocked in ``put`` (``kind="put"``) or ``get`` (``kind="get"``), all threads together."""
        if kind not in ("put", "get"):
            raise ValueError(f"kind must be 'put' or 'get', got {kind!r}")
        return sum(r.duration for r in self.waits if r.result == kind)


def _role_of(thread_name: str) -> str:
    """``"ch08-stage2-0"`` -> ``"stage"``: the role part of a pipeline thread's name."""
    return thread_name.removeprefix(THREAD_PREFIX).split("-")[0].rstrip("0123456789")


class _LayerEnd:
    """Counts the workers of one layer still running; the last one out sends the sentinels downstream."""

    def __init__(self, workers: int, downstream: queue.Queue | None, receivers: int) -> None:
        self.lock = threading.Lock()
        self.running = workers
        self.downstream = downstream
        self.receivers = receivers

    def leave(self, put: Callable[[Any], None]) -> None:
        with self.lock:
            self.running -= 1
            last = self.running == 0
        if last and self.downstream is not None:
            for _ in range(self.receivers):  # one sentinel per receiving worker
                put(SENTINEL)


class _Worker:
    """What one pipeline thread does, and what it records."""

    def __init__(self, role: str, deadline: float, min_wait: float) -> None:
        self.role = role
        self.deadline = deadline
        self.min_wait = min_wait
        self.work: list[TaskRecord] = []
        self.waits: list[TaskRecord] = []
        self.items: list[str] = []

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{self.role}: the pipeline's deadline passed")
        return left

    def _record(self, records: list, task: Any, start: float, end: float, result: Any) -> None:
        records.append(TaskRecord(task=task, pid=os.getpid(), thread=threading.current_thread().name,
                                  start=start, end=max(start, end), result=result))

    def get(self, q: queue.Queue) -> Any:
        start = time.time()
        item = q.get(timeout=self._left())  # queue.Empty here means the deadline passed
        end = time.time()
        if end - start >= self.min_wait:
            self._record(self.waits, "get", start, end, "get")
        return item

    def put(self, q: queue.Queue, item: Any, sizes: list[int], index: int) -> None:
        start = time.time()
        q.put(item, timeout=self._left())  # queue.Full here means the deadline passed
        end = time.time()
        sizes[index] = max(sizes[index], q.qsize())
        if end - start >= self.min_wait:
            self._record(self.waits, item if item is not SENTINEL else "end", start, end, "put")

    def do(self, item: str, seconds: float) -> None:
        start = time.time()
        if seconds:
            time.sleep(seconds)  # stands for real work: I/O, or a C call that releases the GIL
        self._record(self.work, item, start, time.time(), self.role)


def item_id(producer: int, number: int) -> str:
    """The id of a producer's ``number``-th item: ``"p0-3"``. Ids are unique across producers."""
    _check_int("producer", producer, 0, MAX_WORKERS)
    _check_int("number", number, 0, MAX_ITEMS)
    return f"p{producer}-{number}"


def _split(items: int, parts: int) -> list[int]:
    """``items`` split into ``parts`` counts that differ by at most one."""
    return [items // parts + (i < items % parts) for i in range(parts)]


def run_pipeline(producers: int = 2, stages: int = 1, consumers: int = 2, *, items: int = 24,
                 capacity: int = 4, produce_delay: float = 0.01, stage_delay: float = 0.005,
                 consume_delay: float = 0.03, timeout: float = 30.0,
                 min_wait: float = 0.001) -> PipelineRun:
    """Run ``producers`` -> ``stages`` stage threads in a row -> ``consumers``, joined by ``queue.Queue(capacity)``.

    ``items`` ids (see :func:`item_id`) are shared out among the producers.
    Each worker sleeps its ``*_delay`` per item to stand for real work. The
    end of the stream travels as sentinels: the last producer to finish puts
    one for the next stage, and so on; the last stage puts one per consumer.
    ``capacity=0`` means unbounded queues. Waits shorter than ``min_wait``
    seconds are not recorded.
    """
    _check_int("producers", producers, 1, MAX_WORKERS)
    _check_int("stages", stages, 0, MAX_WORKERS)
    _check_int("consumers", consumers, 1, MAX_WORKERS)
    _check_int("items", items, 0, MAX_ITEMS)
    _check_int("capacity", capacity, 0, MAX_ITEMS)
    delays = {name: _check_seconds(name, value, MAX_DELAY) for name, value in
              (("produce_delay", produce_delay), ("stage_delay", stage_delay),
               ("consume_delay", consume_delay))}
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    min_wait = _check_seconds("min_wait", min_wait, 1.0)
    if timeout == 0:
        raise ValueError("timeout must be more than 0 seconds")

    queues = [queue.Queue(maxsize=capacity) for _ in range(stages + 1)]
    sizes = [0] * len(queues)
    deadline = time.monotonic() + timeout
    # Layer i reads queues[i - 1] and writes queues[i]; producers are layer 0, consumers the last.
    ends = [_LayerEnd(producers, queues[0], 1 if stages else consumers)]
    ends += [_LayerEnd(1, queues[s + 1], 1 if s + 1 < stages else consumers) for s in range(stages)]
    workers: list[_Worker] = []
    bodies: list[tuple[str, Callable[[], Any]]] = []

    def producer_body(w: _Worker, index: int, count: int) -> Callable[[], None]:
        def body() -> None:
            try:
                for number in range(count):
                    item = item_id(index, number)
                    w.do(item, delays["produce_delay"])
                    w.items.append(item)
                    w.put(queues[0], item, sizes, 0)
            finally:
                ends[0].leave(lambda s: w.put(queues[0], s, sizes, 0))
        return body

    def stage_body(w: _Worker, s: int) -> Callable[[], None]:
        def body() -> None:
            try:
                for _ in range(items + 1):  # bounded: every item, then the sentinel
                    item = w.get(queues[s])
                    if item is SENTINEL:
                        break
                    w.do(item, delays["stage_delay"])
                    w.put(queues[s + 1], item, sizes, s + 1)
            finally:
                ends[s + 1].leave(lambda x: w.put(queues[s + 1], x, sizes, s + 1))
        return body

    def consumer_body(w: _Worker) -> Callable[[], None]:
        def body() -> None:
            for _ in range(items + 1):
                item = w.get(queues[-1])
                if item is SENTINEL:
                    break
                w.do(item, delays["consume_delay"])
                w.items.append(item)
        return body

    for index, count in enumerate(_split(items, producers)):
        w = _Worker("producer", deadline, min_wait)
        workers.append(w)
        bodies.append((f"producer-{index}", producer_body(w, index, count)))
    for s in range(stages):
        w = _Worker(f"stage {s + 1}", deadline, min_wait)
        workers.append(w)
        bodies.append((f"stage{s + 1}-0", stage_body(w, s)))
    for index in range(consumers):
        w = _Worker("consumer", deadline, min_wait)
        workers.append(w)
        bodies.append((f"consumer-{index}", consumer_body(w)))

    start_wall, start = time.time(), time.perf_counter()
    _run_threads(bodies, timeout)
    elapsed = time.perf_counter() - start
    produced = tuple(i for w in workers if w.role == "producer" for i in w.items)
    consumed = tuple(i for w in workers if w.role == "consumer" for i in w.items)
    return PipelineRun(producers, stages, consumers, capacity, elapsed, produced, consumed,
                       tuple(r for w in workers for r in w.work),
                       tuple(r for w in workers for r in w.waits), tuple(sizes), start_wall)


# --- how consumers learn that the stream is over ------------------------------------------------

@dataclass(frozen=True)
class StreamEnd:
    """What :func:`end_stream` saw: how the stream was ended, and how each consumer stopped."""

    ending: str
    stopped: dict[str, str]
    consumed: tuple[int, ...]
    items: int = 0

    @property
    def all_stopped_cleanly(self) -> bool:
        """Every consumer stopped because it was told to, not because its ``get`` timed out."""
        return all(how != "timed out" for how in self.stopped.values())


def end_stream(consumers: int = 3, items: int = 9, *, ending: str = "auto", sentinels: int | None = None,
               idle_timeout: float = 1.0, timeout: float = 10.0) -> StreamEnd:
    """Feed ``items`` ints to ``consumers`` threads through one ``queue.Queue``, then end the stream.

    ``ending="sentinels"`` puts ``sentinels`` sentinels (default: one per
    consumer); ``"shutdown"`` calls ``Queue.shutdown()`` (Python 3.13+), after
    which a ``get`` on the drained queue raises ``queue.ShutDown``; ``"auto"``
    uses shutdown where it exists, else one sentinel per consumer. A consumer
    whose ``get`` waits ``idle_timeout`` seconds gives up: ``"timed out"``.
    """
    _check_int("consumers", consumers, 1, MAX_WORKERS)
    _check_int("items", items, 0, MAX_ITEMS)
    if ending not in ("auto", "sentinels", "shutdown"):
        raise ValueError(f"ending must be 'auto', 'sentinels' or 'shutdown', got {ending!r}")
    if ending == "auto":
        ending = "shutdown" if HAS_SHUTDOWN else "sentinels"
    if ending == "shutdown" and not HAS_SHUTDOWN:
        raise ValueError("Queue.shutdown needs Python 3.13 or later; use ending='sentinels'")
    if ending == "shutdown" and sentinels is not None:
        raise ValueError("sentinels only applies to ending='sentinels'")
    if sentinels is None:
        sentinels = consumers if ending == "sentinels" else 0
    _check_int("sentinels", sentinels, 0, MAX_WORKERS)
    idle_timeout = _check_seconds("idle_timeout", idle_timeout, 10.0)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)

    q: queue.Queue = queue.Queue()
    shut_down = getattr(queue, "ShutDown", None)
    taken: list[list[int]] = [[] for _ in range(consumers)]

    def consumer(index: int) -> Callable[[], str]:
        def body() -> str:
            for _ in range(items + sentinels + 1):
                try:
                    item = q.get(timeout=idle_timeout)
                except queue.Empty:
                    return "timed out"
                except Exception as error:  # queue.ShutDown (3.13+): drained and shut down
                    if shut_down is not None and isinstance(error, shut_down):
                        return "shutdown"
                    raise
                if item is SENTINEL:
                    return "sentinel"
                taken[index].append(item)
            return "timed out"
        return body

    def producer() -> str:
        for item in range(items):
            q.put(item, timeout=timeout)
        if ending == "shutdown":
            q.shutdown()  # items already queued are still delivered, then get() raises ShutDown
        else:
            for _ in range(sentinels):
                q.put(SENTINEL, timeout=timeout)
        return "done"

    bodies = [("producer-0", producer)] + [(f"consumer-{i}", consumer(i)) for i in range(consumers)]
    results = _run_threads(bodies, timeout)
    stopped = {f"consumer-{i}": results[i + 1] for i in range(consumers)}
    return StreamEnd(ending, stopped, tuple(sorted(i for got in taken for i in got)), items)


# --- drawing ------------------------------------------------------------------------------------

_ROLE_COLORS = {"producer": "tab:blue", "stage": "tab:orange", "consumer": "tab:green"}
_WAIT_STYLE = {"put": dict(color="0.55", hatch="////"), "get": dict(color="0.85", hatch="")}


def plot_pipeline(run: PipelineRun, *, ax=None, title: str = "", label_items: bool | None = None,
                  legend: bool = True):
    """One lane per thread: coloured bars for work, grey for waits (hatched: ``put`` on a full queue,
    light: ``get`` on an empty one). Return the Axes; the caller adds :func:`~helpers.instruments.measure.stamp`."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if not isinstance(run, PipelineRun):
        raise TypeError(f"run must be a PipelineRun, got {type(run).__name__}")
    names = run.threads()
    if not names:
        raise ValueError("the run has no records: there is nothing to draw")
    lane = {name: i for i, name in enumerate(names)}
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.9 + 0.42 * len(names)), layout="constrained")
    label_items = len(run.work) <= 40 if label_items is None else label_items
    t0 = run.start or min(r.start for r in run.work + run.waits)
    span = max(r.end for r in run.work + run.waits) - t0
    for rec in run.waits:
        style = _WAIT_STYLE[rec.result]
        ax.barh(lane[rec.thread], rec.duration, left=rec.start - t0, height=0.6, color=style["color"],
                hatch=style["hatch"], edgecolor="0.4", linewidth=0.3)
    for rec in run.work:
        color = _ROLE_COLORS[rec.result.split()[0]]
        ax.barh(lane[rec.thread], rec.duration, left=rec.start - t0, height=0.6, color=color,
                edgecolor="black", linewidth=0.4)
        if label_items and rec.duration > 0.04 * span:  # only where the label fits
            ax.text(rec.start - t0 + rec.duration / 2, lane[rec.thread], str(rec.task),
                    ha="center", va="center", fontsize=6)
    ax.set_yticks(range(len(names)), [n.removeprefix(THREAD_PREFIX) for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the pipeline started")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=c, label=f"{role} working") for role, c in _ROLE_COLORS.items()
               if any(r.result.startswith(role) for r in run.work)]
    handles += [Patch(facecolor=_WAIT_STYLE["put"]["color"], hatch="////", edgecolor="0.4",
                      label="waiting in put (queue full)"),
                Patch(facecolor=_WAIT_STYLE["get"]["color"], edgecolor="0.4",
                      label="waiting in get (queue empty)")]
    if legend:
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title)
    return ax


def pipeline_figure(run: PipelineRun, title: str = ""):
    """The run's timeline (left) beside each thread's busy fraction (right), with the run-details stamp."""
    import matplotlib.pyplot as plt

    from helpers.instruments.measure import stamp

    if not isinstance(run, PipelineRun):
        raise TypeError(f"run must be a PipelineRun, got {type(run).__name__}")
    names = run.threads()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 1.4 + 0.42 * len(names)), layout="constrained",
                                      gridspec_kw={"width_ratios": [2.6, 1]})
    plot_pipeline(run, ax=left, title=title or (
        f"{run.producers} producer(s), {run.stages} stage(s), {run.consumers} consumer(s): "
        f"{len(run.consumed)} items in {run.elapsed:.2f} s"))
    busy = run.busy()
    colors = [_ROLE_COLORS.get(_role_of(n), "0.5") for n in names]
    right.barh(range(len(names)), [100 * busy[n] for n in names], color=colors, edgecolor="black",
               linewidth=0.4)
    right.set_yticks(range(len(names)), [n.removeprefix(THREAD_PREFIX) for n in names])
    right.invert_yaxis()
    right.set_xlim(0, 100)
    right.set_xlabel("% of the run spent working")
    right.set_title(f"one item every {1000 / run.throughput:.1f} ms" if run.throughput else "no items")
    right.grid(axis="x", alpha=0.3)
    stamp(left)
    return fig


def pipeline_widget(max_producers: int = 4, max_consumers: int = 4, **pipeline_kwargs):
    """Sliders for the number of producers and consumers; each change re-runs :func:`run_pipeline` and draws it."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    _check_int("max_producers", max_producers, 1, MAX_WORKERS)
    _check_int("max_consumers", max_consumers, 1, MAX_WORKERS)
    bad = set(pipeline_kwargs) - {"stages", "items", "capacity", "produce_delay", "stage_delay",
                                  "consume_delay", "timeout"}
    if bad:
        raise TypeError(f"unexpected pipeline argument(s): {sorted(bad)}")

    def update(producers: int, consumers: int) -> None:
        run = run_pipeline(producers, consumers=consumers, **pipeline_kwargs)
        pipeline_figure(run)
        plt.show()

    sliders = {
        "producers": widgets.IntSlider(value=min(2, max_producers), min=1, max=max_producers,
                                       description="producers", continuous_update=False),
        "consumers": widgets.IntSlider(value=min(2, max_consumers), min=1, max=max_consumers,
                                       description="consumers", continuous_update=False),
    }
    out = widgets.interactive_output(update, sliders)
    return widgets.VBox([widgets.HBox(list(sliders.values())), out])


# --- the same pattern across processes ------------------------------------------------------------

def produce_items(tasks: Any, log: Any, producer: int, count: int, delay: float = 0.0,
                  timeout: float = 30.0) -> None:
    """Child process: put ``count`` ids (:func:`item_id`) on ``tasks``, then the list of them on ``log``.

    The list on ``log`` is what the parent checks the consumers against.
    """
    _check_queue("tasks", tasks)
    _check_queue("log", log)
    _check_int("producer", producer, 0, MAX_WORKERS)
    _check_int("count", count, 0, MAX_ITEMS)
    delay = _check_seconds("delay", delay, MAX_DELAY)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    made = []
    for number in range(count):
        if delay:
            time.sleep(delay)  # making the item
        item = item_id(producer, number)
        tasks.put(item, timeout=timeout)
        made.append(item)
    log.put(made)


def consume_items(tasks: Any, results: Any, delay: float = 0.0, idle_timeout: float = 30.0,
                  max_items: int = MAX_ITEMS) -> None:
    """Child process: take ids from a ``JoinableQueue`` until the sentinel; put a TaskRecord per item on ``results``.

    ``task_done()`` follows every ``get`` that returned something, the sentinel
    included, even if the work failed: that is what lets the parent's ``join``
    return. Stops after ``max_items`` items, or after ``idle_timeout`` seconds
    with an empty queue.
    """
    _check_joinable("tasks", tasks)
    _check_queue("results", results)
    delay = _check_seconds("delay", delay, MAX_DELAY)
    idle_timeout = _check_seconds("idle_timeout", idle_timeout, MAX_WAIT)
    _check_int("max_items", max_items, 1, MAX_ITEMS)
    name = mp.current_process().name
    for _ in range(max_items + 1):
        try:
            item = tasks.get(timeout=idle_timeout)
        except queue.Empty:
            return
        try:
            if item is SENTINEL:
                return
            start = time.time()
            if delay:
                time.sleep(delay)  # the work on the item
            results.put(TaskRecord(task=item, pid=os.getpid(), thread=name, start=start,
                                   end=time.time(), result=len(item)))
        finally:
            tasks.task_done()


@dataclass(frozen=True)
class ProcessRun:
    """One run of :func:`run_process_pipeline`."""

    producers: int
    consumers: int
    elapsed: float
    all_done: bool
    produced: tuple[str, ...]
    records: tuple[TaskRecord, ...]
    exitcodes: tuple[int | None, ...] = field(default=())

    @property
    def consumed(self) -> tuple[str, ...]:
        return tuple(r.task for r in self.records)

    @property
    def exactly_once(self) -> bool:
        """Every produced id was consumed exactly once (multiset equality)."""
        return Counter(self.produced) == Counter(self.consumed)


def run_process_pipeline(producers: int = 2, consumers: int = 2, items: int = 20, *, delay: float = 0.02,
                         timeout: float = 60.0, ctx: Any = None) -> ProcessRun:
    """``producers`` and ``consumers`` processes around one ``JoinableQueue``; every wait has a timeout.

    1. start the consumers, then the producers (each makes its share of ``items``);
    2. join the producers: every item is now on the queue;
    3. wait until every item is ``task_done`` (:func:`wait_until_done`, a ``join`` with a timeout);
    4. put one sentinel per consumer, read the results, join the consumers.
    """
    _check_int("producers", producers, 1, MAX_WORKERS)
    _check_int("consumers", consumers, 1, MAX_WORKERS)
    _check_int("items", items, 0, MAX_ITEMS)
    delay = _check_seconds("delay", delay, MAX_DELAY)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    ctx = mp.get_context() if ctx is None else ctx
    if not callable(getattr(ctx, "JoinableQueue", None)):
        raise TypeError(f"ctx must be a multiprocessing context, got {type(ctx).__name__}")

    tasks, results, log = ctx.JoinableQueue(), ctx.Queue(), ctx.Queue()
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    start = time.perf_counter()
    workers = [ctx.Process(target=consume_items, args=(tasks, results, delay, timeout),
                           name=f"consumer-{i}") for i in range(consumers)]
    makers = [ctx.Process(target=produce_items, args=(tasks, log, i, n, 0.0, timeout),
                          name=f"producer-{i}") for i, n in enumerate(_split(items, producers))]
    try:
        for p in workers + makers:
            p.start()
        produced = [i for batch in collect(log, count=producers, timeout=left()) for i in batch]
        codes = join_all(makers, timeout=left())                 # 2. all items are on the queue
        all_done = wait_until_done(tasks, timeout=left())       # 3. ...and all were task_done
        records = collect(results, count=len(produced), timeout=left())
        for _ in workers:                                       # 4. one sentinel per consumer
            tasks.put(SENTINEL)
        codes += join_all(workers, timeout=left())
    finally:
        for p in workers + makers:  # only after a failure above: never leave a child behind
            if p.is_alive():
                p.terminate()
                p.join(5)
    elapsed = time.perf_counter() - start
    for q in (tasks, results, log):
        q.close()
        q.join_thread()  # returns at once: everything put on these queues has been read
    return ProcessRun(producers, consumers, elapsed, all_done, tuple(produced), tuple(records), tuple(codes))
