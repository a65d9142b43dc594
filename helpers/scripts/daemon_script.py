"""Chapter 01: a daemon child does not outlive its parent, if the parent exits normally.

Starts one daemon child that would wait a minute, prints its pid, and exits at
once. multiprocessing's exit handler terminates daemon children as the parent's
interpreter exits normally; a non-daemon child would be waited for instead.
With ``--os-exit`` the parent ends with ``os._exit(0)``, which runs no exit
handlers, so the daemon child is left running (the chapter then kills it).
"""

import multiprocessing as mp
import os
import sys

from helpers.processes.basics import wait_up_to

if __name__ == "__main__":
    if sys.argv[1:] not in ([], ["--os-exit"]):
        raise SystemExit(f"usage: {sys.argv[0]} [--os-exit]")
    child = mp.Process(target=wait_up_to, args=(60,), daemon=True)
    child.start()
    print(f"daemon child pid {child.pid} started; parent exits now", flush=True)
    if sys.argv[1:] == ["--os-exit"]:
        os._exit(0)  # no exit handlers: nobody terminates the daemon child
