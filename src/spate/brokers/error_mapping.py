"""The one shape of every adapter's error mapping (DESIGN §11).

Each adapter's ``errors`` module has ``to_spate_error(exc, what, default=BrokerError)``:
the :mod:`spate.errors` exception for an error its client library (or the socket
under it) raised while doing ``what``, ``default`` being the class for errors that
are neither connection trouble nor anything more specific. Adapters that wrap calls
in a block also have ``spate_errors(what, default)``, built here so that every
adapter lets spate's own errors through and chains the original as ``__cause__``
the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from spate.errors import SpateError

ToSpateError = Callable[[BaseException, str, type[SpateError]], SpateError]


@contextmanager
def raising_spate_errors(
    native: tuple[type[BaseException], ...],
    to_spate_error: ToSpateError,
    what: str,
    default: type[SpateError],
) -> Iterator[None]:
    """Re-raise any ``native`` error inside the block as ``to_spate_error`` maps it."""
    try:
        yield
    except SpateError:
        raise
    except native as exc:
        raise to_spate_error(exc, what, default) from exc
