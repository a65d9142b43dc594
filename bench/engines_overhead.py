"""Benchmark (a report, not a test): start-up and cost per task of a process pool, Dask and Celery.

    .venv/bin/python bench/engines_overhead.py [--tasks 1000] [--rounds 5]

Runs ``--tasks`` tiny tasks (``square(x)``) on each engine with the same submission pattern:
one call per task (``executor.submit``, ``client.submit``, ``apply_async``), then every result
gathered. The engines are a warm ``ProcessPoolExecutor`` of 2 workers, a Dask ``LocalCluster``
of 2 worker processes, and a Celery worker with ``--concurrency=2`` on a private Redis
(chapter 16 starts each the same way). All three stay up and take turns, in a new order each
round, after one warm-up run each. Start-up, from nothing until the engine has answered a
task, is measured once per engine. A report with no targets; writes
``bench/engines_overhead.json``; everything started here is stopped again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import check_rounds, gc_off, interleave, out_dir, spread

from helpers.distributed import celery_app, engines
from helpers.instruments.measure import format_run_details, run_details
from helpers.instruments.services import start_redis
from helpers.instruments.workloads import square

HERE = Path(__file__).resolve().parent
TIMEOUT = 120.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=out_dir() / "engines_overhead.json")
    args = parser.parse_args(argv)
    if args.tasks < 1:
        parser.error("--tasks must be >= 1")
    check_rounds(args.rounds)
    inputs = list(range(args.tasks))
    expected = [x * x for x in inputs]
    startup: dict[str, float] = {}

    began = time.perf_counter()
    executor = ProcessPoolExecutor(max_workers=2, mp_context=engines.pool_context())
    engines.start_pool_workers(executor, 2, TIMEOUT)
    startup["process pool"] = time.perf_counter() - began
    cluster = client = server = worker = None
    try:
        began = time.perf_counter()
        cluster, client = engines.start_dask(n_workers=2)
        client.submit(square, 0, pure=False).result(TIMEOUT)
        startup["Dask"] = time.perf_counter() - began

        server = start_redis(use_env=False)
        began = time.perf_counter()
        worker = engines.start_celery_worker(server.url, concurrency=2)
        celery_app.square_task.apply_async((0,), queue=celery_app.QUEUE).get(timeout=TIMEOUT)
        startup["Celery"] = time.perf_counter() - began

        def on_pool() -> float:
            with gc_off():
                t0 = time.perf_counter()
                futures = [executor.submit(square, x) for x in inputs]
                results = [f.result(TIMEOUT) for f in futures]
                elapsed = time.perf_counter() - t0
            if results != expected:
                raise RuntimeError("the pool returned wrong results")
            return elapsed

        def on_dask() -> float:
            with gc_off():
                t0 = time.perf_counter()
                futures = [client.submit(square, x, pure=False) for x in inputs]
                results = client.gather(futures)
                elapsed = time.perf_counter() - t0
            for future in futures:
                future.release()
            if results != expected:
                raise RuntimeError("Dask returned wrong results")
            return elapsed

        def on_celery() -> float:
            from celery.result import ResultSet

            with gc_off():
                t0 = time.perf_counter()
                sent = [celery_app.square_task.apply_async((x,), queue=celery_app.QUEUE) for x in inputs]
                results = ResultSet(sent).get(timeout=TIMEOUT)
                elapsed = time.perf_counter() - t0
            for result in sent:
                result.forget()
            if results != expected:
                raise RuntimeError("Celery returned wrong results")
            return elapsed

        modes = {"process pool": on_pool, "Dask": on_dask, "Celery": on_celery}
        for run in modes.values():
            run()  # warm-up
        seconds = interleave(modes, args.rounds)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        if client is not None:
            engines.stop_dask(client, cluster)
        if worker is not None:
            engines.stop_celery_worker(worker)
        if server is not None:
            server.close()

    per_task = {m: spread(v).scaled(1e6 / args.tasks) for m, v in seconds.items()}
    pool = per_task["process pool"].median
    print(f"# {args.tasks:,} tiny tasks, one submit each, then gathered; median (min–max) of {args.rounds} rounds\n")
    print("| engine | µs per task | vs process pool | start-up, s |")
    print("|---|---:|---:|---:|")
    figures = []
    for m, cost in per_task.items():
        print(f"| {m} | {cost.format()} | {cost.median / pool:.1f}× | {startup[m]:.2f} |")
        figures.append({"figure": f"{m}: µs per task", **cost.as_dict()})
    print()
    print(format_run_details())

    report = {
        "benchmark": "engines_overhead",
        "tasks": args.tasks,
        "rounds": args.rounds,
        "seconds": seconds,
        "startup_seconds": startup,
        "figures": figures,
        "targets": [],
        "run_details": run_details(),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
