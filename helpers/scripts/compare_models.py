"""Chapter 15: run ONE (model, workload) pair of :mod:`helpers.choosing.models` in this fresh interpreter.

    python -m helpers.scripts.compare_models MODEL WORKLOAD [--url URL] [--start-method METHOD]

MODEL is sequential, threads, thread-per-task, processes, gevent or asyncio; WORKLOAD is
cpu, io, mixed or idle. The io and mixed workloads fetch from URL (a DelayServer), the idle
workload holds its connections open to URL (a HoldServer); without ``--url`` this script
starts its own server on loopback for the run.

For the gevent model, ``gevent.monkey.patch_all()`` runs first, before anything
imports ``socket``, ``time`` or ``threading`` -- which is why each pair has its
own process (never patch inside a Jupyter kernel), and why the memory
high-water mark (``VmHWM``, or ``ru_maxrss`` where there is no /proc) belongs to
this model alone.

Prints one JSON line: model, workload, wall and CPU seconds, peak memory in KiB,
tasks, concurrency, tasks done (clients served, for idle), whether the results
were right, and for mixed each GET's latency and each chunk's compute time.
"""

import sys

ARGS = sys.argv[1:]
if ARGS[:1] == ["gevent"]:
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402  (after patching, on purpose)
import json  # noqa: E402


def main(argv: list[str]) -> int:
    from helpers.choosing.models import IDLE_HOLD, IO_DELAY, MODELS, WORKLOADS, run_in_this_process

    parser = argparse.ArgumentParser(prog="python -m helpers.scripts.compare_models")
    parser.add_argument("model", choices=MODELS)
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("--url", default=None, help="base URL of the workload's server (default: start one)")
    parser.add_argument("--start-method", default=None, help="multiprocessing start method for the pool")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    server = None
    url = args.url
    if url is None and args.workload in ("io", "mixed"):
        from helpers.threads.pools import DelayServer

        server = DelayServer(delay=IO_DELAY).start()
    elif url is None and args.workload == "idle":
        from helpers.choosing.idle_server import HoldServer

        server = HoldServer(delay=IDLE_HOLD).start()
    if server is not None:
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
