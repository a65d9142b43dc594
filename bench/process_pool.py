"""Benchmark (a report, not a test): a CPU-bound job on a process pool at 1..CPU workers.

    .venv/bin/python bench/process_pool.py [--limit 1500000] [--chunks 48] [--repeat 3]

Counts the primes below ``--limit`` (at least 2 s serial on a typical laptop
core) in ``--chunks`` tasks, first serially in this process, then on a
``multiprocessing.Pool`` of 1, 2, ... usable-CPU workers. Each time is the best
of ``--repeat`` runs. Prints a Markdown table of time, speedup (against the
serial run) and parallel efficiency, checks the targets, and writes
``bench/process_pool.json`` with the run details. Always exits 0: the numbers
are a report about this machine, not a pass/fail test of the book.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from helpers.instruments.measure import Timer, format_run_details, run_details, usable_cpus
from helpers.instruments.speedup import format_speedup_table, speedup_points
from helpers.instruments.workloads import count_primes_in_range
from helpers.processes.pools import prime_chunks, run_primes_on_pool

HERE = Path(__file__).resolve().parent
#: workers -> the least speedup over serial we expect on an otherwise idle machine
TARGETS = {2: 1.85}


def serial_time(limit: int, chunks: int) -> tuple[float, int]:
    with Timer() as t:
        found = sum(count_primes_in_range(a, b) for a, b in prime_chunks(limit, chunks))
    return t.elapsed, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1_500_000)
    parser.add_argument("--chunks", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-workers", type=int, default=usable_cpus())
    parser.add_argument("--out", type=Path, default=HERE / "process_pool.json")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.max_workers < 1:
        parser.error("--repeat and --max-workers must be >= 1")

    serial_runs = [serial_time(args.limit, args.chunks) for _ in range(args.repeat)]
    serial = min(t for t, _ in serial_runs)
    expected = serial_runs[0][1]
    times: dict[int, float] = {}
    for workers in range(1, args.max_workers + 1):
        runs = [run_primes_on_pool(workers, args.limit, args.chunks) for _ in range(args.repeat)]
        if any(r.result != expected for r in runs):
            print(f"ERROR: {workers} workers counted a different number of primes", file=sys.stderr)
        times[workers] = min(r.elapsed for r in runs)

    points = speedup_points(times, baseline=serial)
    print(f"# Process pool: primes below {args.limit:,} in {args.chunks} tasks, best of {args.repeat}\n")
    print(f"serial (no pool): {serial:.2f} s" + ("" if serial >= 2.0 else "  (WARNING: under 2 s; raise --limit)"))
    print()
    print(format_speedup_table(points, percent=True))
    print()
    checks = []
    for workers, target in TARGETS.items():
        point = next((p for p in points if p.workers == workers), None)
        if point is None:
            print(f"SKIP {workers} workers >= {target:.2f}× serial: only {args.max_workers} worker(s) run")
            continue
        ok = point.speedup >= target
        checks.append(
            {"check": f"{workers} workers vs serial (speedup)", "target": target, "value": point.speedup, "pass": ok}
        )
        print(f"{'PASS' if ok else 'FAIL'} {workers} workers >= {target:.2f}× serial: {point.speedup:.2f}×")
    print(format_run_details())

    report = {
        "benchmark": "process_pool",
        "limit": args.limit,
        "chunks": args.chunks,
        "repeat": args.repeat,
        "primes": expected,
        "serial_seconds": serial,
        "points": [vars(p) for p in points],
        "targets": checks,
        "run_details": run_details(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(HERE.parent) if args.out.is_relative_to(HERE.parent) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
