"""Run every benchmark and gather their targets into one report (``make bench``).

    .venv/bin/python bench/run_all.py [--only NAME ...] [--timeout SECONDS]

Each ``bench/<name>.py`` (other than this file) is run as its own program, one
after another so they do not compete for the cores, and writes
``bench/<name>.json`` with a ``targets`` list of
``{"check", "target", "value", "pass"}``. This script collects those lists into
``bench/results.json`` and a Markdown table, ``bench/results.md``, which the
book includes. Benchmarks are reports about one machine: the exit status is 0
even when a target is missed, and 1 only when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from helpers.instruments.measure import format_run_details, run_details  # noqa: E402

#: Run first: the CPU-sensitive benchmarks. Last: the one that starts 10,000 threads, which
#: leaves the machine busy tearing them down for a while afterwards.
ORDER = ["process_pool", "thread_pool", "memcached_get_many", "redis_pipeline", "engines_overhead", "coroutine_sleeps"]
SETTLE = 3.0  # seconds of rest between benchmarks


def benchmarks() -> list[str]:
    found = {p.stem for p in HERE.glob("*.py") if p.stem != "run_all" and not p.stem.startswith("_")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def markdown_table(results: list[dict]) -> str:
    lines = ["| benchmark | check | target | measured | result |", "|---|---|---:|---:|---|"]
    for bench in results:
        if bench.get("error"):
            lines.append(f"| {bench['benchmark']} | did not run: {bench['error']} | | | FAIL |")
            continue
        if not bench["targets"]:
            lines.append(f"| {bench['benchmark']} | a report, with no target: see its own table | | | n/a |")
        for t in bench["targets"]:
            lines.append(
                f"| {bench['benchmark']} | {t['check']} | {fmt(t['target'])} | "
                f"{fmt(t['value'])} | {'pass' if t['pass'] else 'FAIL'} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per benchmark")
    args = parser.parse_args(argv)
    names = benchmarks()
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; choose from {names}")
        names = [n for n in names if n in args.only]

    results, could_not_run = [], 0
    for i, name in enumerate(names):
        if i:
            time.sleep(SETTLE)
        print(f"== {name}", flush=True)
        out = HERE / f"{name}.json"
        out.unlink(missing_ok=True)
        began = time.monotonic()
        try:
            run = subprocess.run([sys.executable, str(HERE / f"{name}.py")], cwd=ROOT, timeout=args.timeout, text=True)
            error = None if run.returncode == 0 else f"exit code {run.returncode}"
        except subprocess.TimeoutExpired:
            error = f"timed out after {args.timeout:.0f} s"
        if error is None and not out.exists():
            error = f"wrote no {out.name}"
        entry = {"benchmark": name, "seconds": round(time.monotonic() - began, 1), "error": error}
        if error is None:
            report = json.loads(out.read_text())
            entry["targets"] = [
                {
                    "check": t.get("check", "?"),
                    "target": t.get("target"),
                    "value": t.get("value"),
                    "pass": bool(t.get("pass")),
                }
                for t in report.get("targets", [])
            ]
            entry["run_details"] = report.get("run_details")
        else:
            could_not_run += 1
        results.append(entry)

    table = markdown_table(results)
    details = format_run_details()
    summary = {"when": time.strftime("%Y-%m-%d"), "run_details": run_details(), "benchmarks": results}
    (HERE / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (HERE / "results.md").write_text(
        f"Measured with `make bench` on {summary['when']}; {details.removeprefix('run details: ')}.\n\n" + table + "\n"
    )
    print("\n" + table + "\n" + details)
    print("wrote bench/results.json and bench/results.md")
    return 1 if could_not_run else 0


if __name__ == "__main__":
    sys.exit(main())
