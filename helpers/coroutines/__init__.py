"""Part 3, coroutines (协程): greenlet, gevent and asyncio, chapters 09-11."""
