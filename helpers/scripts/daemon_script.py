"""Chapter 01: a daemon child does not outlive its parent.

Starts one daemon child that would wait a minute, prints its pid, and exits at
once. multiprocessing's exit handler terminates daemon children as the parent
ends; a non-daemon child would be waited for instead.
"""

import multiprocessing as mp

from helpers.processes.basics import wait_up_to

if __name__ == "__main__":
    child = mp.Process(target=wait_up_to, args=(60,), daemon=True)
    child.start()
    print(f"daemon child pid {child.pid} started; parent exits now")
