"""Each extra installs a library spate imports, and ``all`` installs every extra."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
RUNTIME_EXTRAS = sorted(set(EXTRAS) - {"all", "test"})


def imported_modules() -> set[str]:
    """Top-level names of every module imported, or probed by name, under src/spate."""
    names: set[str] = set()
    for path in (ROOT / "src" / "spate").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value.split(".")[0])  # importlib.import_module("...")
    return names


def distribution(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return match.group(0).lower().replace("_", "-")


def test_every_extra_installs_a_library_spate_imports() -> None:
    by_distribution: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            by_distribution.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    imported = imported_modules()
    for extra in RUNTIME_EXTRAS:
        modules = {
            module
            for requirement in EXTRAS[extra]
            for module in by_distribution.get(distribution(requirement), set())
        }
        assert modules & imported, f"extra {extra!r} installs {EXTRAS[extra]}, never imported"


def test_all_installs_every_extra() -> None:
    (everything,) = EXTRAS["all"]
    match = re.fullmatch(r"spate-streams\[(.*)\]", everything)
    assert match is not None, everything
    assert sorted(match.group(1).split(",")) == RUNTIME_EXTRAS


def test_no_package_is_an_empty_placeholder() -> None:
    for init in (ROOT / "src" / "spate").rglob("__init__.py"):
        modules = list(init.parent.glob("*.py"))
        assert any(module.read_text().strip() for module in modules), f"{init.parent} is empty"
