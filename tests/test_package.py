"""The helpers package itself: importing it starts nothing, so gevent can patch first."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = (
    "import sys\n"
    "import helpers, helpers.scripts\n"
    "print(sorted(m for m in ('socket', 'select', 'threading', 'multiprocessing', 'ssl') if m in sys.modules))\n"
)


def test_importing_helpers_imports_no_socket_or_threading():
    env = {k: v for k, v in os.environ.items() if k != "BOOK_START_METHOD"}
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_book_start_method_sets_the_default_and_is_removed_from_the_environment():
    probe = (
        "import os, multiprocessing as mp, helpers\n"
        "print(mp.get_start_method(), helpers.BOOK_START_METHOD, 'BOOK_START_METHOD' in os.environ)\n"
    )
    env = dict(os.environ, BOOK_START_METHOD="spawn")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["spawn", "spawn", "False"]


def test_an_unknown_start_method_is_refused():
    env = dict(os.environ, BOOK_START_METHOD="teleport")
    run = subprocess.run([sys.executable, "-c", "import helpers"], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode != 0 and "BOOK_START_METHOD='teleport' is not available here" in run.stderr
