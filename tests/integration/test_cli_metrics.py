"""``spate run --metrics-port``: the real command serves metrics, worker i on port + i."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
from pathlib import Path

from cli_helpers import SHOP, SPATE
from metrics_checks import get
from spate.testing.nats_server import free_port


def wait_for_metrics(port: int, deadline: float) -> str:
    while True:
        try:
            status, body = get(port, "/metrics")
        except urllib.error.URLError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.1)
            continue
        assert status == 200
        return body


def test_each_worker_serves_metrics_on_its_own_port(tmp_path: Path) -> None:
    (tmp_path / "shop.py").write_text(SHOP)
    port = free_port()
    command = [*SPATE, "run", "shop:app", "--workers", "2", "--metrics-port", str(port)]
    command += ["--broker", f"local://{tmp_path / 'broker'}"]
    run = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        for worker_port in (port, port + 1):
            body = wait_for_metrics(worker_port, deadline)
            assert 'spate_records_consumed_total{app="shop",processor="bill"} 0' in body
            assert get(worker_port, "/healthz") == (200, "ok\n")
    finally:
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=30)
    assert run.returncode == 0, stderr
    assert f"event=metrics_listen app=shop url=http://127.0.0.1:{port + 1}/metrics" in stderr
