"""Suite-wide pytest set-up: nbval defaults, and the nothing-left-running check.

* ``pytest --nbval notebooks/...`` uses the shared sanitize file and a cell
  timeout without having to name them on the command line.
* At the end of the session, any child process, redis-server or memcached, or
  listening TCP port that appeared during the run and is still there fails the
  run, with a list of what outlived it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent
SANITIZE_FILE = ROOT / "tests" / "nbval_sanitize.cfg"
CELL_TIMEOUT = 180  # seconds; nbval's own default is 2000
SERVER_NAMES = {"redis-server", "memcached"}
GRACE = 5.0  # seconds a process may take to finish exiting after the last test
# multiprocessing's own helpers live exactly as long as pytest itself and exit with it.
EXPECTED_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def pytest_configure(config: pytest.Config) -> None:
    option = config.option
    if getattr(option, "nbval", False) or getattr(option, "nbval_lax", False):
        if not getattr(option, "nbval_sanitize_with", None):
            option.nbval_sanitize_with = str(SANITIZE_FILE)
        if str(getattr(option, "nbval_cell_timeout", "2000")) == "2000":
            option.nbval_cell_timeout = CELL_TIMEOUT
    config.stash[_BEFORE] = _snapshot()


_BEFORE = pytest.StashKey[dict]()


def _listening_ports() -> dict[tuple[str, int], int | None]:
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, PermissionError):
        return {}
    return {(c.laddr.ip, c.laddr.port): c.pid for c in conns if c.status == psutil.CONN_LISTEN}


def _snapshot() -> dict:
    me = psutil.Process()
    servers = set()
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in SERVER_NAMES:
            servers.add(proc.pid)
    return {
        "children": {p.pid for p in me.children(recursive=True)},
        "servers": servers,
        "ports": set(_listening_ports()),
        "time": time.time(),
    }


def _leftovers(before: dict) -> list[str]:
    me = psutil.Process()
    found: dict[int, str] = {}
    for child in me.children(recursive=True):
        if child.pid not in before["children"]:
            try:
                if any(h in " ".join(child.cmdline()) for h in EXPECTED_HELPERS):
                    continue
            except psutil.Error:
                continue
            found[child.pid] = "child process"
    for proc in psutil.process_iter(["name", "create_time"]):
        info = proc.info
        if info["name"] in SERVER_NAMES and proc.pid not in before["servers"]:
            if (info["create_time"] or 0) >= before["time"] - 1:
                found[proc.pid] = "server"
    lines = []
    for pid, what in sorted(found.items()):
        try:
            cmd = " ".join(psutil.Process(pid).cmdline())[:160]
        except psutil.Error:
            continue  # exited meanwhile
        lines.append(f"{what} pid {pid}: {cmd}")
    # Ports count when this session's own processes hold them: pytest, its descendants
    # (kernels, pools, servers) and the servers found above. Other programs on the machine
    # may open ports meanwhile; they are not ours to judge.
    ours = {os.getpid()} | {c.pid for c in me.children(recursive=True)} | set(found)
    for (ip, port), pid in sorted(_listening_ports().items(), key=lambda kv: kv[0][1]):
        if (ip, port) in before["ports"] or pid not in ours:
            continue
        lines.append(f"listening port {ip}:{port} (pid {pid})")
    return lines


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_BEFORE, None)
    if before is None or os.environ.get("BOOK_SKIP_LEFTOVER_CHECK") == "1":
        return
    deadline = time.monotonic() + GRACE
    left = _leftovers(before)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _leftovers(before)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "LEFTOVERS: the test session left these running:\n  " + "\n  ".join(left)
        if reporter is not None:
            reporter.write_line(message, red=True, bold=True)
        for pid_line in left:  # clean up so the next run starts clean, but still fail
            if pid_line.startswith(("child process pid", "server pid")):
                try:
                    psutil.Process(int(pid_line.split("pid ")[1].split(":")[0])).kill()
                except (psutil.Error, ValueError):
                    pass
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
