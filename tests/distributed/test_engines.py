"""helpers.distributed.engines and helpers.distributed.celery_app: a real Dask cluster and a real Celery worker.

One Redis server, one Celery worker and one Dask cluster for the whole module keep it fast.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

import psutil
import pytest
import redis

from helpers.distributed import celery_app, engines, payloads
from helpers.instruments.services import start_redis
from helpers.instruments.workloads import count_primes_in_range


@pytest.fixture(scope="module")
def redis_server():
    old = os.environ.pop("REDIS_URL", None)
    server = start_redis(use_env=False)
    try:
        yield server
    finally:
        server.close()
        if old is not None:
            os.environ["REDIS_URL"] = old


@pytest.fixture(scope="module")
def worker(redis_server):
    started = engines.start_celery_worker(redis_server.url, concurrency=2, timeout=60)
    try:
        yield started
    finally:
        engines.stop_celery_worker(started, timeout=20)


@pytest.fixture(scope="module")
def rdb(redis_server):
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="module")
def dask_client():
    cluster, client = engines.start_dask(n_workers=2, timeout=60)
    try:
        yield client
    finally:
        engines.stop_dask(client, cluster)


# ---------------------------------------------------------------- bad input, no servers


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"n_workers": 0}, ValueError),
        ({"n_workers": "2"}, TypeError),
        ({"threads_per_worker": 0}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"timeout": "1"}, TypeError),
    ],
)
def test_start_dask_rejects_bad_input(kwargs, error):
    with pytest.raises(error):
        engines.start_dask(**kwargs)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"redis_url": "http://localhost/"}, ValueError),
        ({"redis_url": 6379}, TypeError),
        ({"redis_url": "redis://127.0.0.1:1/0", "concurrency": 0}, ValueError),
        ({"redis_url": "redis://127.0.0.1:1/0", "concurrency": 2.0}, TypeError),
        ({"redis_url": "redis://127.0.0.1:1/0", "queue": ""}, ValueError),
        ({"redis_url": "redis://127.0.0.1:1/0", "name": "no-at-sign"}, ValueError),
        ({"redis_url": "redis://127.0.0.1:1/0", "loglevel": "LOUD"}, ValueError),
        ({"redis_url": "redis://127.0.0.1:1/0", "timeout": -1}, ValueError),
    ],
)
def test_start_celery_worker_rejects_bad_input(kwargs, error):
    before = celery_app.configured_url()
    with pytest.raises(error):
        engines.start_celery_worker(**kwargs)
    assert celery_app.configured_url() == before  # nothing was reconfigured


def test_configure_rejects_bad_urls():
    with pytest.raises(ValueError):
        celery_app.configure("memcached://localhost:11211")
    with pytest.raises(TypeError):
        celery_app.configure(None)


def test_wait_for():
    calls = []
    assert engines.wait_for(lambda: calls.append(1) or len(calls) >= 3, timeout=5, interval=0.01)
    assert len(calls) == 3
    with pytest.raises(TimeoutError):
        engines.wait_for(lambda: False, timeout=0.1, interval=0.02)
    with pytest.raises(TypeError):
        engines.wait_for("not callable")
    with pytest.raises(ValueError):
        engines.wait_for(lambda: True, timeout=0)


def test_bad_arguments_elsewhere():
    with pytest.raises(TypeError):
        engines.worker_children(1234)
    with pytest.raises(TypeError):
        engines.stop_celery_worker("worker")
    with pytest.raises(TypeError):
        engines.silence_dask_logs("quiet")
    with pytest.raises(ValueError):
        engines.time_tiny_tasks_pool(0)
    with pytest.raises(ValueError):
        celery_app.attempts_key("")
    with pytest.raises(TypeError):
        celery_app.add.run(1, "2")
    with pytest.raises(ValueError):
        celery_app.square_task.run(10**7)


def test_the_app_settings():
    conf = celery_app.app.conf  # the module's app is create_app()'s
    assert conf.task_default_queue == celery_app.QUEUE and conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options == {"visibility_timeout": 5} and conf.accept_content == ["json"]
    assert "visibility_timeout" not in (conf.result_backend_transport_options or {})  # the backend never reads it
    assert conf.task_serializer == conf.result_serializer == "json"


def test_tasks_run_in_process():
    assert celery_app.add.run(2, 3) == 5
    assert celery_app.square_task.run(-4) == 16
    assert celery_app.count_primes_task.run(0, 100) == count_primes_in_range(0, 100) == 25


def test_pool_timing():
    seconds, results = engines.time_tiny_tasks_pool(50, workers=2)
    assert results == [x * x for x in range(50)] and seconds > 0


def test_pool_context_never_forks():
    method = multiprocessing.get_start_method()
    assert engines.pool_context().get_start_method() == ("forkserver" if method == "fork" else method)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_start_pool_workers_waits_for_every_process(method):
    # Under spawn and forkserver the first worker ready could take every warm-up task of one round.
    with ProcessPoolExecutor(max_workers=3, mp_context=multiprocessing.get_context(method)) as pool:
        pids = engines.start_pool_workers(pool, 3, timeout=60)
        assert len(pids) == 3 and os.getpid() not in pids
    with pytest.raises(TypeError):
        engines.start_pool_workers("pool", 2)
    assert engines.worker_pid() == os.getpid()


def test_payloads_count_their_arrivals():
    numbers = payloads.Numbers(range(10))
    before = payloads.arrivals_here()
    copies = [pickle.loads(pickle.dumps(numbers)) for _ in range(3)]
    assert payloads.arrivals_here() == before + 3 and all(len(c) == 10 for c in copies)
    assert payloads.total(copies[0], 2, 5) == 2 + 3 + 4
    with pytest.raises(TypeError):
        payloads.Numbers([1, "2"])
    with pytest.raises(TypeError):
        payloads.total([1, 2], 0, 1)
    with pytest.raises(ValueError):
        payloads.total(numbers, -1, 1)


def test_sleep_unless_stopped_in_process():
    assert celery_app.sleep_unless_stopped.run(0)["outcome"] == "finished"
    with pytest.raises(ValueError):
        celery_app.sleep_unless_stopped.run(-1)


# ---------------------------------------------------------------- Dask


def test_dask_cluster_matches_the_pool(dask_client):
    info = dask_client.scheduler_info()
    assert len(info["workers"]) == 2
    assert all(w["nthreads"] == 1 for w in info["workers"].values())
    assert {w["host"] for w in info["workers"].values()} == {"127.0.0.1"}
    seconds, results = engines.time_tiny_tasks_dask(dask_client, 100)
    assert results == [x * x for x in range(100)] and seconds > 0
    executor = dask_client.get_executor()
    bounds = [(0, 5_000), (5_000, 10_000)]
    found = list(executor.map(count_primes_in_range, *zip(*bounds), timeout=60))
    assert sum(found) == count_primes_in_range(0, 10_000) == 1229


def test_scattered_data_arrives_once_per_worker(dask_client):
    numbers = payloads.Numbers(range(1_000))
    arrived = lambda: sum(dask_client.run(payloads.arrivals_here).values())  # noqa: E731
    before = arrived()
    per_task = dask_client.gather(dask_client.map(payloads.total, [numbers] * 6, range(6), [1_000] * 6, pure=False))
    sent_with_each_task = arrived() - before
    [scattered] = dask_client.scatter([numbers])
    before = arrived()
    once = dask_client.gather(dask_client.map(payloads.total, [scattered] * 6, range(6), [1_000] * 6, pure=False))
    sent_after_scatter = arrived() - before
    assert per_task == once and sent_with_each_task == 6
    # Not compared with who_has(): the Active Memory Manager drops surplus copies every 2 s.
    assert 0 <= sent_after_scatter <= len(dask_client.scheduler_info()["workers"]) - 1  # the scatter came before


# ---------------------------------------------------------------- Celery


def test_worker_round_trip_and_group(worker):
    assert worker.is_running() and len(engines.worker_children(worker)) == 2
    assert celery_app.add.delay(2, 40).get(timeout=20) == 42
    seconds, results = engines.time_tiny_tasks_celery(40)
    assert results == [x * x for x in range(40)] and seconds > 0


def test_redis_client_is_made_once_per_process(worker):
    assert celery_app.redis_client() is celery_app.redis_client()
    assert celery_app.redis_client().ping()


def test_retries_are_counted(worker, rdb):
    rdb.delete(celery_app.attempts_key("t-flaky"))
    outcome = celery_app.flaky.delay("t-flaky", 2).get(timeout=30)
    assert outcome == {"name": "t-flaky", "attempt": 3, "retries": 2}
    assert rdb.get(celery_app.attempts_key("t-flaky")) == "3"


def test_killed_child_task_is_redelivered(worker, rdb):
    name = "t-slow"
    rdb.delete(celery_app.attempts_key(name), celery_app.started_key(name))
    pending = celery_app.slow_square.delay(name, 7, 1.0)
    first_pid = int(engines.wait_for(lambda: rdb.lindex(celery_app.started_key(name), 0), timeout=20))
    assert first_pid in engines.worker_children(worker)
    os.kill(first_pid, signal.SIGKILL)
    outcome = pending.get(timeout=30)
    assert outcome["square"] == 49 and outcome["attempt"] == 2 and outcome["redelivered"] is True
    assert outcome["pid"] != first_pid
    assert len(engines.worker_children(worker)) == 2  # the pool replaced its child


def test_soft_time_limit_stops_a_task(worker):
    stopped = celery_app.sleep_unless_stopped.apply_async((10,), soft_time_limit=0.5, time_limit=20).get(timeout=30)
    assert stopped["outcome"] == celery_app.SOFT_LIMIT_MARKER and stopped["slept"] < 5
    assert celery_app.sleep_unless_stopped.delay(0.1).get(timeout=30)["outcome"] == "finished"


def test_stop_leaves_no_celery_process(redis_server):
    extra = engines.start_celery_worker(redis_server.url, concurrency=1, queue="t-extra", timeout=60)
    children = engines.worker_children(extra)
    assert len(children) == 1
    assert engines.stop_celery_worker(extra, timeout=20) == "warm shutdown"
    assert not extra.is_running() and not extra.workdir.exists()
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in children)
    assert extra.pid not in {p.pid for p in engines.celery_processes()}
    assert engines.stop_celery_worker(extra) == "already stopped"


def test_worker_command_is_the_celery_command_line(worker):
    # What the chapter prints: the worker's own command, not the setpriv prefix before it.
    assert worker.command[0] == sys.executable and worker.command[1:3] == ["-m", "celery"]
    assert list(worker.process.args[-len(worker.command) :]) == worker.command
