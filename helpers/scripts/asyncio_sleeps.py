"""Chapter 11: 10,000 concurrent 0.1 s sleeps with asyncio, as a script.

Run it with ``python -m helpers.scripts.asyncio_sleeps --tasks 10000 --seconds 0.1``.
It prints one JSON object: the tasks finished, the wall time of the sleeps alone
(interpreter start-up excluded), and the process's memory before the tasks and at its peak.
A script has no running event loop, so it starts one with ``asyncio.run``.
``helpers/scripts/asyncio_vs_gevent_sleeps.py`` runs the same workload with gevent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time

from helpers.instruments.measure import peak_memory_kib

MAX_TASKS = 200_000


def peak_rss_mib() -> float:
    """The most resident memory this process has used so far, in MiB (see helpers.instruments.measure)."""
    return peak_memory_kib() / 2**10


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    """``--tasks N --seconds S``, checked."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tasks", type=int, default=10_000, help="how many concurrent sleeps")
    parser.add_argument("--seconds", type=float, default=0.1, help="how long each one sleeps")
    args = parser.parse_args(argv)
    if not 1 <= args.tasks <= MAX_TASKS:
        parser.error(f"--tasks must be in 1..{MAX_TASKS}")
    if not 0 <= args.seconds <= 10:
        parser.error("--seconds must be between 0 and 10")
    return args


def report(
    model: str, args: argparse.Namespace, completed: int, wall: float, rss_before: float, **extra: object
) -> str:
    """The one JSON line both scripts print."""
    return json.dumps(
        {
            "model": model,
            "tasks": args.tasks,
            "seconds": args.seconds,
            "completed": completed,
            "wall_s": round(wall, 4),
            "rss_before_mib": round(rss_before, 2),
            "peak_rss_mib": round(peak_rss_mib(), 2),
            "python": platform.python_version(),
            **extra,
        }
    )


async def sleep_all(tasks: int, seconds: float) -> int:
    """Start ``tasks`` sleeps at once and wait for them all; return how many finished."""
    results = await asyncio.gather(*(asyncio.sleep(seconds, result=i) for i in range(tasks)))
    return len(results)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, "Many concurrent sleeps with asyncio.")
    rss_before = peak_rss_mib()
    start = time.perf_counter()
    completed = asyncio.run(sleep_all(args.tasks, args.seconds))  # a script starts its own loop
    wall = time.perf_counter() - start
    print(report("asyncio", args, completed, wall, rss_before))
    return 0 if completed == args.tasks else 1


if __name__ == "__main__":
    raise SystemExit(main())
