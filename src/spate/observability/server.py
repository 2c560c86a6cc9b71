"""The metrics and health HTTP server: ``/metrics``, ``/healthz``, ``/readyz``, ``/status``.

A few lines of HTTP/1.1 on asyncio's own server, one request per connection: the
four answers are small and read from memory, so no web framework is worth its
dependency. It runs on the run's event loop as a side service; ``/healthz`` answering
at all is the proof that the loop is alive, so it has nothing else to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from spate.config import Settings
from spate.errors import ConfigError
from spate.observability.lag import LagPoller
from spate.observability.metrics import CONTENT_TYPE, render
from spate.observability.status import StatusView, not_ready
from spate.observability.watchdog import StallWatchdog

if TYPE_CHECKING:
    from spate.runtime.lifecycle import Service, ServiceContext

log = logging.getLogger("spate.observability")

REQUEST_TIMEOUT_S = 5.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


def observability_services(settings: Settings) -> Sequence[Service]:
    """What ``settings`` ask for: the metrics server, the stall watchdog, and the lag
    poller either of them reads (one poll serves both)."""
    services: list[Service] = []
    if settings.metrics_port is not None or settings.stall_timeout_s > 0:
        services.append(LagPoller(settings.lag_interval_s))
    if settings.stall_timeout_s > 0:
        services.append(StallWatchdog(settings.stall_timeout_s, settings.lag_interval_s))
    if settings.metrics_port is not None:
        services.append(MetricsServer(settings.metrics_host, settings.metrics_port))
    return services


class MetricsServer:
    """Serves one run's metrics and health on ``host:port`` (port 0: any free one)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._status: StatusView | None = None

    async def start(self, context: ServiceContext) -> None:
        self._status = StatusView(context)
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            raise ConfigError(
                f"metrics_port={self.port} on {self.host}: cannot listen ({exc.strerror}); "
                "choose a free port (--metrics-port) or another address (--metrics-host)"
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "event=metrics_listen app=%s url=http://%s:%d/metrics",
            context.app_name,
            self.host,
            self.port,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            method, _, target = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = target.split(" ", 1)[0].split("?", 1)[0]
            code, content_type, body = self._answer(method, path)
            writer.write(
                f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
                + (b"" if method == "HEAD" else body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that sent no whole request gets no answer
        except ConnectionError:
            pass  # the client left before the answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        assert self._status is not None, "answers only once started"
        context = self._status.context
        if method not in ("GET", "HEAD"):
            return 405, _TEXT, b"use GET\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE, render(context.app_name, context.stats).encode()
        if path == "/healthz":
            return 200, _TEXT, b"ok\n"
        if path == "/readyz":
            reasons = not_ready(context)
            body = "".join(f"{reason}\n" for reason in reasons) or "ready\n"
            return (503 if reasons else 200), _TEXT, body.encode()
        if path == "/status":
            return 200, _JSON, orjson.dumps(self._status.document(), option=orjson.OPT_INDENT_2)
        return 404, _TEXT, b"not found: try /metrics, /healthz, /readyz or /status\n"
