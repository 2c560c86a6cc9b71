"""SQLite errors mapped onto :mod:`spate.errors`, in one place.

A lock held past the busy timeout and a corrupt file get messages that say what to
do; everything else is ``default`` with SQLite's text.
"""

from __future__ import annotations

from spate.errors import BrokerError, SpateError


def to_spate_error(
    exc: BaseException, what: str, default: type[SpateError] = BrokerError
) -> SpateError:
    """The spate error for a SQLite error raised while using the database ``what``."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return default(
            f"{what} is locked by another process and stayed locked past the busy "
            f"timeout ({text}); close the other program using it or raise ?busy_timeout_s="
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return default(
            f"{what} is corrupt or not a SQLite file ({text}); move it aside and start "
            "with an empty directory, or restore it from a backup"
        )
    return default(f"{what}: {text}")
