"""Real Redis and memcached servers for the book, started privately or found by URL.

Used by the caching chapters (12-14), the job-queue chapter (16) and the unit tests.

Each ``start_*`` function returns a :class:`Service`. By default it starts a
private server on a free loopback port, waits until the server answers its own
protocol, and stops it again on :meth:`Service.close`, when the ``with`` block
ends, at interpreter exit, or when the Python process that started it dies (on
Linux). When an environment variable names an existing server instead
(``REDIS_URL`` or ``MEMCACHED_SERVERS``), the returned service only points at
it: nothing is started, and ``close`` leaves that server alone.

Redis keeps nothing on disk (no RDB snapshots, no AOF). memcached runs with
UDP off; as root, which memcached refuses, it is started as ``nobody``.

On Linux the servers are started through util-linux's ``setpriv --pdeathsig TERM``,
so the kernel stops them if the thread that started them dies, even by SIGKILL.
(A ``preexec_fn`` calling ``prctl`` would do the same, but running Python code
between fork and exec is unsafe in a process with threads, such as a Jupyter
kernel.) The parent-death signal follows the *thread* that forked: start servers
from a thread that lives as long as they should, such as the main thread. It is
also cleared when a process changes its user id, which is why memcached is made
``nobody`` by ``setpriv`` itself rather than by memcached's own ``-u`` option.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

__all__ = [
    "ServiceError",
    "Service",
    "start_redis",
    "start_memcached",
    "start_memcached_cluster",
    "free_port",
    "port_is_free",
    "running_services",
    "stop_all",
    "pdeathsig_prefix",
]

LOOPBACK = "127.0.0.1"

#: Binary name -> the Debian/Ubuntu package (listed in apt.txt) that provides it.
PACKAGES = {"redis-server": "redis-server", "memcached": "memcached"}


class ServiceError(RuntimeError):
    """A server could not be found, started or reached."""


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
    if not 0 < timeout <= 600:
        raise ValueError(f"timeout must be in (0, 600] seconds, got {timeout!r}")
    return float(timeout)


def _check_port(port: int | None) -> int | None:
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int or None, got {type(port).__name__}")
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, got {port}")
    return port


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when a new server could bind ``host:port`` now."""
    _check_port(port)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_binary(name: str) -> str:
    """Return the path of a server binary, or raise an error naming its package."""
    path = shutil.which(name)
    if path is None:
        package = PACKAGES.get(name, name)
        raise ServiceError(
            f"{name} was not found on PATH. Install it with "
            f"'sudo apt-get install -y {package}' (it is listed in apt.txt; "
            f"on macOS: 'brew install {package.replace('-server', '')}'), "
            f"or set {'REDIS_URL' if 'redis' in name else 'MEMCACHED_SERVERS'} "
            f"to use a server that is already running."
        )
    return path


def _ping(kind: str, host: str, port: int, timeout: float = 0.5) -> bool:
    """Ask the server a protocol-level question; True when it answers correctly."""
    request, expected = {
        # A server started with a password answers its protocol too: with -NOAUTH.
        "redis": (b"PING\r\n", (b"+PONG", b"-NOAUTH")),
        "memcached": (b"version\r\n", (b"VERSION",)),
    }[kind]
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request)
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith(expected)


def pdeathsig_prefix(user: str | None = None) -> list[str]:
    """A command prefix that makes the kernel SIGTERM the command when its parent dies.

    Linux with util-linux's ``setpriv`` only; elsewhere, or without ``setpriv``,
    it is empty and the caller's ``atexit`` and ``close`` must stop the server.
    With ``user``, ``setpriv`` also drops to that user (and its group) first, so
    the death signal survives the change of user id.
    """
    if not sys.platform.startswith("linux"):
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return []
    prefix = [setpriv]
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        prefix += [f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
    return [*prefix, "--pdeathsig", "TERM", "--"]


def _ping_redis_url(url: str, timeout: float = 0.5) -> bool:
    """PING through redis-py, which handles a URL's password, TLS (rediss://) and db."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


_live: weakref.WeakSet[Service] = weakref.WeakSet()


@dataclass(eq=False)
class Service:
    """A running (or external) server: where it is, and how to stop it."""

    kind: str
    host: str
    port: int
    external: bool = False
    process: subprocess.Popen | None = field(default=None, repr=False)
    workdir: Path | None = field(default=None, repr=False)
    command: list[str] = field(default_factory=list, repr=False)
    #: For an external Redis: the ``REDIS_URL`` it came from, with its password, TLS and db.
    given_url: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``redis://host:port/0`` for Redis (or ``REDIS_URL`` as given), ``host:port`` for memcached."""
        if self.given_url is not None:
            return self.given_url
        if self.kind == "redis":
            return f"redis://{self.host}:{self.port}/0"
        return self.address

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def is_running(self) -> bool:
        if self.external:
            return self.ping()
        return self.process is not None and self.process.poll() is None

    def ping(self) -> bool:
        if self.given_url is not None:
            return _ping_redis_url(self.given_url)
        return _ping(self.kind, self.host, self.port)

    def log(self) -> str:
        """The server's own log output (empty for an external server)."""
        if self.workdir is None:
            return ""
        path = self.workdir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self, timeout: float = 5.0) -> None:
        """Stop a private server (idempotent); an external one is left running."""
        _live.discard(self)
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    stop = close

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten server must not outlive its owner
        try:
            self.close(timeout=2.0)
        except Exception:
            pass


def running_services() -> list[Service]:
    """Private servers started by this process and not yet closed."""
    return [s for s in list(_live) if s.process is not None]


def stop_all() -> None:
    """Stop every private server this process started."""
    for service in running_services():
        service.close()


atexit.register(stop_all)


def _launch(kind: str, build_command, port: int | None, timeout: float) -> Service:
    """Start a server on ``port`` (or a free one), and wait until it answers."""
    port = _check_port(port)
    timeout = _check_timeout(timeout)
    chosen_by_us = port is None
    attempts = 3 if chosen_by_us else 1
    last_error = ""
    for _ in range(attempts):
        this_port = free_port() if chosen_by_us else port
        if not chosen_by_us and not port_is_free(this_port):
            raise ServiceError(
                f"cannot start {kind}: port {this_port} on {LOOPBACK} is already in use; "
                f"pass port=None to pick a free port"
            )
        workdir = Path(tempfile.mkdtemp(prefix=f"book-{kind}-"))
        command = build_command(this_port, workdir)
        log = open(workdir / "server.log", "wb")
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        finally:
            log.close()
        service = Service(kind, LOOPBACK, this_port, process=proc, workdir=workdir, command=command)
        _live.add(service)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if _ping(kind, LOOPBACK, this_port):
                return service
            time.sleep(0.02)
        exited = proc.poll()
        last_error = service.log().strip()[-800:]
        service.close()
        if exited is None:
            raise ServiceError(
                f"{kind} did not answer on port {this_port} within {timeout} s; its log ends with:\n{last_error}"
            )
        in_use = "in use" in last_error.lower()
        if not (chosen_by_us and in_use):
            raise ServiceError(f"{kind} exited with code {exited} at start; its log ends with:\n{last_error}")
        # Another program took the free port between our check and the server's bind: retry.
    raise ServiceError(f"{kind} could not find a free port after {attempts} tries:\n{last_error}")


def _check_extra_args(extra_args) -> list[str]:
    if isinstance(extra_args, (str, bytes)) or not all(isinstance(a, str) for a in extra_args):
        raise TypeError("extra_args must be a list of strings, e.g. ['--maxmemory', '1mb']")
    return list(extra_args)


def start_redis(
    port: int | None = None,
    *,
    maxmemory: str | None = None,
    maxmemory_policy: str | None = None,
    extra_args: list[str] | tuple[str, ...] = (),
    timeout: float = 10.0,
    use_env: bool = True,
) -> Service:
    """Start a private ``redis-server`` on loopback, or use ``REDIS_URL`` if set.

    ``maxmemory`` (for example ``"2mb"``) and ``maxmemory_policy`` (for example
    ``"allkeys-lru"``) set eviction; ``extra_args`` are passed to redis-server.
    """
    extra = _check_extra_args(extra_args)
    for name, value in (("maxmemory", maxmemory), ("maxmemory_policy", maxmemory_policy)):
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise TypeError(f"{name} must be a non-empty string such as '2mb', got {value!r}")
    env_url = os.environ.get("REDIS_URL", "").strip() if use_env else ""
    if env_url:
        parsed = urlparse(env_url)
        if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
            raise ValueError(f"REDIS_URL must look like redis://host:port/0, got {env_url!r}")
        service = Service("redis", parsed.hostname, parsed.port or 6379, external=True, given_url=env_url)
        if not service.ping():
            shown = env_url.replace(parsed.password, "***") if parsed.password else env_url
            raise ServiceError(f"REDIS_URL={shown} does not answer PING (or refuses its password)")
        return service
    binary = find_binary("redis-server")

    def command(port: int, workdir: Path) -> list[str]:
        cmd = [
            *pdeathsig_prefix(),
            binary,
            "--bind",
            LOOPBACK,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ]
        if maxmemory:
            cmd += ["--maxmemory", maxmemory]
        if maxmemory_policy:
            cmd += ["--maxmemory-policy", maxmemory_policy]
        return cmd + extra

    return _launch("redis", command, port, timeout)


def _parse_memcached_servers(value: str) -> list[tuple[str, int]]:
    servers = []
    for item in value.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"MEMCACHED_SERVERS must look like host:port[,host:port], got {value!r}")
        servers.append((host, int(port)))
    return servers


def start_memcached(
    port: int | None = None,
    *,
    memory_mb: int = 64,
    extra_args: list[str] | tuple[str, ...] = (),
    timeout: float = 10.0,
    use_env: bool = True,
) -> Service:
    """Start a private ``memcached`` on loopback, or use the first of ``MEMCACHED_SERVERS``."""
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int):
        raise TypeError(f"memory_mb must be an int, got {type(memory_mb).__name__}")
    if not 1 <= memory_mb <= 65536:
        raise ValueError(f"memory_mb must be in 1..65536, got {memory_mb}")
    extra = _check_extra_args(extra_args)
    env = os.environ.get("MEMCACHED_SERVERS", "").strip() if use_env else ""
    if env:
        host, env_port = _parse_memcached_servers(env)[0]
        service = Service("memcached", host, env_port, external=True)
        if not service.ping():
            raise ServiceError(f"MEMCACHED_SERVERS server {host}:{env_port} does not answer")
        return service
    binary = find_binary("memcached")

    def command(port: int, workdir: Path) -> list[str]:
        cmd = [binary, "-l", LOOPBACK, "-p", str(port), "-U", "0", "-m", str(memory_mb)]
        as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        prefix = pdeathsig_prefix(user="nobody" if as_root else None)
        if as_root and not prefix:
            cmd += ["-u", "nobody"]  # memcached refuses to run as root without -u
        return prefix + cmd + extra

    return _launch("memcached", command, port, timeout)


def start_memcached_cluster(
    count: int = 3, *, memory_mb: int = 64, timeout: float = 10.0, use_env: bool = True
) -> list[Service]:
    """Start ``count`` private memcached servers, or use every one in ``MEMCACHED_SERVERS``."""
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"count must be an int, got {type(count).__name__}")
    if not 1 <= count <= 16:
        raise ValueError(f"count must be in 1..16, got {count}")
    env = os.environ.get("MEMCACHED_SERVERS", "").strip() if use_env else ""
    if env:
        services = [Service("memcached", h, p, external=True) for h, p in _parse_memcached_servers(env)]
        dead = [s.address for s in services if not s.ping()]
        if dead:
            raise ServiceError(f"MEMCACHED_SERVERS servers do not answer: {', '.join(dead)}")
        return services
    services: list[Service] = []
    try:
        for _ in range(count):
            services.append(start_memcached(memory_mb=memory_mb, timeout=timeout, use_env=False))
    except BaseException:
        for service in services:
            service.close()
        raise
    return services
