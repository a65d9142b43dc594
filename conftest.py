"""Suite-wide pytest set-up: nbval defaults, and the nothing-left-running check.

* ``pytest --nbval notebooks/...`` uses the shared sanitize file and a cell
  timeout without having to name them on the command line.
* At the end of the session, any child process, redis-server or memcached,
  listening TCP port, or /dev/shm semaphore or shared-memory segment that appeared
  during the run and is still there fails the run, with a list of what outlived it.
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
SHM = Path("/dev/shm")
# Named semaphores and shared-memory segments that multiprocessing creates there.
SHM_PREFIXES = ("sem.mp-", "psm_", "wnsm_")


def _shm_names() -> set[str]:
    if not SHM.is_dir():
        return set()
    return {name for name in os.listdir(SHM) if name.startswith(SHM_PREFIXES)}


def _stop_kernel_gracefully(self) -> None:
    """nbval's RunningKernel.stop, but asking the kernel to exit instead of killing it.

    nbval kills the kernel (``shutdown_kernel(now=True)``), which also kills the kernel's
    multiprocessing resource tracker before it can unlink the named semaphores and
    shared-memory segments it tracks: they would pile up in /dev/shm. A shutdown request
    lets the kernel run its exit handlers; jupyter_client still kills it after a timeout.
    """
    self.kc.stop_channels()
    self.km.shutdown_kernel(now=False)
    del self.km


def pytest_configure(config: pytest.Config) -> None:
    try:
        from nbval.kernel import RunningKernel
    except ImportError:  # nbval not installed: nothing to adjust
        pass
    else:
        RunningKernel.stop = _stop_kernel_gracefully
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
        "shm": _shm_names(),
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
    # A server that is not our descendant counts only when it was orphaned (its parent, the
    # kernel or test that started it, died) after the session began. Other people's servers
    # on the same machine still have their parent and are not ours to judge or to stop.
    for proc in psutil.process_iter(["name", "create_time", "ppid"]):
        info = proc.info
        if info["name"] in SERVER_NAMES and proc.pid not in before["servers"]:
            orphaned = info["ppid"] in (0, 1) or not psutil.pid_exists(info["ppid"])
            if orphaned and (info["create_time"] or 0) >= before["time"] - 1:
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
    for name in sorted(_shm_names() - before["shm"]):
        lines.append(f"shared memory or semaphore {SHM / name}")
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
