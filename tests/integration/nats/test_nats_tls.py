"""``tls://`` with a CA and a client certificate from the URL query, on a server that
requires both (certificates made with the openssl command for this test)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import spate
from spate.errors import ConnectError
from spate.testing.nats_server import NatsServer

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


def make_certificates(folder: Path) -> None:
    openssl(
        folder,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=spate-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl(
            folder,
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        openssl(
            folder,
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            f"{name}.pem",
        )


async def test_tls_with_client_certificate_from_the_url(tmp_path: Path) -> None:
    make_certificates(tmp_path)
    tls = (
        f'tls {{ cert_file: "{tmp_path / "server.pem"}", key_file: "{tmp_path / "server.key"}", '
        f'ca_file: "{tmp_path / "ca.pem"}", verify: true }}'
    )
    with NatsServer(extra_config=tls) as server:
        base = f"tls://127.0.0.1:{server.port}?tls_ca={tmp_path / 'ca.pem'}"
        url = f"{base}&tls_cert={tmp_path / 'client.pem'}&tls_key={tmp_path / 'client.key'}"
        async with spate.connect(url) as broker:
            await broker.create_topic("secure", 1)
            assert [t.name for t in await broker.list_topics()] == ["secure"]
        with pytest.raises(ConnectError):
            async with spate.connect(base, connect_timeout_s=2):
                pass
