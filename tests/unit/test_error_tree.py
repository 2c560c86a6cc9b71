"""spate.errors holds only errors spate raises, and its docstring draws all of them."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import spate.errors as errors

SRC = Path(errors.__file__).resolve().parent
CLASSES = {
    name: value
    for name, value in vars(errors).items()
    if inspect.isclass(value) and issubclass(value, errors.SpateError)
}


def names_used_outside_except_clauses() -> set[str]:
    """Names src/spate uses other than to catch them (raise, build, map), errors.py aside."""
    used: set[str] = set()
    for path in SRC.rglob("*.py"):
        if path.name == "errors.py" and path.parent == SRC:
            continue
        tree = ast.parse(path.read_text())
        caught = {
            id(node)
            for handler in ast.walk(tree)
            if isinstance(handler, ast.ExceptHandler) and handler.type is not None
            for node in ast.walk(handler.type)
        }
        used.update(
            node.id if isinstance(node, ast.Name) else node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Name | ast.Attribute) and id(node) not in caught
        )
    return used


def test_every_error_is_raised_or_is_the_base_of_one_that_is() -> None:
    raised = [cls for name, cls in CLASSES.items() if name in names_used_outside_except_clauses()]
    for name, cls in CLASSES.items():
        assert any(issubclass(other, cls) for other in raised), f"{name} is never raised"


def test_the_docstring_draws_every_error() -> None:
    lines = (errors.__doc__ or "").splitlines()
    drawn = {line.split("── ", 1)[1].split()[0] for line in lines if "── " in line}
    assert drawn | {"SpateError"} == set(CLASSES)
