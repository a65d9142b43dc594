"""Chapter 05: at exit the interpreter waits for a non-daemon thread, and abandons a daemon thread.

The main thread starts a daemon thread, which would work for a minute inside a
``try``/``finally``, and a non-daemon thread, which finishes 0.3 s after the
main thread's last line. The interpreter waits for the non-daemon thread
(``threading._shutdown``), then exits without waiting for the daemon thread:
its ``finally`` block never runs. Every line says which thread printed it.
"""

import threading
import time


def daemon_work(started: threading.Event) -> None:
    try:
        print("daemon: started a minute of work", flush=True)
        started.set()
        time.sleep(60)
        print("daemon: finished its work", flush=True)
    finally:
        print("daemon: finally ran", flush=True)  # never printed: the thread is abandoned at exit


def worker_work(main_done: threading.Event) -> None:
    try:
        main_done.wait(timeout=10)
        time.sleep(0.3)  # still working after the main thread has ended
        print("worker: finished, 0.3 s after the main thread's last line", flush=True)
    finally:
        print("worker: finally ran", flush=True)


if __name__ == "__main__":
    started, main_done = threading.Event(), threading.Event()
    threading.Thread(target=daemon_work, args=(started,), name="daemon", daemon=True).start()
    started.wait(timeout=10)
    threading.Thread(target=worker_work, args=(main_done,), name="worker").start()
    print("main: last line of the script", flush=True)
    main_done.set()
