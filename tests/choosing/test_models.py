"""Tests of helpers.choosing.models and helpers/scripts/compare_models.py (chapter 15)."""

import asyncio
import json
import math
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor

import psutil
import pytest

from helpers.choosing import models as compare
from helpers.choosing.idle_server import HoldServer, raise_open_file_limit
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
    agree,
    async_count_primes,
    async_fetch_item,
    async_fetch_then_count,
    async_serve_idle,
    clearly_less,
    expected_results,
    fetch_item,
    fetch_then_count,
    format_results_table,
    format_spread,
    http_request,
    in_worker,
    loop_iterations,
    paired_ratios,
    parse_response,
    peak_memory_kib,
    percentile,
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
    run_thread_per_task,
    run_threads,
    serve_idle,
    spread,
    summarize,
    warm_up,
    workload_tasks,
)
from helpers.instruments.workloads import count_primes, count_primes_in_range, square
from helpers.threads.pools import DelayServer


@pytest.fixture(scope="module")
def server():
    with DelayServer(delay=0.01) as running:
        yield running


@pytest.fixture(scope="module")
def hold_server():
    with HoldServer(delay=0.05) as running:
        yield running


def test_primes_below_matches_trial_division():
    for limit in (0, 1, 2, 3, 10, 100, 1000, 12_345):
        assert primes_below(limit) == count_primes(limit)


def test_prime_chunks_cover_the_range_exactly():
    for limit, chunks in ((1000, 7), (10, 3), (100, 100), (3, 2), (0, 2)):
        pairs = prime_chunks(limit, chunks)
        assert len(pairs) == chunks and pairs[0][0] == 0 and pairs[-1][1] == limit
        assert all(a[1] == b[0] for a, b in zip(pairs, pairs[1:])) and all(a <= b for a, b in pairs)


def _literal_iterations(n: int) -> int:
    """count_primes_in_range's loops on one n, counting their turns."""
    if n < 2:
        return 0
    turns = 1
    if n % 2:
        for d in range(3, math.isqrt(n) + 1, 2):
            turns += 1
            if n % d == 0:
                break
    return turns


def test_loop_iterations_count_the_loops_own_turns():
    for limit in (0, 1, 2, 3, 10, 100, 5000):
        assert list(loop_iterations(limit)) == [_literal_iterations(n) for n in range(limit)]


def test_prime_chunks_have_equal_cost_not_equal_width():
    costs = loop_iterations(100_000)
    work = [sum(costs[a:b]) for a, b in prime_chunks(100_000, 8)]
    assert max(work) / min(work) < 1.01
    widths = [b - a for a, b in prime_chunks(100_000, 8)]
    assert widths[0] > 2 * widths[-1]  # the small numbers are cheap: the first chunk is wider


def test_peak_memory_is_positive():
    assert peak_memory_kib() > 1000


def test_fetches_return_the_path(server):
    url = server.url_for("/item/3", delay=0.01)
    assert fetch_item(url, timeout=5) == "/item/3?delay=0.01"
    assert asyncio.run(async_fetch_item(url, timeout=5)) == "/item/3?delay=0.01"
    body, primes, latency, compute = fetch_then_count(url, 0, 100)
    assert (body, primes) == ("/item/3?delay=0.01", 25) and latency >= 0.01 and compute > 0
    body, primes, latency, compute = asyncio.run(async_fetch_then_count(url, 0, 100))
    assert (body, primes) == ("/item/3?delay=0.01", 25) and latency >= 0.01 and compute > 0


def test_one_request_and_one_parser_for_both_clients():
    host, port, request = http_request("http://127.0.0.1:8080/item/1?delay=0.5")
    assert (host, port) == ("127.0.0.1", 8080)
    assert request == b"GET /item/1?delay=0.5 HTTP/1.0\r\nHost: 127.0.0.1:8080\r\n\r\n"
    assert http_request("http://127.0.0.1:9")[2].startswith(b"GET / HTTP/1.0")
    assert parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi") == "hi"
    with pytest.raises(ConnectionError, match="404"):
        parse_response(b"HTTP/1.0 404 Not Found\r\n\r\n")
    with pytest.raises(ConnectionError):
        parse_response(b"HTTP/1.0 200 OK\r\n")  # cut short: no blank line
    with pytest.raises(ValueError):
        http_request("http://localhost:80/")  # a name would need a lookup


@pytest.mark.parametrize("client", ["blocking", "asyncio"])
def test_both_fetches_raise_on_an_error_status(server, client):
    url = server.url_for("/status/404")
    with pytest.raises(ConnectionError, match="404"):
        fetch_item(url, timeout=5) if client == "blocking" else asyncio.run(async_fetch_item(url, timeout=5))


def test_serve_idle_holds_real_connections_and_stops_at_the_deadline(hold_server):
    start = time.perf_counter()
    assert serve_idle(hold_server.url, 0, 100, 0.05, time.time() + 0.12) <= 3
    assert time.perf_counter() - start < 0.5
    hold_server.reset_peak()
    assert serve_idle(hold_server.url, 5, 3, 0.0, time.time() + 1) == 3
    assert asyncio.run(async_serve_idle(hold_server.url, 0, 2, 0.01, time.time() + 1)) == 2
    assert hold_server.peak_in_flight == 1 and hold_server.errors == []


def test_hold_server_holds_many_connections_at_once(hold_server):
    async def clients(n: int) -> list[str]:
        return await asyncio.gather(*(async_fetch_item(f"{hold_server.url}/c/{i}?delay=0.3") for i in range(n)))

    hold_server.reset_peak()
    assert asyncio.run(clients(300)) == [f"/c/{i}?delay=0.3" for i in range(300)]
    assert hold_server.peak_in_flight > 100 and hold_server.in_flight == 0
    assert raise_open_file_limit(0) > 0


def test_hold_server_stops_with_connections_still_held():
    server = HoldServer(delay=5).start()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(http_request(server.url + "/wait")[2])
    time.sleep(0.1)
    assert server.in_flight == 1
    started = time.monotonic()
    server.stop(timeout=5)
    assert time.monotonic() - started < 2 and not server.running
    assert sock.recv(100) == b""  # closed unanswered
    sock.close()
    server.stop()  # twice is fine


def test_workload_tasks_give_every_model_the_same_tasks(server, hold_server):
    function, coroutine_function, tasks = workload_tasks("cpu", None, 0.0, 1)
    assert (function, coroutine_function) == (count_primes_in_range, async_count_primes)
    assert len(tasks) == CPU_CHUNKS and sum(function(*a) for a in tasks) == expected_results("cpu")
    function, coroutine_function, tasks = workload_tasks("io", server.url, 0.0, WORKERS)
    assert (function, coroutine_function) == (fetch_item, async_fetch_item) and len(tasks) == IO_REQUESTS
    assert tasks[1] == (f"{server.url}/item/1?delay={IO_DELAY:g}",)
    function, coroutine_function, tasks = workload_tasks("mixed", server.url, 0.0, 1)
    assert (function, coroutine_function) == (fetch_then_count, async_fetch_then_count)
    function, coroutine_function, tasks = workload_tasks("idle", hold_server.url, 123.0, 3)
    assert (function, coroutine_function) == (serve_idle, async_serve_idle)
    assert [a[1:3] for a in tasks] == [(0, 334), (334, 333), (667, 333)]
    assert all(a[0] == hold_server.url and a[3:] == (IDLE_HOLD, 123.0) for a in tasks)
    assert expected_results("idle") is None


def test_the_runners_return_values_in_task_order():
    tasks = [(0, 100), (100, 200), (200, 300)]
    expected = [count_primes_in_range(*a) for a in tasks]
    assert run_sequential(count_primes_in_range, tasks) == expected
    values, startup = run_threads(count_primes_in_range, tasks, timeout=30)
    assert values == expected and startup > 0
    assert run_thread_per_task(count_primes_in_range, tasks, timeout=30) == expected
    assert run_asyncio(async_count_primes, tasks, timeout=30) == expected
    values, peak_kib, cpu, startup = run_processes(count_primes_in_range, tasks, timeout=60, start_method="spawn")
    assert values == expected and peak_kib > 1000 and cpu > 0 and startup > 0


def test_thread_per_task_runs_every_task_at_once_and_reports_failures():
    barrier = threading.Barrier(20, timeout=10)  # only passes if all 20 threads wait at once
    assert run_thread_per_task(barrier.wait, [()] * 20, timeout=30) is not None
    with pytest.raises(RuntimeError, match="1 of 2 threads failed"):
        run_thread_per_task(count_primes_in_range, [(0, 10), (10, 5)], timeout=30)
    with pytest.raises(TimeoutError, match="1 of 1 threads unfinished"):
        run_thread_per_task(time.sleep, [(1,)], timeout=0.1)


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


@pytest.mark.parametrize("model", ["sequential", "threads", "thread-per-task", "asyncio"])
def test_run_in_this_process_io(server, model):
    report = run_in_this_process(model, "io", server.url, timeout=60)
    assert report["ok"] and report["done"] == IO_REQUESTS
    assert report["wall"] >= IO_REQUESTS * IO_DELAY / report["concurrency"]
    assert (report["startup"] > 0) == (model == "threads") and report["startup"] < report["wall"]
    assert report["latencies"] == report["computes"] == []


def test_run_in_this_process_mixed_records_latency_and_compute(server):
    report = run_in_this_process("asyncio", "mixed", server.url, timeout=60)
    assert report["ok"] and len(report["latencies"]) == len(report["computes"]) == compare.MIXED_TASKS
    # One thread: the slowest GET waited behind the other chunks' computing.
    assert max(report["latencies"]) >= 0.8 * (sum(report["computes"]) - max(report["computes"]))


def test_gevent_model_refuses_to_run_unpatched():
    with pytest.raises(RuntimeError, match="patch_all"):
        run_in_this_process("gevent", "cpu")


def test_run_pair_gevent_mixed_in_a_fresh_process(server):
    result = run_pair("gevent", "mixed", server.url, timeout=60)
    assert isinstance(result, PairResult) and result.ok and result.done == compare.MIXED_TASKS
    assert result.peak_mib > 1 and result.p99 >= result.p50 >= IO_DELAY


def test_run_pair_gevent_idle_holds_every_client_at_once():
    with HoldServer(delay=IDLE_HOLD) as holder:
        result = run_pair("gevent", "idle", holder.url, timeout=60)
        assert result.ok and result.done == IDLE_CLIENTS and holder.served == IDLE_CLIENTS
        assert holder.peak_in_flight > 10 * WORKERS and holder.errors == []


@pytest.mark.parametrize("workload", ["io", "idle"])
def test_script_starts_its_own_server_without_url(workload):
    proc = subprocess.run(
        [sys.executable, "-m", "helpers.scripts.compare_models", "asyncio", workload],
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
    assert limits["asyncio"]["io"] == limits["thread-per-task"]["io"] == pytest.approx(IO_DELAY)
    assert limits["sequential"]["idle"] == int(IDLE_BUDGET // IDLE_HOLD)
    assert limits["gevent"]["idle"] == limits["thread-per-task"]["idle"] == IDLE_CLIENTS
    assert physical_limits(1.0, 2.0, cpus=1)["processes"]["cpu"] == 1.0


def _run(model, workload, wall, repeat, **extra):
    fields = dict(startup=0.0, cpu=0.1, peak_kib=30_000, tasks=32, concurrency=4, done=32, ok=True)
    fields.update(extra)
    return PairResult(model, workload, wall, start_method="fork", repeat=repeat, **fields)


def test_format_results_table_has_medians_spreads_and_units():
    rows = [_run(m, "io", (1.0 if m == "sequential" else 0.5) + 0.01 * k, k) for m in MODELS for k in range(3)]
    table = format_results_table(rows, physical_limits(1.0, 2.0, 2))
    assert table.count("\n") == 1 + len(MODELS)
    assert "| io | threads | 0.51 s (0.50 s–0.52 s) |" in table and "3 of 3" in table
    assert "29.3 MiB (29.3 MiB–29.3 MiB)" in table and "0.24 s" in table and "1.98× (1.96×–2.00×)" in table


def test_spreads_and_comparisons():
    a, b = spread([3, 1, 2]), spread([2.5, 4, 5])
    assert (a.median, a.low, a.high, a.width) == (2, 1, 3, 2)
    assert agree(a, b) and not clearly_less(a, b) and clearly_less(a, spread([3.5, 9]))
    assert format_spread(a) == "2.00 s (1.00 s–3.00 s)" and format_spread(spread([0.012]), "×") == "0.01× (0.01×–0.01×)"
    assert format_spread(spread([0.05])) == "50 ms (50 ms–50 ms)" and "KiB" in format_spread(a, "KiB")
    rows = [_run("sequential", "io", 1.0 + k, k) for k in range(3)] + [_run("threads", "io", 0.5, k) for k in range(3)]
    assert paired_ratios(rows, "io", "sequential", "threads").values == (2.0, 4.0, 6.0)
    assert summarize(rows, lambda r: r.wall)["threads", "io"].median == 0.5
    assert percentile([5, 1, 3, 2, 4], 50) == 3 and percentile(list(range(1, 101)), 99) == 99
    assert percentile(list(range(16)), 99) == 15  # of 16 values, the slowest


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
        (lambda: serve_idle("http://127.0.0.1:1", 0, 1, -1, 0.0), ValueError),
        (lambda: workload_tasks("disk", None, 0.0, 1), ValueError),
        (lambda: workload_tasks("cpu", None, 0.0, 0), ValueError),
        (lambda: workload_tasks("io", None, 0.0, 1), ValueError),  # no url
        (lambda: workload_tasks("idle", None, 0.0, 1), ValueError),  # no url
        (lambda: serve_idle("http://127.0.0.1:1", 0, 1, 0.1, "soon"), TypeError),
        (lambda: parse_response("HTTP/1.0 200 OK"), TypeError),
        (lambda: percentile([], 50), ValueError),
        (lambda: percentile([1], 0), ValueError),
        (lambda: spread([]), ValueError),
        (lambda: format_spread(1.0), TypeError),
        (lambda: format_spread(spread([1]), "h"), ValueError),
        (lambda: HoldServer(delay=-1), ValueError),
        (lambda: raise_open_file_limit(-1), ValueError),
        (lambda: fetch_item(42), TypeError),
        (lambda: format_results_table([]), TypeError),
        (lambda: compare.markdown_table_to_html(None), TypeError),
        (lambda: compare.markdown_table_to_html("no table"), ValueError),
        (lambda: compare.plot_grid([1]), TypeError),
        (lambda: compare.run_grid({}, models=[]), ValueError),
        (lambda: compare.run_grid({}, repeats=0), ValueError),
        (lambda: compare.run_grid("http://127.0.0.1:1"), TypeError),
        (lambda: compare.run_grid({}, servers={"io": "localhost"}), TypeError),
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


def test_run_grid_interleaves_and_keeps_every_run():
    results = compare.run_grid({}, models=["sequential", "asyncio"], workloads=["cpu"], repeats=3)
    assert [(r.repeat, r.model) for r in results] == [
        (0, "sequential"),
        (0, "asyncio"),
        (1, "asyncio"),
        (1, "sequential"),
        (2, "sequential"),
        (2, "asyncio"),
    ]
    assert all(r.ok for r in results) and compare.rotated(MODELS, 7)[0] == MODELS[1]


def test_run_grid_records_the_servers_peak_per_run():
    with DelayServer(delay=0.05) as server:
        results = compare.run_grid(
            {"io": server.url}, models=["asyncio", "threads"], workloads=["io"], repeats=1, servers={"io": server}
        )
        assert server.served == 2 * compare.IO_REQUESTS
    peaks = {r.model: r.server_peak for r in results}
    assert peaks["threads"] == compare.WORKERS and peaks["asyncio"] > compare.WORKERS


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
    # The processes model fetches from a server that accepts connections and never answers, so
    # its 4 workers block in recv: time it out at 3 s. Every process the child started (its 4
    # workers, and the resource tracker once it has cleaned up) must be gone, and run_pair must
    # not wait for them (orphans would hold its pipes).
    seen: set[int] = set()
    outcome: list[BaseException] = []
    silent = socket.create_server(("127.0.0.1", 0), backlog=64)  # the kernel accepts; nobody answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"

    def run() -> None:
        try:
            run_pair("processes", "io", url, start_method="spawn", timeout=3)
        except BaseException as error:
            outcome.append(error)

    runner = threading.Thread(target=run, name="run-pair")
    started = time.monotonic()
    runner.start()
    while runner.is_alive() and time.monotonic() - started < 20:
        seen.update(_pair_processes())
        time.sleep(0.02)
    runner.join(timeout=10)
    silent.close()
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
