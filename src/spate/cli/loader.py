"""``MODULE:APP``: find the App that ``spate run`` runs.

This is the CLI's job, not the runtime's: the runtime runs whatever it is handed and
never imports the App back.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path

from spate.app import App
from spate.errors import ConfigError, SpateError


def load_app(target: str) -> App:
    """The App named by ``MODULE:ATTRIBUTE`` (``shop:app``; a ``.py`` path also works)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"app {target!r} must look like MODULE:APP, e.g. shop:app")
    if module_name.endswith(".py"):
        path = Path(module_name)
        sys.path.insert(0, str(path.parent.resolve()))
        module_name = path.stem
    elif "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except SpateError:
        raise  # the module's own App(...) said what is wrong, in one line already
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == module_name:
            raise ConfigError(
                f"app {target!r}: no module {module_name!r} (run from the folder that holds it)"
            ) from exc
        reason = exc.msg if isinstance(exc, SyntaxError) else exc
        raise ConfigError(
            f"cannot import {module_name!r} ({type(exc).__name__}: {reason}) at "
            f"{_failed_at(exc)}; spate run --traceback shows the whole traceback"
        ) from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise ConfigError(
            f"app {target!r}: {module_name}.{attribute} is {type(app).__name__}, not a spate App"
        )
    return app


def _failed_at(exc: Exception) -> str:
    """``file:line`` of the innermost frame of user code (or of the library it called)
    that raised: importlib's and spate's own frames say nothing to the user."""
    if isinstance(exc, SyntaxError):  # raised before any frame of the file ran
        return f"{_shown(exc.filename or '?')}:{exc.lineno}"
    internal = {__file__, importlib.__file__}
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<") and frame.filename not in internal
    ]
    if not frames:
        return "?"
    return f"{_shown(frames[-1].filename)}:{frames[-1].lineno}"


def _shown(filename: str) -> str:
    """A path below the current directory relative to it, others as they are."""
    relative = os.path.relpath(filename)
    return filename if relative.startswith("..") else relative
