"""Running the real ``spate`` console script in a subprocess, for the CLI tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SPATE = [str(Path(sys.executable).with_name("spate"))]
"""The console script pip installed next to this interpreter: the real entry point."""

SHOP = """
from spate import App

app = App("shop")
orders = app.topic("orders", partitions=2)


@app.handler(orders, group="billing", output=app.topic("invoices"))
def bill(order):
    return order
"""
"""``shop.py`` of the tests that run ``spate run shop:app``: one processor copying a
two-partition topic."""


def spate(
    *args: str, broker: str | None, stdin: str | None = None, timeout_s: float = 30
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SPATE_BROKER"}
    if broker is not None:
        env["SPATE_BROKER"] = broker
    env["COLUMNS"] = "200"
    return subprocess.run(
        [*SPATE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    """A user mistake: the exit code, one line on stderr that says what to do, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]
