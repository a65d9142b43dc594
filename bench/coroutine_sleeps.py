"""Benchmark (a report, not a test): 10,000 concurrent sleeps in gevent, asyncio and threads.

    .venv/bin/python bench/coroutine_sleeps.py [--n 10000] [--delay 0.1] [--rounds 5]

Each run starts ``--n`` tasks that each sleep ``--delay`` seconds, in a fresh Python process
(``python -m helpers.scripts.many_sleeps``, shown in chapter 10): gevent greenlets, asyncio
tasks, one thread per sleep, and ``threads-gated``, where all the threads are alive at once.
Greenlets, tasks and gated threads wait at a gate until all ``--n`` have started, so a wall
time includes starting every one of them. The ideal is ``--delay`` itself: all sleeps at once,
at no cost. The models take turns, in a new order each round, for ``--rounds`` rounds.

Reports each model's wall time (median, min–max), and its cost per task over the ideal in µs,
``(wall − delay) / n``. Targets: asyncio within 1.5× the ideal, gevent within 2×. Writes
``bench/coroutine_sleeps.json``; exits 0, since the numbers are a report about this machine.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import check_rounds, out_dir, spread

from helpers.coroutines.gevent_basics import measure_sleeps
from helpers.instruments.measure import format_run_details, run_details

HERE = Path(__file__).resolve().parent
KINDS = ("gevent", "asyncio", "threads", "threads-gated")
TARGETS = {"asyncio": 1.5, "gevent": 2.0}  # wall time at most this many times the ideal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=out_dir() / "coroutine_sleeps.json")
    args = parser.parse_args(argv)
    if not 1 <= args.n <= 20_000 or not 0 < args.delay <= 5:
        parser.error("1 <= --n <= 20000 and 0 < --delay <= 5 please")
    check_rounds(args.rounds)

    runs: dict[str, list] = {k: [] for k in KINDS}
    problems: dict[str, list[str]] = {k: [] for k in KINDS}
    order = random.Random(0)
    kinds = list(KINDS)
    for _ in range(args.rounds):
        order.shuffle(kinds)
        for kind in kinds:
            try:
                run = measure_sleeps(kind, args.n, args.delay, timeout=300)
            except Exception as exc:  # a child that died or timed out: reported, not fatal
                problems[kind].append(f"{type(exc).__name__}: {exc}")
                continue
            if run.error or run.completed < args.n:
                problems[kind].append(run.error or f"only {run.completed} of {args.n} sleeps completed")
                continue
            runs[kind].append(run)

    print(f"# {args.n:,} concurrent sleeps of {args.delay} s; median (min–max) of {args.rounds} rounds\n")
    print("| model | wall time, s | × ideal | µs per task over the ideal | most asleep at once | peak memory, MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    figures, summary = [], {}
    for kind in KINDS:
        if not runs[kind]:
            print(f"| {kind} | failed: {'; '.join(problems[kind])[:120]} | | | | |")
            continue
        wall = spread([r.elapsed for r in runs[kind]])
        over = spread([(r.elapsed - args.delay) / args.n * 1e6 for r in runs[kind]])
        memory = spread([r.maxrss_mib for r in runs[kind]])
        peak = min(r.peak_concurrent for r in runs[kind])
        summary[kind] = wall
        print(
            f"| {kind} | {wall.format()} | {wall.median / args.delay:.2f} | {over.format()} | {peak:,} | "
            f"{memory.format()} |"
        )
        figures += [
            {"figure": f"{kind} wall time, s", **wall.as_dict()},
            {"figure": f"{kind} µs per task over the ideal", **over.as_dict()},
        ]
    print()
    for kind, notes in problems.items():
        for note in notes:
            print(f"NOTE {kind}: {note}")

    checks = []
    for kind, factor in TARGETS.items():
        wall = summary.get(kind)
        value = None if wall is None else wall.median / args.delay
        ok = value is not None and value <= factor and len(runs[kind]) == args.rounds
        checks.append(
            {
                "check": f"{kind}: wall time / ideal ({args.delay} s), at most",
                "target": factor,
                "value": value,
                "limit": f"ideal {args.delay} s",
                "measured": "failed" if wall is None else f"{wall.format('s')}",
                "pass": ok,
            }
        )
        shown = "no run" if value is None else f"{value:.2f}× ({wall.format('s')})"
        print(f"{'PASS' if ok else 'MISS'} {kind} within {factor}× the ideal {args.delay} s: {shown}")
    print(format_run_details())

    report = {
        "benchmark": "coroutine_sleeps",
        "n": args.n,
        "delay": args.delay,
        "rounds": args.rounds,
        "runs": {k: [vars(r) for r in v] for k, v in runs.items()},
        "problems": problems,
        "figures": figures,
        "targets": checks,
        "run_details": run_details(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
