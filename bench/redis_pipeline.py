"""Benchmark (a report, not a test): the cost model of batching SETs in redis-py, and the C client.

    .venv/bin/python bench/redis_pipeline.py [--rounds 7] [--requests 100000]

Starts a private ``redis-server`` (chapter 14's ``start_redis``) and, for batches of
n = 1, 10, 16, 100 and 1000 keys, times three ways of writing them, all interleaved
round by round (chapter 14 shows each):

- ``round-trips``: one ``SET`` and its reply, then the next;
- ``pipeline``: ``pipeline(transaction=False)``, n ``SET``s sent together, replies read after;
- ``mset``: one ``MSET`` command with n pairs.

For each way it fits ``t(n) = a + b·n``: ``a`` is the fixed cost of one call (for a batch,
about one round trip), ``b`` the cost of each key in it. Batching pays back from the n
where the two lines cross. It also runs ``redis-benchmark -c 1 -P 16 -t set`` (Redis's C
client, one connection, batches of 16) against the same server, interleaved with the rest,
and compares its cost per SET with redis-py's pipeline of 16.

Target: redis-py's pipelined cost per SET at most 1.4× redis-benchmark's. Writes
``bench/redis_pipeline.json`` and the plot ``bench/redis_batching.svg``; exits 0, since the
numbers are a report about this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import batch_sweep, fit_sweep, gc_off, out_dir, payback_items, plot_sweep, print_sweep_tables, spread

from helpers.caching.redis_patterns import connect, redis_benchmark
from helpers.instruments.measure import format_run_details, run_details
from helpers.instruments.services import start_redis

HERE = Path(__file__).resolve().parent
SIZES = (1, 10, 16, 100, 1000)
C_CLIENT_TARGET = 1.4  # redis-py pipelined µs per SET <= this × redis-benchmark -c 1 -P 16's


def make_modes(client) -> dict:
    keys = {n: [f"k{n}:{i}" for i in range(n)] for n in SIZES}
    pairs = {n: dict.fromkeys(keys[n], b"v") for n in SIZES}

    def round_trips(n: int) -> float:
        these = keys[n]
        with gc_off():
            start = time.perf_counter()
            for key in these:
                client.set(key, b"v")
            return time.perf_counter() - start

    def pipeline(n: int) -> float:
        these = keys[n]
        with gc_off():
            start = time.perf_counter()
            with client.pipeline(transaction=False) as pipe:
                for key in these:
                    pipe.set(key, b"v")
                replies = pipe.execute()
            elapsed = time.perf_counter() - start
        if len(replies) != n:
            raise RuntimeError("the pipeline lost replies")
        return elapsed

    def mset(n: int) -> float:
        mapping = pairs[n]
        with gc_off():
            start = time.perf_counter()
            client.mset(mapping)
            return time.perf_counter() - start

    return {"round-trips": round_trips, "pipeline": pipeline, "mset": mset}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=100_000, help="SETs per redis-benchmark run")
    parser.add_argument("--out", type=Path, default=out_dir() / "redis_pipeline.json")
    parser.add_argument("--plot", type=Path, default=out_dir() / "redis_batching.svg")
    args = parser.parse_args(argv)
    if args.rounds < 5 or args.requests < 1000:
        parser.error("--rounds must be >= 5 (a median needs runs) and --requests >= 1000")

    server = start_redis(use_env=False)
    c_client_per_set: list[float] = []
    try:
        client = connect(server.url)
        try:
            modes = make_modes(client)
            batch_sweep(modes, SIZES, rounds=5, items_per_call=200)  # warm-up: connection, caches

            # The C client's runs take turns with the sweep's rounds: one run after each round.
            def c_client_round() -> None:
                rate = redis_benchmark(server.host, server.port, requests=args.requests, pipeline=16, clients=1)
                if rate is not None:
                    c_client_per_set.append(1.0 / rate)

            sweep = batch_sweep(modes, SIZES, rounds=args.rounds, after_round=c_client_round)
        finally:
            client.close()
    finally:
        server.close()

    fits = fit_sweep(sweep)
    print(f"# redis-py SETs over loopback: µs per SET, median (min–max) of {args.rounds} rounds\n")
    per_set = print_sweep_tables(sweep, fits)
    payback = {m: payback_items(fits[m], fits["round-trips"]) for m in ("pipeline", "mset")}
    ratio_100 = spread([rt / p for rt, p in zip(sweep["round-trips"][100], sweep["pipeline"][100], strict=True)])
    print()
    for m, n in payback.items():
        print(f"{m} pays back from n ≈ {n:.1f} keys" if n else f"{m} never pays back")
    print(f"round trips / pipeline at n = 100: {ratio_100.format()}×")

    checks = []
    c_client = spread(c_client_per_set).scaled(1e6) if c_client_per_set else None
    if c_client is None:
        print("SKIP redis-py vs redis-benchmark: redis-benchmark is not installed (Debian package redis-tools)")
    else:
        ours = per_set["pipeline"][16]
        value = ours.median / c_client.median
        ok = value <= C_CLIENT_TARGET
        checks.append(
            {
                "check": "redis-py pipeline of 16, µs per SET, vs redis-benchmark -c 1 -P 16 (at most)",
                "target": C_CLIENT_TARGET,
                "value": value,
                "limit": f"C client {c_client.format('µs')} per SET",
                "measured": f"redis-py {ours.format('µs')} per SET",
                "pass": ok,
            }
        )
        print(
            f"{'PASS' if ok else 'MISS'} redis-py pipelined {ours.format('µs')} per SET <= "
            f"{C_CLIENT_TARGET}× redis-benchmark's {c_client.format('µs')}: {value:.2f}×"
        )
    plot_sweep(args.plot, "redis-py SETs on loopback: one call of n keys", sweep, fits)
    print(format_run_details())

    report = {
        "benchmark": "redis_pipeline",
        "rounds": args.rounds,
        "sizes": SIZES,
        "seconds": {m: {str(n): v for n, v in by_n.items()} for m, by_n in sweep.items()},
        "figures": [
            {"figure": f"{m}, µs per SET at n = {n}", **per_set[m][n].as_dict()} for m in sweep for n in (1, 100, 1000)
        ]
        + ([{"figure": "redis-benchmark -c 1 -P 16, µs per SET", **c_client.as_dict()}] if c_client else [])
        + [{"figure": "round trips / pipeline at n = 100 (×)", **ratio_100.as_dict()}],
        "fits": {m: fit.as_dict() for m, fit in fits.items()},
        "payback_items": payback,
        "plot": args.plot.name,
        "targets": checks,
        "run_details": run_details(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.name} and {args.plot.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
