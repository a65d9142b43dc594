"""A server that holds thousands of idle connections open at once: the idle workload's other end.

Used by chapter 15 (choose a concurrency model, measured) and :mod:`helpers.choosing.models`.

:class:`HoldServer` speaks the same little HTTP/1.0 as :class:`helpers.threads.pools.DelayServer`
(``GET /path?delay=0.2`` is answered after 0.2 s, with the path as the body, then the
connection is closed), but it serves every connection from one asyncio event loop in a
background thread, with a listen backlog of :data:`BACKLOG`. A connection it holds costs
it a coroutine, not a thread, so a thousand clients can each keep a real TCP connection
open to it while the client side is measured. Like ``DelayServer`` it counts what it did:
``served``, ``in_flight``, ``peak_in_flight`` (``reset_peak``) and ``errors``; and it never
writes to stderr.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from urllib.parse import parse_qs, urlsplit

try:
    import resource
except ImportError:  # Windows has no resource module
    resource = None

__all__ = ["BACKLOG", "HOLD_THREAD_NAME", "HoldServer", "raise_open_file_limit"]

#: The listen backlog (Linux caps it at ``net.core.somaxconn``, 4096 by default since 5.4).
BACKLOG = 4096
#: The name of the server's one thread.
HOLD_THREAD_NAME = "hold-server"
_MAX_DELAY = 10.0
_MAX_ERRORS_KEPT = 100


def raise_open_file_limit(needed: int) -> int:
    """Raise this process's soft limit on open files to at least ``needed`` (at most the hard limit).

    Every held connection is a file descriptor at each end; the soft limit is often 1024.
    Returns the soft limit now in force.
    """
    if isinstance(needed, bool) or not isinstance(needed, int) or needed < 0:
        raise ValueError(f"needed must be a non-negative int, got {needed!r}")
    if resource is None:  # Windows: no such limit to raise
        return needed
    # On top of the descriptors already open (a Jupyter kernel holds dozens of its own).
    for fd_dir in ("/proc/self/fd", "/dev/fd"):
        try:
            needed += len(os.listdir(fd_dir))
            break
        except OSError:
            continue
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft


class HoldServer:
    """An HTTP/1.0 server on 127.0.0.1 (a free port) that holds each connection for its delay.

    ``with HoldServer(delay=0.2) as server: ...`` starts it and stops it: the loop's thread is
    joined (with a timeout), held connections are dropped, the listening socket closed.
    """

    def __init__(self, delay: float = 0.2, *, max_connections: int = 2_000) -> None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or math.isnan(delay):
            raise TypeError(f"delay must be a number of seconds, got {delay!r}")
        if not 0 <= delay <= _MAX_DELAY:
            raise ValueError(f"delay must be between 0 and {_MAX_DELAY} seconds, got {delay}")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections must be a positive int, got {max_connections!r}")
        self.delay = float(delay)
        self.max_connections = max_connections
        self.served = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._errors: list[str] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._handlers: set[asyncio.Task] = set()

    # -- life cycle
    def start(self, timeout: float = 10.0) -> HoldServer:
        """Start the loop's thread, listen, and return self once the port is open."""
        if self._thread is not None:
            raise RuntimeError("this HoldServer is already running")
        raise_open_file_limit(self.max_connections + 64)
        listening = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=BACKLOG)
                )
                self._port = self._server.sockets[0].getsockname()[1]
            except BaseException as error:  # reported by start(), in the caller's thread
                failure.append(error)
                listening.set()
                loop.close()
                return
            listening.set()
            try:
                loop.run_forever()
            finally:
                for task in list(self._handlers):
                    task.cancel()
                if self._handlers:
                    loop.run_until_complete(asyncio.gather(*self._handlers, return_exceptions=True))
                self._server.close()
                loop.run_until_complete(self._server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=serve, name=HOLD_THREAD_NAME, daemon=True)
        self._thread.start()
        if not listening.wait(timeout) or failure:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError(f"HoldServer did not start: {failure[0]!r}" if failure else "HoldServer did not start")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (held connections are closed unanswered), join its thread. Safe to call twice."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"the HoldServer thread is still alive after {timeout} s")
        self._thread = self._loop = self._server = None

    def __enter__(self) -> HoldServer:
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
        return f"http://127.0.0.1:{self.port}"

    # -- what it saw
    @property
    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def reset_peak(self) -> None:
        """Start ``peak_in_flight`` again from the connections held now."""
        with self._lock:
            self.peak_in_flight = self.in_flight

    def reset_stats(self) -> None:
        """Set ``served``, ``peak_in_flight`` and ``errors`` back to zero (``in_flight`` stays)."""
        with self._lock:
            self.served = 0
            self.peak_in_flight = self.in_flight
            self._errors.clear()

    # -- one connection
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        held = False
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            path = parts[1] if len(parts) == 3 and parts[0] == "GET" else None
            delay = self.delay
            asked = parse_qs(urlsplit(path).query).get("delay") if path else None
            if asked:
                delay = float(asked[0])
            if path is None or not 0 <= delay <= _MAX_DELAY:
                writer.write(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            else:
                with self._lock:
                    self.in_flight += 1
                    self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                held = True
                await asyncio.sleep(delay)
                body = path.encode()
                writer.write(
                    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
            await writer.drain()
            if held:
                with self._lock:
                    self.served += 1
        except asyncio.CancelledError:
            pass  # the server is stopping: drop the connection unanswered
        except Exception as error:  # a client that went away, a bad request: counted, never printed
            with self._lock:
                if len(self._errors) < _MAX_ERRORS_KEPT:
                    self._errors.append(type(error).__name__)
        finally:
            if held:
                with self._lock:
                    self.in_flight -= 1
            writer.close()
            self._handlers.discard(task)

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self._port}" if self._port else "not started"
        return f"HoldServer({where}, delay={self.delay:g} s, {'running' if self.running else 'stopped'})"
