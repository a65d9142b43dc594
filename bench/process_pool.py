"""Benchmark (a report, not a test): a CPU-bound job on a process pool, its start-up and per-task cost.

    .venv/bin/python bench/process_pool.py [--tasks 48] [--width 12000] [--rounds 5]

The job is ``--tasks`` tasks of equal cost: each counts the primes in the same range of
``--width`` numbers above one million (chapter 3's ``count_primes_in_range``), so no task
is the long one that the others wait for. Each round runs the job serially in this process
and on a warm ``multiprocessing.Pool`` of 1, 2, ... usable-CPU workers, in a new random
order each round; the speedup is paired per round (serial ÷ pool in the same round).

Also measured, as the cost model of a pool:

- start-up: from ``Pool(k)`` until all k workers have answered a task;
- cost per task: 5,000 tasks that do nothing, through ``map`` with ``chunksize=1`` and with
  ``Pool.map``'s default chunks.

Target: with as many workers as usable CPUs, a speedup of at least 0.97 × that count.
Writes ``bench/process_pool.json``; exits 0, since the numbers are a report about this machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import check_rounds, gc_off, interleave, out_dir, spread, usable_cpus
from _tasks import nothing, worker_pid

from helpers.instruments.measure import format_run_details, run_details
from helpers.instruments.workloads import count_primes_in_range

HERE = Path(__file__).resolve().parent
START = 1_000_000
EFFICIENCY_TARGET = 0.97  # speedup >= this × min(workers, usable CPUs)
TIMEOUT = 300.0


def started_pool(workers: int) -> tuple[multiprocessing.pool.Pool, float]:
    """A pool whose every worker has answered, and the seconds that took."""
    began = time.perf_counter()
    pool = multiprocessing.Pool(workers)
    pids: set[int] = set()
    while len(pids) < workers:
        if time.perf_counter() - began > TIMEOUT:
            pool.terminate()
            raise TimeoutError(f"only {len(pids)} of {workers} workers started within {TIMEOUT} s")
        pids.update(pool.map_async(worker_pid, range(workers * 4), chunksize=1).get(TIMEOUT))
    return pool, time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=48)
    parser.add_argument("--width", type=int, default=12_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-workers", type=int, default=usable_cpus())
    parser.add_argument("--out", type=Path, default=out_dir() / "process_pool.json")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.width < 1 or args.max_workers < 1:
        parser.error("--tasks, --width and --max-workers must be >= 1")
    check_rounds(args.rounds)
    ranges = [(START, START + args.width)] * args.tasks
    expected = count_primes_in_range(*ranges[0]) * args.tasks
    workers = list(range(1, args.max_workers + 1))

    def serial() -> float:
        with gc_off():
            began = time.perf_counter()
            found = sum(count_primes_in_range(a, b) for a, b in ranges)
            elapsed = time.perf_counter() - began
        if found != expected:
            raise RuntimeError("the serial run counted a different number of primes")
        return elapsed

    startups: dict[int, list[float]] = {k: [] for k in workers}
    pools = {}
    for _ in range(args.rounds):  # start-up: a fresh pool each time, the last one kept
        for k in workers:
            pool, seconds = started_pool(k)
            startups[k].append(seconds)
            if k in pools:
                pools[k].terminate()
                pools[k].join()
            pools[k] = pool
    try:

        def on_pool(k: int) -> float:
            with gc_off():
                began = time.perf_counter()
                found = sum(pools[k].starmap_async(count_primes_in_range, ranges, chunksize=1).get(TIMEOUT))
                elapsed = time.perf_counter() - began
            if found != expected:
                raise RuntimeError(f"{k} workers counted a different number of primes")
            return elapsed

        modes = {"serial": serial, **{k: (lambda k=k: on_pool(k)) for k in workers}}
        times = interleave(modes, args.rounds)

        biggest = pools[workers[-1]]
        per_task: dict[str, list[float]] = {"chunksize=1": [], "default chunks": []}
        tiny = list(range(5_000))
        for _ in range(args.rounds):
            for label, chunksize in (("chunksize=1", 1), ("default chunks", None)):
                with gc_off():
                    began = time.perf_counter()
                    result = biggest.map_async(nothing, tiny, chunksize=chunksize).get(TIMEOUT)
                    per_task[label].append((time.perf_counter() - began) / len(tiny))
                if result != tiny:
                    raise RuntimeError("the tiny tasks came back wrong")
    finally:
        for pool in pools.values():
            pool.terminate()
            pool.join()

    serial_s = spread(times["serial"])
    print(
        f"# Process pool: {args.tasks} equal tasks (primes in {args.width:,} numbers above {START:,}); "
        f"median (min–max) of {args.rounds} rounds\n"
    )
    print(
        f"serial (no pool): {serial_s.format('s')}" + ("" if serial_s.median >= 1.0 else "  (under 1 s: raise --width)")
    )
    print("\n| workers | time, s | speedup (paired) | ideal | efficiency | start-up, ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    figures = [{"figure": "serial time, s", **serial_s.as_dict()}]
    speedups = {}
    for k in workers:
        t = spread(times[k])
        s = spread([a / b for a, b in zip(times["serial"], times[k], strict=True)])
        ideal = min(k, usable_cpus())
        speedups[k] = s
        up = spread(startups[k]).scaled(1e3)
        print(f"| {k} | {t.format()} | {s.format()} | {ideal} | {s.median / ideal:.1%} | {up.format()} |")
        figures += [
            {"figure": f"{k} workers: speedup over serial (×)", **s.as_dict()},
            {"figure": f"{k} workers: start-up, ms", **up.as_dict()},
        ]
    print("\nCost per task of doing nothing, on the largest pool:\n")
    for label, values in per_task.items():
        cost = spread(values).scaled(1e6)
        print(f"- map, {label}: {cost.format('µs')}")
        figures.append({"figure": f"cost per empty task, map {label}, µs", **cost.as_dict()})
    print()

    checks = []
    k = workers[-1]
    ideal = min(k, usable_cpus())
    target = EFFICIENCY_TARGET * ideal
    ok = speedups[k].median >= target
    checks.append(
        {
            "check": f"{k} workers: speedup over serial, at least {EFFICIENCY_TARGET} × {ideal}",
            "target": target,
            "value": speedups[k].median,
            "limit": f"{ideal}× ({ideal} usable CPUs)",
            "measured": f"{speedups[k].format()}×",
            "pass": ok,
        }
    )
    print(f"{'PASS' if ok else 'MISS'} {k} workers >= {target:.2f}× serial: {speedups[k].format()}×")
    print(format_run_details())

    report = {
        "benchmark": "process_pool",
        "tasks": args.tasks,
        "width": args.width,
        "rounds": args.rounds,
        "primes": expected,
        "seconds": {str(m): v for m, v in times.items()},
        "startup_seconds": {str(k): v for k, v in startups.items()},
        "seconds_per_empty_task": per_task,
        "figures": figures,
        "targets": checks,
        "run_details": run_details(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
