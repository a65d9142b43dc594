"""Chapter 11: the gevent side of the 10,000-sleep comparison, as a script.

Run it with ``python -m helpers.scripts.asyncio_vs_gevent_sleeps --tasks 10000 --seconds 0.1``.
It does what ``helpers/scripts/asyncio_sleeps.py`` does, with gevent: monkey-patching
turns the plain ``time.sleep`` below into a cooperative sleep, so each greenlet waits
without blocking the others. It prints the same JSON object.

Monkey-patching changes the whole process, which is why it lives in a script of its own
and never runs inside the notebook's kernel. ``python -m`` imports the packages ``helpers``
and ``helpers.scripts`` before this file; they import nothing, and the JSON's
``loaded_before_patch`` lists any of socket, select, ssl, threading that were loaded anyway.
"""

import sys

LOADED_BEFORE_PATCH = sorted(name for name in ("socket", "select", "ssl", "threading") if name in sys.modules)

from gevent import monkey  # noqa: E402

monkey.patch_all()  # first, before anything else imports socket, select, ssl or threading

import time  # noqa: E402  (patched: time.sleep now yields to gevent's hub)

import gevent  # noqa: E402

from helpers.scripts.asyncio_sleeps import parse_args, peak_rss_mib, report  # noqa: E402


def sleep_all(tasks: int, seconds: float) -> int:
    """Spawn ``tasks`` greenlets that each call ``time.sleep``; return how many finished."""
    greenlets = [gevent.spawn(time.sleep, seconds) for _ in range(tasks)]
    done = gevent.joinall(greenlets, timeout=60, raise_error=True)
    return sum(1 for g in done if g.successful())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, "Many concurrent sleeps with gevent.")
    rss_before = peak_rss_mib()
    start = time.perf_counter()
    completed = sleep_all(args.tasks, args.seconds)
    wall = time.perf_counter() - start
    print(
        report(
            "gevent",
            args,
            completed,
            wall,
            rss_before,
            gevent=gevent.__version__,
            loaded_before_patch=LOADED_BEFORE_PATCH,
        )
    )
    return 0 if completed == args.tasks else 1


if __name__ == "__main__":
    raise SystemExit(main())
