"""Points in time typed on the command line: an ISO-8601 time or an age such as ``2d``.

An age is counted back from ``now``, so ``--before 1h`` means "failed more than an
hour ago"; ``now`` is a parameter so the arithmetic is tested without a clock.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from spate.deadletter import parse_timestamp
from spate.errors import ConfigError

_AGE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime, option: str) -> datetime:
    """``text`` as an aware UTC datetime: an age (``90s``, ``15m``, ``1h``, ``2d``,
    ``1w``) before ``now``, or an ISO-8601 time; ConfigError naming ``option``."""
    age = _AGE.fullmatch(text.strip())
    if age is None:
        try:
            return parse_timestamp(text, option)
        except ConfigError:
            raise ConfigError(
                f"{option} {text!r} is neither an age such as 90s, 15m, 1h, 2d or 1w "
                "nor an ISO-8601 time such as 2026-12-04T16:30:00Z"
            ) from None
    amount, unit = age.groups()
    return now - timedelta(**{_UNITS[unit]: int(amount)})
