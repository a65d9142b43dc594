"""bench/_common.py and run_all's guard: spreads, interleaving, fits, and the busy-machine refusal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import _common as bc  # noqa: E402


def test_spread_is_median_min_max():
    s = bc.spread([3.0, 1.0, 2.0, 10.0, 4.0])
    assert (s.median, s.min, s.max, s.runs) == (3.0, 1.0, 10.0, 5)
    assert s.scaled(1000).median == 3000.0
    assert s.format("s") == "3 s (1–10)"
    with pytest.raises(ValueError):
        bc.spread([])


def test_interleave_runs_every_mode_once_per_round_in_changing_orders():
    calls = []
    modes = {name: (lambda name=name: calls.append(name) or 0.0) for name in "abc"}
    out = bc.interleave(modes, rounds=6)
    assert {k: len(v) for k, v in out.items()} == {"a": 6, "b": 6, "c": 6}
    rounds = [tuple(calls[i : i + 3]) for i in range(0, 18, 3)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert len(set(rounds)) > 1  # not one fixed order, never blocks of one mode
    with pytest.raises(ValueError, match="at least 5"):
        bc.interleave(modes, rounds=3)


def test_fits_recover_a_known_line():
    ns = [1, 10, 100, 1000]
    exact = [50e-6 + 2e-6 * n for n in ns]
    for fit in (bc.fit_line(ns, exact), bc.fit_relative(ns, exact)):
        assert fit.a == pytest.approx(50e-6) and fit.b == pytest.approx(2e-6) and fit.r2 == pytest.approx(1.0)
    # 1% noise at n = 1000 hides a 50 µs fixed cost from a plain fit, not from the weighted one
    noisy = [*exact[:3], exact[3] * 1.01]
    assert abs(bc.fit_relative(ns, noisy).a - 50e-6) < abs(bc.fit_line(ns, noisy).a - 50e-6)


def test_payback_is_where_the_lines_cross():
    batched, one_by_one = bc.LineFit(100e-6, 1e-6, 1.0), bc.LineFit(0.0, 51e-6, 1.0)
    assert bc.payback_items(batched, one_by_one) == pytest.approx(2.0)
    assert bc.payback_items(one_by_one, batched) is None  # never pays back


def test_batch_sweep_repeats_small_batches_and_interleaves():
    seen = []

    def mode(n: int) -> float:
        seen.append(n)
        return n * 1e-6

    out = bc.batch_sweep({"m": mode}, (1, 10), rounds=5, items_per_call=20)
    assert out["m"][1] == pytest.approx([1e-6] * 5) and out["m"][10] == pytest.approx([1e-5] * 5)
    assert seen.count(1) == 5 * 20 and seen.count(10) == 5 * 2


def spinners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def orphan_spinner() -> int:
    """A busy loop that is not our descendant: its shell parent exits, so init adopts it."""
    out = subprocess.run(
        ["sh", "-c", f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return int(out.stdout.strip())


def test_machine_watch_counts_other_processes_not_its_own():
    own = spinners(1)  # a descendant: the watch's own work, never counted
    foreign = orphan_spinner()  # adopted by init: someone else's work
    try:
        time.sleep(0.3)
        first = bc._others_cpu_seconds()
        window = bc.MachineWatch(idle_sample=1.0).sample()
        second = bc._others_cpu_seconds()
    finally:
        for p in own:
            p.kill()
            p.wait(10)
        bc.psutil.Process(foreign).kill()
    assert own[0].pid not in first and own[0].pid not in second
    assert foreign in first and foreign in second
    assert second[foreign] - first[foreign] > 0.1  # it spun during the window (even on a busy machine)
    assert window.others_share * window.seconds * bc.psutil.cpu_count() >= second[foreign] - first[foreign] - 0.05


def test_run_all_refuses_a_busy_machine_before_running_anything():
    busy = spinners(bc.usable_cpus())
    try:
        time.sleep(0.3)
        began = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(BENCH / "run_all.py"), "--only", "process_pool"],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, BENCH_OUT="/nonexistent"),
        )
    finally:
        for p in busy:
            p.kill()
            p.wait(10)
    assert done.returncode == 2, done.stderr
    assert "refused before starting" in done.stderr and "--force" in done.stderr
    assert time.monotonic() - began < 20  # the refusal comes at once, not after the benchmarks
