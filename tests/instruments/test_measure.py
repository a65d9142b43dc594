"""helpers.instruments.measure, helpers.instruments.workloads and helpers.instruments.timeline."""

from __future__ import annotations

import multiprocessing as mp
import re
import time

import matplotlib
import pytest

matplotlib.use("Agg")

from helpers.instruments.measure import Timer, format_run_details, gil_enabled, run_details, stamp, usable_cpus
from helpers.instruments.timeline import TaskRecord, lanes, max_overlap, plot_timeline
from helpers.instruments.workloads import count_primes, count_primes_in_range, io_wait, square, timed_task


def test_timer_keeps_its_value():
    with Timer() as t:
        time.sleep(0.05)
    first = t.elapsed
    time.sleep(0.02)
    assert 0.05 <= first < 1.0 and t.elapsed == first  # frozen once the block ends
    with pytest.raises(RuntimeError, match="never started"):
        _ = Timer().elapsed  # reading it is the error


def test_run_details_names_what_a_timing_depends_on():
    d = run_details()
    assert d["cpus"] >= d["usable_cpus"] >= 1
    assert d["start_method"] == mp.get_start_method()
    assert d["gil"] == ("on" if gil_enabled() else "off")
    line = format_run_details(d)
    assert line.startswith("run details: ") and f"start method {d['start_method']}" in line
    with pytest.raises(TypeError):
        format_run_details("fork")
    assert usable_cpus() >= 1


def test_run_details_line_is_hidden_by_the_sanitize_file():
    from pathlib import Path

    text = (Path(__file__).parents[1] / "nbval_sanitize.cfg").read_text()
    regex = re.search(r"\[run_details\]\nregex: (.*)", text).group(1)
    assert re.fullmatch(regex, format_run_details())


def test_stamp_writes_on_the_figure():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    stamp(ax)
    assert "CPUs" in fig.get_supxlabel()
    plt.close(fig)
    with pytest.raises(TypeError):
        stamp("not an axes")


@pytest.mark.parametrize("limit, expected", [(0, 0), (2, 0), (3, 1), (10, 4), (100, 25), (10_000, 1229)])
def test_count_primes(limit, expected):
    assert count_primes(limit) == expected


def test_count_primes_in_ranges_add_up():
    assert count_primes_in_range(0, 5000) + count_primes_in_range(5000, 10_000) == 1229


def test_io_wait_and_square():
    assert 0.01 <= io_wait(0.01) < 0.5
    assert square(7) == 49


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: count_primes(-1), ValueError),
        (lambda: count_primes(1.5), TypeError),
        (lambda: count_primes(True), TypeError),
        (lambda: count_primes_in_range(10, 5), ValueError),
        (lambda: io_wait(-1), ValueError),
        (lambda: io_wait(float("nan")), ValueError),
        (lambda: io_wait("1"), TypeError),
        (lambda: square("3"), TypeError),
        (lambda: timed_task(-1), ValueError),
        (lambda: timed_task(1, prime_limit=-5), ValueError),
    ],
)
def test_workloads_reject_bad_input(call, error):
    with pytest.raises(error):
        call()


def test_timed_task_records_who_and_when():
    rec = timed_task(3, seconds=0.01, prime_limit=100)
    assert rec.task == 3 and rec.result == 25 and rec.duration >= 0.01


def recs(*spans):
    return [TaskRecord(i, pid, "t", s, e) for i, (pid, s, e) in enumerate(spans)]


def test_lanes_and_overlap():
    r = recs((200, 0, 1), (100, 0.5, 2), (200, 1, 3))
    assert lanes(r) == {200: 0, 100: 1}
    assert max_overlap(r) == 2  # the end at t=1 comes before the start at t=1
    assert max_overlap(recs((1, 0, 1), (2, 0, 1), (3, 0, 1))) == 3
    with pytest.raises(ValueError):
        lanes(r, by="colour")
    with pytest.raises(ValueError, match="empty"):
        max_overlap([])
    with pytest.raises(TypeError):
        max_overlap([(0, 1)])
    with pytest.raises(ValueError, match="before start"):
        TaskRecord(0, 1, "t", 2.0, 1.0)


def test_plot_timeline_draws_one_bar_per_task():
    import matplotlib.pyplot as plt

    ax = plot_timeline(recs((200, 0, 1), (100, 0.5, 2), (200, 1, 3)), title="t")
    assert len(ax.patches) == 3 and ax.get_title() == "t"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["process 0", "process 1"]
    plt.close("all")


def test_pool_runs_helpers_under_spawn():
    """The point of helpers/: a spawned child can import them."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        assert pool.map(square, range(5), chunksize=1) == [0, 1, 4, 9, 16]
        rec = pool.apply_async(timed_task, (1, 0.0, 10)).get(timeout=60)
    assert rec.result == 4


def test_spare_cpus_sees_a_busy_loop():
    """One process spinning on a CPU takes about one CPU off the machine's idle count."""
    import subprocess
    import sys

    from helpers.instruments.measure import spare_cpus

    quiet = spare_cpus(0.3)
    if quiet < 1.0:
        pytest.skip(f"no CPU was idle to take ({quiet:.2f} spare): the machine is busy")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        busy = spare_cpus(0.3)
    finally:
        spinner.kill()
        spinner.wait(timeout=10)
    assert 0 <= busy <= quiet and quiet - busy > 0.5, (quiet, busy)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (11, ValueError), ("1", TypeError), (True, TypeError)])
def test_spare_cpus_rejects_bad_seconds(bad, error):
    from helpers.instruments.measure import spare_cpus

    with pytest.raises(error):
        spare_cpus(bad)
