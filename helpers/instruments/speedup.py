"""Speedup, parallel efficiency and Amdahl's law: computed, plotted, and explored with a slider.

Used by chapter 03 (process pools), the thread and thread-pool chapters, and
``bench/process_pool.py``.

* :func:`speedup`, :func:`efficiency`, :func:`amdahl`, :func:`serial_fraction`
  and :func:`fit_parallel_fraction` are plain arithmetic.
* :func:`speedup_points` turns measured times into :class:`SpeedupPoint` values;
  :func:`format_speedup_table` prints them as Markdown; :func:`plot_speedup`
  draws them with the ideal line, an Amdahl curve and the run-details stamp.
* :class:`WorkerExplorer` runs a job at a chosen worker count and draws speedup
  and the per-worker timeline; :func:`worker_count_widget` puts an
  ``IntSlider`` on it. A chapter's static figure calls the same
  :meth:`WorkerExplorer.update` that the slider calls.

A job is any callable ``run_job(workers) -> JobRun``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from helpers.instruments.measure import stamp, usable_cpus
from helpers.instruments.timeline import TaskRecord, plot_timeline

__all__ = [
    "JobRun",
    "SpeedupPoint",
    "speedup",
    "efficiency",
    "amdahl",
    "serial_fraction",
    "fit_parallel_fraction",
    "speedup_points",
    "format_speedup_table",
    "plot_speedup",
    "WorkerExplorer",
    "worker_count_widget",
]


def _check_workers(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _check_time(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value}")
    return float(value)


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")
    return float(value)


@dataclass(frozen=True)
class JobRun:
    """One run of a job: how many workers, how long it took, who ran what, and its result."""

    workers: int
    elapsed: float
    records: tuple[TaskRecord, ...] = ()
    result: Any = None

    def __post_init__(self) -> None:
        _check_workers("workers", self.workers)
        _check_time("elapsed", self.elapsed)
        if any(not isinstance(r, TaskRecord) for r in self.records):
            raise TypeError("records must be TaskRecord values")


@dataclass(frozen=True)
class SpeedupPoint:
    """A measured time at a worker count, with its speedup and efficiency against the baseline."""

    workers: int
    elapsed: float
    speedup: float
    efficiency: float


def speedup(baseline: float, elapsed: float) -> float:
    """How many times faster than the baseline: ``baseline / elapsed``."""
    return _check_time("baseline", baseline) / _check_time("elapsed", elapsed)


def efficiency(baseline: float, elapsed: float, workers: int) -> float:
    """Parallel efficiency: speedup per worker (1.0 means every worker was fully used)."""
    return speedup(baseline, elapsed) / _check_workers("workers", workers)


def amdahl(workers: int, parallel_fraction: float) -> float:
    """Amdahl's law: the best speedup on ``workers`` CPUs when ``parallel_fraction`` of the work can run in parallel.

    ``1 / ((1 - p) + p / n)``; it tends to ``1 / (1 - p)`` however many workers you add.
    """
    n = _check_workers("workers", workers)
    p = _check_fraction("parallel_fraction", parallel_fraction)
    return 1.0 / ((1.0 - p) + p / n)


def serial_fraction(measured_speedup: float, workers: int) -> float:
    """The Karp-Flatt metric: the serial fraction that would explain a measured speedup.

    ``(1/S - 1/n) / (1 - 1/n)``; the inverse of :func:`amdahl`. Needs ``workers >= 2``.
    """
    s = _check_time("measured_speedup", measured_speedup)
    n = _check_workers("workers", workers)
    if n < 2:
        raise ValueError("workers must be >= 2: one worker says nothing about the serial fraction")
    return (1.0 / s - 1.0 / n) / (1.0 - 1.0 / n)


def fit_parallel_fraction(points: Sequence[SpeedupPoint], max_workers: int | None = None) -> float | None:
    """Estimate Amdahl's parallel fraction from measured points (median Karp-Flatt).

    Only points with ``2 <= workers <= max_workers`` (default: the usable CPUs)
    count: beyond the CPU count, workers share cores, which Amdahl's law does not
    model. Returns None when no point qualifies. Clipped to 0..1.
    """
    limit = usable_cpus() if max_workers is None else _check_workers("max_workers", max_workers)
    fractions = sorted(serial_fraction(p.speedup, p.workers) for p in _check_points(points) if 2 <= p.workers <= limit)
    if not fractions:
        return None
    mid = len(fractions) // 2
    median = fractions[mid] if len(fractions) % 2 else (fractions[mid - 1] + fractions[mid]) / 2
    return min(1.0, max(0.0, 1.0 - median))


def _check_points(points) -> list[SpeedupPoint]:
    points = list(points)
    if any(not isinstance(p, SpeedupPoint) for p in points):
        raise TypeError("points must be SpeedupPoint values from speedup_points()")
    return points


def speedup_points(times: Mapping[int, float], baseline: float | None = None) -> list[SpeedupPoint]:
    """Turn ``{workers: seconds}`` into SpeedupPoints, sorted by worker count.

    The baseline is ``baseline`` if given (say, a serial run), else the 1-worker time.
    """
    if not isinstance(times, Mapping):
        raise TypeError(f"times must be a mapping of workers to seconds, got {type(times).__name__}")
    if not times:
        raise ValueError("times is empty")
    checked = {_check_workers("workers", n): _check_time("time", t) for n, t in times.items()}
    if baseline is None:
        if 1 not in checked:
            raise ValueError("times has no 1-worker entry: pass baseline= explicitly")
        baseline = checked[1]
    baseline = _check_time("baseline", baseline)
    return [SpeedupPoint(n, t, speedup(baseline, t), efficiency(baseline, t, n)) for n, t in sorted(checked.items())]


def format_speedup_table(points: Sequence[SpeedupPoint], percent: bool = False) -> str:
    """A Markdown table: workers, time (``0.52 s``), speedup (``1.93×``) and efficiency.

    Efficiency is written as a ratio (``0.96×``, speedup per worker), which the
    book's nbval sanitize file hides like any ratio; ``percent=True`` writes ``96%``.
    """
    points = _check_points(points)
    if not points:
        raise ValueError("points is empty")
    if not isinstance(percent, bool):
        raise TypeError(f"percent must be a bool, got {type(percent).__name__}")
    lines = ["| workers | time | speedup | efficiency |", "|---:|---:|---:|---:|"]
    for p in points:
        eff = f"{p.efficiency:.0%}" if percent else f"{p.efficiency:.2f}×"
        lines.append(f"| {p.workers} | {p.elapsed:.2f} s | {p.speedup:.2f}× | {eff} |")
    return "\n".join(lines)


def plot_speedup(
    points: Sequence[SpeedupPoint],
    *,
    parallel_fraction: float | None = None,
    cpus: int | None = None,
    ax=None,
    title: str = "",
    highlight: int | None = None,
    max_workers: int | None = None,
):
    """Measured speedup against workers, with the ideal line and Amdahl's law; return the Axes.

    ``parallel_fraction`` defaults to :func:`fit_parallel_fraction` of the points.
    A dotted line marks ``cpus`` (default: the usable CPUs). The run-details stamp is added.
    """
    import matplotlib.pyplot as plt

    points = _check_points(points)
    if not points:
        raise ValueError("points is empty: there is nothing to draw")
    cpus = usable_cpus() if cpus is None else _check_workers("cpus", cpus)
    top = max([p.workers for p in points] + [max_workers or 1, 2])
    if parallel_fraction is None:
        parallel_fraction = fit_parallel_fraction(points, cpus)
    elif parallel_fraction is not None:
        parallel_fraction = _check_fraction("parallel_fraction", parallel_fraction)
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    xs = list(range(1, top + 1))
    ax.plot(xs, xs, "--", color="0.5", label="ideal (speedup = workers)")
    if parallel_fraction is not None:
        ax.plot(
            xs,
            [amdahl(n, parallel_fraction) for n in xs],
            ":",
            color="tab:green",
            label=f"Amdahl, parallel fraction {parallel_fraction:.2f}",
        )
    ax.axvline(cpus, color="tab:red", linewidth=0.8, alpha=0.6, label=f"{cpus} CPUs")
    ax.plot([p.workers for p in points], [p.speedup for p in points], "o-", color="tab:blue", label="measured")
    if highlight is not None:
        for p in points:
            if p.workers == highlight:
                ax.plot([p.workers], [p.speedup], "o", markersize=12, mfc="none", color="tab:orange")
    ax.set_xlabel("workers")
    ax.set_ylabel("speedup (× the 1-worker time)")
    ax.set_xticks(xs)
    ax.set_xlim(0.8, top + 0.2)
    ax.set_ylim(0, top + 0.3)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left")
    if title:
        ax.set_title(title)
    stamp(ax)
    return ax


class WorkerExplorer:
    """Run a job at different worker counts, remember every run, and draw what was measured.

    ``run_job(workers) -> JobRun`` does one run. :meth:`update` is what the slider
    calls: run at ``workers`` (and at 1 worker first, for the baseline), then draw
    speedup against workers beside that run's per-worker timeline.
    """

    def __init__(
        self,
        run_job: Callable[[int], JobRun],
        *,
        max_workers: int,
        lane_label: str = "process",
        by: str = "pid",
        title: str = "",
    ) -> None:
        if not callable(run_job):
            raise TypeError(f"run_job must be callable, got {type(run_job).__name__}")
        self.run_job = run_job
        self.max_workers = _check_workers("max_workers", max_workers)
        if by not in ("pid", "thread"):
            raise ValueError(f"by must be 'pid' or 'thread', got {by!r}")
        self.by = by
        self.lane_label = lane_label
        self.title = title
        self.runs: dict[int, JobRun] = {}

    def _check_count(self, workers) -> int:
        workers = _check_workers("workers", workers)
        if workers > self.max_workers:
            raise ValueError(f"workers must be <= max_workers ({self.max_workers}), got {workers}")
        return workers

    def measure(self, workers: int) -> JobRun:
        """Run the job on ``workers`` workers and keep the run (replacing an older one)."""
        workers = self._check_count(workers)
        run = self.run_job(workers)
        if not isinstance(run, JobRun):
            raise TypeError(f"run_job must return a JobRun, got {type(run).__name__}")
        if run.workers != workers:
            raise ValueError(f"run_job({workers}) returned a run on {run.workers} workers")
        self.runs[workers] = run
        return run

    def points(self) -> list[SpeedupPoint]:
        """Every run so far as SpeedupPoints against the 1-worker run."""
        return speedup_points({n: r.elapsed for n, r in self.runs.items()})

    def figure(self, workers: int):
        """Speedup so far (left) and the timeline of the run on ``workers`` workers (right)."""
        import matplotlib.pyplot as plt

        workers = self._check_count(workers)
        if workers not in self.runs or 1 not in self.runs:
            raise ValueError(f"no run at 1 and {workers} workers yet: call measure() or update()")
        run = self.runs[workers]
        fig, (left, right) = plt.subplots(
            1, 2, figsize=(10, 3.8), layout="constrained", gridspec_kw={"width_ratios": [1, 1.3]}
        )
        points = self.points()
        plot_speedup(points, ax=left, highlight=workers, max_workers=self.max_workers, title="speedup against workers")
        if run.records:
            plot_timeline(
                run.records, by=self.by, ax=right, lane_label=self.lane_label, label_tasks=len(run.records) <= 30
            )
        this = next(p for p in points if p.workers == workers)
        right.set_title(f"{workers} worker(s): {run.elapsed:.2f} s, {this.speedup:.2f}×")
        if self.title:
            fig.suptitle(self.title)
        return fig

    def update(self, workers: int):
        """Measure at ``workers`` (and at 1 if not yet done), draw, show, and return the figure."""
        import matplotlib.pyplot as plt

        workers = self._check_count(workers)
        if 1 not in self.runs:
            self.measure(1)
        if workers != 1:
            self.measure(workers)
        fig = self.figure(workers)
        plt.show()
        return fig

    def sweep(self, workers: Iterable[int]):
        """Measure at every count in ``workers``, then :meth:`update` at the last one (the slider's path)."""
        counts = [self._check_count(n) for n in workers]
        if not counts:
            raise ValueError("workers is empty")
        for n in counts[:-1]:
            self.measure(n)
        return self.update(counts[-1])


def worker_count_widget(explorer: WorkerExplorer, value: int | None = None):
    """An ``IntSlider`` (1..max_workers) that calls ``explorer.update(workers)`` when released."""
    import ipywidgets as widgets

    if not isinstance(explorer, WorkerExplorer):
        raise TypeError(f"explorer must be a WorkerExplorer, got {type(explorer).__name__}")
    value = min(usable_cpus(), explorer.max_workers) if value is None else explorer._check_count(value)
    slider = widgets.IntSlider(
        value=value, min=1, max=explorer.max_workers, step=1, description="workers", continuous_update=False
    )
    out = widgets.interactive_output(explorer.update, {"workers": slider})
    return widgets.VBox([slider, out])
