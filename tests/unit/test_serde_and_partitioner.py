"""Serdes round-trip and fail with SerdeError; the partitioner matches CRC32 % n."""

from __future__ import annotations

import dataclasses
import zlib

import msgspec
import pytest

from spate.errors import ConfigError, SerdeError
from spate.partitioner import Partitioner, partition_for_key
from spate.serde import encode_key, serde_for
from spate.topic import Topic


class Order(msgspec.Struct):
    id: int
    amount: float


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_json_default_round_trip() -> None:
    serde = serde_for()
    assert serde.decode(serde.encode({"a": [1, 2]})) == {"a": [1, 2]}
    with pytest.raises(SerdeError, match="not valid JSON"):
        serde.decode(b"{nope")


def test_typed_json_decodes_into_the_type_and_validates() -> None:
    serde = serde_for(Order)
    assert serde.decode(b'{"id": 1, "amount": 2.5}') == Order(id=1, amount=2.5)
    assert serde.decode(serde.encode(Order(id=2, amount=1.0))) == Order(id=2, amount=1.0)
    with pytest.raises(SerdeError, match="Order"):
        serde.decode(b'{"id": "x", "amount": 1}')
    points = serde_for(Point)
    assert points.decode(b'{"x": 1, "y": 2}') == Point(1, 2)


def test_named_serdes() -> None:
    assert serde_for(str).decode(b"h\xc3\xa9") == "hé"
    assert serde_for(serde="raw").decode(b"\x00") == b"\x00"
    with pytest.raises(SerdeError, match="UTF-8"):
        serde_for(serde="str").decode(b"\xff")
    with pytest.raises(ConfigError, match="serde 'yaml'"):
        serde_for(serde="yaml")


def test_keys_encode_the_same_everywhere() -> None:
    assert encode_key("u1") == b"u1"
    assert encode_key(7) == b"7"
    assert encode_key(None) is None
    assert encode_key({"a": 1}) == b'{"a":1}'


def test_partitioner_is_crc32_modulo_and_round_robin() -> None:
    assert partition_for_key(b"user-1", 4) == zlib.crc32(b"user-1") % 4
    partitioner = Partitioner()
    assert partitioner.choose("t", b"user-1", 4) == zlib.crc32(b"user-1") % 4
    assert [partitioner.choose("t", None, 3) for _ in range(6)] == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize("with_none", [False, True])
def test_choose_many_chooses_as_choose_does_one_by_one(with_none: bool) -> None:
    keys: list[bytes | None] = [b"user-%d" % i for i in range(50)]
    if with_none:
        keys[3::7] = [None] * len(keys[3::7])
    one_by_one, at_once = Partitioner(), Partitioner()
    expected = [one_by_one.choose("t", key, 6) for key in keys]
    assert at_once.choose_many("t", keys, 6) == expected
    assert at_once.choose("t", None, 6) == one_by_one.choose("t", None, 6)


def test_an_unkeyed_record_with_a_dedup_id_goes_by_the_id() -> None:
    """Brokers deduplicate within a partition: a copy re-published by another producer
    (whose round-robin stands elsewhere) must land where the first one did."""
    first, replay = Partitioner(), Partitioner()
    ids = [f"app/answer/in/0/{offset}/0" for offset in range(20)]
    placed = [first.choose("out", None, 4, dedup_id=i) for i in ids]
    assert placed == [zlib.crc32(i.encode()) % 4 for i in ids]
    assert [replay.choose("out", None, 4, dedup_id=i) for i in reversed(ids)] == placed[::-1]
    assert len(set(placed)) == 4  # still spread over the partitions
    assert first.choose("out", b"user-1", 4, dedup_id=ids[0]) == zlib.crc32(b"user-1") % 4


def test_topic_validation() -> None:
    with pytest.raises(ConfigError, match="partitions=0"):
        Topic.of("orders", partitions=0)
    with pytest.raises(ConfigError, match="topic name 'bad name'"):
        Topic.of("bad name")
    assert Topic.of("orders").dead_letter_name == "orders.dlq"
