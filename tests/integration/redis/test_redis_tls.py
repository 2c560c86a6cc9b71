"""``rediss://`` against a redis-server listening with TLS (a throw-away certificate from
:mod:`tls_certificates`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import spate
from spate.errors import ConnectError
from spate.testing.redis_server import RedisServer, find_redis_servers, free_port
from tls_certificates import make_certificates


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """(TLS port, CA certificate) of a server with a throw-away certificate for
    127.0.0.1; skipped where no TLS-capable redis-server is installed."""
    sevens = {v: b for v, b in find_redis_servers().items() if int(v.split(".")[0]) >= 7}
    if not sevens:
        pytest.skip("no redis-server 7.x (the bundled 6.2 is built without TLS)")
    binary = sevens[max(sevens, key=lambda v: tuple(map(int, v.split("."))))]
    folder = tmp_path_factory.mktemp("redis-tls")
    certs = make_certificates(folder)
    port = free_port()
    args = (
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(certs.server_cert),
        "--tls-key-file",
        str(certs.server_key),
        "--tls-auth-clients",
        "no",
    )
    try:
        server = RedisServer.start(folder / "data", binary=binary, extra_args=args)
    except RuntimeError as exc:
        pytest.skip(f"this redis-server has no TLS: {exc}")
    with server:
        yield port, certs.ca


async def test_rediss_publishes_and_reads_over_tls(tls_server: tuple[int, Path]) -> None:
    port, ca = tls_server
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    async with spate.connect(url, retention_interval_s=0) as broker:
        await broker.create_topic("secure", exist_ok=True)
        async with broker.producer() as producer:
            producer.send("secure", b"over tls", key=b"k")
            await producer.flush()
        async with broker.consumer(["secure"], "g") as consumer:
            records = []
            for _ in range(50):
                records += await consumer.fetch(10, 0.1)
                if records:
                    break
        assert [r.value for r in records] == [b"over tls"]


async def test_an_untrusted_certificate_is_a_connect_error(tls_server: tuple[int, Path]) -> None:
    port, _ca = tls_server
    broker = spate.connect(f"rediss://127.0.0.1:{port}/0", reconnect_timeout_s=0)
    with pytest.raises(ConnectError):
        await broker.start()
