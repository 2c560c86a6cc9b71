"""The public API is what spate/__init__.py exports; __all__ stays honest."""

from __future__ import annotations

import spate
import spate.errors as errors


def test_all_names_exist_and_are_unique() -> None:
    assert len(spate.__all__) == len(set(spate.__all__))
    for name in spate.__all__:
        assert hasattr(spate, name), name


def test_every_public_name_is_listed() -> None:
    public = {
        name
        for name, value in vars(spate).items()
        if not name.startswith("_") and not isinstance(value, type(spate))
    }
    assert public - {"annotations"} <= set(spate.__all__)


def test_every_error_derives_from_spate_error() -> None:
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, errors.SpateError), value
