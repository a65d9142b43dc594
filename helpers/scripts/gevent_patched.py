"""Chapter 10: an ordinary program made cooperative by gevent's monkey-patching.

    python -m helpers.scripts.gevent_patched            # patched
    python -m helpers.scripts.gevent_patched --no-patch  # the same code, unpatched
    python -m helpers.scripts.gevent_patched --monitor   # patched, with gevent's monitor thread on

``monkey.patch_all()`` must run first, before anything imports ``socket``,
``select``, ``ssl`` or ``threading``: it swaps their blocking functions for gevent's
cooperative ones. (``python -m`` imports the packages ``helpers`` and ``helpers.scripts``
first; they import none of these, and the report lists any that were already loaded.) Never call it inside a running Jupyter kernel (the kernel's own
threads and sockets would be swapped under it); that is why this is a script.

Prints one JSON line: which modules were imported before patching, which functions are
gevent's now, whether ``threading`` is patched and how many OS threads the plain
``threading.Thread`` objects really used, and how long plain ``time.sleep`` calls, those
threads, a forked child, a plain-``socket`` echo exchange and plain ``urllib.request`` calls
to a gevent WSGI server took.

With ``--monitor``, it instead turns on gevent's monitor thread and lets one greenlet compute
for 0.5 s without yielding: the monitor prints its report about the blocked hub to stderr.
"""

import sys

# What was imported before patching: patch_all() cannot fix a module someone already used.
LOADED_BEFORE_PATCH = sorted(name for name in ("socket", "select", "ssl", "threading") if name in sys.modules)
PATCH = "--no-patch" not in sys.argv[1:]
MONITOR = "--monitor" in sys.argv[1:]
if PATCH:
    from gevent import monkey

    monkey.patch_all()

import json  # noqa: E402  (after patching, on purpose)
import os  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import gevent  # noqa: E402
import gevent.os  # noqa: E402
import gevent.pywsgi  # noqa: E402
import gevent.socket  # noqa: E402
import gevent.thread  # noqa: E402
from gevent import monkey  # noqa: E402  (again: the unpatched run needs it for the checks)

# The kernel's own id for the OS thread, kept unpatched: patched threading.get_ident() names greenlets.
os_thread_id = monkey.get_original("_thread", "get_ident")

SLEEPERS = 100 if PATCH else 10  # unpatched, each sleep blocks everyone: keep it short
CLIENTS = 50


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def sleep_in_greenlets(count: int) -> None:
    greenlets = [gevent.spawn(time.sleep, 0.1) for _ in range(count)]  # plain time.sleep
    gevent.joinall(greenlets, timeout=30)


def sleep_in_threads(count: int) -> int:
    """``count`` plain threading.Thread objects sleep 0.1 s; return how many OS threads they used."""
    os_threads = set()

    def sleep_and_note() -> None:
        os_threads.add(os_thread_id())  # set.add is atomic: no lock needed even for real threads
        time.sleep(0.1)

    threads = [threading.Thread(target=sleep_and_note) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return len(os_threads)


def plain_socket_echo(clients: int) -> int:
    """A plain-socket server and plain-socket clients, in greenlets; return correct echoes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(clients)
    listener.settimeout(10)
    address = listener.getsockname()

    def echo(conn) -> None:
        with conn:
            conn.settimeout(10)
            conn.sendall(conn.recv(1024))

    def accept_loop() -> list:
        handlers = []
        for _ in range(clients):  # one greenlet accepts; each connection gets its own greenlet
            conn, _ = listener.accept()
            handlers.append(gevent.spawn(echo, conn))
        return handlers

    def client(i: int) -> bool:
        with socket.create_connection(address, timeout=10) as sock:
            time.sleep(0.05)  # every client waits a little while connected
            sock.sendall(b"hello %d" % i)
            return sock.recv(1024) == b"hello %d" % i

    acceptor = gevent.spawn(accept_loop)
    results = [gevent.spawn(client, i) for i in range(clients)]
    gevent.joinall([*results, acceptor], timeout=30)
    gevent.joinall(acceptor.value or [], timeout=30)
    listener.close()
    return sum(1 for g in results if g.successful() and g.value)


def sleep_in_forked_child(count: int) -> int:
    """Fork; the child sleeps in ``count`` greenlets and exits with how many finished in time."""
    pid = os.fork()  # patched: gevent's fork, which re-initialises the hub in the child
    if pid == 0:
        greenlets = [gevent.spawn(time.sleep, 0.1) for _ in range(count)]
        os._exit(len(gevent.joinall(greenlets, timeout=10)))
    _, status = os.waitpid(pid, 0)  # patched: waits cooperatively; the child exits within its 10 s
    return os.waitstatus_to_exitcode(status)


def http_requests(count: int, seconds: float) -> dict:
    """``count`` greenlets fetch a URL with plain urllib.request from a gevent WSGI server.

    The server's handler sleeps ``seconds`` (plain ``time.sleep``, patched) and counts
    how many requests it is handling at once.
    """
    inside = {"now": 0, "peak": 0}  # one OS thread, no switch between these lines: no lock needed

    def app(environ, start_response):
        inside["now"] += 1
        inside["peak"] = max(inside["peak"], inside["now"])
        time.sleep(seconds)
        inside["now"] -= 1
        body = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy

    def fetch(i: int) -> bool:
        with no_proxy.open(f"http://127.0.0.1:{server.server_port}/item/{i}", timeout=10) as response:
            return response.read() == b"/item/%d" % i

    start = time.perf_counter()
    clients = [gevent.spawn(fetch, i) for i in range(count)]
    gevent.joinall(clients, timeout=30)
    elapsed = time.perf_counter() - start
    server.stop(timeout=5)
    return {
        "http requests": count,
        "http handler seconds": seconds,
        "http answered correctly": sum(1 for c in clients if c.successful() and c.value),
        "http most in the handler at once": inside["peak"],
        "http seconds": elapsed,
    }


def crunch_numbers(seconds: float) -> None:
    """Compute for ``seconds`` without ever yielding to the hub."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1_000))


def monitor_blocking() -> dict:
    """Turn on gevent's monitor thread, then block the hub with crunch_numbers for 0.5 s."""
    gevent.config.monitor_thread = True  # before the hub starts: a real thread, watching it
    gevent.config.max_blocking_time = 0.1  # report a greenlet that keeps the hub away this long
    ticks = []

    def ticker() -> None:
        ticks.append(time.perf_counter())
        for _ in range(10):
            time.sleep(0.02)
            ticks.append(time.perf_counter())

    gevent.joinall([gevent.spawn(ticker), gevent.spawn(crunch_numbers, 0.5)], timeout=10)
    return {
        "monitor thread running": gevent.get_hub().periodic_monitoring_thread is not None,
        "ticker's longest gap": max(b - a for a, b in zip(ticks, ticks[1:])),
    }


def main() -> int:
    if MONITOR:
        print(json.dumps(monitor_blocking()))
        return 0
    report = {
        "patched": PATCH,
        "loaded before patching": LOADED_BEFORE_PATCH,
        "time.sleep is gevent.sleep": time.sleep is gevent.sleep,
        "socket.socket is gevent.socket.socket": socket.socket is gevent.socket.socket,
        "threading patched": monkey.is_module_patched("threading"),
        "threading.get_ident is gevent's": threading.get_ident is gevent.thread.get_ident,
        "time.sleep module": time.sleep.__module__,
        "sleepers": SLEEPERS,
        "greenlet sleeps seconds": timed(sleep_in_greenlets, SLEEPERS),
    }
    start = time.perf_counter()
    report["thread OS threads"] = sleep_in_threads(SLEEPERS)  # real threads overlap too, patched or not
    report["thread sleeps seconds"] = time.perf_counter() - start
    if PATCH:  # unpatched, these would wait one after another
        report["os.fork is gevent's"] = os.fork is gevent.os.fork
        report["forked child's greenlets finished"] = sleep_in_forked_child(10)
        start = time.perf_counter()
        report["echo clients"] = CLIENTS
        report["echoed correctly"] = plain_socket_echo(CLIENTS)
        report["echo seconds"] = time.perf_counter() - start
        report.update(http_requests(20, 0.2))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
