"""The asyncio chapter's clean-up check: which tasks on the running loop are ours and still pending.

Used by chapter 11 (协程: asyncio, "Await many things at once with asyncio"), in its last cell.

The coroutines the chapter teaches with (its fetches, timed sleeps, queue workers,
heartbeat, and the echo server's handler and clients) are written in the chapter's
own cells; the scripts it runs with ``asyncio.run`` are in ``helpers/scripts/``. A
Jupyter kernel runs tasks of its own on the same loop, so the check below leaves
those out.
"""

from __future__ import annotations

import asyncio
import os

__all__ = ["our_pending_tasks"]


def our_pending_tasks(baseline: set[asyncio.Task]) -> list[asyncio.Task]:
    """Tasks on the running loop that are not done, not in ``baseline``, and not the caller.

    Take ``baseline = asyncio.all_tasks()`` before starting anything; a Jupyter
    kernel runs tasks of its own, and those are not ours to judge. Call from a
    coroutine (or a notebook cell, which runs in the kernel's loop).
    """
    if not isinstance(baseline, (set, frozenset)):
        raise TypeError(f"baseline must be a set of tasks, got {type(baseline).__name__}")
    current = asyncio.current_task()
    return [
        t
        for t in asyncio.all_tasks()
        if t not in baseline and t is not current and not t.done() and not _is_kernel_task(t)
    ]


def _is_kernel_task(task: asyncio.Task) -> bool:
    """A task whose coroutine belongs to the Jupyter kernel's own machinery."""
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    filename = getattr(code, "co_filename", "") or ""
    # package directories only: a notebook cell's own code lives in /tmp/ipykernel_<pid>/
    return any(f"{os.sep}{package}{os.sep}" in filename for package in _KERNEL_PACKAGES)


_KERNEL_PACKAGES = ("ipykernel", "tornado", "zmq", "jupyter_client", "IPython", "anyio")
