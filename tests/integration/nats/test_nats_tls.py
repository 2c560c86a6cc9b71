"""``tls://`` with a CA and a client certificate from the URL query, on a server that
requires both (throw-away certificates from :mod:`tls_certificates`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import spate
from spate.errors import ConnectError
from spate.testing.nats_server import NatsServer
from tls_certificates import make_certificates

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


async def test_tls_with_client_certificate_from_the_url(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    tls = (
        f'tls {{ cert_file: "{certs.server_cert}", key_file: "{certs.server_key}", '
        f'ca_file: "{certs.ca}", verify: true }}'
    )
    with NatsServer(extra_config=tls) as server:
        base = f"tls://127.0.0.1:{server.port}?tls_ca={certs.ca}"
        url = f"{base}&tls_cert={certs.client_cert}&tls_key={certs.client_key}"
        async with spate.connect(url) as broker:
            await broker.create_topic("secure", 1)
            assert [t.name for t in await broker.list_topics()] == ["secure"]
        with pytest.raises(ConnectError):
            async with spate.connect(base, connect_timeout_s=2):
                pass


async def test_an_untrusted_server_certificate_fails_at_once_naming_the_reason(
    tmp_path: Path,
) -> None:
    (tmp_path / "server").mkdir()
    (tmp_path / "other").mkdir()
    certs = make_certificates(tmp_path / "server")
    other = make_certificates(tmp_path / "other")  # a CA that did not sign the server
    tls = f'tls {{ cert_file: "{certs.server_cert}", key_file: "{certs.server_key}" }}'
    with NatsServer(extra_config=tls) as server:
        url = f"tls://127.0.0.1:{server.port}?tls_ca={other.ca}"
        with pytest.raises(ConnectError) as info:
            async with spate.connect(url, connect_timeout_s=30):
                pass
    assert "certificate verify failed" in str(info.value)
    assert f"127.0.0.1:{server.port}" in str(info.value)
