"""Chapter 07: the interpreter waits at exit for the tasks of a ThreadPoolExecutor.

Submits one task that sleeps 0.5 s, calls ``shutdown(wait=False)``, and lets the
main thread reach the end of the script at once. The interpreter still waits for
the task: the pool's worker threads are not daemon threads (since Python 3.9), and
``concurrent.futures.thread`` registers a hook (``threading._register_atexit``)
that joins them before the interpreter shuts down. The task's line on stdout,
printed after the main thread's, is the proof that it ran to its end.
"""

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

TASK_SECONDS = 0.5


def slow_task(seconds: float) -> None:
    """Sleep ``seconds``, then say so on stdout (this script's output is what chapter 07 checks)."""
    time.sleep(seconds)
    print(f"task: slept {seconds} s, after the main thread had finished", flush=True)


if __name__ == "__main__":
    if sys.argv[1:]:
        raise SystemExit(f"usage: {sys.argv[0]}")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="exit-demo")
    pool.submit(slow_task, TASK_SECONDS)
    workers = [t for t in threading.enumerate() if t.name.startswith("exit-demo")]
    print(f"main: {len(workers)} worker thread; daemon: {[t.daemon for t in workers]}", flush=True)
    pool.shutdown(wait=False)  # returns at once; the task is still sleeping
    print("main: shutdown(wait=False) returned; the script ends here", flush=True)
