"""The Celery application of chapter 16 and its tasks, importable by a worker process.

Used by chapter 16 (``notebooks/16-beyond-one-machine.ipynb``, "Go beyond one machine:
Dask and Celery"), by ``helpers.distributed.engines`` (which starts the worker) and by
``bench/engines_overhead.py``.

A Celery worker is a separate program: it imports this module by name
(``celery -A helpers.distributed.celery_app worker``), so every task lives here, never in a
notebook cell; chapter 16 shows the app (:func:`create_app`) and each task's source
(``show_source``) where it first runs. The broker and the result backend are one Redis server, named by the
environment variable ``BOOK_CELERY_REDIS_URL`` (``helpers.distributed.engines`` sets it for the
worker it starts, and calls :func:`configure` in the notebook's own process).

The tasks return values and never print. Those that keep count (attempts, the process
that ran them) write to the same Redis, so the notebook can assert what happened.
"""

from __future__ import annotations

import os
import threading
import time
from urllib.parse import urlparse

import redis
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from helpers.instruments.workloads import count_primes_in_range  # imported before the worker forks its children

__all__ = [
    "URL_VARIABLE",
    "QUEUE",
    "create_app",
    "app",
    "configure",
    "configured_url",
    "redis_client",
    "TransientError",
    "add",
    "square_task",
    "count_primes_task",
    "flaky",
    "slow_square",
    "SOFT_LIMIT_MARKER",
    "sleep_unless_stopped",
    "attempts_key",
    "started_key",
]

#: The environment variable that names the Redis server (broker and result backend).
URL_VARIABLE = "BOOK_CELERY_REDIS_URL"
#: The queue the book's tasks are routed to, so a worker started with ``-Q`` finds them.
QUEUE = "book"
MAX_SLOW_SECONDS = 60.0


def create_app() -> Celery:
    """The book's Celery app: JSON messages, one queue, and a prefetch multiplier of 1."""
    # seconds: the Redis transport puts back in the queue a message left unacknowledged this long,
    # at a worker's next sweep, even while a worker still runs it or holds it for its ETA or countdown
    visibility_timeout = 5
    app = Celery("book")
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": visibility_timeout},
        worker_hijack_root_logger=False,
        # prefetch = 1 x concurrency unacknowledged messages; with early ack a running task is
        # already acknowledged, so a worker may hold one running and one waiting per child
        worker_prefetch_multiplier=1,
        worker_send_task_events=False,
        task_track_started=False,
    )
    return app


#: The app the worker finds by name (``-A helpers.distributed.celery_app``) and the notebook sends through.
app = create_app()

_configured: dict[str, str | None] = {"url": None}
_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def _check_url(url: str) -> str:
    if not isinstance(url, str):
        raise TypeError(f"url must be a str such as 'redis://127.0.0.1:6379/0', got {type(url).__name__}")
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ValueError(f"url must look like redis://host:port/0, got {url!r}")
    return url


def configure(url: str) -> None:
    """Point this process's Celery app at the Redis server ``url`` (broker and backend).

    Calling it again with another URL drops the connections made for the old one.
    """
    url = _check_url(url)
    with _lock:
        if _configured["url"] == url:
            return
        if _configured["url"] is not None:
            _reset_connections()
        app.conf.update(broker_url=url, result_backend=url)
        _configured["url"] = url


def _reset_connections() -> None:
    """Forget the broker pool and the result backend built for an earlier URL.

    Celery has no public way to rebuild them for a new URL, so this touches private
    attributes of ``Celery`` (``_pool``, ``_local``, ``_backend_cache``; checked against
    Celery 5.7), best effort. A chapter configures its process once; this runs only when one
    process is pointed at a second Redis server.
    """
    pool = getattr(app, "_pool", None)
    if pool is not None:
        try:
            pool.force_close_all()
        except Exception:  # pragma: no cover - best effort on a server already gone
            pass
        app._pool = None
    local = getattr(app, "_local", None)
    backends = [getattr(local, "backend", None), getattr(app, "_backend_cache", None)]
    for backend in filter(None, backends):
        try:
            backend.client.close()
        except Exception:  # pragma: no cover
            pass
    app._local = threading.local()
    if hasattr(app, "_backend_cache"):
        app._backend_cache = None
    for client in _clients.values():
        client.close()
    _clients.clear()


def configured_url() -> str | None:
    """The Redis URL this process's app uses, or None before :func:`configure`."""
    return _configured["url"]


# The worker process reads its URL from the environment when it imports this module.
if os.environ.get(URL_VARIABLE, "").strip():
    configure(os.environ[URL_VARIABLE].strip())


def redis_client() -> redis.Redis:
    """One Redis client per process (a prefork child makes its own)."""
    url = _configured["url"]
    if url is None:
        raise RuntimeError(f"the Celery app has no Redis URL: call configure(url) or set {URL_VARIABLE}")
    key = f"{os.getpid()}:{url}"
    client = _clients.get(key)
    if client is None:
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10)
        _clients[key] = client
    return client


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise ValueError(f"name must be a non-empty str of at most 200 characters, got {name!r}")
    return name


def attempts_key(name: str) -> str:
    """The Redis key where :func:`flaky` and :func:`slow_square` count their attempts."""
    return f"book:attempts:{_check_name(name)}"


def started_key(name: str) -> str:
    """The Redis list where :func:`slow_square` records the pid of each attempt."""
    return f"book:started:{_check_name(name)}"


class TransientError(Exception):
    """A failure worth retrying (a timeout, a busy service)."""


def _check_int(label: str, value, low: int = 0, high: int = 10**12) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{label} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{label} must be in {low}..{high}, got {value}")
    return value


@app.task(name="book.add")
def add(x: int, y: int) -> int:
    """The smallest task: x + y."""
    return _check_int("x", x, -(10**12)) + _check_int("y", y, -(10**12))


@app.task(name="book.square")
def square_task(x: int) -> int:
    """x squared: the tiny task of the overhead measurements."""
    return _check_int("x", x, -(10**6), 10**6) ** 2


@app.task(name="book.count_primes")
def count_primes_task(start: int, stop: int) -> int:
    """How many primes lie in [start, stop): ``helpers.instruments.workloads.count_primes_in_range``."""
    return count_primes_in_range(start, stop)


@app.task(
    bind=True,
    name="book.flaky",
    autoretry_for=(TransientError,),
    retry_backoff=False,
    retry_jitter=False,
    max_retries=5,
    default_retry_delay=0.1,  # seconds: the countdown before each retry
)
def flaky(self, name: str, failures: int) -> dict:
    """Fail with :class:`TransientError` on the first ``failures`` attempts, then succeed.

    Attempts are counted in Redis under :func:`attempts_key` (``name``), so they are
    counted across processes; ``autoretry_for`` turns the exception into a retry.
    """
    _check_int("failures", failures, 0, 10)
    attempt = redis_client().incr(attempts_key(name))
    if attempt <= failures:
        raise TransientError(f"attempt {attempt} of {name} failed on purpose")
    return {"name": name, "attempt": attempt, "retries": self.request.retries}


@app.task(
    bind=True,
    name="book.slow_square",
    acks_late=True,  # acknowledge after the task has run, not just before it starts
    # without this, a child killed mid-task gets its message acknowledged anyway (setting: task_reject_on_worker_lost)
    reject_on_worker_lost=True,  # put the message back instead: a task that always kills its child loops for ever
    # (bounded instead: retry_on_worker_lost=True, Celery 5.7+, resends it as a retry, up to max_retries)
)
def slow_square(self, name: str, x: int, seconds: float) -> dict:
    """Record this attempt (count and pid) in Redis, sleep ``seconds``, return x squared."""
    _check_int("x", x, -(10**6), 10**6)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= MAX_SLOW_SECONDS:
        raise ValueError(f"seconds must be a number in [0, {MAX_SLOW_SECONDS}], got {seconds!r}")
    client = redis_client()
    attempt = client.incr(attempts_key(name))
    client.rpush(started_key(name), os.getpid())
    time.sleep(seconds)
    return {
        "name": name,
        "x": x,
        "square": x * x,
        "attempt": attempt,
        "pid": os.getpid(),
        "redelivered": bool((self.request.delivery_info or {}).get("redelivered")),
    }


#: What :func:`sleep_unless_stopped` returns when its soft time limit stopped it.
SOFT_LIMIT_MARKER = "stopped by the soft time limit"


@app.task(name="book.sleep_unless_stopped")
def sleep_unless_stopped(seconds: float) -> dict:
    """Sleep ``seconds`` and say whether it finished or its soft time limit stopped it, and after how long.

    The limit comes with the call (``apply_async(..., soft_time_limit=...)``): the prefork
    pool's main process signals the child when it is reached, and ``SoftTimeLimitExceeded``
    is raised wherever the task is, here in ``time.sleep``, so the task can clean up.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= MAX_SLOW_SECONDS:
        raise ValueError(f"seconds must be a number in [0, {MAX_SLOW_SECONDS}], got {seconds!r}")
    start = time.monotonic()
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return {"outcome": SOFT_LIMIT_MARKER, "slept": time.monotonic() - start}
    return {"outcome": "finished", "slept": time.monotonic() - start}
