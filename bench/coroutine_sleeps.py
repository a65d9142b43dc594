"""Benchmark (a report, not a test): 10,000 concurrent sleeps in gevent, asyncio and threads.

    .venv/bin/python bench/coroutine_sleeps.py [--n 10000] [--delay 0.1] [--repeat 3]

Each run starts ``--n`` tasks that each sleep ``--delay`` seconds, in a fresh
Python process (``python -m helpers.scripts.many_sleeps``): gevent greenlets
(``gevent.sleep``), asyncio tasks (``asyncio.sleep``), and one thread per task
(``time.sleep``), plus ``threads-gated``, where every thread is started first and
all sleep together, so that all ``--n`` threads are alive at once. Greenlets and tasks
are gated the same way (they wait until all ``--n`` have started), so a model's wall
time includes starting all of them before the first sleep begins. Each model
runs ``--repeat`` times; the table shows the run with the best wall time, with
its peak memory (VmHWM on Linux, else ru_maxrss) and the memory added by the run.
If a model cannot start all its threads, the table says how many it started.

Targets: gevent and asyncio each finish within 0.4 s, and each is at least 3x
faster than threads. Prints PASS/FAIL per target, writes
``bench/coroutine_sleeps.json`` with the run details, and always exits 0: the
numbers are a report about this machine, not a pass/fail test of the book.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from helpers.coroutines.gevent_basics import SleepRun, measure_sleeps
from helpers.instruments.measure import format_run_details, run_details

HERE = Path(__file__).resolve().parent
KINDS = ("gevent", "asyncio", "threads", "threads-gated")
MAX_SECONDS = 0.4  # gevent and asyncio must finish within this
MIN_SPEEDUP = 3.0  # ... and be at least this many times faster than threads


def best_run(kind: str, n: int, delay: float, repeat: int) -> tuple[SleepRun | None, list[SleepRun], str]:
    runs, problem = [], ""
    for _ in range(repeat):
        try:
            runs.append(measure_sleeps(kind, n, delay, timeout=300))
        except (RuntimeError, OSError, ValueError) as exc:  # a child that died, or timed out
            problem = str(exc)
        except Exception as exc:  # subprocess.TimeoutExpired and anything unforeseen
            problem = f"{type(exc).__name__}: {exc}"
    if not runs:
        return None, runs, problem or "no run finished"
    return min(runs, key=lambda r: r.elapsed), runs, problem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--skip-gated", action="store_true", help="skip threads-gated (the slowest model: all threads alive at once)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "coroutine_sleeps.json")
    args = parser.parse_args(argv)
    if args.repeat < 1 or not 1 <= args.n <= 20_000 or not 0 <= args.delay <= 5:
        parser.error("--repeat >= 1, 1 <= --n <= 20000 and 0 <= --delay <= 5 please")

    kinds = [k for k in KINDS if not (args.skip_gated and k == "threads-gated")]
    best: dict[str, SleepRun | None] = {}
    report_runs: dict[str, list[dict]] = {}
    notes: dict[str, str] = {}
    for kind in kinds:
        run, runs, problem = best_run(kind, args.n, args.delay, args.repeat)
        best[kind] = run
        report_runs[kind] = [vars(r) for r in runs]
        if problem:
            notes[kind] = problem
        elif run is not None and (run.error or run.completed < args.n):
            notes[kind] = run.error or f"only {run.completed} of {args.n} sleeps completed"

    print(f"# {args.n:,} concurrent sleeps of {args.delay} s, best of {args.repeat}, one fresh process per run\n")
    print("| model | wall time | completed | most asleep at once | peak memory | added by the run |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in kinds:
        run = best[kind]
        if run is None:
            print(f"| {kind} | failed | | | | |")
            continue
        print(
            f"| {kind} | {run.elapsed:.3f} s | {run.completed:,} | {run.peak_concurrent:,} | "
            f"{run.maxrss_mib:.1f} MiB | {run.growth_mib:.1f} MiB |"
        )
    print()
    for kind, note in notes.items():
        print(f"NOTE {kind}: {note}")

    checks = []
    threads = best.get("threads")
    for kind in ("gevent", "asyncio"):
        run = best.get(kind)
        if run is None:
            checks.append({"check": f"{kind} ran", "target": None, "value": None, "pass": False})
            print(f"FAIL {kind}: no run finished")
            continue
        ok = run.elapsed <= MAX_SECONDS and run.completed == args.n
        checks.append(
            {"check": f"{kind} wall time, seconds (at most)", "target": MAX_SECONDS, "value": run.elapsed, "pass": ok}
        )
        print(f"{'PASS' if ok else 'FAIL'} {kind} finishes within {MAX_SECONDS} s: {run.elapsed:.3f} s")
        if threads is None:
            checks.append(
                {"check": f"{kind} vs threads (speedup)", "target": MIN_SPEEDUP, "value": None, "pass": False}
            )
            print(f"FAIL {kind} >= {MIN_SPEEDUP:.0f}x faster than threads: no threads run")
            continue
        speedup = threads.elapsed / run.elapsed
        ok = speedup >= MIN_SPEEDUP
        checks.append({"check": f"{kind} vs threads (speedup)", "target": MIN_SPEEDUP, "value": speedup, "pass": ok})
        print(f"{'PASS' if ok else 'FAIL'} {kind} >= {MIN_SPEEDUP:.0f}x faster than threads: {speedup:.2f}×")
    print(format_run_details())

    report = {
        "benchmark": "coroutine_sleeps",
        "n": args.n,
        "delay": args.delay,
        "repeat": args.repeat,
        "best": {k: (vars(r) if r is not None else None) for k, r in best.items()},
        "runs": report_runs,
        "notes": notes,
        "targets": checks,
        "run_details": run_details(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    shown = args.out.relative_to(HERE.parent) if args.out.is_relative_to(HERE.parent) else args.out
    print(f"wrote {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
