"""How a spate record travels as a NATS message, both ways.

The value is the message payload untouched, so other NATS tools read it as it is.
The key travels in the ``Spate-Key`` header (``Spate-Key-B64`` when it is not plain
printable ASCII), a producer-chosen timestamp in ``Spate-Timestamp``, and the record
headers in one ``Spate-Headers`` header (JSON pairs with base64 values), because NATS
header values must be text and nats-py keeps one value per name, while spate headers
are bytes and a name may repeat. ``dedup_id`` becomes ``Nats-Msg-Id``.
Messages from other producers keep their own NATS headers as record headers.
"""

from __future__ import annotations

import base64

import orjson

from spate.record import Headers, Record

KEY = "Spate-Key"
KEY_B64 = "Spate-Key-B64"
TIMESTAMP = "Spate-Timestamp"
HEADERS = "Spate-Headers"
MSG_ID = "Nats-Msg-Id"


def _plain(text: bytes) -> str | None:
    if not text.isascii():
        return None
    decoded = text.decode("ascii")
    return decoded if decoded.isprintable() and decoded == decoded.strip() and decoded else None


def encode_headers(
    key: bytes | None, headers: Headers, timestamp_ms: int | None, dedup_id: str | None
) -> dict[str, str] | None:
    """NATS headers for one record, or None when it needs none."""
    if key is None and not headers and timestamp_ms is None and dedup_id is None:
        return None
    out: dict[str, str] = {}
    if key is not None:
        plain = _plain(key)
        if plain is not None:
            out[KEY] = plain
        else:
            out[KEY_B64] = base64.b64encode(key).decode("ascii")
    if headers:
        out[HEADERS] = orjson.dumps(
            [[name, base64.b64encode(value).decode("ascii")] for name, value in headers]
        ).decode("ascii")
    if timestamp_ms is not None:
        out[TIMESTAMP] = str(timestamp_ms)
    if dedup_id is not None:
        out[MSG_ID] = dedup_id
    return out


def timestamp_of(nats_headers: dict[str, str] | None, server_ts_ms: int) -> int:
    """A message's record timestamp: the producer's, else the server's receive time."""
    ts_text = nats_headers.get(TIMESTAMP) if nats_headers else None
    return int(ts_text) if ts_text is not None else server_ts_ms


def decode(
    topic: str,
    partition: int,
    offset: int,
    value: bytes,
    nats_headers: dict[str, str] | None,
    server_ts_ms: int,
) -> Record:
    """The record for one delivered message."""
    if not nats_headers:
        return Record(topic, partition, offset, None, value, (), server_ts_ms)
    key: bytes | None = None
    plain = nats_headers.get(KEY)
    if plain is not None:
        key = plain.encode("ascii")
    else:
        encoded = nats_headers.get(KEY_B64)
        if encoded is not None:
            key = base64.b64decode(encoded)
    timestamp_ms = timestamp_of(nats_headers, server_ts_ms)
    packed = nats_headers.get(HEADERS)
    headers: Headers
    if packed is not None:
        headers = tuple((str(n), base64.b64decode(v)) for n, v in orjson.loads(packed))
    else:
        headers = tuple(
            (name, text.encode())
            for name, text in nats_headers.items()
            if not name.startswith(("Spate-", "Nats-"))
        )
    return Record(topic, partition, offset, key, value, headers, timestamp_ms)
