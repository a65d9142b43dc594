"""Benchmark (a report, not a test): the overhead per task of a process pool, Dask and Celery.

    .venv/bin/python bench/engines_overhead.py [--tasks 1000] [--repeat 3]

Runs ``--tasks`` tiny tasks (``square(x)``) on each engine, every one a separate task:
a warm ``ProcessPoolExecutor`` of 2 workers (one ``submit`` per task), a Dask
``LocalCluster`` of 2 worker processes (``client.map`` and ``gather``), and a Celery
worker with ``--concurrency=2`` on a private Redis (one ``group``, gathered). Each
time is the best of ``--repeat`` runs, after one warm-up run. Prints a Markdown table
of the time and the time per task, and writes ``bench/engines_overhead.json`` with
the run details. There are no targets: the numbers describe this machine. Everything
started here is stopped again; the exit status is 0 unless an engine could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from helpers.distributed import engines
from helpers.instruments.measure import format_run_details, run_details
from helpers.instruments.services import start_redis

HERE = Path(__file__).resolve().parent


def best_of(run, repeat: int, expected: list[int]) -> float:
    run()  # warm-up: connections, imports, worker caches
    times = []
    for _ in range(repeat):
        seconds, results = run()
        if results != expected:
            raise RuntimeError("an engine returned wrong results")
        times.append(seconds)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "engines_overhead.json")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.repeat < 1:
        parser.error("--tasks and --repeat must be >= 1")
    n = args.tasks
    expected = [x * x for x in range(n)]
    seconds: dict[str, float] = {}

    seconds["ProcessPoolExecutor (2 workers)"] = best_of(
        lambda: engines.time_tiny_tasks_pool(n, workers=2), args.repeat, expected
    )

    cluster, client = engines.start_dask(n_workers=2)
    try:
        seconds["Dask LocalCluster (2 worker processes)"] = best_of(
            lambda: engines.time_tiny_tasks_dask(client, n), args.repeat, expected
        )
    finally:
        engines.stop_dask(client, cluster)

    server = start_redis(use_env=False)
    worker = None
    try:
        worker = engines.start_celery_worker(server.url, concurrency=2)
        seconds["Celery over Redis (concurrency 2)"] = best_of(
            lambda: engines.time_tiny_tasks_celery(n), args.repeat, expected
        )
    finally:
        if worker is not None:
            engines.stop_celery_worker(worker)
        server.close()

    pool = seconds["ProcessPoolExecutor (2 workers)"]
    print(f"# Overhead per task: {n:,} tiny tasks (square), best of {args.repeat}\n")
    print("| engine | time | per task | vs process pool |")
    print("|---|---:|---:|---:|")
    for engine, t in seconds.items():
        print(f"| {engine} | {t:.3f} s | {t / n * 1e6:.0f} µs | {t / pool:.1f}× |")
    print()
    print(format_run_details())

    report = {
        "benchmark": "engines_overhead",
        "tasks": n,
        "repeat": args.repeat,
        "seconds": seconds,
        "microseconds_per_task": {engine: t / n * 1e6 for engine, t in seconds.items()},
        "targets": [],
        "run_details": run_details(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(HERE.parent) if args.out.is_relative_to(HERE.parent) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
