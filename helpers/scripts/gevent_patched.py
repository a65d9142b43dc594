"""Chapter 10: an ordinary program made cooperative by gevent's monkey-patching.

    python -m helpers.scripts.gevent_patched            # patched
    python -m helpers.scripts.gevent_patched --no-patch  # the same code, unpatched

``monkey.patch_all()`` must run first, before anything imports ``socket``,
``time`` or ``threading``: it swaps their blocking functions for gevent's
cooperative ones. Never call it inside a running Jupyter kernel (the kernel's own
threads and sockets would be swapped under it); that is why this is a script.

Prints one JSON line: which functions are gevent's now, and how long plain
``time.sleep`` calls, plain ``threading.Thread`` objects and a plain-``socket``
echo exchange took when run side by side in greenlets.
"""

import sys

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

SLEEPERS = 100 if PATCH else 10  # unpatched, each sleep blocks everyone: keep it short
CLIENTS = 50


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def sleep_in_greenlets(count: int) -> None:
    greenlets = [gevent.spawn(time.sleep, 0.1) for _ in range(count)]  # plain time.sleep
    gevent.joinall(greenlets, timeout=30)


def sleep_in_threads(count: int) -> None:
    threads = [threading.Thread(target=time.sleep, args=(0.1,)) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)


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
        "time.sleep is gevent.sleep": time.sleep is gevent.sleep,
        "socket.socket is gevent.socket.socket": socket.socket is gevent.socket.socket,
        "time.sleep module": time.sleep.__module__,
        "sleepers": SLEEPERS,
        "greenlet sleeps seconds": timed(sleep_in_greenlets, SLEEPERS),
    }
    if PATCH:  # unpatched, these would take SLEEPERS * 0.1 s and CLIENTS * 0.05 s
        report["thread sleeps seconds"] = timed(sleep_in_threads, SLEEPERS)
        start = time.perf_counter()
        report["echo clients"] = CLIENTS
        report["echoed correctly"] = plain_socket_echo(CLIENTS)
        report["echo seconds"] = time.perf_counter() - start
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
