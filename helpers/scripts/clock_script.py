"""Chapter 01: the clock as a stand-alone script, with the ``__main__`` guard.

Under the spawn start method a child re-imports this file as ``__mp_main__``;
the guard keeps that import from starting processes of its own.
"""

import multiprocessing as mp

from helpers.processes.basics import ClockProcess


def main() -> int:
    clock = ClockProcess(interval=0.2, max_ticks=3)
    clock.start()
    ticks = clock.ticks(timeout=30)
    clock.join(timeout=10)
    span = ticks[-1] - ticks[0]
    print(f"{len(ticks)} ticks over {span:.2f} s; clock exit code {clock.exitcode}")
    return clock.exitcode


if __name__ == "__main__":
    mp.set_start_method("spawn")  # the default on macOS and Windows; chosen here on purpose
    raise SystemExit(main())
