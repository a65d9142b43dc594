"""Run every benchmark, watch the machine meanwhile, and write the report the book shows (``make bench``).

    .venv/bin/python bench/run_all.py [--only NAME ...] [--timeout SECONDS] [--force]

Each ``bench/<name>.py`` (other than this file and ``_*.py``) runs as its own program, one
after another so they do not compete for the cores, and writes ``<name>.json`` into
``_build/bench/``: its ``figures`` (median, min, max, runs), its ``fits`` (``t(n) = a + b·n``)
where it has a cost model, plots, and ``targets``.

The machine is watched the whole time (``_common.MachineWatch``): how much of the CPUs
*other* processes used in an idle sample before, during the runs (this process tree's own
CPU time subtracted), and in an idle sample after. A figure measured while something else
ran describes that something else, so when any window is over the threshold the report is
refused: ``bench/results.md``, ``bench/results.json`` and the plots the book shows stay as they
were, and the exit status is 2. ``--force`` writes them anyway, and the page then says the
machine was busy. A busy machine before the start is refused at once, before any run.
``--only`` runs some benchmarks and leaves the report alone.

Exit status: 0 when the report was written (targets missed or not: benchmarks are reports
about one machine), 1 when a benchmark could not run, 2 when the machine was busy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from _common import MachineWatch  # noqa: E402

from helpers.instruments.measure import format_run_details, run_details  # noqa: E402

#: Run first: the CPU-sensitive benchmarks. Last: the one that starts 10,000 threads, which
#: leaves the machine busy tearing them down for a while afterwards.
ORDER = ["process_pool", "thread_pool", "memcached_get_many", "redis_pipeline", "engines_overhead", "coroutine_sleeps"]
SETTLE = 3.0  # seconds of rest between benchmarks
STAGE = ROOT / "_build" / "bench"


def benchmarks() -> list[str]:
    found = {p.stem for p in HERE.glob("*.py") if p.stem != "run_all" and not p.stem.startswith("_")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def targets_table(results: list[dict]) -> str:
    lines = [
        "| benchmark | check | the limit, measured in the same run | target | measured: median (min–max) | result |",
        "|---|---|---|---:|---|---|",
    ]
    for bench in results:
        if bench.get("error"):
            lines.append(f"| {bench['benchmark']} | did not run: {bench['error']} | | | | FAIL |")
            continue
        for t in bench["targets"]:
            lines.append(
                f"| {bench['benchmark']} | {t['check']} | {t.get('limit', '')} | {fmt(t['target'])} | "
                f"{t.get('measured', fmt(t['value']))} | {'pass' if t['pass'] else '**miss**'} |"
            )
    return "\n".join(lines)


def fits_table(results: list[dict]) -> str:
    lines = [
        "| benchmark | way | a: µs per call | b: µs per item | r² | batching pays back from n = |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for bench in results:
        payback = bench.get("payback_items") or {}
        for way, fit in (bench.get("fits") or {}).items():
            n = payback.get(way)
            lines.append(
                f"| {bench['benchmark']} | {way} | {fit['a_us']:.1f} | {fit['b_us']:.2f} | {fit['r2']:.4f} | "
                f"{'' if n is None else f'{n:.1f}'} |"
            )
    return "\n".join(lines)


def figures_table(results: list[dict]) -> str:
    lines = ["| benchmark | figure | median | min | max | runs |", "|---|---|---:|---:|---:|---:|"]
    for bench in results:
        for f in bench.get("figures") or []:
            lines.append(
                f"| {bench['benchmark']} | {f['figure']} | {fmt(f['median'])} | {fmt(f['min'])} | "
                f"{fmt(f['max'])} | {f['runs']} |"
            )
    return "\n".join(lines)


def machine_line(watch: MachineWatch) -> str:
    parts = ", ".join(f"{name} {w.others_share:.0%}" for name, w in watch.windows.items())
    return (
        f"Other processes used {parts} of the CPUs (idle sample before, the runs, idle sample after; "
        f"a run counts as quiet under {watch.threshold:.0%})."
    )


def run_one(name: str, timeout: float) -> dict:
    out = STAGE / f"{name}.json"
    out.unlink(missing_ok=True)
    began = time.monotonic()
    env = dict(os.environ, BENCH_OUT=str(STAGE))
    try:
        run = subprocess.run([sys.executable, str(HERE / f"{name}.py")], cwd=ROOT, timeout=timeout, env=env)
        error = None if run.returncode == 0 else f"exit code {run.returncode}"
    except subprocess.TimeoutExpired:
        error = f"timed out after {timeout:.0f} s"
    if error is None and not out.exists():
        error = f"wrote no {out.name}"
    entry = {"benchmark": name, "seconds": round(time.monotonic() - began, 1), "error": error}
    if error is None:
        report = json.loads(out.read_text())
        for key in ("figures", "fits", "payback_items", "plot", "run_details"):
            entry[key] = report.get(key)
        entry["targets"] = [
            {
                "check": t.get("check", "?"),
                "target": t.get("target"),
                "value": t.get("value"),
                "limit": t.get("limit", ""),
                "measured": t.get("measured"),
                "pass": bool(t.get("pass")),
            }
            for t in report.get("targets", [])
        ]
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names to run (the report is left alone)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per benchmark")
    parser.add_argument("--force", action="store_true", help="write the report even if the machine was busy")
    args = parser.parse_args(argv)
    names = benchmarks()
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; choose from {names}")
        names = [n for n in names if n in args.only]
    STAGE.mkdir(parents=True, exist_ok=True)

    watch = MachineWatch(idle_sample=3.0)
    watch.before = watch.sample()
    if watch.before.others_share >= watch.threshold and not args.force:
        print(
            f"run_all: refused before starting: other processes are using {watch.before.others_share:.0%} "
            f"of the CPUs (threshold {watch.threshold:.0%}). Stop them, or pass --force.",
            file=sys.stderr,
        )
        return 2
    watch._start()
    results = []
    for i, name in enumerate(names):
        if i:
            time.sleep(SETTLE)
        print(f"== {name}", flush=True)
        results.append(run_one(name, args.timeout))
    watch.during = watch._stop()
    watch.after = watch.sample()
    could_not_run = sum(1 for r in results if r["error"])

    summary = {
        "when": time.strftime("%Y-%m-%d"),
        "run_details": run_details(),
        "machine": watch.as_dict(),
        "forced": bool(args.force and not watch.quiet),
        "benchmarks": results,
    }
    (STAGE / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    details = format_run_details().removeprefix("run details: ")
    busy_note = (
        ""
        if watch.quiet
        else "\n\n**Measured on a busy machine** (`make bench` with `--force`): other work shared the CPUs, "
        "so these figures describe that mix, not the code."
    )
    plots = [r["plot"] for r in results if r.get("plot")]
    report = (
        f"Measured with `make bench` on {summary['when']}; {details}. {machine_line(watch)}{busy_note}\n\n"
        "**Targets.** Each limit is measured in the same run: the usable CPUs, the worker count, "
        "the ideal sleep, Redis's own C client.\n\n"
        f"{targets_table(results)}\n\n"
        "**Cost models.** Each way of doing n items takes t(n) = a + b·n, fitted to the medians "
        "(each point weighted by 1/t², so that n = 1 counts as much as n = 1000). For a batch "
        "(`get_many`, pipeline, `MSET`), a is the fixed cost of the one call, about a round trip, "
        "and b the cost of each item in it. For one call per item (`gets`, round trips), a is about "
        "0 and b is the cost of a whole call, round trip included. Batching pays back from the n "
        "where the two fitted lines cross; the fits are rough (see r² and the runs' ranges), so "
        'read it as "from the first few items".\n\n'
        f"{fits_table(results)}\n\n"
        "**Every figure** is the median of its runs, interleaved with the runs it is compared with.\n\n"
        f"{figures_table(results)}\n"
    )
    print("\n" + report)
    print(watch.describe())
    if args.only:
        print(f"--only: the report is in {STAGE.relative_to(ROOT)}/; bench/results.md is left alone")
        return 1 if could_not_run else 0
    if not watch.quiet and not args.force:
        print(
            f"run_all: refused to rewrite bench/results.md: {watch.describe()}. "
            f"This run's report is in {STAGE.relative_to(ROOT)}/. Rerun on a quiet machine, or pass --force.",
            file=sys.stderr,
        )
        return 2
    for plot in plots:
        shutil.copyfile(STAGE / plot, HERE / plot)
    (HERE / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (HERE / "results.md").write_text(report)
    print(f"wrote bench/results.md, bench/results.json and {', '.join(f'bench/{p}' for p in plots) or 'no plots'}")
    return 1 if could_not_run else 0


if __name__ == "__main__":
    sys.exit(main())
