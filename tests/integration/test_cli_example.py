"""The example service the README shows really runs: in-process with TestApp, and as
its README tells a user to run it (``spate run`` + ``spate produce`` + ``spate consume``)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import ModuleType

from cli_helpers import SPATE
from spate.testing import TestApp

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "stream-python-local-logs"


def _load_service() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_log_router", EXAMPLE / "service.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_routes_errors_and_warnings() -> None:
    service = _load_service()
    with TestApp(service.app) as t:
        for line in (EXAMPLE / "sample.log").read_text().splitlines():
            t.send(service.raw, line)
        t.run_until_idle()
        errors = t.outputs(service.errors)
        warnings = t.outputs(service.warnings)
    assert sorted(e["service"] for e in errors) == ["checkout", "payments"]
    assert {e["level"] for e in errors} == {"ERROR"}
    assert len(warnings) == 2


def test_example_runs_as_its_readme_says(tmp_path: Path) -> None:
    env = {**os.environ, "SPATE_BROKER": f"local://{tmp_path / 'broker'}"}

    def spate(*args: str) -> str:
        done = subprocess.run(
            [*SPATE, *args], cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    service = subprocess.Popen(
        [*SPATE, "run", "service:app"],
        cwd=EXAMPLE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        spate("topics", "create", "app-logs", "--partitions", "2", "--exist-ok")
        spate("produce", "app-logs", "--file", "sample.log")
        deadline = time.monotonic() + 20
        errors: list[dict[str, object]] = []
        while len(errors) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            if "app-errors" in spate("topics", "list"):
                out = spate("consume", "app-errors", "--from-beginning")
                errors = [json.loads(line)["value"] for line in out.splitlines()]
        assert sorted(str(e["service"]) for e in errors) == ["checkout", "payments"]
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=20)
    assert service.returncode == 0, stderr
