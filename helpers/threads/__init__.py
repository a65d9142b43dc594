"""Part 2, threads (线程): what chapters 05-08 run on threads and in child processes."""
