"""Benchmark (a report, not a test): one get_many of 100 keys against 100 get calls.

    .venv/bin/python bench/memcached_get_many.py [--keys 100] [--repeat 200] [--value-bytes 100]

Starts a private memcached on a free loopback port, stores ``--keys`` values of
``--value-bytes`` bytes, then times, ``--repeat`` times and interleaved, one
``get`` per key and one ``get_many`` of all the keys (pymemcache, noreply off).
Prints a Markdown table of the medians and their ratio, checks the target
(get_many at least 10× faster), writes ``bench/memcached_get_many.json`` with
the run details, and stops the server. Always exits 0: the numbers are a report
about this machine, not a pass/fail test of the book.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from helpers.caching.memcached import compare_get_many, make_client, make_keys
from helpers.instruments.measure import format_run_details, run_details
from helpers.instruments.services import start_memcached
from helpers.processes.sharing import format_seconds

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 10.0  # get_many should be at least this many times faster than single gets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--out", type=Path, default=HERE / "memcached_get_many.json")
    args = parser.parse_args(argv)
    if not 1 <= args.keys <= 10_000 or not 1 <= args.repeat <= 10_000 or not 0 <= args.value_bytes <= 100_000:
        parser.error("--keys and --repeat must be in 1..10000, --value-bytes in 0..100000")

    with start_memcached(use_env=False) as server:
        client = make_client(server)
        try:
            keys = make_keys("bench", args.keys)
            if client.set_many({k: b"v" * args.value_bytes for k in keys}) != []:
                print("ERROR: set_many did not store every key", file=sys.stderr)
            compare_get_many(client, keys, repeat=5)  # warm up: connection, allocator, caches
            result = compare_get_many(client, keys, repeat=args.repeat)
        finally:
            client.close()
    assert not server.is_running()

    ok = result.ratio >= TARGET_RATIO
    print(
        f"# memcached: get_many of {args.keys} keys vs {args.keys} get calls, "
        f"{args.value_bytes}-byte values, median of {args.repeat}\n"
    )
    print("| way | median time | per key |")
    print("|---|---|---|")
    print(
        f"| {args.keys} × get | {format_seconds(result.single_seconds)} "
        f"| {format_seconds(result.single_seconds / args.keys)} |"
    )
    print(
        f"| get_many({args.keys}) | {format_seconds(result.many_seconds)} "
        f"| {format_seconds(result.many_seconds / args.keys)} |"
    )
    print(f"| ratio | {result.ratio:.1f}× | |")
    print()
    print(f"{'PASS' if ok else 'FAIL'} get_many >= {TARGET_RATIO:.0f}× faster than single gets: {result.ratio:.1f}×")
    print(format_run_details())

    report = {
        "benchmark": "memcached_get_many",
        "keys": args.keys,
        "repeat": args.repeat,
        "value_bytes": args.value_bytes,
        "single_gets_median_seconds": result.single_seconds,
        "get_many_median_seconds": result.many_seconds,
        "ratio": result.ratio,
        "targets": [
            {
                "check": f"get_many({args.keys}) vs {args.keys} gets (speedup)",
                "target": TARGET_RATIO,
                "value": result.ratio,
                "pass": ok,
            }
        ],
        "client": "pymemcache " + _version("pymemcache"),
        "run_details": run_details(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(HERE.parent) if args.out.is_relative_to(HERE.parent) else args.out}")
    return 0


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
