"""Benchmark (a report, not a test): I/O-bound requests on a thread pool at 1..64 workers.

    .venv/bin/python bench/thread_pool.py [--requests 128] [--delay 0.1] [--repeat 3]

Starts ``helpers.threads.pools.DelayServer``, a real HTTP server on 127.0.0.1 whose
every answer takes ``--delay`` seconds, and fetches ``--requests`` URLs from it:
first one after another in this thread (serial), then on a ``ThreadPoolExecutor``
of 1, 2, 4, 8, 16, 32 and 64 threads. A run shorter than 2 s is repeated
``--repeat`` times and the best time kept; the slow runs (serial, 1 and 2 workers),
which sleep for seconds and barely vary, run once, which keeps the whole benchmark
under a minute. Prints a Markdown table of time, speedup (against serial) and
parallel efficiency, checks the targets, and writes ``bench/thread_pool.json``
with the run details. Always exits 0: the numbers are a report about this
machine, not a pass/fail test of the book.

The client and the server share this process and its GIL, so each request's
Python work (about 1-2 ms, client and server together) caps the throughput.
A 100 ms delay keeps 32 threads' target (320 requests/s) below that cap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from helpers.instruments.measure import Timer, format_run_details, run_details
from helpers.instruments.speedup import format_speedup_table, speedup_points
from helpers.threads.pools import DelayServer, fetch, format_throughput_table, run_fetches

HERE = Path(__file__).resolve().parent
WORKER_COUNTS = (1, 2, 4, 8, 16, 32, 64)
#: workers -> the least speedup over serial we expect on an otherwise idle machine
TARGETS = {32: 28.0}
REPEAT_BELOW = 2.0  # seconds: runs shorter than this are repeated


def serial_run(server: DelayServer, requests: int, timeout: float) -> tuple[float, list[str]]:
    with Timer() as t:
        bodies = [fetch(f"{server.url}/item/{i}", timeout) for i in range(requests)]
    return t.elapsed, bodies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--out", type=Path, default=HERE / "thread_pool.json")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.requests < 1 or not 0 < args.delay <= 5:
        parser.error("--repeat and --requests must be >= 1, --delay in (0, 5]")

    expected = [f"/item/{i}" for i in range(args.requests)]
    times: dict[int, float] = {}
    best_runs = {}
    with Timer() as total, DelayServer(delay=args.delay) as server:
        serial, bodies = serial_run(server, args.requests, args.timeout)
        if bodies != expected:
            print("ERROR: the serial run got wrong answers", file=sys.stderr)
        for workers in WORKER_COUNTS:
            runs = [run_fetches(workers, server.url, args.requests, args.timeout)]
            while runs[0].elapsed < REPEAT_BELOW and len(runs) < args.repeat:
                runs.append(run_fetches(workers, server.url, args.requests, args.timeout))
            if any(r.result != expected for r in runs):
                print(f"ERROR: {workers} workers got wrong answers", file=sys.stderr)
            best_runs[workers] = min(runs, key=lambda r: r.elapsed)
            times[workers] = best_runs[workers].elapsed
        errors = server.errors

    points = speedup_points(times, baseline=serial)
    print(
        f"# Thread pool: {args.requests} HTTP requests of {args.delay * 1000:.0f} ms to a local server, "
        f"best of up to {args.repeat} (runs under {REPEAT_BELOW:.0f} s)\n"
    )
    print(
        f"serial (no pool, one request after another): {serial:.2f} s "
        f"(at least {args.requests * args.delay:.2f} s of server delay)"
    )
    print()
    print(format_speedup_table(points, percent=True))
    print()
    print("The same runs through Little's law (in flight = requests/s × mean latency):\n")
    print(format_throughput_table(best_runs.values()))
    print()
    checks = []
    for workers, target in TARGETS.items():
        point = next(p for p in points if p.workers == workers)
        ok = point.speedup >= target
        checks.append(
            {"check": f"{workers} workers vs serial (speedup)", "target": target, "value": point.speedup, "pass": ok}
        )
        print(f"{'PASS' if ok else 'FAIL'} {workers} workers >= {target:.0f}× serial: {point.speedup:.2f}×")
    if errors:
        print(f"server-side request errors: {errors}")
    print(format_run_details())
    print(f"total benchmark time: {total.elapsed:.1f} s")

    report = {
        "benchmark": "thread_pool",
        "requests": args.requests,
        "delay_seconds": args.delay,
        "repeat": args.repeat,
        "serial_seconds": serial,
        "points": [vars(p) for p in points],
        "targets": checks,
        "server_errors": errors,
        "total_seconds": total.elapsed,
        "run_details": run_details(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(HERE.parent) if args.out.is_relative_to(HERE.parent) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
