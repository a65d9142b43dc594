"""Benchmark (a report, not a test): redis-py SETs with and without a pipeline, and the C client.

    .venv/bin/python bench/redis_pipeline.py [--sets 10000] [--repeat 5] [--requests 100000]

Starts a private ``redis-server`` (chapter 14's ``start_redis``), writes ``--sets`` keys
with redis-py one round-trip at a time, then in one pipeline (best of ``--repeat``
each), and runs ``redis-benchmark -c 1 -P 16 -t set -n --requests -q`` against the same
server: Redis's C client on one connection, 16 commands per batch. Prints a Markdown
table, checks the targets (pipelined at least 10× faster than round-trips; redis-py's
pipelined throughput at least 40% of redis-benchmark's), writes
``bench/redis_pipeline.json`` with the run details, stops the server, and exits 0: the
numbers are a report about this machine, not a pass/fail test of the book.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from helpers.caching.redis_patterns import connect, redis_benchmark, time_sets
from helpers.instruments.measure import format_run_details, run_details
from helpers.instruments.services import start_redis

HERE = Path(__file__).resolve().parent
PIPELINE_SPEEDUP_TARGET = 10.0  # pipelined vs one round-trip per SET
C_CLIENT_FRACTION_TARGET = 0.40  # redis-py pipelined SETs/s vs redis-benchmark -c 1 -P 16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=HERE / "redis_pipeline.json")
    args = parser.parse_args(argv)
    if args.sets < 1 or args.repeat < 1 or args.requests < 1:
        parser.error("--sets, --repeat and --requests must be >= 1")

    server = start_redis(use_env=False)
    try:
        client = connect(server.url)
        try:
            best = {
                mode: min(time_sets(client, args.sets, mode, prefix=mode) for _ in range(args.repeat))
                for mode in ("round-trips", "pipeline", "mset")
            }
        finally:
            client.close()
        bench_runs = []
        for _ in range(args.repeat):
            rate = redis_benchmark(server.host, server.port, requests=args.requests, pipeline=16, clients=1)
            if rate is None:
                break
            bench_runs.append(rate)
    finally:
        server.close()

    rates = {mode: args.sets / seconds for mode, seconds in best.items()}
    bench_rps = max(bench_runs) if bench_runs else None
    print(f"# redis-py SETs over loopback: {args.sets:,} keys, best of {args.repeat}\n")
    print("| client | mode | time | per SET | SETs/s |")
    print("|---|---|---|---|---|")
    for mode, seconds in best.items():
        print(f"| redis-py | {mode} | {seconds:.3f} s | {seconds / args.sets * 1e6:.2f} µs | {rates[mode]:,.0f} |")
    if bench_rps is not None:
        print(
            f"| redis-benchmark | -c 1 -P 16, {args.requests:,} SETs | | {1e6 / bench_rps:.2f} µs | {bench_rps:,.0f} |"
        )
    print()

    checks = []
    speedup = best["round-trips"] / best["pipeline"]
    ok = speedup >= PIPELINE_SPEEDUP_TARGET
    checks.append({"check": "pipeline vs round-trips", "target": PIPELINE_SPEEDUP_TARGET, "value": speedup, "pass": ok})
    print(
        f"{'PASS' if ok else 'FAIL'} pipelined >= {PIPELINE_SPEEDUP_TARGET:.0f}× faster than "
        f"round-trips: {speedup:.1f}×"
    )
    fraction = None
    if bench_rps is None:
        print("SKIP redis-py vs redis-benchmark: redis-benchmark is not installed (Debian package redis-tools)")
    else:
        fraction = rates["pipeline"] / bench_rps
        ok = fraction >= C_CLIENT_FRACTION_TARGET
        checks.append(
            {
                "check": "redis-py pipeline vs redis-benchmark -c 1 -P 16",
                "target": C_CLIENT_FRACTION_TARGET,
                "value": fraction,
                "pass": ok,
            }
        )
        print(
            f"{'PASS' if ok else 'FAIL'} redis-py pipelined throughput >= "
            f"{C_CLIENT_FRACTION_TARGET:.0%} of redis-benchmark -c 1 -P 16: {fraction:.0%}"
        )
    print(format_run_details())

    report = {
        "benchmark": "redis_pipeline",
        "sets": args.sets,
        "repeat": args.repeat,
        "benchmark_requests": args.requests,
        "seconds": best,
        "sets_per_second": rates,
        "redis_benchmark_sets_per_second": bench_rps,
        "redis_benchmark_runs": bench_runs,
        "pipeline_speedup": speedup,
        "fraction_of_c_client": fraction,
        "targets": checks,
        "run_details": run_details(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(HERE.parent) if args.out.is_relative_to(HERE.parent) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
