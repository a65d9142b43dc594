"""The recording, drawing and child-process halves of chapter 08 (connect producers and consumers with queues, 队列).

Chapter 08 writes its thread code in its cells: the producer, stage and consumer
functions, the ``LayerEnd`` that sends the sentinels downstream, ``run_pipeline``
that wires them together, and ``end_stream``. What stays here:

* **Recording and drawing.** :class:`PipelineLog` is what those threads record
  into: ``with log.working_on(item):`` around a piece of work, ``with
  log.waiting_in("put", q):`` / ``with log.waiting_in("get"):`` around a queue
  call; :meth:`PipelineLog.result` turns it into a :class:`PipelineRun` (every
  piece of work and every blocking ``put`` or ``get`` as a
  :class:`~helpers.instruments.timeline.TaskRecord`, plus the ids produced and
  consumed). :class:`StreamEnd` is what ``end_stream`` returns.
  :func:`plot_pipeline` and :func:`pipeline_figure` draw a run;
  :func:`pipeline_widget` puts sliders on the chapter's ``run_pipeline``.
* **Processes and** :class:`multiprocessing.JoinableQueue`. :func:`produce_items`
  and :func:`consume_items` run in child processes (importable, so they work
  under spawn and forkserver; the chapter shows their source);
  :func:`run_process_pipeline` wires them up and waits for every task with
  :func:`wait_until_done`, a ``join()`` with a timeout.

Nothing here prints. Every loop is bounded and every ``get``/``put``/``join``/``wait`` has a timeout.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from helpers.instruments.timeline import TaskRecord
from helpers.instruments.workloads import _check_int, _check_seconds
from helpers.processes.basics import collect, join_all

__all__ = [
    "THREAD_PREFIX",
    "SENTINEL",
    "HAS_SHUTDOWN",
    "PipelineRun",
    "PipelineLog",
    "StreamEnd",
    "ProcessRun",
    "helper_threads_alive",
    "wait_until_done",
    "plot_pipeline",
    "pipeline_figure",
    "pipeline_widget",
    "item_id",
    "produce_items",
    "consume_items",
    "run_process_pipeline",
]

#: Every thread chapter 08 (and this module) starts has a name beginning with this prefix.
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
        raise TypeError(f"{name} must be a joinable queue (with task_done() and join()), got {type(value).__name__}")
    return value


def helper_threads_alive() -> list[str]:
    """Names of live threads named ``THREAD_PREFIX...``: chapter 08's and this module's (should be ``[]``)."""
    return [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


# --- join with a deadline ----------------------------------------------------------------


def wait_until_done(q: Any, timeout: float) -> bool:
    """``q.join()`` with a timeout, for any joinable queue: a ``multiprocessing.JoinableQueue`` too.

    ``join()`` itself has no timeout, so a helper thread (``ch08-join-waiter``)
    calls it and is joined with the timeout. On False that thread keeps
    waiting, and ends by itself as soon as the remaining tasks are marked done.
    (For a :class:`queue.Queue`, chapter 08's ``join_queue`` waits on its
    ``all_tasks_done`` condition instead, without a thread.)
    """
    _check_joinable("q", q)
    timeout = _check_seconds("timeout", timeout, MAX_WAIT)
    waiter = threading.Thread(target=q.join, name=THREAD_PREFIX + "join-waiter", daemon=True)
    waiter.start()
    waiter.join(timeout)
    return not waiter.is_alive()


# --- a pipeline of threads ------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineRun:
    """One run of chapter 08's ``run_pipeline``, as :meth:`PipelineLog.result` returns it.

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
            return (
                order.get(_role_of(name), 3),
                int(stage) if stage.isdigit() else 0,
                int(number) if number.isdigit() else 0,
            )

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


def _role_label(thread_name: str) -> str:
    """``"ch08-stage2-0"`` -> ``"stage 2"``, ``"ch08-consumer-1"`` -> ``"consumer"``: a work record's role."""
    role = thread_name.removeprefix(THREAD_PREFIX).split("-")[0]
    number = role.removeprefix("stage")
    return f"stage {number}" if role.startswith("stage") and number.isdigit() else role


class PipelineLog:
    """What the threads of one pipeline run did, recorded as they do it; :meth:`result` sums it up.

    Chapter 08's workers wrap each piece of work in ``with log.working_on(item):``
    and each queue call in ``with log.waiting_in("put", q):`` or ``with
    log.waiting_in("get"):``. A record's role (``"producer"``, ``"stage 1"``,
    ``"consumer"``) comes from its thread's name, which must be
    ``THREAD_PREFIX + "producer-<i>"``, ``"stage<s>-0"`` or ``"consumer-<i>"``.
    ``queues`` are the run's queues, in order: a ``put`` on one of them also
    notes its ``qsize()`` afterwards. Waits shorter than ``min_wait`` seconds
    are not recorded. The clock starts when the log is made.
    """

    def __init__(self, queues: Sequence[Any] = (), min_wait: float = 0.001) -> None:
        self.queues = list(queues)
        for q in self.queues:
            _check_queue("queues[...]", q)
        self.min_wait = _check_seconds("min_wait", min_wait, 1.0)
        self.work: list[TaskRecord] = []
        self.waits: list[TaskRecord] = []
        self.max_sizes = [0] * len(self.queues)
        self._lock = threading.Lock()
        self.start = time.time()
        self._started = time.perf_counter()

    def _add(self, records: list[TaskRecord], task: Any, start: float, result: Any) -> None:
        record = TaskRecord(
            task=task,
            pid=os.getpid(),
            thread=threading.current_thread().name,
            start=start,
            end=max(start, time.time()),
            result=result,
        )
        with self._lock:
            records.append(record)

    @contextmanager
    def working_on(self, item: Any) -> Iterator[None]:
        """Record the block as this thread's work on ``item``."""
        start = time.time()
        yield
        self._add(self.work, item, start, _role_label(threading.current_thread().name))

    @contextmanager
    def waiting_in(self, kind: str, q: Any = None) -> Iterator[None]:
        """Record the block as a wait in ``put`` or ``get`` (if it lasted ``min_wait`` or more).

        With ``q`` (one of the log's queues), also note ``q.qsize()`` afterwards.
        """
        if kind not in ("put", "get"):
            raise ValueError(f"kind must be 'put' or 'get', got {kind!r}")
        index = None
        if q is not None:
            index = next((i for i, known in enumerate(self.queues) if known is q), None)
            if index is None:
                raise ValueError("q is not one of this log's queues")
        start = time.time()
        yield
        if index is not None:
            size = q.qsize()
            with self._lock:
                self.max_sizes[index] = max(self.max_sizes[index], size)
        if time.time() - start >= self.min_wait:
            self._add(self.waits, kind, start, kind)

    def result(
        self, producers: int, stages: int, consumers: int, produced: Sequence[str], consumed: Sequence[str]
    ) -> PipelineRun:
        """The run so far as a :class:`PipelineRun`; call it as soon as the threads are joined."""
        _check_int("producers", producers, 1, MAX_WORKERS)
        _check_int("stages", stages, 0, MAX_WORKERS)
        _check_int("consumers", consumers, 1, MAX_WORKERS)
        elapsed = time.perf_counter() - self._started
        capacity = self.queues[0].maxsize if self.queues else 0
        with self._lock:
            work, waits, sizes = tuple(self.work), tuple(self.waits), tuple(self.max_sizes)
        return PipelineRun(
            producers,
            stages,
            consumers,
            capacity,
            elapsed,
            tuple(produced),
            tuple(consumed),
            work,
            waits,
            sizes,
            self.start,
        )


def item_id(producer: int, number: int) -> str:
    """The id of a producer's ``number``-th item: ``"p0-3"``. Ids are unique across producers."""
    _check_int("producer", producer, 0, MAX_WORKERS)
    _check_int("number", number, 0, MAX_ITEMS)
    return f"p{producer}-{number}"


def _split(items: int, parts: int) -> list[int]:
    """``items`` split into ``parts`` counts that differ by at most one."""
    return [items // parts + (i < items % parts) for i in range(parts)]


# --- how consumers learn that the stream is over ------------------------------------------------


@dataclass(frozen=True)
class StreamEnd:
    """What chapter 08's ``end_stream`` saw: how the stream was ended, and how each consumer stopped."""

    ending: str
    stopped: dict[str, str]
    consumed: tuple[int, ...]
    items: int = 0

    @property
    def all_stopped_cleanly(self) -> bool:
        """Every consumer stopped because it was told to, not because its ``get`` timed out."""
        return all(how != "timed out" for how in self.stopped.values())


# --- drawing ------------------------------------------------------------------------------------

_ROLE_COLORS = {"producer": "tab:blue", "stage": "tab:orange", "consumer": "tab:green"}
_WAIT_STYLE = {"put": dict(color="0.55", hatch="////"), "get": dict(color="0.85", hatch="")}


def plot_pipeline(run: PipelineRun, *, ax=None, title: str = "", label_items: bool | None = None, legend: bool = True):
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
        ax.barh(
            lane[rec.thread],
            rec.duration,
            left=rec.start - t0,
            height=0.6,
            color=style["color"],
            hatch=style["hatch"],
            edgecolor="0.4",
            linewidth=0.3,
        )
    for rec in run.work:
        color = _ROLE_COLORS[rec.result.split()[0]]
        ax.barh(
            lane[rec.thread],
            rec.duration,
            left=rec.start - t0,
            height=0.6,
            color=color,
            edgecolor="black",
            linewidth=0.4,
        )
        if label_items and rec.duration > 0.04 * span:  # only where the label fits
            ax.text(
                rec.start - t0 + rec.duration / 2, lane[rec.thread], str(rec.task), ha="center", va="center", fontsize=6
            )
    ax.set_yticks(range(len(names)), [n.removeprefix(THREAD_PREFIX) for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the pipeline started")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    handles = [
        Patch(color=c, label=f"{role} working")
        for role, c in _ROLE_COLORS.items()
        if any(r.result.startswith(role) for r in run.work)
    ]
    handles += [
        Patch(
            facecolor=_WAIT_STYLE["put"]["color"], hatch="////", edgecolor="0.4", label="waiting in put (queue full)"
        ),
        Patch(facecolor=_WAIT_STYLE["get"]["color"], edgecolor="0.4", label="waiting in get (queue empty)"),
    ]
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
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, 1.4 + 0.42 * len(names)), layout="constrained", gridspec_kw={"width_ratios": [2.6, 1]}
    )
    plot_pipeline(
        run,
        ax=left,
        title=title
        or (
            f"{run.producers} producer(s), {run.stages} stage(s), {run.consumers} consumer(s): "
            f"{len(run.consumed)} items in {run.elapsed:.2f} s"
        ),
    )
    busy = run.busy()
    colors = [_ROLE_COLORS.get(_role_of(n), "0.5") for n in names]
    right.barh(range(len(names)), [100 * busy[n] for n in names], color=colors, edgecolor="black", linewidth=0.4)
    right.set_yticks(range(len(names)), [n.removeprefix(THREAD_PREFIX) for n in names])
    right.invert_yaxis()
    right.set_xlim(0, 100)
    right.set_xlabel("% of the run spent working")
    right.set_title(f"one item every {1000 / run.throughput:.1f} ms" if run.throughput else "no items")
    right.grid(axis="x", alpha=0.3)
    stamp(left)
    return fig


def pipeline_widget(
    run_pipeline: Callable[..., PipelineRun], max_producers: int = 4, max_consumers: int = 4, **pipeline_kwargs
):
    """Sliders for the number of producers and consumers; each change calls ``run_pipeline`` and draws the run.

    ``run_pipeline(producers, consumers=k, **pipeline_kwargs)`` must return a
    :class:`PipelineRun`: chapter 08 passes the ``run_pipeline`` its cells define.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if not callable(run_pipeline):
        raise TypeError(f"run_pipeline must be callable, got {type(run_pipeline).__name__}")
    _check_int("max_producers", max_producers, 1, MAX_WORKERS)
    _check_int("max_consumers", max_consumers, 1, MAX_WORKERS)

    def update(producers: int, consumers: int) -> None:
        run = run_pipeline(producers, consumers=consumers, **pipeline_kwargs)
        pipeline_figure(run)
        plt.show()

    sliders = {
        "producers": widgets.IntSlider(
            value=min(2, max_producers), min=1, max=max_producers, description="producers", continuous_update=False
        ),
        "consumers": widgets.IntSlider(
            value=min(2, max_consumers), min=1, max=max_consumers, description="consumers", continuous_update=False
        ),
    }
    out = widgets.interactive_output(update, sliders)
    return widgets.VBox([widgets.HBox(list(sliders.values())), out])


# --- the same pattern across processes ------------------------------------------------------------


def produce_items(tasks: Any, log: Any, producer: int, count: int, delay: float = 0.0, timeout: float = 30.0) -> None:
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


def consume_items(
    tasks: Any, results: Any, delay: float = 0.0, idle_timeout: float = 30.0, max_items: int = MAX_ITEMS
) -> None:
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
            results.put(
                TaskRecord(task=item, pid=os.getpid(), thread=name, start=start, end=time.time(), result=len(item))
            )
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


def run_process_pipeline(
    producers: int = 2,
    consumers: int = 2,
    items: int = 20,
    *,
    delay: float = 0.02,
    timeout: float = 60.0,
    ctx: Any = None,
) -> ProcessRun:
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
    workers = [
        ctx.Process(target=consume_items, args=(tasks, results, delay, timeout), name=f"consumer-{i}")
        for i in range(consumers)
    ]
    makers = [
        ctx.Process(target=produce_items, args=(tasks, log, i, n, 0.0, timeout), name=f"producer-{i}")
        for i, n in enumerate(_split(items, producers))
    ]
    try:
        for p in workers + makers:
            p.start()
        produced = [i for batch in collect(log, count=producers, timeout=left()) for i in batch]
        codes = join_all(makers, timeout=left())  # 2. all items are on the queue
        all_done = wait_until_done(tasks, timeout=left())  # 3. ...and all were task_done
        records = collect(results, count=len(produced), timeout=left())
        for _ in workers:  # 4. one sentinel per consumer
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
