"""Chapter 10: an ordinary program made cooperative by gevent's monkey-patching.

    python -m helpers.scripts.gevent_patched            # patched
    python -m helpers.scripts.gevent_patched --no-patch  # the same code, unpatched

``monkey.patch_all()`` must run first, before anything imports ``socket``,
``select``, ``ssl`` or ``threading``: it swaps their blocking functions for gevent's
cooperative ones. (``python -m`` imports the packages ``helpers`` and ``helpers.scripts``
first; they import none of these, and the report lists any that were already loaded.) Never call it inside a running Jupyter kernel (the kernel's own
threads and sockets would be swapped under it); that is why this is a script.

Prints one JSON line: which modules were imported before patching, which functions are
gevent's now, whether ``threading`` is patched and how many OS threads the plain
``threading.Thread`` objects really used, and how long plain ``time.sleep`` calls, those
threads and a plain-``socket`` echo exchange took when run side by side.
"""

import sys

# What was imported before patching: patch_all() cannot fix a module someone already used.
LOADED_BEFORE_PATCH = sorted(name for name in ("socket", "select", "ssl", "threading") if name in sys.modules)
PATCH = "--no-patch" not in sys.argv[1:]
if PATCH:
    from gevent import monkey

    monkey.patch_all()

import json  # noqa: E402  (after patching, on purpose)
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
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


def main() -> int:
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
    if PATCH:  # unpatched, this would take CLIENTS * 0.05 s
        start = time.perf_counter()
        report["echo clients"] = CLIENTS
        report["echoed correctly"] = plain_socket_echo(CLIENTS)
        report["echo seconds"] = time.perf_counter() - start
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
