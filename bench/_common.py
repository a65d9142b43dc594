"""What every benchmark shares: spreads, interleaved runs, GC off, straight-line fits, machine state.

Not a benchmark itself (``run_all.py`` skips names that start with ``_``).

- :func:`spread` turns repeated runs into a median with its min and max.
- :func:`interleave` runs the modes being compared in turn, in a new random order each
  round, so that a slow spell of the machine hits every mode alike instead of one block.
- :func:`gc_off` keeps the cyclic garbage collector out of a timed region.
- :func:`fit_line` fits ``t(n) = a + b·n`` by least squares: ``a`` is the fixed cost of one
  call (a round trip, a start-up), ``b`` the cost of each item in it.
- :class:`MachineWatch` measures how much of the machine *other* processes used before,
  during and after a run, so a report from a busy machine can be recognised and refused.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

#: A run counts as quiet when other processes used less than this share of all CPUs.
BUSY_SHARE = 0.10
MIN_RUNS = 5


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one figure: the median and the range."""

    median: float
    min: float
    max: float
    runs: int

    def as_dict(self) -> dict:
        return asdict(self)

    def scaled(self, factor: float) -> Spread:
        return Spread(self.median * factor, self.min * factor, self.max * factor, self.runs)

    def format(self, unit: str = "", digits: int = 3) -> str:
        """``1.23 s (1.20–1.31)``: the median with an optional unit, then the range."""

        def f(x: float) -> str:
            return f"{x:.{digits}g}" if abs(x) < 10**digits else f"{x:,.0f}"

        u = f" {unit}" if unit else ""
        return f"{f(self.median)}{u} ({f(self.min)}–{f(self.max)})"


def spread(values: list[float]) -> Spread:
    """The median, min and max of ``values`` (at least one)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("spread() needs at least one value")
    return Spread(statistics.median(values), min(values), max(values), len(values))


def ratio_spread(numerators: list[float], denominators: list[float]) -> Spread:
    """The spread of per-round ratios ``numerators[i] / denominators[i]`` (paired runs)."""
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError("ratio_spread() needs two lists of the same, non-zero length")
    return spread([n / d for n, d in zip(numerators, denominators, strict=True)])


@contextmanager
def gc_off() -> Iterator[None]:
    """Switch the cyclic garbage collector off inside a timed region, and back on after.

    It does not collect first (a full collection costs milliseconds): :func:`interleave`
    and :func:`batch_sweep` collect once at the start of each round instead.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def check_rounds(rounds: int) -> int:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < MIN_RUNS:
        raise ValueError(f"every figure is the median of at least {MIN_RUNS} runs; got rounds={rounds!r}")
    return rounds


def interleave(modes: dict[str, Callable[[], float]], rounds: int, seed: int = 0) -> dict[str, list[float]]:
    """Call every mode once per round, in a fresh random order each round.

    Each callable returns its own measured seconds (so that set-up stays outside the
    timer). Returns ``{mode: [seconds per round, in round order]}``: entry ``i`` of two
    modes was measured in the same round, so their ratio is a paired comparison.
    """
    check_rounds(rounds)
    if not modes:
        raise ValueError("interleave() needs at least one mode")
    order = random.Random(seed)
    names = list(modes)
    results: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        order.shuffle(names)
        gc.collect()
        for name in names:
            results[name].append(float(modes[name]()))
    return results


@dataclass(frozen=True)
class LineFit:
    """``t(n) = a + b·n`` in seconds, with the coefficient of determination ``r2``."""

    a: float
    b: float
    r2: float

    def predict(self, n: float) -> float:
        return self.a + self.b * n

    def as_dict(self) -> dict:
        return {"a_us": self.a * 1e6, "b_us": self.b * 1e6, "r2": self.r2}


def fit_line(ns: list[float], seconds: list[float]) -> LineFit:
    """Least-squares fit of ``seconds ≈ a + b·n`` (at least two distinct ``n``)."""
    if len(ns) != len(seconds) or len(set(ns)) < 2:
        raise ValueError("fit_line() needs the same number of n and seconds, with at least two distinct n")
    mean_n, mean_t = statistics.fmean(ns), statistics.fmean(seconds)
    sxx = sum((n - mean_n) ** 2 for n in ns)
    sxy = sum((n - mean_n) * (t - mean_t) for n, t in zip(ns, seconds, strict=True))
    b = sxy / sxx
    a = mean_t - b * mean_n
    total = sum((t - mean_t) ** 2 for t in seconds)
    residual = sum((t - (a + b * n)) ** 2 for n, t in zip(ns, seconds, strict=True))
    return LineFit(a, b, 1.0 - residual / total if total > 0 else 1.0)


def fit_relative(ns: list[float], seconds: list[float]) -> LineFit:
    """Like :func:`fit_line`, but each point weighted by ``1/t²``, so n = 1 counts as much as n = 1000.

    An unweighted fit lets the largest batch decide ``a`` too, and a microsecond's noise
    there swamps a fixed cost of tens of microseconds.
    """
    if len(ns) != len(seconds) or len(set(ns)) < 2 or min(seconds) <= 0:
        raise ValueError("fit_relative() needs positive seconds and at least two distinct n")
    w = [1.0 / t**2 for t in seconds]
    sw = sum(w)
    mean_n = sum(wi * n for wi, n in zip(w, ns, strict=True)) / sw
    mean_t = sum(wi * t for wi, t in zip(w, seconds, strict=True)) / sw
    sxx = sum(wi * (n - mean_n) ** 2 for wi, n in zip(w, ns, strict=True))
    sxy = sum(wi * (n - mean_n) * (t - mean_t) for wi, n, t in zip(w, ns, seconds, strict=True))
    b = sxy / sxx
    a = mean_t - b * mean_n
    total = sum(wi * (t - mean_t) ** 2 for wi, t in zip(w, seconds, strict=True))
    residual = sum(wi * (t - (a + b * n)) ** 2 for wi, n, t in zip(w, ns, seconds, strict=True))
    return LineFit(a, b, 1.0 - residual / total if total > 0 else 1.0)


def _is_ours(proc: psutil.Process, me: int) -> bool:
    try:
        return proc.pid == me or any(parent.pid == me for parent in proc.parents())
    except psutil.Error:
        return True  # gone already: nothing to count


def _others_cpu_seconds() -> dict[int, float]:
    """CPU seconds so far of every process that is not this one or its descendant.

    Kernel threads (children of kthreadd, pid 2) are left out: their time is mostly the
    kernel's work for everyone, such as the loopback networking of the benchmarks' own round
    trips. A process that starts and ends between two snapshots is missed; a machine busy
    enough to matter has processes that live longer than that.
    """
    me = os.getpid()
    seconds = {}
    for proc in psutil.process_iter(["ppid", "cpu_times"]):
        if proc.pid in (0, 2) or proc.info["ppid"] == 2 or proc.info["cpu_times"] is None:
            continue
        if _is_ours(proc, me):
            continue
        times = proc.info["cpu_times"]
        seconds[proc.pid] = times.user + times.system
    return seconds


def usable_cpus() -> int:
    count = os.process_cpu_count() if hasattr(os, "process_cpu_count") else None
    if count is None and hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    return count or os.cpu_count() or 1


@dataclass
class Window:
    """How much of the machine other processes used over one stretch of time."""

    seconds: float
    others_share: float  # other processes' CPU time / (seconds × CPUs), 0..1
    load_per_cpu: float  # the 1-minute load average / CPUs at the window's end

    def as_dict(self) -> dict:
        return asdict(self)


class MachineWatch:
    """Measure other processes' share of the machine: idle samples around a run, and the run itself.

    ``with MachineWatch() as watch: ...`` samples ``idle_sample`` seconds before, watches
    the block, samples again after; :attr:`quiet` is True when every window stayed under
    :data:`BUSY_SHARE`. What counts is the CPU time of every process that is not this one or
    one of its descendants (the benchmarks it runs, their servers), so a run does not count
    against itself.
    """

    def __init__(self, idle_sample: float = 2.0, threshold: float = BUSY_SHARE) -> None:
        if not 0 < idle_sample <= 60:
            raise ValueError(f"idle_sample must be in (0, 60] seconds, got {idle_sample!r}")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be a share in (0, 1), got {threshold!r}")
        self.idle_sample = idle_sample
        self.threshold = threshold
        self.cpus = psutil.cpu_count() or 1
        self.before: Window | None = None
        self.during: Window | None = None
        self.after: Window | None = None
        self._mark: tuple[float, float, float] | None = None

    def _start(self) -> None:
        self._mark = (time.monotonic(), _others_cpu_seconds())

    def _stop(self) -> Window:
        if self._mark is None:
            raise RuntimeError("window not started")
        began, before = self._mark
        after = _others_cpu_seconds()
        wall = time.monotonic() - began
        others = sum(t - before.get(pid, 0.0) for pid, t in after.items())
        share = max(0.0, others) / (max(wall, 1e-9) * self.cpus)
        self._mark = None
        return Window(wall, min(share, 1.0), os.getloadavg()[0] / self.cpus)

    def sample(self) -> Window:
        """Sleep ``idle_sample`` seconds and report what others used meanwhile."""
        self._start()
        time.sleep(self.idle_sample)
        return self._stop()

    def __enter__(self) -> MachineWatch:
        self.before = self.sample()
        self._start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.during = self._stop()
        self.after = self.sample()

    @property
    def windows(self) -> dict[str, Window]:
        return {k: w for k, w in (("before", self.before), ("during", self.during), ("after", self.after)) if w}

    @property
    def quiet(self) -> bool:
        return bool(self.windows) and all(w.others_share < self.threshold for w in self.windows.values())

    def as_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "cpus": self.cpus,
            "quiet": self.quiet,
            **{name: w.as_dict() for name, w in self.windows.items()},
        }

    def describe(self) -> str:
        parts = [f"{name}: others used {w.others_share:.0%} of the CPUs" for name, w in self.windows.items()]
        verdict = "quiet" if self.quiet else f"BUSY (threshold {self.threshold:.0%})"
        return f"machine {verdict}; " + "; ".join(parts)


def batch_sweep(
    modes: dict[str, Callable[[int], float]],
    sizes: tuple[int, ...],
    rounds: int,
    items_per_call: int = 1_000,
    seed: int = 0,
    after_round: Callable[[], None] | None = None,
) -> dict[str, dict[int, list[float]]]:
    """Time each mode at each batch size, all (mode, size) pairs interleaved per round.

    ``modes[name](n)`` does one batch of ``n`` items and returns its seconds. A small batch
    is repeated until about ``items_per_call`` items were done, and the mean is kept, so
    that a batch of one is not a single reading of the clock. Returns
    ``{mode: {n: [seconds per batch, one per round]}}``. ``after_round``, if given, runs
    after every round: a comparison measured outside Python takes its turns that way.
    """
    check_rounds(rounds)
    if not sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
        raise ValueError(f"sizes must be positive ints, got {sizes!r}")
    order = random.Random(seed)
    pairs = [(mode, n) for mode in modes for n in sizes]
    out: dict[str, dict[int, list[float]]] = {mode: {n: [] for n in sizes} for mode in modes}
    for _ in range(rounds):
        order.shuffle(pairs)
        gc.collect()
        for mode, n in pairs:
            calls = max(1, items_per_call // n)
            total = sum(modes[mode](n) for _ in range(calls))
            out[mode][n].append(total / calls)
        if after_round is not None:
            after_round()
    return out


def fit_sweep(sweep: dict[str, dict[int, list[float]]]) -> dict[str, LineFit]:
    """One ``t(n) = a + b·n`` per mode, fitted to the medians (relative weights)."""
    fits = {}
    for mode, by_n in sweep.items():
        ns = sorted(by_n)
        fits[mode] = fit_relative(ns, [statistics.median(by_n[n]) for n in ns])
    return fits


def payback_items(batched: LineFit, one_by_one: LineFit) -> float | None:
    """The batch size from which one batch beats ``n`` separate calls, by the two fits."""
    saving_per_item = one_by_one.b - batched.b
    if saving_per_item <= 0:
        return None
    return max(1.0, (batched.a - one_by_one.a) / saving_per_item)


def plot_sweep(path, title: str, sweep: dict[str, dict[int, list[float]]], fits: dict[str, LineFit]) -> None:
    """Save a log-log plot of each mode's medians (with min–max bars) and its fitted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for mode, by_n in sweep.items():
        ns = sorted(by_n)
        med = [statistics.median(by_n[n]) * 1e6 for n in ns]
        low = [m - min(by_n[n]) * 1e6 for m, n in zip(med, ns, strict=True)]
        high = [max(by_n[n]) * 1e6 - m for m, n in zip(med, ns, strict=True)]
        line = ax.errorbar(ns, med, yerr=[low, high], fmt="o", capsize=3, label=mode)
        fit = fits[mode]
        grid = [ns[0] * (ns[-1] / ns[0]) ** (i / 50) for i in range(51)]
        ax.plot(
            grid,
            [fit.predict(n) * 1e6 for n in grid],
            color=line[0].get_color(),
            alpha=0.6,
            label=f"  fit: {fit.a * 1e6:.0f} µs + {fit.b * 1e6:.2f} µs·n",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("items in the call (n)")
    ax.set_ylabel("time per call, µs (median, min–max)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7.5)
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)


def out_dir() -> Path:
    """Where a benchmark writes its JSON and plots: ``$BENCH_OUT``, else ``bench/``.

    ``run_all.py`` points it at ``_build/bench/`` and copies the plots into ``bench/`` only
    when the machine stayed quiet, so a busy run cannot replace what the book shows.
    """
    return Path(os.environ.get("BENCH_OUT") or Path(__file__).resolve().parent)


def print_sweep_tables(sweep: dict[str, dict[int, list[float]]], fits: dict[str, LineFit]) -> dict:
    """Print a sweep's µs per item (median, min–max) by n, then its fitted lines; return the per-item spreads."""
    sizes = sorted(next(iter(sweep.values())))
    per_item = {m: {n: spread(sweep[m][n]).scaled(1e6 / n) for n in sizes} for m in sweep}
    print("| n | " + " | ".join(sweep) + " |")
    print("|---:|" + "---:|" * len(sweep))
    for n in sizes:
        print(f"| {n} | " + " | ".join(per_item[m][n].format() for m in sweep) + " |")
    print("\nFitted t(n) = a + b·n per call:\n")
    print("| way | a (µs per call) | b (µs per item) | r² |")
    print("|---|---:|---:|---:|")
    for m, fit in fits.items():
        print(f"| {m} | {fit.a * 1e6:.1f} | {fit.b * 1e6:.2f} | {fit.r2:.4f} |")
    return per_item
