"""Helpers for the executable book *Python Concurrency & Caching*.

Everything a child process runs lives in this package, so that every chapter
works under the ``spawn`` start method (the default on macOS and Windows) and
``forkserver`` (the default on Linux from Python 3.14): such a child imports its
target by module and name, and cannot find a function defined in a notebook cell.

Setting the environment variable ``BOOK_START_METHOD`` (``fork``, ``spawn`` or
``forkserver``) makes it the default start method of every process that
imports this package; ``make test-spawn`` and ``make test-matrix`` use it.
The variable is then removed from ``os.environ``, so that a script the notebook
runs as a subprocess still chooses its own start method, as it would anywhere.
"""

from __future__ import annotations

import os as _os

__all__ = ["BOOK_START_METHOD"]

BOOK_START_METHOD = _os.environ.pop("BOOK_START_METHOD", "").strip() or None

# Nothing else is imported here: a script run as ``python -m helpers.scripts.X`` imports this
# package first, and gevent's patch_all() must come before socket, select and threading.
if BOOK_START_METHOD is not None:
    import multiprocessing as _mp

    if BOOK_START_METHOD not in _mp.get_all_start_methods():
        raise ValueError(
            f"BOOK_START_METHOD={BOOK_START_METHOD!r} is not available here; "
            f"choose one of {_mp.get_all_start_methods()}"
        )
    if _mp.get_start_method(allow_none=True) != BOOK_START_METHOD:
        _mp.set_start_method(BOOK_START_METHOD, force=True)
