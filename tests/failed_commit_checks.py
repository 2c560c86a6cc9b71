"""A commit that fails after the changelog was written leaks nothing into the restore
(issue 13), the same check on every broker.

One process runs the running-sum App (:mod:`state_checks`' answers) with a
:class:`~spate.runtime.worker.Worker` whose pre-commit hook, at the third checkpoint
(``commit_interval_s=0``: one per batch), flushes
the producer (the batch's changelog records and outputs reach the broker) and then
raises :class:`~spate.errors.CommitError`: the batch's offsets are never committed, but
its local checkpoint is already written and its changelog records are in the log. A
second run on the same state directory must see the local state ahead of the commit,
rebuild from the changelog, and answer every input with its right sum.

Where the changelog records of the failed batch end up differs by guarantee:

* at-least-once (and effectively-once) has no transactions: the records are visible
  to every reader and the restore must skip them by their source offsets;
* exactly-once on Kafka writes them inside the batch's transaction, which is aborted:
  a ``read_uncommitted`` reader still finds them in the log, the ``read_committed``
  restore must not see them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

import spate
from spate import App, State
from spate.brokers.base import Producer
from spate.errors import CommitError
from spate.record import Record, TopicPartition
from spate.runtime.worker import Worker
from spate.state.changelog import SOURCE_LAST, changelog_topic
from spate.testing.app import TestApp
from state_checks import check_answers
from worker_processes import KEYS, positions, read_all

PARTITIONS = 3
FAILING_BATCH = 3
FIRST_RUN = 60
"""Inputs of the run whose third batch (of 7) fails to commit."""
SECOND_RUN = 100
"""Inputs 0 … SECOND_RUN - 1 are published once the restarted run is done."""


@dataclass(frozen=True, slots=True)
class SumsNames:
    """The App's, topics' and group's names: fixed on a broker of the test's own, fresh
    (:meth:`fresh`) on one shared by the session."""

    app: str = "sums"
    inputs: str = "numbers"
    outputs: str = "results"
    group: str = "summer"

    @classmethod
    def fresh(cls) -> SumsNames:
        tag = uuid.uuid4().hex[:8]
        return cls(f"sums{tag}", f"numbers-{tag}", f"results-{tag}", f"summer-{tag}")

    @property
    def changelog(self) -> str:
        return changelog_topic(self.app, "running_sum", "state")


FIXED = SumsNames()


def summing_app(state_dir: Path, names: SumsNames = FIXED, **settings: Any) -> App:
    """Per-key running sums of ``{"n": i}``, batches of 7, a store per partition."""
    app = App(names.app, state_dir=str(state_dir), batch_size=7, **settings)
    numbers = app.topic(names.inputs, partitions=PARTITIONS)
    results = app.topic(names.outputs, partitions=PARTITIONS)

    @app.handler(numbers, group=names.group, output=results)
    def running_sum(value: dict[str, int], state: State[int]) -> dict[str, int]:
        total = (state.get() or 0) + value["n"]
        state.set(total)
        return {"n": value["n"], "sum": total}

    return app


async def run_inputs(
    app: App, url: str, start: int, stop: int, *, inputs: str = "numbers", timeout_s: float = 10
) -> None:
    """Send inputs ``start`` … ``stop - 1`` and run the App until all are committed."""
    async with TestApp(app, broker=url, timeout_s=timeout_s) as t:
        for n in range(start, stop):
            t.send(inputs, {"n": n}, key=f"k{n % KEYS}")
        await t.run_until_idle_async()


def restores(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ``event=state_restored`` lines logged since the last call."""
    lines = [r.getMessage() for r in caplog.records if "event=state_restored" in r.getMessage()]
    caplog.clear()
    return lines


async def fail_a_commit_after_the_changelog(app: App, url: str, names: SumsNames) -> None:
    """Publish inputs 0 … FIRST_RUN - 1 and run a worker whose FAILING_BATCH-th commit
    fails once everything of the batch but its offsets is written."""
    batches = 0

    async def written_then_refused(
        producer: Producer, through: Mapping[TopicPartition, int]
    ) -> None:
        nonlocal batches
        batches += 1
        if batches == FAILING_BATCH:
            await producer.flush()  # the changelog (and outputs) are written ...
            raise CommitError("injected: the offsets are not committed")  # ... not the commit

    async with spate.connect(url) as broker:
        await app.prepare(broker)
        async with broker.producer() as producer:
            for n in range(FIRST_RUN):
                producer.send(names.inputs, orjson.dumps({"n": n}), key=b"k%d" % (n % KEYS))
            await producer.flush()
        worker = Worker(app.name, app.processors[0].stream, broker, app.settings)
        worker.pre_commit.append(written_then_refused)
        with pytest.raises(CommitError, match="injected"):
            await worker.run(asyncio.Event())


def check_a_failed_commit_leaks_nothing_into_the_restore(
    url: str,
    state_dir: Path,
    caplog: pytest.LogCaptureFixture,
    *,
    names: SumsNames = FIXED,
    guarantee: str = "at-least-once",
    uncommitted_url: str | None = None,
    timeout_s: float = 10,
) -> None:
    """The scenario of the module doc on ``url``.

    ``uncommitted_url`` reads the changelog with what aborted transactions wrote (on
    Kafka, ``isolation.level=read_uncommitted``): given, the failed batch's records
    must be there and invisible at ``url``; otherwise they must be visible at ``url``
    (no transactions) and the restore must skip them by their source offsets."""
    caplog.set_level("INFO", logger="spate.state")
    # A checkpoint after every batch, so the failing one comes before the inputs end.
    app = summing_app(state_dir, names, processing_guarantee=guarantee, commit_interval_s=0)
    asyncio.run(fail_a_commit_after_the_changelog(app, url, names))

    committed = asyncio.run(positions(url, names.group, names.inputs))
    written = asyncio.run(read_all(uncommitted_url or url, names.changelog, PARTITIONS))
    assert past(written, committed), "the failed batch's changes reached the changelog"
    if uncommitted_url is not None:
        visible = asyncio.run(read_all(url, names.changelog, PARTITIONS))
        assert not past(visible, committed), "an aborted transaction's changes are readable"
    restores(caplog)

    again = summing_app(state_dir, names, processing_guarantee=guarantee)
    asyncio.run(
        run_inputs(again, url, FIRST_RUN, SECOND_RUN, inputs=names.inputs, timeout_s=timeout_s)
    )
    assert any("from=local_state_ahead_of_commit" in line for line in restores(caplog))
    answers = asyncio.run(read_all(url, names.outputs, PARTITIONS))
    check_answers(answers, SECOND_RUN, exactly_once=uncommitted_url is not None)


def past(changelog: list[Record], committed: Mapping[int, int]) -> list[Record]:
    """The changelog records written for source offsets the group has not committed."""
    return [r for r in changelog if int(dict(r.headers)[SOURCE_LAST]) >= committed[r.partition]]
