"""Thread-pool tasks, and a slow HTTP server on loopback to point them at.

Used by chapter 07 (run I/O-bound work on a thread pool), which shows the source of
the request handler, :func:`fetch`, :func:`timed_fetch` and :func:`run_fetches`; by
chapter 15 and :mod:`helpers.choosing.models`; and by ``bench/thread_pool.py``.
Chapter 07's own thread code (a task that holds a worker, a done-callback) is
written in its cells.

* :class:`DelayServer` is a real ``http.server.ThreadingHTTPServer``, bound to
  127.0.0.1 on a free port and served from a background thread. Every request
  waits a fixed delay (``?delay=0.2`` overrides it, up to ``max_delay``) and then
  answers with its own path as the body; ``/status/404`` answers with that status.
  It counts the requests it served and the most it had in flight at once. Use it
  as a context manager, or call :meth:`DelayServer.start` and :meth:`DelayServer.stop`.
  It never writes to stderr: its log lines are dropped and a request that fails
  (a client that gave up, say) is counted in :attr:`DelayServer.errors`.
* :func:`fetch` is the I/O-bound task: one GET with ``urllib``, with a timeout on
  each socket operation, bypassing any proxy set in the environment. :func:`timed_fetch` does the same
  and returns a :class:`~helpers.instruments.timeline.TaskRecord` (which thread, when).
* :func:`run_fetches` runs ``requests`` fetches on a ``ThreadPoolExecutor`` of
  ``workers`` threads and returns a :class:`~helpers.instruments.speedup.JobRun`, the shape
  that :class:`~helpers.instruments.speedup.WorkerExplorer` needs.
* :func:`load_stats` applies Little's law to a run (throughput, mean latency,
  requests in flight); :func:`format_throughput_table` prints runs as Markdown.
* :func:`wait_until` polls a condition with a deadline; :func:`is_listening`
  says whether anything accepts connections on a port.
"""

from __future__ import annotations

import math
import os
import re
import socket
import socketserver
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlsplit

from helpers.instruments.measure import Timer
from helpers.instruments.timeline import TaskRecord
from helpers.instruments.workloads import _check_int

__all__ = [
    "LOOPBACK",
    "SERVER_THREAD_PREFIX",
    "DelayServer",
    "fetch",
    "timed_fetch",
    "run_fetches",
    "LoadStats",
    "load_stats",
    "format_throughput_table",
    "wait_until",
    "is_listening",
]

LOOPBACK = "127.0.0.1"
#: Every thread the server starts has a name beginning with this.
SERVER_THREAD_PREFIX = "delay-server"
_MAX_SECONDS = 60.0
_MAX_ERRORS_KEPT = 100
_STATUS_PATH = re.compile(r"/status/([1-5]\d\d)")


def _check_seconds(name: str, value, low: float = 0.0, high: float = _MAX_SECONDS, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or not low <= value <= high or (not allow_zero and value == 0):
        raise ValueError(
            f"{name} must be {'more than' if not allow_zero else 'at least'} "
            f"{low} and at most {high} seconds, got {value}"
        )
    return float(value)


def _check_url(url) -> str:
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url must start with http:// or https://, got {url!r}")
    return url


# --- the server ------------------------------------------------------------------------


class _DelayHandler(BaseHTTPRequestHandler):
    """Wait, then answer with the request's own path (and the status a /status/NNN path asks for)."""

    server_version = "DelayServer/1.0"
    protocol_version = "HTTP/1.0"  # one request per connection, then close
    timeout = 10  # a client that connects and sends nothing cannot hold a thread for ever

    def do_GET(self) -> None:
        server: _DelayHTTPServer = self.server  # type: ignore[assignment]
        parts = urlsplit(self.path)
        delay = server.delay
        asked = parse_qs(parts.query).get("delay")
        if asked:
            try:
                delay = float(asked[0])
            except ValueError:
                delay = -1.0
            if not 0.0 <= delay <= server.max_delay:  # also rejects nan
                self._answer(400, f"delay must be between 0 and {server.max_delay} seconds\n")
                return
        match = _STATUS_PATH.fullmatch(parts.path)
        status = int(match.group(1)) if match else 200
        server.enter()
        try:
            time.sleep(delay)
        finally:
            server.leave()
        self._answer(status, self.path)

    def _answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        """Drop the access log: http.server writes it to stderr."""


class _DelayHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that names, keeps and can join its request threads, and never prints."""

    daemon_threads = True  # a stuck request cannot keep the interpreter alive at exit
    request_queue_size = 128  # the listen backlog (default 5): a full one makes connects wait 1 s
    block_on_close = False  # DelayServer.stop joins the request threads itself, with a timeout

    def __init__(self, address: tuple[str, int], delay: float, max_delay: float) -> None:
        self.delay = delay
        self.max_delay = max_delay
        self.request_threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self.served = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._stats_lock = threading.Lock()
        super().__init__(address, _DelayHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (socket.getfqdn), which can be slow.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"{SERVER_THREAD_PREFIX}-request",
            daemon=True,
        )
        with self._stats_lock:
            self.request_threads = [t for t in self.request_threads if t.is_alive()]
            self.request_threads.append(thread)
        thread.start()

    def handle_error(self, request, client_address) -> None:
        """Count the failed request instead of printing its traceback to stderr."""
        import sys

        exc = sys.exc_info()[1]
        with self._stats_lock:
            if len(self.errors) < _MAX_ERRORS_KEPT:
                self.errors.append(type(exc).__name__ if exc is not None else "unknown error")

    def enter(self) -> None:
        with self._stats_lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._stats_lock:
            self.in_flight -= 1
            self.served += 1


class DelayServer:
    """A real HTTP server on 127.0.0.1 (a free port) whose every answer takes ``delay`` seconds.

    ``with DelayServer(delay=0.05) as server: fetch(server.url_for("/a"), timeout=5)``
    starts it in a background thread and stops it cleanly: the serving thread and
    every request thread are joined (with a timeout) and the socket is closed.
    """

    def __init__(self, delay: float = 0.05, *, max_delay: float = 5.0, host: str = LOOPBACK) -> None:
        self.max_delay = _check_seconds("max_delay", max_delay, 0.0, _MAX_SECONDS)
        self.delay = _check_seconds("delay", delay, 0.0, self.max_delay)
        if not isinstance(host, str):
            raise TypeError(f"host must be a str, got {type(host).__name__}")
        self.host = host
        self._httpd: _DelayHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- life cycle
    def start(self) -> DelayServer:
        """Bind a free port, start serving in a background thread, and return self."""
        if self._httpd is not None:
            raise RuntimeError("this DelayServer is already running")
        httpd = _DelayHTTPServer((self.host, 0), self.delay, self.max_delay)
        self._port = httpd.server_address[1]
        thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=SERVER_THREAD_PREFIX, daemon=True
        )
        self._httpd, self._thread = httpd, thread
        thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, join the serving and request threads (within ``timeout``), close the socket.

        Safe to call twice. Raises ``RuntimeError`` if a thread is still alive at the deadline.
        """
        timeout = _check_seconds("timeout", timeout, allow_zero=False)
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        deadline = time.monotonic() + timeout
        if thread.is_alive():
            httpd.shutdown()  # returns once serve_forever's loop sees it (every poll_interval)
        thread.join(max(0.0, deadline - time.monotonic()))
        with httpd._stats_lock:
            requests = list(httpd.request_threads)
        for request_thread in requests:
            request_thread.join(max(0.0, deadline - time.monotonic()))
        httpd.server_close()
        self._httpd = self._thread = None
        alive = [t.name for t in [thread, *requests] if t.is_alive()]
        if alive:
            raise RuntimeError(f"DelayServer threads still alive after {timeout} s: {alive}")

    def __enter__(self) -> DelayServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- where it is
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server has not been started: call start() or use 'with'")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def url_for(self, path: str = "/", delay: float | None = None) -> str:
        """The URL of ``path`` on this server, asking for ``delay`` seconds if given."""
        if not isinstance(path, str):
            raise TypeError(f"path must be a str, got {type(path).__name__}")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        if delay is None:
            return self.url + path
        delay = _check_seconds("delay", delay, 0.0, self.max_delay)
        return f"{self.url}{path}{'&' if '?' in path else '?'}delay={delay:g}"

    # -- what it saw
    def _server(self) -> _DelayHTTPServer:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return self._httpd

    @property
    def served(self) -> int:
        """Requests answered since start (or since :meth:`reset_stats`)."""
        return self._server().served

    @property
    def peak_in_flight(self) -> int:
        """The most requests the server was waiting on at the same moment."""
        return self._server().peak_in_flight

    @property
    def errors(self) -> list[str]:
        """Exception names of requests that failed (for example a client that stopped waiting)."""
        httpd = self._server()
        with httpd._stats_lock:
            return list(httpd.errors)

    def request_threads_alive(self) -> int:
        """How many request threads are still running."""
        httpd = self._server()
        with httpd._stats_lock:
            return sum(t.is_alive() for t in httpd.request_threads)

    def reset_peak(self) -> None:
        """Start ``peak_in_flight`` again from the requests in progress now; ``served`` keeps counting."""
        httpd = self._server()
        with httpd._stats_lock:
            httpd.peak_in_flight = httpd.in_flight

    def reset_stats(self) -> None:
        """Set ``served``, ``peak_in_flight`` and ``errors`` back to zero (``in_flight`` stays)."""
        httpd = self._server()
        with httpd._stats_lock:
            httpd.served = 0
            httpd.peak_in_flight = httpd.in_flight
            httpd.errors.clear()

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port else "not started"
        return f"DelayServer({where}, delay={self.delay:g} s, {'running' if self.running else 'stopped'})"


# --- the tasks ---------------------------------------------------------------------------

# No proxy: a proxy set in the environment (http_proxy) must not see loopback requests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str, timeout: float = 10.0) -> str:
    """GET ``url`` with ``urllib`` and return the body as text.

    ``timeout`` bounds each blocking socket operation (the connect, each read), not
    the whole request: a server that sends its answer a little at a time can take
    longer. Raises ``TimeoutError`` when one of them waits longer than ``timeout``,
    and ``urllib.error.HTTPError`` for a 4xx or 5xx status (its body is closed
    first, so nothing leaks).
    """
    _check_url(url)
    timeout = _check_seconds("timeout", timeout, allow_zero=False)
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.read().decode()
    except HTTPError as exc:
        exc.close()
        raise


def timed_fetch(task: int, url: str, timeout: float = 10.0) -> TaskRecord:
    """:func:`fetch` ``url`` and return a TaskRecord: the body as result, the thread, start and end."""
    _check_int("task", task, 0, 10**9)
    start = time.time()
    body = fetch(url, timeout)
    return TaskRecord(
        task=task, pid=os.getpid(), thread=threading.current_thread().name, start=start, end=time.time(), result=body
    )


def run_fetches(workers: int, base_url: str, requests: int = 64, timeout: float = 10.0, total_timeout: float = 120.0):
    """Fetch ``base_url/item/<i>`` for ``i < requests`` on a ThreadPoolExecutor of ``workers`` threads.

    Returns a :class:`helpers.instruments.speedup.JobRun` whose ``result`` is the list of
    bodies in request order. ``timeout`` bounds each request, ``total_timeout``
    the whole run. The pool is shut down, and its threads joined, before returning.
    """
    from helpers.instruments.speedup import JobRun

    workers = _check_int("workers", workers, 1, 1024)
    base_url = _check_url(base_url).rstrip("/")
    requests = _check_int("requests", requests, 1, 100_000)
    timeout = _check_seconds("timeout", timeout, allow_zero=False)
    total_timeout = _check_seconds("total_timeout", total_timeout, high=600.0, allow_zero=False)
    urls = [f"{base_url}/item/{i}" for i in range(requests)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"fetch{workers}") as pool:
        with Timer() as t:
            records = list(pool.map(timed_fetch, range(requests), urls, [timeout] * requests, timeout=total_timeout))
    return JobRun(workers=workers, elapsed=t.elapsed, records=tuple(records), result=[r.result for r in records])


# --- Little's law ------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadStats:
    """A run seen through Little's law: ``in_flight = throughput × mean_latency``."""

    workers: int
    requests: int
    elapsed: float
    throughput: float  # requests per second
    mean_latency: float  # seconds one request took, on average, seen by its thread
    in_flight: float  # requests in progress at an average moment


def load_stats(run) -> LoadStats:
    """Throughput, mean latency and mean requests in flight of a :class:`~helpers.instruments.speedup.JobRun`."""
    from helpers.instruments.speedup import JobRun

    if not isinstance(run, JobRun):
        raise TypeError(f"run must be a JobRun, got {type(run).__name__}")
    if not run.records:
        raise ValueError("the run has no task records")
    n = len(run.records)
    throughput = n / run.elapsed
    mean_latency = sum(r.duration for r in run.records) / n
    return LoadStats(run.workers, n, run.elapsed, throughput, mean_latency, throughput * mean_latency)


def format_throughput_table(runs: Iterable) -> str:
    """A Markdown table, one row per run (sorted by workers): time, requests/s, mean latency, in flight, speedup."""
    stats = sorted((load_stats(r) for r in runs), key=lambda s: s.workers)
    if not stats:
        raise ValueError("runs is empty")
    base = next((s for s in stats if s.workers == 1), stats[0])
    lines = [
        "| workers | time | requests/s | mean latency | in flight (X × W) | speedup |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stats:
        lines.append(
            f"| {s.workers} | {s.elapsed:.2f} s | {s.throughput:.0f} | "
            f"{s.mean_latency * 1000:.1f} ms | {s.in_flight:.1f} | "
            f"{base.elapsed / s.elapsed:.2f}× |"
        )
    return "\n".join(lines)


# --- small tools -----------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.005) -> bool:
    """Call ``condition()`` every ``interval`` seconds until it is true or ``timeout`` passes.

    Returns the last answer, so ``assert wait_until(...)`` fails if time ran out.
    """
    if not callable(condition):
        raise TypeError(f"condition must be callable, got {type(condition).__name__}")
    timeout = _check_seconds("timeout", timeout)
    interval = _check_seconds("interval", interval, 0.0, 1.0, allow_zero=False)
    deadline = time.monotonic() + timeout
    while True:  # bounded: the deadline ends it
        if condition():
            return True
        if time.monotonic() >= deadline:
            return bool(condition())
        time.sleep(interval)


def is_listening(port: int, host: str = LOOPBACK, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, got {type(port).__name__}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, got {port}")
    timeout = _check_seconds("timeout", timeout, allow_zero=False)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0
