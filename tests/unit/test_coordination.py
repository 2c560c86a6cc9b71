"""Property tests of assign(): the pure function every lease-based member computes."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from spate.coordination import assign, new_member_id
from spate.record import TopicPartition

members_st = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=12, unique=True)
partitions_st = st.lists(
    st.builds(
        TopicPartition,
        st.sampled_from(["orders", "payments", "clicks"]),
        st.integers(min_value=0, max_value=40),
    ),
    max_size=80,
    unique=True,
)


@given(members_st, partitions_st)
def test_every_partition_is_owned_exactly_once(
    members: list[str], partitions: list[TopicPartition]
) -> None:
    result = assign(members, partitions)
    owned = [tp for share in result.values() for tp in share]
    assert sorted(owned) == sorted(partitions)
    assert set(result) == set(members)


@given(members_st, partitions_st)
def test_shares_are_balanced_within_one(
    members: list[str], partitions: list[TopicPartition]
) -> None:
    sizes = [len(share) for share in assign(members, partitions).values()]
    assert max(sizes) - min(sizes) <= 1


@given(members_st, partitions_st, st.randoms())
def test_independent_of_input_order(
    members: list[str], partitions: list[TopicPartition], rnd: random.Random
) -> None:
    shuffled_members, shuffled_partitions = members[:], partitions[:]
    rnd.shuffle(shuffled_members)
    rnd.shuffle(shuffled_partitions)
    assert assign(members, partitions) == assign(shuffled_members, shuffled_partitions)


@given(members_st, partitions_st)
def test_deterministic_and_duplicates_ignored(
    members: list[str], partitions: list[TopicPartition]
) -> None:
    assert assign(members, partitions) == assign(members + members, partitions + partitions)


def test_no_members_owns_nothing() -> None:
    assert assign([], [TopicPartition("t", 0)]) == {}


def test_member_ids_are_unique() -> None:
    assert len({new_member_id() for _ in range(100)}) == 100
