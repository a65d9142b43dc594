"""Part 1, processes (进程): what chapters 01-04 hand to child processes."""
