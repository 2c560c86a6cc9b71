"""The README shows the example service as it is in examples/, and its Quickstart has
the exact commands for a fresh machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_readme_service_is_the_example_that_the_tests_run() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A service", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    service = (ROOT / "examples" / "stream-python-local-logs" / "service.py").read_text()
    assert block.group(1).strip() in service


def test_readme_quickstart_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "python -m pip install -e . && spate demo" in readme
    assert 'python -m pip install -e ".[all,test]" && python -m pytest' in readme


def run_example(heading: str, capsys: pytest.CaptureFixture[str]) -> tuple[str, list[str]]:
    """Run the first Python block under README heading ``heading``: the section's text
    and the lines the block printed."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(heading, 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    exec(compile(block.group(1), "README.md", "exec"), {"__name__": "readme_example"})
    return section, capsys.readouterr().out.splitlines()


def test_readme_failure_example_runs_and_dead_letters_the_failing_record(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, lines = run_example("## When a record fails", capsys)
    assert lines[0] == "[20, 25]"
    assert "'spate-error-type': 'ZeroDivisionError'" in lines[1]
    assert "'spate-attempts': '9'" in lines[1]
    assert "'spate-source-topic': 'orders'" in lines[1]
    assert lines[2] == "1"


def test_readme_state_example_runs_and_keeps_a_total_per_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_example("## State", capsys)[1] == [
        "[{'user': 'ann', 'total': 5}, {'user': 'bob', 'total': 7}, {'user': 'ann', 'total': 15}]"
    ]


def test_readme_windows_example_prints_the_closed_windows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    section, lines = run_example("## Windows", capsys)
    printed = section.split("It prints `", 1)[1]
    assert lines[0] == printed.split("`", 1)[0]
    assert lines[1] == printed.split("then\n`", 1)[1].split("`", 1)[0]


def test_readme_observability_example_scrapes_its_own_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    section, lines = run_example("## Observability", capsys)
    assert lines == [
        '[\'spate_records_consumed_total{app="shop",processor="bill"} 10\']',
        "ready: True",
    ]
    assert f"It prints `{lines[0]}`" in section
