"""The suite's nothing-left-running check (conftest.py) really fails a leaky session."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_inner_session(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(textwrap.dedent(body))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "conftest",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(test_file),
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_leaked_child_process_fails_the_session(tmp_path):
    result = run_inner_session(
        tmp_path,
        """
        import subprocess, sys
        def test_leaks():
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    """,
    )
    assert result.returncode == 1, result.stdout
    assert "LEFTOVERS" in result.stdout and "child process pid" in result.stdout


def test_a_leaked_listening_port_fails_the_session(tmp_path):
    result = run_inner_session(
        tmp_path,
        """
        import socket
        held = []
        def test_leaks():
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); held.append(s)
    """,
    )
    assert result.returncode == 1, result.stdout
    assert "listening port 127.0.0.1:" in result.stdout


def test_a_clean_session_passes(tmp_path):
    result = run_inner_session(
        tmp_path,
        """
        import subprocess, sys
        def test_clean():
            subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)
    """,
    )
    assert result.returncode == 0, result.stdout
    assert "LEFTOVERS" not in result.stdout


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="POSIX shared memory lives in /dev/shm on Linux")
def test_a_leaked_shared_memory_segment_fails_the_session(tmp_path):
    result = run_inner_session(
        tmp_path,
        """
        from multiprocessing import shared_memory
        held = []
        def test_leaks():
            held.append(shared_memory.SharedMemory(create=True, size=64))
    """,
    )
    assert result.returncode == 1, result.stdout
    assert "shared memory or semaphore /dev/shm/psm_" in result.stdout
