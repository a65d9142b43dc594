"""Tasks the benchmarks' worker processes import by name (``bench/`` is on their sys.path)."""

from __future__ import annotations

import os


def worker_pid(_: object = None) -> int:
    """The pid of the worker that runs it: used to see that every worker has started."""
    return os.getpid()


def nothing(x: int) -> int:
    """The least a task can do: its cost is the pool's own cost per task."""
    return x
