"""docs/joins.md's example runs and prints what the page says it prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "joins.md"


def test_the_joins_page_example_prints_what_the_page_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    page = DOC.read_text()
    example = re.search(r"```python\n(.*?)```", page, re.S)
    shown = re.search(r"prints\n\n```\n(.*?)```", page, re.S)
    assert example is not None
    assert shown is not None
    exec(compile(example.group(1), str(DOC), "exec"), {"__name__": "joins_example"})
    assert capsys.readouterr().out == shown.group(1)
