"""helpers.instruments.speedup: speedup arithmetic, Amdahl's law, the plot and the worker-count explorer."""

from __future__ import annotations

import math
import time

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from helpers.instruments.speedup import (
    JobRun,
    SpeedupPoint,
    WorkerExplorer,
    amdahl,
    efficiency,
    fit_parallel_fraction,
    format_speedup_table,
    plot_speedup,
    serial_fraction,
    speedup,
    speedup_points,
    worker_count_widget,
)
from helpers.instruments.timeline import TaskRecord


def test_speedup_and_efficiency():
    assert speedup(2.0, 1.0) == 2.0 and efficiency(2.0, 1.0, 2) == 1.0
    assert efficiency(3.0, 1.5, 4) == 0.5


@pytest.mark.parametrize("n, p, expected", [(1, 0.5, 1.0), (2, 1.0, 2.0), (4, 0.0, 1.0), (2, 0.5, 4 / 3)])
def test_amdahl(n, p, expected):
    assert math.isclose(amdahl(n, p), expected)


def test_amdahl_tends_to_its_limit_and_karp_flatt_inverts_it():
    assert amdahl(10_000, 0.9) < 10.0 < amdahl(10_000, 0.9) + 0.01
    for n in (2, 3, 8):
        assert math.isclose(serial_fraction(amdahl(n, 0.8), n), 0.2)


def test_speedup_points_table_and_fit():
    points = speedup_points({1: 2.0, 2: 2.0 / amdahl(2, 0.9), 4: 2.0 / amdahl(4, 0.9)})
    assert [p.workers for p in points] == [1, 2, 4] and points[0].speedup == 1.0
    assert math.isclose(fit_parallel_fraction(points, max_workers=4), 0.9)
    assert fit_parallel_fraction(points[:1]) is None
    assert fit_parallel_fraction([SpeedupPoint(2, 1.0, 0.5, 0.25)], max_workers=2) == 0.0  # clipped
    table = format_speedup_table(points)
    assert table.splitlines()[2] == "| 1 | 2.00 s | 1.00× | 1.00× |"
    assert format_speedup_table(points, percent=True).splitlines()[2] == "| 1 | 2.00 s | 1.00× | 100% |"
    assert speedup_points({2: 1.0}, baseline=1.5)[0].speedup == 1.5


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: speedup(0, 1), ValueError),
        (lambda: speedup(1, "1"), TypeError),
        (lambda: speedup(1, float("inf")), ValueError),
        (lambda: efficiency(1, 1, 0), ValueError),
        (lambda: efficiency(1, 1, 1.5), TypeError),
        (lambda: amdahl(2, 1.5), ValueError),
        (lambda: amdahl(True, 0.5), TypeError),
        (lambda: serial_fraction(1.5, 1), ValueError),
        (lambda: speedup_points({}), ValueError),
        (lambda: speedup_points([1, 2]), TypeError),
        (lambda: speedup_points({2: 1.0}), ValueError),
        (lambda: format_speedup_table([]), ValueError),
        (lambda: format_speedup_table([1.0]), TypeError),
        (lambda: format_speedup_table(speedup_points({1: 1.0}), percent="yes"), TypeError),
        (lambda: plot_speedup([]), ValueError),
        (lambda: JobRun(0, 1.0), ValueError),
        (lambda: JobRun(1, 0.0), ValueError),
        (lambda: JobRun(1, 1.0, records=("x",)), TypeError),
        (lambda: WorkerExplorer("job", max_workers=2), TypeError),
        (lambda: WorkerExplorer(fake_job, max_workers=0), ValueError),
        (lambda: WorkerExplorer(fake_job, max_workers=2, by="core"), ValueError),
        (lambda: WorkerExplorer(fake_job, max_workers=2).measure(3), ValueError),
        (lambda: WorkerExplorer(fake_job, max_workers=2).figure(1), ValueError),
        (lambda: WorkerExplorer(fake_job, max_workers=2).sweep([]), ValueError),
        (lambda: WorkerExplorer(lambda n: 1.0, max_workers=2).measure(1), TypeError),
        (lambda: WorkerExplorer(lambda n: JobRun(1, 1.0), max_workers=2).measure(2), ValueError),
        (lambda: worker_count_widget("explorer"), TypeError),
    ],
)
def test_bad_arguments_are_refused(call, error):
    with pytest.raises(error):
        call()


def fake_job(workers: int) -> JobRun:
    """Four 0.1 s tasks spread over `workers` lanes, without running anything."""
    now = time.time()
    records = tuple(
        TaskRecord(
            task=i,
            pid=1000 + i % workers,
            thread="MainThread",
            start=now + 0.1 * (i // workers),
            end=now + 0.1 * (i // workers + 1),
        )
        for i in range(4)
    )
    return JobRun(workers=workers, elapsed=0.4 / min(workers, 2), records=records, result=4)


def test_plot_speedup_draws_ideal_amdahl_and_stamp():
    points = speedup_points({1: 1.0, 2: 0.55, 3: 0.5})
    ax = plot_speedup(points, cpus=2)
    labels = [line.get_label() for line in ax.get_lines()]
    assert "measured" in labels and any(label.startswith("ideal") for label in labels)
    assert any(label.startswith("Amdahl") for label in labels)
    stamped = list(ax.texts) + list(ax.figure.texts)
    assert any("CPUs" in t.get_text() for t in stamped)  # the run-details stamp
    plt.close("all")


def test_explorer_sweep_and_update_use_the_same_path():
    calls = []

    def job(n):
        calls.append(n)
        return fake_job(n)

    explorer = WorkerExplorer(job, max_workers=4)
    fig = explorer.sweep(range(1, 5))
    assert calls == [1, 2, 3, 4] and sorted(explorer.runs) == [1, 2, 3, 4]
    assert [round(p.speedup, 2) for p in explorer.points()] == [1.0, 2.0, 2.0, 2.0]
    assert len(fig.axes) == 2 and "4 worker(s)" in fig.axes[1].get_title()
    fresh = WorkerExplorer(job, max_workers=4)
    fresh.update(3)
    assert calls[4:] == [1, 3]  # the baseline first, then the chosen count
    plt.close("all")


def test_widget_is_a_slider_over_the_worker_counts():
    import ipywidgets as widgets

    explorer = WorkerExplorer(fake_job, max_workers=4)
    box = worker_count_widget(explorer, value=2)
    slider = box.children[0]
    assert isinstance(slider, widgets.IntSlider) and (slider.min, slider.max, slider.value) == (1, 4, 2)
    assert sorted(explorer.runs) == [1, 2]  # interactive_output ran it once
    slider.value = 3
    assert 3 in explorer.runs
    plt.close("all")
