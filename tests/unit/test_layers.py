"""The layers of DESIGN §2, as imports: the runtime sits below the App and the CLI.

The App and the CLI start runs; the runtime only runs what it is handed. A runtime
module importing either (even lazily, inside a function, or for type checking only)
would tie the layers back together, so the check reads every import in the source.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import spate

SRC = Path(spate.__file__).resolve().parent
ABOVE_THE_RUNTIME = ("spate.app", "spate.cli")


def imported(tree: ast.AST) -> Iterator[str]:
    """Every module an ``import`` or ``from … import`` names, with the names it takes
    (``from spate import app`` imports ``spate.app``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def reaches_above(module: str) -> bool:
    return module == "spate" or any(
        module == above or module.startswith(f"{above}.") for above in ABOVE_THE_RUNTIME
    )


def test_the_runtime_never_imports_the_app_or_the_cli() -> None:
    offenders = [
        f"{path.relative_to(SRC.parent)} imports {module}"
        for path in sorted((SRC / "runtime").rglob("*.py"))
        for module in imported(ast.parse(path.read_text()))
        if reaches_above(module)
    ]
    assert not offenders, offenders
