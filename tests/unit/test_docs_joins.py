"""docs/joins.md's examples run and print what the page says they print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "joins.md"


EXAMPLE = re.compile(r"```python\n(.*?)```\n\nprints\n\n```\n(.*?)```", re.S)


def test_the_joins_page_examples_print_what_the_page_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    examples = EXAMPLE.findall(DOC.read_text())
    assert len(examples) == 2
    for index, (code, shown) in enumerate(examples):
        exec(compile(code, str(DOC), "exec"), {"__name__": f"joins_example_{index}"})
        assert capsys.readouterr().out == shown
