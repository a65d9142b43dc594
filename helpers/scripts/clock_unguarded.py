"""Chapter 01: a clock started WITHOUT the ``__main__`` guard (a deliberate mistake).

Under spawn, the child imports this file to rebuild its main module, runs the
top-level code again, and so tries to start a process of its own while it is
still starting up. multiprocessing refuses with a RuntimeError, the child
exits with code 1, and the parent gives up when no tick arrives in time.
"""

import multiprocessing as mp

from helpers.processes.basics import clock, collect

ctx = mp.get_context("spawn")
ticks = ctx.Queue()
child = ctx.Process(target=clock, args=(ticks, 0.2, 3))
child.start()
try:
    print(f"{len(collect(ticks, timeout=3))} ticks")
finally:
    child.join(timeout=10)
