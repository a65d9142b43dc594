"""Benchmark (a report, not a test): the cost model of pymemcache's get_many against one get per key.

    .venv/bin/python bench/memcached_get_many.py [--rounds 7] [--value-bytes 100]

Starts a private memcached on a free loopback port, stores 1000 values of
``--value-bytes`` bytes, and for n = 1, 10, 100 and 1000 keys times n ``get`` calls
against one ``get_many`` of the same n keys (chapter 13 shows both), every (way, n)
pair interleaved round by round. For each way it fits ``t(n) = a + b·n``: ``a`` is the
fixed cost of one call, about one round trip on loopback, ``b`` the client's and the
server's cost per key. ``get_many`` pays back from the n where the lines cross; the
ratio at n = 100 follows. A report with no pass/fail target (issue 14 sets none for it):
writes ``bench/memcached_get_many.json`` and ``bench/memcached_batching.svg``, exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import batch_sweep, fit_sweep, gc_off, out_dir, payback_items, plot_sweep, print_sweep_tables, spread

from helpers.caching.memcached import make_client, make_keys
from helpers.instruments.measure import format_run_details, run_details
from helpers.instruments.services import start_memcached

HERE = Path(__file__).resolve().parent
SIZES = (1, 10, 100, 1000)


def make_modes(client, keys: list[str]) -> dict:
    def gets(n: int) -> float:
        these = keys[:n]
        with gc_off():
            start = time.perf_counter()
            values = [client.get(k) for k in these]
            elapsed = time.perf_counter() - start
        if any(v is None for v in values):
            raise RuntimeError("a key was missing: memcached evicted or lost it")
        return elapsed

    def get_many(n: int) -> float:
        these = keys[:n]
        with gc_off():
            start = time.perf_counter()
            values = client.get_many(these)
            elapsed = time.perf_counter() - start
        if len(values) != n:
            raise RuntimeError("get_many came back short: memcached evicted or lost a key")
        return elapsed

    return {"gets": gets, "get_many": get_many}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--out", type=Path, default=out_dir() / "memcached_get_many.json")
    parser.add_argument("--plot", type=Path, default=out_dir() / "memcached_batching.svg")
    args = parser.parse_args(argv)
    if args.rounds < 5 or not 0 <= args.value_bytes <= 100_000:
        parser.error("--rounds must be >= 5 (a median needs runs), --value-bytes in 0..100000")

    with start_memcached(use_env=False) as server:
        client = make_client(server)
        try:
            keys = make_keys("bench", max(SIZES))
            if client.set_many(dict.fromkeys(keys, b"v" * args.value_bytes)) != []:
                raise RuntimeError("set_many did not store every key")
            modes = make_modes(client, keys)
            batch_sweep(modes, SIZES, rounds=5, items_per_call=200)  # warm-up: connection, caches
            sweep = batch_sweep(modes, SIZES, rounds=args.rounds)
        finally:
            client.close()
    assert not server.is_running()

    fits = fit_sweep(sweep)
    print(f"# pymemcache on loopback, {args.value_bytes}-byte values: µs per key, median (min–max)\n")
    per_key = print_sweep_tables(sweep, fits)
    payback = payback_items(fits["get_many"], fits["gets"])
    ratio_100 = spread([g / m for g, m in zip(sweep["gets"][100], sweep["get_many"][100], strict=True)])
    print(f"\nget_many pays back from n ≈ {payback:.1f} keys" if payback else "\nget_many never pays back")
    print(f"gets / get_many at n = 100: {ratio_100.format()}×")
    plot_sweep(args.plot, "pymemcache on loopback: one call of n keys", sweep, fits)
    print(format_run_details())

    report = {
        "benchmark": "memcached_get_many",
        "rounds": args.rounds,
        "value_bytes": args.value_bytes,
        "sizes": SIZES,
        "seconds": {m: {str(n): v for n, v in by_n.items()} for m, by_n in sweep.items()},
        "figures": [{"figure": f"{m}, µs per key at n = {n}", **per_key[m][n].as_dict()} for m in sweep for n in SIZES]
        + [{"figure": "gets / get_many at n = 100 (×)", **ratio_100.as_dict()}],
        "fits": {m: fit.as_dict() for m, fit in fits.items()},
        "payback_items": {"get_many": payback},
        "plot": args.plot.name,
        "targets": [],
        "client": "pymemcache " + _version("pymemcache"),
        "run_details": run_details(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.name} and {args.plot.name}")
    return 0


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
