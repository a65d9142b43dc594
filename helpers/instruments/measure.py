"""Measure without guessing: a timer that keeps its value, and a run-details stamp.

Used by every chapter that times something (01-16) and by ``make bench``.

Numbers in this book are only meaningful next to the machine that produced
them, so every plot and table carries :func:`run_details`: CPU count, Python
version and build, platform, and the multiprocessing start method.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import sys
import sysconfig
import time
from dataclasses import dataclass

__all__ = ["Timer", "run_details", "format_run_details", "stamp", "usable_cpus", "gil_enabled", "peak_memory_kib"]

#: The prefix that the nbval sanitize file recognises; keep them in step.
STAMP_PREFIX = "run details:"


@dataclass
class Timer:
    """Wall-clock timer: ``with Timer() as t: ...`` then read ``t.elapsed`` (seconds).

    ``elapsed`` is also readable while the block is still running.
    """

    start: float | None = None
    end: float | None = None

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.end = None
        return self

    def __exit__(self, *exc_info) -> None:
        self.end = time.perf_counter()

    @property
    def elapsed(self) -> float:
        if self.start is None:
            raise RuntimeError("Timer was never started: use it as 'with Timer() as t:'")
        return (self.end if self.end is not None else time.perf_counter()) - self.start

    def __repr__(self) -> str:
        state = "not started" if self.start is None else f"{self.elapsed:.4f} s"
        return f"Timer({state})"


def usable_cpus() -> int:
    """CPUs this process may run on (affinity-aware where the OS supports it)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        count = os.process_cpu_count()
    elif hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:
        count = os.cpu_count()
    return count or 1


def spare_cpus(seconds: float = 0.5) -> float:
    """How many CPUs of the whole machine sat idle, on average, over the next ``seconds``.

    Read from the system-wide CPU times (``psutil.cpu_times()``: idle, plus iowait on Linux)
    before and after a sleep, so it counts every process on the machine, this one included.
    A claim that needs a free CPU (a second process computing beside the first) can be
    asserted only when this says one was free: beside another job, it cannot be shown.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
    if not 0.05 <= seconds <= 10:
        raise ValueError(f"seconds must be between 0.05 and 10, got {seconds}")
    import psutil

    def idle_and_total() -> tuple[float, float]:
        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        return idle, sum(times)

    idle_before, total_before = idle_and_total()
    time.sleep(seconds)
    idle_after, total_after = idle_and_total()
    elapsed = total_after - total_before
    if elapsed <= 0:
        return 0.0
    return (idle_after - idle_before) / elapsed * (psutil.cpu_count() or 1)


def gil_enabled() -> bool:
    """False only on a free-threaded build (3.13t+) running with the GIL off."""
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def run_details() -> dict:
    """The facts a timing depends on, as a dict."""
    free_threaded_build = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    return {
        "cpus": os.cpu_count() or 1,
        "usable_cpus": usable_cpus(),
        "python": platform.python_version() + ("t" if free_threaded_build else ""),
        "implementation": platform.python_implementation(),
        "gil": "on" if gil_enabled() else "off",
        "platform": f"{platform.system()}-{platform.machine()}",
        "start_method": multiprocessing.get_start_method(allow_none=False),
    }


def format_run_details(details: dict | None = None) -> str:
    """One line, starting with ``run details:``, for printing under a measurement."""
    d = run_details() if details is None else details
    if not isinstance(d, dict):
        raise TypeError(f"details must be a dict from run_details(), got {type(d).__name__}")
    return (
        f"{STAMP_PREFIX} {d['cpus']} CPUs ({d['usable_cpus']} usable), "
        f"{d['implementation']} {d['python']} (GIL {d['gil']}), {d['platform']}, "
        f"start method {d['start_method']}"
    )


def stamp(ax, details: dict | None = None, fontsize: float = 7.5) -> None:
    """Write the run details in small print at the foot of ``ax``'s figure.

    The text is the figure's ``supxlabel``, so constrained layout makes room
    for it below the axes' own labels (the layout is switched on if unset).
    """
    if not hasattr(ax, "figure") or not hasattr(ax, "annotate"):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    text = format_run_details(details).removeprefix(STAMP_PREFIX).strip()
    fig = ax.figure
    if fig.get_layout_engine() is None:
        fig.set_layout_engine("constrained")
    fig.supxlabel(text, x=0.005, ha="left", fontsize=fontsize, color="0.35")


def peak_memory_kib() -> int:
    """This process's peak resident memory (high-water mark) in KiB.

    On Linux this is ``VmHWM`` from /proc/self/status: ``ru_maxrss`` there also
    counts the parent's memory at the moment it forked this process (the value
    survives exec), so a child of a big Jupyter kernel would report the kernel's
    size. Elsewhere it is ``ru_maxrss`` (bytes on macOS, KiB on other systems),
    and on Windows psutil's peak working set.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        import psutil

        return psutil.Process().memory_info().peak_wset // 1024
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss
