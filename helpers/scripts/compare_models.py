"""Chapter 15: run ONE (model, workload) pair of :mod:`helpers.choosing.models` in this fresh interpreter.

    python -m helpers.scripts.compare_models MODEL WORKLOAD [--url URL] [--start-method METHOD]

MODEL is sequential, threads, processes, gevent or asyncio; WORKLOAD is cpu, io,
mixed or idle. The io and mixed workloads fetch from URL (a DelayServer); without
``--url`` this script starts its own DelayServer on loopback for the run.

For the gevent model, ``gevent.monkey.patch_all()`` runs first, before anything
imports ``socket``, ``time`` or ``threading`` -- which is why each pair has its
own process (never patch inside a Jupyter kernel), and why the memory
high-water mark (``VmHWM``, or ``ru_maxrss`` where there is no /proc) belongs to
this model alone.

Prints one JSON line: model, workload, wall and CPU seconds, peak memory in KiB,
tasks, concurrency, tasks done (clients served, for idle), and whether the
results were right.
"""

import sys

ARGS = sys.argv[1:]
if ARGS[:1] == ["gevent"]:
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402  (after patching, on purpose)
import json  # noqa: E402


def main(argv: list[str]) -> int:
    from helpers.choosing.models import MODELS, WORKLOADS, run_in_this_process

    parser = argparse.ArgumentParser(prog="python -m helpers.scripts.compare_models")
    parser.add_argument("model", choices=MODELS)
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("--url", default=None, help="base URL of a DelayServer (default: start one)")
    parser.add_argument("--start-method", default=None, help="multiprocessing start method for the pool")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    server = None
    url = args.url
    if url is None and args.workload in ("io", "mixed"):
        from helpers.threads.pools import DelayServer

        server = DelayServer(delay=0.05).start()
        url = server.url
    try:
        report = run_in_this_process(args.model, args.workload, url, args.start_method, args.timeout)
    finally:
        if server is not None:
            server.stop(timeout=10)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(ARGS))
