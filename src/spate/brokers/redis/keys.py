"""Where spate keeps things in Redis, and how stream IDs map to offsets.

Partition ``p`` of topic ``t`` is the stream ``t:p``. Everything a script must touch
together with that stream (dedup ids, committed positions, lease epochs, leases) is
named ``{t:p}:…``: Redis Cluster hashes only the text inside braces, which is the
stream's own name, so those keys share the stream's slot while partitions still spread
over the cluster. Topic names cannot contain braces or colons, so nothing collides.

Offsets: spate appends with explicit IDs ``1-<offset>`` chosen by the publish script,
so offsets are dense per partition (0, 1, 2, …) and lag is a subtraction. The ``1-``
millisecond part is constant; record timestamps live in the entry's ``t`` field.
"""

from __future__ import annotations

from spate.record import TopicPartition

TOPICS = "spate:topics"
"""Set of every topic name."""
GROUPS = "spate:groups"
"""Set of every group name that ever joined or committed."""


def topic_meta(topic: str) -> str:
    """Hash: ``partitions``, ``config`` (JSON), ``incarnation`` (random, per creation)."""
    return f"spate:topic:{topic}"


def members(group: str) -> str:
    """Sorted set: member id -> lease expiry (server milliseconds)."""
    return f"spate:group:{group}:members"


def group_topics(group: str) -> str:
    """Set of the topics a group committed on, for ``lag(group)``."""
    return f"spate:group:{group}:topics"


def stream(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def stream_of(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


def committed(tp: TopicPartition) -> str:
    """Hash: group -> next offset to read (commit position)."""
    return f"{{{stream_of(tp)}}}:committed"


def epochs(tp: TopicPartition) -> str:
    """Hash: group -> current lease epoch (only grows; never expires)."""
    return f"{{{stream_of(tp)}}}:epochs"


def lease(tp: TopicPartition, group: str) -> str:
    """Hash ``member``, ``epoch`` with a PX expiry: who owns ``tp`` in ``group``."""
    return f"{{{stream_of(tp)}}}:lease:{group}"


def stats(tp: TopicPartition) -> str:
    """Hash: group -> records retention removed before that group acknowledged them."""
    return f"{{{stream_of(tp)}}}:stats"


def dedup_prefix(tp: TopicPartition) -> str:
    """Prefix of the keys remembering published dedup ids (expire after the window)."""
    return f"{{{stream_of(tp)}}}:dedup:"


def id_before(offset: int) -> str:
    """The ID a group cursor must hold so that its next read returns ``offset``."""
    return "0-0" if offset <= 0 else f"1-{offset - 1}"


def offset_of(entry: bytes) -> int:
    """The offset of a stream ID written by spate (``1-<offset>``)."""
    return int(entry[2:])


def end_offset_of(last_generated: bytes) -> int:
    """The offset the next append gets, from a stream's last-generated-id."""
    return 0 if last_generated.startswith(b"0-") else int(last_generated[2:]) + 1
