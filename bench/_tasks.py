"""Tasks the benchmarks' worker processes import by name (``bench/`` is on their sys.path)."""

from __future__ import annotations

import os


def worker_pid(_: object = None) -> int:
    """The pid of the worker that runs it: used to see that every worker has started."""
    return os.getpid()


def nothing(x: int) -> int:
    """The least a task can do: its cost is the pool's own cost per task."""
    return x


def serve_delays(delay: float, conn) -> None:
    """Run a ``DelayServer`` (chapter 7) in this process until the parent sends anything.

    Sends its URL when it is listening, and at the end how many requests failed on the server.
    A server in its own process does its Python work under its own GIL, so the client's
    threads measure the client's concurrency, not the server's share of one interpreter.
    """
    from helpers.threads.pools import DelayServer

    with DelayServer(delay=delay) as server:
        conn.send(server.url)
        conn.recv()  # the parent's "stop"
        conn.send(server.errors)
    conn.close()
