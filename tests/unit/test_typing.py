"""The Stream DSL's types, as mypy sees them (typing/typed_dsl.py states what it must find)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

CASES = Path(__file__).parent / "typing" / "typed_dsl.py"
ROOT = Path(__file__).parents[2]


def expected() -> dict[int, str]:
    """Line number -> 'reveal: T' or 'error: code', from the cases' comments."""
    found = {}
    for number, line in enumerate(CASES.read_text().splitlines(), start=1):
        match = re.search(r"# (reveal|error): (.+)$", line)
        if match:
            found[number] = f"{match[1]}: {match[2].strip()}"
    return found


def unqualified(type_name: str) -> str:
    """'spate.topic.Topic[typed_dsl.Order]' -> 'Topic[Order]'."""
    return re.sub(r"\b\w+\.", "", type_name)


def test_mypy_infers_and_rejects_what_the_cases_say() -> None:
    stdout, stderr, _status = mypy_api.run(
        [
            str(CASES),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--no-error-summary",
            "--show-error-codes",
            "--hide-error-context",
        ]
    )
    assert not stderr, stderr
    found: dict[int, str] = {}
    for line in stdout.splitlines():
        match = re.match(r".*typed_dsl\.py:(\d+): (note|error): (.*)", line)
        assert match, f"unexpected mypy output: {line}"
        number, kind, message = int(match[1]), match[2], match[3]
        if kind == "note":
            revealed = re.fullmatch(r'Revealed type is "(.*)"', message)
            if revealed is None:
                continue  # a note explaining an error, e.g. the overloads tried
            found[number] = f"reveal: {unqualified(revealed[1])}"
        else:
            code = re.search(r"\[([\w-]+)\]$", message)
            assert code, message
            assert number not in found or found[number] == f"error: {code[1]}", line
            found[number] = f"error: {code[1]}"
    assert found == expected(), stdout
