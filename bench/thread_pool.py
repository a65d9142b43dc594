"""Benchmark (a report, not a test): I/O-bound requests on a thread pool at 1..64 workers.

    .venv/bin/python bench/thread_pool.py [--delay 0.1] [--waves 4] [--rounds 5]

Starts ``helpers.threads.pools.DelayServer`` (chapter 7), a real HTTP server on 127.0.0.1
whose every answer takes ``--delay`` seconds, and fetches from it with ``fetch`` (urllib):
one request after another in this thread (serial), and on a ``ThreadPoolExecutor`` of 1, 2,
4, 8, 16, 32 and 64 threads, each run ``--waves`` × workers requests, so that every pool
size runs the same number of waves. All of them take turns, in a new order each round.

A pool of k threads can at best do k requests in the time serial code does one, so the
speedup of k workers is its throughput over the serial throughput of the same round. The
server runs in a process of its own (``_tasks.serve_delays``), as a real server would: its
Python work then does not take this process's GIL from the client's threads. The client's
own Python work per request (urllib) still runs one thread at a time, so a wave of k requests
takes at least the delay plus k times that work, which is what keeps k threads below k×.

Also measured: the cost per task of the pool itself (10,000 tasks that do nothing) and the
start-up of k threads. Target: 32 workers at least 0.95 × 32. Writes ``bench/thread_pool.json``;
exits 0, since the numbers are a report about this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import check_rounds, gc_off, interleave, out_dir, spread
from _tasks import serve_delays

from helpers.instruments.measure import format_run_details, run_details
from helpers.threads.pools import fetch

HERE = Path(__file__).resolve().parent
WORKER_COUNTS = (1, 2, 4, 8, 16, 32, 64)
TARGET_WORKERS, EFFICIENCY_TARGET = 32, 0.95
SERIAL_REQUESTS = 16
TIMEOUT = 30.0


@contextlib.contextmanager
def delay_server_process(delay: float):
    """A ``DelayServer`` in a child process: yields its URL and, at the end, a list to read its errors from."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve_delays, args=(delay, child), name="bench-delay-server")
    process.start()
    errors: list = []
    try:
        if not parent.poll(60):
            raise RuntimeError("the DelayServer process did not start within 60 s")
        yield parent.recv(), errors
    finally:
        parent.send("stop")
        if parent.poll(30):
            errors.extend(parent.recv())
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--waves", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=out_dir() / "thread_pool.json")
    args = parser.parse_args(argv)
    if args.waves < 1 or not 0 < args.delay <= 5:
        parser.error("--waves must be >= 1, --delay in (0, 5]")
    check_rounds(args.rounds)

    with delay_server_process(args.delay) as (server_url, errors):
        url = server_url + "/item/"

        def serial() -> float:  # seconds per request
            with gc_off():
                began = time.perf_counter()
                bodies = [fetch(f"{url}{i}", TIMEOUT) for i in range(SERIAL_REQUESTS)]
                elapsed = time.perf_counter() - began
            if bodies != [f"/item/{i}" for i in range(SERIAL_REQUESTS)]:
                raise RuntimeError("the serial run got wrong answers")
            return elapsed / SERIAL_REQUESTS

        def pooled(k: int) -> float:  # seconds per request
            n = args.waves * k
            with ThreadPoolExecutor(max_workers=k) as pool:
                list(pool.map(lambda _: None, range(k)))  # start the threads before the clock
                with gc_off():
                    began = time.perf_counter()
                    bodies = list(pool.map(lambda i: fetch(f"{url}{i}", TIMEOUT), range(n), timeout=TIMEOUT * 4))
                    elapsed = time.perf_counter() - began
            if bodies != [f"/item/{i}" for i in range(n)]:
                raise RuntimeError(f"{k} workers got wrong answers")
            return elapsed / n

        serial()  # warm-up
        modes = {"serial": serial, **{k: (lambda k=k: pooled(k)) for k in WORKER_COUNTS}}
        per_request = interleave(modes, args.rounds)

    # The pool's own costs: tasks that do nothing, and starting k threads that all check in.
    empty, startup = [], {k: [] for k in (8, 32)}
    for _ in range(args.rounds):
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(int, range(4)))
            with gc_off():
                began = time.perf_counter()
                list(pool.map(int, range(10_000)))
                empty.append((time.perf_counter() - began) / 10_000)
        for k, values in startup.items():
            barrier = threading.Barrier(k + 1)
            with ThreadPoolExecutor(max_workers=k) as pool:
                began = time.perf_counter()
                futures = [pool.submit(barrier.wait, TIMEOUT) for _ in range(k)]
                barrier.wait(TIMEOUT)
                values.append(time.perf_counter() - began)
                for f in futures:
                    f.result(TIMEOUT)

    serial_s = spread(per_request["serial"]).scaled(1e3)
    over_ms = spread([t - args.delay for t in per_request["serial"]]).scaled(1e3)
    print(
        f"# Thread pool: HTTP requests of {args.delay * 1000:.0f} ms to a server in another process, "
        f"{args.waves} waves per pool size; median (min–max) of {args.rounds} rounds\n"
    )
    print(
        f"serial: {serial_s.format('ms')} per request, {over_ms.format('ms')} over the delay (client and server work, wake-ups)"
    )
    print("\n| workers | ms per request | speedup (paired) | efficiency |")
    print("|---:|---:|---:|---:|")
    figures = [
        {"figure": "serial, ms per request", **serial_s.as_dict()},
        {"figure": "serial time over the delay per request, ms", **over_ms.as_dict()},
    ]
    speedups = {}
    for k in WORKER_COUNTS:
        t = spread(per_request[k]).scaled(1e3)
        s = spread([a / b for a, b in zip(per_request["serial"], per_request[k], strict=True)])
        speedups[k] = s
        print(f"| {k} | {t.format()} | {s.format()} | {s.median / k:.1%} |")
        figures.append({"figure": f"{k} workers: speedup over serial (×)", **s.as_dict()})
    empty_us = spread(empty).scaled(1e6)
    print(f"\ncost per empty task on a pool of 4 threads: {empty_us.format('µs')}")
    figures.append({"figure": "cost per empty task, µs", **empty_us.as_dict()})
    for k, values in startup.items():
        up = spread(values).scaled(1e3)
        print(f"start-up of {k} threads (all checked in): {up.format('ms')}")
        figures.append({"figure": f"start-up of {k} threads, ms", **up.as_dict()})
    print()

    target = EFFICIENCY_TARGET * TARGET_WORKERS
    got = speedups[TARGET_WORKERS]
    ok = got.median >= target
    checks = [
        {
            "check": f"{TARGET_WORKERS} workers: speedup over serial, at least {EFFICIENCY_TARGET} × {TARGET_WORKERS}",
            "target": target,
            "value": got.median,
            "limit": f"{TARGET_WORKERS}× ({TARGET_WORKERS} requests in flight)",
            "measured": f"{got.format()}×",
            "pass": ok,
        }
    ]
    print(f"{'PASS' if ok else 'MISS'} {TARGET_WORKERS} workers >= {target:.1f}× serial: {got.format()}×")
    if errors:
        print(f"server-side request errors: {errors}")
    print(format_run_details())

    report = {
        "benchmark": "thread_pool",
        "delay_seconds": args.delay,
        "waves": args.waves,
        "rounds": args.rounds,
        "seconds_per_request": {str(m): v for m, v in per_request.items()},
        "seconds_per_empty_task": empty,
        "startup_seconds": {str(k): v for k, v in startup.items()},
        "figures": figures,
        "targets": checks,
        "server_errors": errors,
        "run_details": run_details(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
