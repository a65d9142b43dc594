"""Timelines: who ran which task, and when, drawn from a real run.

Used by the processes, threads and coroutines chapters (01-11, 15).

Workers return :class:`TaskRecord` values (they never print: a child process's
output is not captured under nbval). Times are wall-clock ``time.time()`` so
that records from different processes share one axis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["TaskRecord", "plot_timeline", "lanes", "max_overlap"]


@dataclass(frozen=True)
class TaskRecord:
    """One task's run: its id, the process and thread that ran it, start and end times."""

    task: int | str
    pid: int
    thread: str
    start: float
    end: float
    result: Any = None

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")

    @property
    def duration(self) -> float:
        return self.end - self.start


def _check_records(records: Iterable[TaskRecord]) -> list[TaskRecord]:
    records = list(records)
    if not records:
        raise ValueError("records is empty: there is nothing to draw")
    bad = [r for r in records if not isinstance(r, TaskRecord)]
    if bad:
        raise TypeError(f"records must be TaskRecord values, got {type(bad[0]).__name__}")
    return records


def lanes(records: Iterable[TaskRecord], by: str = "pid") -> dict[Any, int]:
    """Map each worker (a pid, or a thread name with ``by='thread'``) to a lane 0, 1, 2...

    Lanes are numbered in the order workers first started a task, so the
    picture does not depend on PIDs.
    """
    if by not in ("pid", "thread"):
        raise ValueError(f"by must be 'pid' or 'thread', got {by!r}")
    order: dict[Any, int] = {}
    for rec in sorted(_check_records(records), key=lambda r: r.start):
        order.setdefault(getattr(rec, by), len(order))
    return order


def max_overlap(records: Iterable[TaskRecord]) -> int:
    """The largest number of tasks that were running at the same instant."""
    events = []
    for rec in _check_records(records):
        events.append((rec.start, 1))
        events.append((rec.end, -1))
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts on ties
        running += step
        peak = max(peak, running)
    return peak


def plot_timeline(
    records: Sequence[TaskRecord],
    *,
    by: str = "pid",
    ax=None,
    title: str = "",
    label_tasks: bool = True,
    lane_label: str | None = None,
):
    """Draw one horizontal bar per task, one lane per worker; return the Axes.

    Time runs from the first start (0 s). The run details stamp is left to the
    caller (:func:`helpers.instruments.measure.stamp`), since a figure may hold several axes.
    """
    import matplotlib.pyplot as plt

    records = _check_records(records)
    lane_of = lanes(records, by=by)
    t0 = min(r.start for r in records)
    if ax is None:
        height = 0.9 + 0.45 * len(lane_of)
        _, ax = plt.subplots(figsize=(7.5, height), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, rec in enumerate(sorted(records, key=lambda r: r.start)):
        lane = lane_of[getattr(rec, by)]
        ax.barh(
            lane,
            rec.duration,
            left=rec.start - t0,
            height=0.6,
            color=colors[i % len(colors)],
            edgecolor="black",
            linewidth=0.5,
        )
        if label_tasks:
            ax.text(rec.start - t0 + rec.duration / 2, lane, str(rec.task), ha="center", va="center", fontsize=8)
    name = lane_label or ("process" if by == "pid" else "thread")
    ax.set_yticks(range(len(lane_of)), [f"{name} {i}" for i in range(len(lane_of))])
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first task started")
    ax.set_xlim(left=0)
    if title:
        ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return ax
