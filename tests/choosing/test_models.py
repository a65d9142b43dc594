"""Tests of helpers.choosing.models and helpers/scripts/compare_models.py (chapter 15)."""

import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor

import psutil
import pytest

from helpers.choosing import models as compare
from helpers.choosing.models import (
    CPU_CHUNKS,
    IDLE_BUDGET,
    IDLE_CLIENTS,
    IDLE_HOLD,
    IO_DELAY,
    IO_REQUESTS,
    MODELS,
    WORKERS,
    PairResult,
    async_count_primes,
    async_fetch_item,
    async_fetch_then_count,
    async_serve_idle,
    expected_results,
    fetch_item,
    fetch_then_count,
    format_results_table,
    in_worker,
    peak_memory_kib,
    physical_limits,
    prime_chunks,
    primes_below,
    ready,
    results_by,
    run_asyncio,
    run_in_this_process,
    run_pair,
    run_processes,
    run_sequential,
    run_threads,
    serve_idle,
    warm_up,
    workload_tasks,
)
from helpers.instruments.workloads import count_primes, count_primes_in_range, square
from helpers.threads.pools import DelayServer


@pytest.fixture(scope="module")
def server():
    with DelayServer(delay=0.01) as running:
        yield running


def test_primes_below_matches_trial_division():
    for limit in (0, 1, 2, 3, 10, 100, 1000, 12_345):
        assert primes_below(limit) == count_primes(limit)


def test_prime_chunks_cover_the_range_exactly():
    chunks = prime_chunks(1000, 7)
    assert len(chunks) == 7 and chunks[0][0] == 0 and chunks[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))


def test_peak_memory_is_positive():
    assert peak_memory_kib() > 1000


def test_fetches_return_the_path(server):
    url = server.url_for("/item/3", delay=0.01)
    assert fetch_item(url, timeout=5) == "/item/3?delay=0.01"
    assert asyncio.run(async_fetch_item(url, timeout=5)) == "/item/3?delay=0.01"
    assert fetch_then_count(url, 0, 100) == ("/item/3?delay=0.01", 25)


def test_async_fetch_raises_on_an_error_status(server):
    with pytest.raises(ConnectionError, match="404"):
        asyncio.run(async_fetch_item(server.url_for("/status/404"), timeout=5))


def test_serve_idle_stops_at_the_deadline():
    start = time.perf_counter()
    assert serve_idle(100, 0.02, time.time() + 0.1) <= 5
    assert time.perf_counter() - start < 0.5
    assert serve_idle(3, 0.0, time.time() + 1) == 3


def test_workload_tasks_give_every_model_the_same_tasks(server):
    function, coroutine_function, tasks = workload_tasks("cpu", None, 0.0, 1)
    assert (function, coroutine_function) == (count_primes_in_range, async_count_primes)
    assert len(tasks) == CPU_CHUNKS and sum(function(*a) for a in tasks) == expected_results("cpu", None)
    function, coroutine_function, tasks = workload_tasks("io", server.url, 0.0, WORKERS)
    assert (function, coroutine_function) == (fetch_item, async_fetch_item) and len(tasks) == IO_REQUESTS
    assert tasks[1] == (f"{server.url}/item/1?delay={IO_DELAY:g}",)
    function, coroutine_function, tasks = workload_tasks("mixed", server.url, 0.0, 1)
    assert (function, coroutine_function) == (fetch_then_count, async_fetch_then_count)
    function, coroutine_function, tasks = workload_tasks("idle", None, 123.0, 3)
    assert (function, coroutine_function) == (serve_idle, async_serve_idle)
    assert [a[0] for a in tasks] == [667, 667, 666] and all(a[1:] == (IDLE_HOLD, 123.0) for a in tasks)
    assert expected_results("idle", None) is None


def test_the_runners_return_values_in_task_order():
    tasks = [(0, 100), (100, 200), (200, 300)]
    expected = [count_primes_in_range(*a) for a in tasks]
    assert run_sequential(count_primes_in_range, tasks) == expected
    values, startup = run_threads(count_primes_in_range, tasks, timeout=30)
    assert values == expected and startup > 0
    assert run_asyncio(async_count_primes, tasks, timeout=30) == expected
    values, peak_kib, cpu, startup = run_processes(count_primes_in_range, tasks, timeout=60, start_method="spawn")
    assert values == expected and peak_kib > 1000 and cpu > 0 and startup > 0


@pytest.fixture(scope="module")
def sequential_cpu_seconds():
    return run_in_this_process("sequential", "cpu", timeout=120)["cpu"]


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_the_processes_model_counts_its_workers_cpu(start_method, sequential_cpu_seconds):
    # Under forkserver the workers are the fork server's children: RUSAGE_CHILDREN never sees them.
    report = run_in_this_process("processes", "cpu", start_method=start_method, timeout=120)
    assert report["ok"] and report["cpu"] > 0.5 * sequential_cpu_seconds  # the workers did all the computing


def test_results_by_bounds_all_the_futures_together():
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert results_by([pool.submit(square, x) for x in range(5)], time.monotonic() + 10) == [0, 1, 4, 9, 16]
        start = time.monotonic()
        futures = [pool.submit(time.sleep, 0.3) for _ in range(4)]
        with pytest.raises(TimeoutError):
            results_by(futures, start + 0.1)
        assert time.monotonic() - start < 0.3  # one bound for all four, not 0.1 s each
    with pytest.raises(TypeError):
        results_by([], True)


def test_in_worker_and_ready_report_the_process():
    value, pid, peak, cpu = in_worker(count_primes_in_range, (0, 100))
    assert value == 25 and pid == os.getpid() and peak > 1000 and 0 < cpu <= time.process_time()
    assert ready(0.0) == (os.getpid(), threading.get_ident())
    with pytest.raises(ValueError):
        ready(2.0)


@pytest.mark.parametrize("model", ["sequential", "threads", "asyncio"])
def test_run_in_this_process_io(server, model):
    report = run_in_this_process(model, "io", server.url, timeout=60)
    assert report["ok"] and report["done"] == IO_REQUESTS
    assert report["wall"] >= IO_REQUESTS * IO_DELAY / report["concurrency"]
    assert (report["startup"] > 0) == (model == "threads") and report["startup"] < report["wall"]


def test_gevent_model_refuses_to_run_unpatched():
    with pytest.raises(RuntimeError, match="patch_all"):
        run_in_this_process("gevent", "cpu")


def test_run_pair_gevent_mixed_in_a_fresh_process(server):
    result = run_pair("gevent", "mixed", server.url, timeout=60)
    assert isinstance(result, PairResult) and result.ok and result.done == compare.MIXED_TASKS
    assert result.peak_mib > 1


def test_script_starts_its_own_server_without_url():
    proc = subprocess.run(
        [sys.executable, "-m", "helpers.scripts.compare_models", "asyncio", "io"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(proc.stdout)
    assert report["ok"] and proc.stderr == ""


def test_run_pair_reports_a_failing_child():
    with pytest.raises(RuntimeError, match="exited with"):
        run_pair("threads", "io", "http://127.0.0.1:1", timeout=60)


def test_physical_limits():
    limits = physical_limits(1.0, 2.0, cpus=2)
    assert limits["sequential"]["cpu"] == 1.0 and limits["processes"]["cpu"] == 0.5
    assert limits["threads"]["io"] == pytest.approx(IO_REQUESTS * IO_DELAY / 4)
    assert limits["asyncio"]["io"] == pytest.approx(IO_DELAY)
    assert limits["sequential"]["idle"] == int(IDLE_BUDGET // IDLE_HOLD)
    assert limits["gevent"]["idle"] == IDLE_CLIENTS
    assert physical_limits(1.0, 2.0, cpus=1)["processes"]["cpu"] == 1.0


def test_format_results_table_has_units():
    rows = [
        PairResult(m, "io", 1.0 if m == "sequential" else 0.5, 0.0, 0.1, 30_000, 64, 4, 64, True, "fork")
        for m in MODELS
    ]
    table = format_results_table(rows, physical_limits(1.0, 2.0, 2))
    assert table.count("\n") == 1 + len(MODELS)
    assert "2.00×" in table and "29.3 MiB" in table and "0.80 s" in table


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: run_in_this_process("fibres", "io"), ValueError),
        (lambda: run_in_this_process("threads", "disk"), ValueError),
        (lambda: run_in_this_process(3, "io"), TypeError),
        (lambda: run_in_this_process("threads", "io"), ValueError),  # no url
        (lambda: run_pair("threads", "io", "ftp://x"), ValueError),
        (lambda: run_pair("threads", "io", timeout=0), ValueError),
        (lambda: physical_limits(0, 1.0, 2), ValueError),
        (lambda: physical_limits(1.0, 1.0, 0), ValueError),
        (lambda: physical_limits(1.0, 1.0, 2.5), TypeError),
        (lambda: prime_chunks(10, 0), ValueError),
        (lambda: primes_below(-1), ValueError),
        (lambda: serve_idle(1, -1, 0.0), ValueError),
        (lambda: workload_tasks("disk", None, 0.0, 1), ValueError),
        (lambda: workload_tasks("cpu", None, 0.0, 0), ValueError),
        (lambda: workload_tasks("io", None, 0.0, 1), ValueError),  # no url
        (lambda: serve_idle(1, 0.1, "soon"), TypeError),
        (lambda: fetch_item(42), TypeError),
        (lambda: format_results_table([]), TypeError),
        (lambda: compare.markdown_table_to_html(None), TypeError),
        (lambda: compare.markdown_table_to_html("no table"), ValueError),
        (lambda: compare.plot_grid([1]), TypeError),
        (lambda: compare.run_grid("http://127.0.0.1:1", models=[]), ValueError),
        (lambda: compare.run_grid("http://127.0.0.1:1", repeat=0), ValueError),
    ],
)
def test_bad_input(call, error):
    with pytest.raises(error):
        call()


def test_physical_limits_without_the_gil_and_for_mixed():
    free = physical_limits(1.0, 2.0, cpus=2, gil=False)
    assert free["threads"]["cpu"] == 0.5 and free["gevent"]["cpu"] == 1.0
    limits = physical_limits(1.0, 2.0, cpus=2)
    waits = compare.MIXED_TASKS * IO_DELAY
    assert limits["sequential"]["mixed"] == pytest.approx(2.0 + waits)  # nothing overlaps
    assert limits["asyncio"]["mixed"] == pytest.approx(2.0)
    assert limits["processes"]["mixed"] == pytest.approx(max(1.0, waits / 4))
    with pytest.raises(TypeError):
        physical_limits(1.0, 2.0, cpus=2, gil="yes")


def test_run_grid_keeps_the_fastest_of_repeated_runs():
    results = compare.run_grid("http://127.0.0.1:1", models=["asyncio"], workloads=["idle"], repeat=2)
    assert len(results) == 1 and results[0].ok and results[0].done == IDLE_CLIENTS


def test_run_grid_records_the_servers_peak_per_run():
    with DelayServer(delay=0.05) as server:
        results = compare.run_grid(server.url, models=["asyncio", "threads"], workloads=["io"], server=server)
        assert server.served == 2 * compare.IO_REQUESTS
    peaks = {r.model: r.server_peak for r in results}
    assert peaks["threads"] == compare.WORKERS and peaks["asyncio"] > compare.WORKERS
    with pytest.raises(TypeError, match="DelayServer"):
        compare.run_grid("http://127.0.0.1:1", server="localhost")


def test_markdown_table_to_html():
    html = compare.markdown_table_to_html("| a | b |\n|---|---:|\n| x<y | 1.5 s |")
    assert html.count("<tr>") == 2 and "x&lt;y" in html and '<td style="text-align:right">1.5 s</td>' in html


class _RecordingPool(ProcessPoolExecutor):
    """A process pool that keeps every future it hands out, to see which worker ran what."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.futures: list[Future] = []

    def submit(self, fn, /, *args, **kwargs):
        future = super().submit(fn, *args, **kwargs)
        self.futures.append(future)
        return future


def test_warm_up_waits_for_every_process_under_spawn():
    # Under spawn the first worker is ready while the others still import: it could take several
    # warm-up tasks. warm_up must not return until every one of the 4 has answered.
    with _RecordingPool(max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        startup = warm_up(pool, time.monotonic() + 60)
        answered = {f.result(timeout=0)[0] for f in pool.futures if f.done()}
        workers = {p.pid for p in psutil.Process().children() if p.pid in answered}
        assert len(answered) == WORKERS == len(workers) and startup > 0


def test_warm_up_waits_for_every_thread():
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = []
        submit = pool.submit
        pool.submit = lambda fn, *a: futures.append(submit(fn, *a)) or futures[-1]
        warm_up(pool, time.monotonic() + 30)
        assert len({f.result(timeout=0) for f in futures if f.done()}) == WORKERS
    with pytest.raises(ValueError):
        warm_up(pool, time.monotonic() + 1, workers=0)


def test_run_pair_timeout_stops_the_pool_workers_too():
    # The processes model on the idle workload runs its pool for about 2 s: time it out at 1.5 s.
    # Every process the child started (its 4 workers, and the resource tracker once it has
    # cleaned up) must be gone, and run_pair must not wait for them (orphans would hold its pipes).
    seen: set[int] = set()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            run_pair("processes", "idle", start_method="spawn", timeout=1.5)
        except BaseException as error:
            outcome.append(error)

    runner = threading.Thread(target=run, name="run-pair")
    started = time.monotonic()
    runner.start()
    while runner.is_alive() and time.monotonic() - started < 20:
        seen.update(_pair_processes())
        time.sleep(0.02)
    runner.join(timeout=10)
    survivors = []
    for pid in seen:
        try:
            survivors.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _gone, alive = psutil.wait_procs(survivors, timeout=2)
    alive = [p for p in alive if _running(p)]  # killed orphans may linger as zombies until reaped
    for process in alive:  # don't leave them to the next test
        process.send_signal(signal.SIGKILL)
    assert not runner.is_alive(), "run_pair did not return after its timeout"
    assert len(outcome) == 1 and isinstance(outcome[0], subprocess.TimeoutExpired), outcome
    assert len(seen) >= 1 + WORKERS, seen  # the child and its pool's workers were running
    assert alive == [], alive


def _pair_processes() -> set[int]:
    """The compare_models child of this process and all its descendants (not this session's other children)."""
    found: set[int] = set()
    for child in psutil.Process().children():
        try:
            if "helpers.scripts.compare_models" in child.cmdline():
                found.add(child.pid)
                found.update(p.pid for p in child.children(recursive=True))
        except psutil.Error:
            continue  # exited meanwhile
    return found


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_gevent_timeout_is_reported_as_a_timeout():
    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import time\n"
        "from helpers.choosing.models import run_gevent\n"
        "run_gevent(time.sleep, [(5,), (0,)], timeout=0.2)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == "TimeoutError: 1 of 2 greenlets unfinished after 0.2 s"
