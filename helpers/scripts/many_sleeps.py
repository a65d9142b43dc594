"""Chapter 10 and bench/coroutine_sleeps.py: many concurrent sleeps in a fresh process.

    python -m helpers.scripts.many_sleeps KIND N [DELAY]

KIND is gevent, asyncio, threads or threads-gated (see
:data:`helpers.coroutines.gevent_basics.SLEEP_KINDS`). Prints one JSON line: wall time, how
many sleeps completed, the most sleeping at once, and peak memory (maxrss) before
and after. A fresh process per run keeps the memory high-water marks apart.
No monkey-patching: gevent runs with ``gevent.sleep``.
"""
import json
import sys

from helpers.coroutines.gevent_basics import sleep_many


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    kind, n = argv[0], int(argv[1])
    delay = float(argv[2]) if len(argv) == 3 else 0.1
    print(json.dumps(sleep_many(kind, n, delay)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
