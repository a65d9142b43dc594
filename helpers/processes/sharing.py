"""Share data between processes: child targets and measurements for chapter 04.

Every function that a child process runs lives here (never in a notebook cell),
so chapter 04 works under ``fork``, ``spawn`` and ``forkserver`` alike; the chapter
shows each one's source (``show_source``) where it first runs. (Its queue producer
is :func:`helpers.processes.basics.put_squares`, shared with chapter 01.) Children never print:
results come back through a queue, a pipe, a managed object or shared memory.
Every loop has an upper bound and every wait has a timeout, so a forgotten
child still ends.

Two measurements compare the mechanisms on the same job:

* :func:`bulk_transfer_seconds`: one child hands ``nbytes`` of data to the parent;
* :func:`small_updates_seconds`: one child makes ``count`` tiny updates that the
  parent must see.

Both start the child first and time only the transfer (not the process start),
check that the parent received exactly the right data, and release everything
they created (processes, managers, shared-memory segments) before returning.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue as _queue
import struct
import time
import zlib
from multiprocessing import shared_memory

from helpers.instruments.measure import Timer
from helpers.instruments.workloads import _check_int, _check_seconds

__all__ = [
    "MECHANISMS",
    "MAX_COUNT",
    "MAX_BYTES",
    "add_to_value",
    "add_to_each",
    "put_payload",
    "square_tasks",
    "send_numbers",
    "echo_upper",
    "record_visits",
    "sum_shared_bytes",
    "double_shareable_list",
    "segment_exists",
    "format_seconds",
    "make_payload",
    "bulk_transfer_seconds",
    "small_updates_seconds",
]

#: The mechanisms the two measurements know, in the order the chapter shows them.
MECHANISMS = ("queue", "pipe", "manager", "shared_memory", "value_array")
MAX_COUNT = 1_000_000  # upper bound on any loop count in this module
MAX_BYTES = 200_000_000  # upper bound on any payload size (200 MB)
_POSIX_SHM = os.name == "posix"  # as in multiprocessing.shared_memory


def _check_lockable(name: str, value) -> None:
    if not hasattr(value, "get_lock"):
        raise TypeError(
            f"{name} must be a synchronized Value or Array (created with lock=True), got {type(value).__name__}"
        )


def _check_name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not name or "/" in name.lstrip("/"):
        raise ValueError(f"name must be a shared-memory segment name, got {name!r}")
    return name


# --- Value and Array --------------------------------------------------------------------


def add_to_value(counter, times: int, use_lock: bool = True, start=None, pause: float = 0.0) -> None:
    """Add 1 to ``counter.value``, ``times`` times; hold its lock per step if ``use_lock``.

    ``counter.value += 1`` reads, adds and writes: without the lock, two processes
    can read the same old value, and one of the two updates is lost. To make that
    race show on every run, ``start`` (a ``Barrier`` shared by the racers) lines them
    up, and ``pause`` seconds of sleep between the read and the write widen the window.
    """
    _check_lockable("counter", counter)
    _check_int("times", times, 0, MAX_COUNT)
    if not isinstance(use_lock, bool):
        raise TypeError(f"use_lock must be a bool, got {type(use_lock).__name__}")
    if start is not None and not hasattr(start, "wait"):
        raise TypeError(f"start must be a Barrier or None, got {type(start).__name__}")
    pause = _check_seconds("pause", pause, 1.0)
    if start is not None:
        start.wait(30)  # a racer that never arrives breaks the barrier: no hang
    lock = counter.get_lock() if use_lock else contextlib.nullcontext()
    for _ in range(times):
        with lock:
            current = counter.value  # the read ...
            if pause:
                time.sleep(pause)
            counter.value = current + 1  # ... and the write: two steps, not one


def add_to_each(array, times: int, amount: int = 1) -> None:
    """Add ``amount`` to every element of ``array``, ``times`` times, holding its lock per pass."""
    _check_lockable("array", array)
    _check_int("times", times, 0, MAX_COUNT)
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"amount must be an int, got {type(amount).__name__}")
    lock = array.get_lock()
    for _ in range(times):
        with lock:
            for i in range(len(array)):
                array[i] += amount


# --- Queues ---------------------------------------------------------------------------


def put_payload(out, nbytes: int, sent=None) -> None:
    """Put one :func:`make_payload` of ``nbytes`` on the queue ``out``, then set the ``sent`` Event.

    ``put`` returns at once: a feeder thread writes the bytes into the queue's pipe.
    The process then waits at exit until that thread has written everything, and
    a pipe holds only so much (64 KiB on Linux), so a big payload keeps it alive
    until another process reads it.
    """
    _check_int("nbytes", nbytes, 0, MAX_BYTES)
    out.put(make_payload(nbytes))
    if sent is not None:
        sent.set()


def square_tasks(tasks, results, max_tasks: int = 10_000, timeout: float = 30.0) -> None:
    """Consume numbers from a ``JoinableQueue`` until ``None``; put ``(n, n * n)`` on ``results``.

    Every item taken, the ``None`` included, is marked ``task_done()``: that is
    what lets the producer's ``tasks.join()`` return. Stops after ``max_tasks``
    items, or if ``tasks`` stays empty for ``timeout`` seconds.
    """
    if not hasattr(tasks, "task_done"):
        raise TypeError(f"tasks must be a JoinableQueue, got {type(tasks).__name__}")
    _check_int("max_tasks", max_tasks, 1, MAX_COUNT)
    timeout = _check_seconds("timeout", timeout, 600.0)
    for _ in range(max_tasks):
        try:
            n = tasks.get(timeout=timeout)
        except _queue.Empty:
            return
        try:
            if n is None:
                return
            results.put((n, n * n))
        finally:
            tasks.task_done()


# --- Pipes ----------------------------------------------------------------------------


def send_numbers(conn, count: int) -> None:
    """Send ``0 .. count-1`` then ``None`` down one end of a ``Pipe``, and close it."""
    _check_int("count", count, 0, MAX_COUNT)
    try:
        for n in range(count):
            conn.send(n)
        conn.send(None)
    finally:
        conn.close()


def echo_upper(conn, max_messages: int = 100, timeout: float = 30.0) -> None:
    """Answer each string received on a duplex ``Pipe`` end with its upper-case form.

    Stops on ``None``, after ``max_messages`` messages, when nothing arrives for
    ``timeout`` seconds (``conn.poll(timeout)``), or when the other end is closed:
    ``poll`` is then true too, and ``recv`` raises ``EOFError``.
    """
    _check_int("max_messages", max_messages, 1, MAX_COUNT)
    timeout = _check_seconds("timeout", timeout, 600.0)
    try:
        for _ in range(max_messages):
            if not conn.poll(timeout):
                return
            try:
                message = conn.recv()
            except EOFError:  # every copy of the other end is closed
                return
            if message is None:
                return
            conn.send(str(message).upper())
    finally:
        conn.close()


# --- Managers -------------------------------------------------------------------------


def record_visits(shared_dict, shared_list, namespace, lock, worker: str, times: int) -> None:
    """Update three managed objects ``times`` times, holding a managed ``lock`` per update.

    ``shared_dict[worker]`` counts this worker's visits, ``shared_list`` gets one
    entry per visit, and ``namespace.total`` counts everybody's visits.
    """
    if not isinstance(worker, str):
        raise TypeError(f"worker must be a str, got {type(worker).__name__}")
    _check_int("times", times, 0, MAX_COUNT)
    for _ in range(times):
        with lock:  # += on a proxy is a read then a write: two round trips to the server
            shared_dict[worker] = shared_dict.get(worker, 0) + 1
            shared_list.append(worker)
            namespace.total += 1


# --- Shared memory ----------------------------------------------------------------------


def sum_shared_bytes(name: str, start: int, stop: int, out) -> None:
    """Attach to the segment ``name``, put ``sum(buf[start:stop])`` on ``out``, then close.

    The child only closes its own mapping; the creator unlinks the segment.
    """
    _check_name(name)
    _check_int("start", start, 0, MAX_BYTES)
    _check_int("stop", stop, 0, MAX_BYTES)
    if stop < start:
        raise ValueError(f"stop ({stop}) must be >= start ({start})")
    shm = shared_memory.SharedMemory(name=name)
    try:
        if stop > shm.size:
            raise ValueError(f"stop ({stop}) is past the segment's end ({shm.size} bytes)")
        view = shm.buf[start:stop]
        try:
            total = sum(view)
        finally:
            view.release()  # a live view keeps close() from releasing the mapping
    finally:
        shm.close()
    out.put(total)


def double_shareable_list(name: str, out) -> None:
    """Attach to the ``ShareableList`` called ``name``, double each number in place, close.

    Puts the list's length on ``out`` when done, so the parent knows the child finished.
    """
    _check_name(name)
    numbers = shared_memory.ShareableList(name=name)
    try:
        length = len(numbers)
        for i in range(length):
            numbers[i] = numbers[i] * 2
    finally:
        numbers.shm.close()
    out.put(length)


def segment_exists(name: str) -> bool:
    """True if a shared-memory segment called ``name`` can still be opened.

    On POSIX it asks ``shm_open`` (read-only, without touching the resource tracker);
    on Linux that is the same as a file ``/dev/shm/<name>`` existing. Elsewhere (Windows)
    it attaches with ``SharedMemory(name=...)`` and closes again at once.
    """
    _check_name(name)
    if _POSIX_SHM:
        # _posixshmem is the private C module behind shared_memory. Attaching with
        # SharedMemory(name=...) instead would register the segment with this process's
        # resource tracker (before 3.13 there is no track=False), which then unlinks it at exit.
        import _posixshmem

        try:
            fd = _posixshmem.shm_open("/" + name.lstrip("/"), os.O_RDONLY, 0)
        except FileNotFoundError:
            return False
        os.close(fd)
        return True
    try:
        shared_memory.SharedMemory(name=name).close()
    except FileNotFoundError:
        return False
    return True


def format_seconds(seconds: float) -> str:
    """A duration the way the book prints it: ``1.23 s``, ``12.3 ms`` or ``45.6 µs``."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"


# --- The measurements ---------------------------------------------------------------------


def make_payload(nbytes: int) -> bytes:
    """``nbytes`` of repeating 0..255: the same data for every mechanism."""
    _check_int("nbytes", nbytes, 0, MAX_BYTES)
    block = bytes(range(256))
    return (block * (nbytes // 256 + 1))[:nbytes]


def _check_mechanism(mechanism) -> str:
    if not isinstance(mechanism, str):
        raise TypeError(f"mechanism must be a str, got {type(mechanism).__name__}")
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
    return mechanism


def _bulk_child(mechanism: str, endpoint, nbytes: int, ready, go, done, timeout: float) -> None:
    """Child side of :func:`bulk_transfer_seconds`: build the payload, wait for go, hand it over."""
    payload = make_payload(nbytes)
    shm = shared_memory.SharedMemory(name=endpoint) if mechanism == "shared_memory" else None
    try:
        ready.set()
        if not go.wait(timeout):
            return
        if mechanism == "queue":
            endpoint.put(payload)
        elif mechanism == "pipe":
            endpoint.send_bytes(payload)
            endpoint.close()
        elif mechanism == "manager":
            endpoint["data"] = payload
        elif mechanism == "shared_memory":
            shm.buf[:nbytes] = payload
        else:  # value_array: a lock-free Array of unsigned bytes
            ctypes.memmove(endpoint, payload, nbytes)
        done.set()
    finally:
        if shm is not None:
            shm.close()


def _updates_child(mechanism: str, endpoint, count: int, ready, go, done, timeout: float) -> None:
    """Child side of :func:`small_updates_seconds`: make ``count`` tiny updates after go."""
    shm = shared_memory.SharedMemory(name=endpoint) if mechanism == "shared_memory" else None
    try:
        ready.set()
        if not go.wait(timeout):
            return
        if mechanism == "queue":
            for _ in range(count):
                endpoint.put(1)
        elif mechanism == "pipe":
            for _ in range(count):
                endpoint.send(1)
            endpoint.close()
        elif mechanism == "manager":
            for _ in range(count):
                endpoint["n"] += 1  # a get and a set: two round trips to the manager
        elif mechanism == "shared_memory":
            buf = shm.buf
            try:
                for _ in range(count):  # one writer, so no lock is needed
                    struct.pack_into("q", buf, 0, struct.unpack_from("q", buf, 0)[0] + 1)
            finally:
                del buf
        else:  # value_array: a synchronized Value
            lock = endpoint.get_lock()
            for _ in range(count):
                with lock:
                    endpoint.value += 1
        done.set()
    finally:
        if shm is not None:
            shm.close()


def _wait_for(event, child, timeout: float, what: str) -> None:
    """Wait for ``event``, but give up at once if ``child`` dies, and after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not event.wait(0.05):
        if not child.is_alive():
            raise RuntimeError(f"{what}: the child exited with code {child.exitcode} first")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: nothing within {timeout} s")


def _run_measured(ctx, target, mechanism: str, endpoint, size: int, receive, timeout: float) -> float:
    """Start the child, wait until it is ready, then time go -> ``receive(done, child)``."""
    ready, go, done = ctx.Event(), ctx.Event(), ctx.Event()
    child = ctx.Process(
        target=target, args=(mechanism, endpoint, size, ready, go, done, timeout), name=f"sharing-{mechanism}"
    )
    child.start()
    try:
        _wait_for(ready, child, timeout, f"{mechanism} (start)")
        with Timer() as t:
            go.set()
            receive(done, child)
        return t.elapsed
    finally:
        child.join(timeout)
        if child.is_alive():
            child.terminate()
            child.join(5)
            raise TimeoutError(f"{mechanism}: the child was still running after {timeout} s")


def _resolve(mechanism, size_name: str, size, ctx, timeout):
    _check_mechanism(mechanism)
    _check_int(size_name, size, 1, MAX_BYTES if size_name == "nbytes" else MAX_COUNT)
    timeout = _check_seconds("timeout", timeout, 600.0)
    if ctx is None:
        ctx = mp.get_context()
    elif not hasattr(ctx, "Process"):
        raise TypeError(f"ctx must be a multiprocessing context, got {type(ctx).__name__}")
    return ctx, timeout


def bulk_transfer_seconds(mechanism: str, nbytes: int, *, ctx=None, timeout: float = 60.0) -> float:
    """Seconds for one child to hand ``nbytes`` of data to the parent through ``mechanism``.

    Timed from the parent's "go" until the parent holds the data: a ``bytes``
    object for queue, pipe and manager, or the bytes readable in place for
    shared_memory and value_array. The received data is checked (length and
    CRC-32); a mismatch raises ``RuntimeError``.
    """
    ctx, timeout = _resolve(mechanism, "nbytes", nbytes, ctx, timeout)
    expected_crc = zlib.crc32(make_payload(nbytes))
    received: dict = {}

    if mechanism == "queue":
        q = ctx.Queue()
        try:

            def receive(done, child):
                received["data"] = q.get(timeout=timeout)

            seconds = _run_measured(ctx, _bulk_child, mechanism, q, nbytes, receive, timeout)
        finally:
            q.close()
            q.join_thread()
    elif mechanism == "pipe":
        parent_end, child_end = ctx.Pipe(duplex=False)
        try:

            def receive(done, child):
                if not parent_end.poll(timeout):
                    raise TimeoutError(f"pipe: no data within {timeout} s")
                received["data"] = parent_end.recv_bytes()

            seconds = _run_measured(ctx, _bulk_child, mechanism, child_end, nbytes, receive, timeout)
        finally:
            parent_end.close()
            child_end.close()
    elif mechanism == "manager":
        with ctx.Manager() as manager:
            shared = manager.dict()

            def receive(done, child):
                _wait_for(done, child, timeout, mechanism)
                received["data"] = shared["data"]

            seconds = _run_measured(ctx, _bulk_child, mechanism, shared, nbytes, receive, timeout)
    elif mechanism == "shared_memory":
        shm = shared_memory.SharedMemory(create=True, size=nbytes)
        try:

            def receive(done, child):
                _wait_for(done, child, timeout, mechanism)

            seconds = _run_measured(ctx, _bulk_child, mechanism, shm.name, nbytes, receive, timeout)
            view = shm.buf[:nbytes]
            try:
                received["data"] = bytes(view)
            finally:
                view.release()
        finally:
            shm.close()
            shm.unlink()
    else:
        array = ctx.Array("B", nbytes, lock=False)

        def receive(done, child):
            _wait_for(done, child, timeout, mechanism)

        seconds = _run_measured(ctx, _bulk_child, mechanism, array, nbytes, receive, timeout)
        received["data"] = ctypes.string_at(array, nbytes)

    data = received.get("data", b"")
    if len(data) != nbytes or zlib.crc32(data) != expected_crc:
        raise RuntimeError(f"{mechanism}: received {len(data)} bytes that do not match the payload")
    return seconds


def small_updates_seconds(mechanism: str, count: int, *, ctx=None, timeout: float = 60.0) -> float:
    """Seconds for one child to make ``count`` increments that the parent then sees.

    queue and pipe carry one message per increment (the parent adds them up);
    manager, shared_memory and value_array update one shared number in place.
    Raises ``RuntimeError`` if the parent's total is not ``count``.
    """
    ctx, timeout = _resolve(mechanism, "count", count, ctx, timeout)
    result: dict = {}

    if mechanism == "queue":
        q = ctx.Queue()
        try:

            def receive(done, child):
                result["total"] = sum(q.get(timeout=timeout) for _ in range(count))

            seconds = _run_measured(ctx, _updates_child, mechanism, q, count, receive, timeout)
        finally:
            q.close()
            q.join_thread()
    elif mechanism == "pipe":
        parent_end, child_end = ctx.Pipe(duplex=False)
        try:

            def receive(done, child):
                total = 0
                for _ in range(count):
                    if not parent_end.poll(timeout):
                        raise TimeoutError(f"pipe: nothing within {timeout} s")
                    total += parent_end.recv()
                result["total"] = total

            seconds = _run_measured(ctx, _updates_child, mechanism, child_end, count, receive, timeout)
        finally:
            parent_end.close()
            child_end.close()
    elif mechanism == "manager":
        with ctx.Manager() as manager:
            shared = manager.dict(n=0)

            def receive(done, child):
                _wait_for(done, child, timeout, mechanism)
                result["total"] = shared["n"]

            seconds = _run_measured(ctx, _updates_child, mechanism, shared, count, receive, timeout)
    elif mechanism == "shared_memory":
        shm = shared_memory.SharedMemory(create=True, size=8)
        try:
            struct.pack_into("q", shm.buf, 0, 0)

            def receive(done, child):
                _wait_for(done, child, timeout, mechanism)
                result["total"] = struct.unpack_from("q", shm.buf, 0)[0]

            seconds = _run_measured(ctx, _updates_child, mechanism, shm.name, count, receive, timeout)
        finally:
            shm.close()
            shm.unlink()
    else:
        counter = ctx.Value("q", 0)

        def receive(done, child):
            _wait_for(done, child, timeout, mechanism)
            result["total"] = counter.value

        seconds = _run_measured(ctx, _updates_child, mechanism, counter, count, receive, timeout)

    if result.get("total") != count:
        raise RuntimeError(f"{mechanism}: the parent saw {result.get('total')} updates, not {count}")
    return seconds
