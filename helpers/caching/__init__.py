"""Part 4, caching (缓存): in-process caches, memcached and Redis, chapters 12-14."""
