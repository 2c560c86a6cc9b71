"""Stores on the embedded broker (local://), in one process: a restart restores from
the local checkpoint, a wiped state directory is rebuilt from the changelog, and a
commit that fails after the changelog was written leaks nothing into the restore."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping
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
from spate.testing.app import TestApp
from state_checks import check_answers, wrong_answers
from worker_processes import KEYS, read_all

PARTITIONS = 3


def summing_app(state_dir: Path, **settings: Any) -> App:
    app = App("sums", state_dir=str(state_dir), batch_size=7, **settings)
    numbers = app.topic("numbers", partitions=PARTITIONS)
    results = app.topic("results", partitions=PARTITIONS)

    @app.handler(numbers, group="summer", output=results)
    def running_sum(value: dict[str, int], state: State[int]) -> dict[str, int]:
        total = (state.get() or 0) + value["n"]
        state.set(total)
        return {"n": value["n"], "sum": total}

    return app


async def run_inputs(app: App, url: str, start: int, stop: int) -> None:
    """Send inputs ``start`` … ``stop - 1`` and run the App until all are committed."""
    async with TestApp(app, broker=url) as t:
        for n in range(start, stop):
            t.send("numbers", {"n": n}, key=f"k{n % KEYS}")
        await t.run_until_idle_async()


def restores(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if "event=state_restored" in r.getMessage()]
    caplog.clear()
    return lines


@pytest.mark.parametrize("backend", ["rocksdb", "sqlite"])
def test_a_restart_resumes_from_the_local_checkpoint_and_a_wiped_directory_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    url = f"local://{tmp_path / 'broker'}"
    state_dir = tmp_path / "state"
    caplog.set_level("INFO", logger="spate.state")

    asyncio.run(run_inputs(summing_app(state_dir, state_backend=backend), url, 0, 200))
    assert all("from=no_local_state" in line for line in restores(caplog))

    asyncio.run(run_inputs(summing_app(state_dir, state_backend=backend), url, 200, 300))
    lines = restores(caplog)
    assert len(lines) == PARTITIONS
    # Stopped cleanly: the local state is the committed one, its checkpoint at the
    # changelog's end: nothing to replay.
    assert all("from=local_checkpoint" in line for line in lines), lines
    assert all(" records=0 " in line for line in lines), lines

    shutil.rmtree(state_dir)
    asyncio.run(run_inputs(summing_app(state_dir, state_backend=backend), url, 300, 400))
    lines = restores(caplog)
    assert all("from=no_local_state" in line for line in lines), lines
    assert sum(int(line.split("records=")[1].split()[0]) for line in lines) > 0

    check_answers(asyncio.run(read_all(url, "results", PARTITIONS)), 400, exactly_once=True)


def test_a_commit_failing_after_the_changelog_was_written_leaks_nothing_into_the_restore(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"local://{tmp_path / 'broker'}"
    state_dir = tmp_path / "state"
    app = summing_app(state_dir)
    caplog.set_level("INFO", logger="spate.state")

    async def fail_third_batch() -> None:
        batches = 0

        async def written_then_refused(
            producer: Producer, through: Mapping[TopicPartition, int]
        ) -> None:
            nonlocal batches
            batches += 1
            if batches == 3:
                await producer.flush()  # the changelog (and outputs) are written ...
                raise CommitError("injected: the offsets are not committed")  # ... not the commit

        async with spate.connect(url) as broker:
            await app.prepare(broker)
            async with broker.producer() as producer:
                for n in range(60):
                    producer.send("numbers", orjson.dumps({"n": n}), key=b"k%d" % (n % KEYS))
                await producer.flush()
            worker = Worker(app.name, app.processors[0].stream, broker, app.settings)
            worker.pre_commit.append(written_then_refused)
            with pytest.raises(CommitError, match="injected"):
                await worker.run(asyncio.Event())

    asyncio.run(fail_third_batch())
    changelog = asyncio.run(read_all(url, "sums-running_sum-state-changelog", PARTITIONS))
    committed = asyncio.run(committed_offsets(url))
    uncommitted = [r for r in changelog if source_offset(r) >= committed[r.partition]]
    assert uncommitted, "the failed batch's changes reached the changelog"
    restores(caplog)

    asyncio.run(run_inputs(summing_app(state_dir), url, 60, 100))
    assert any("from=local_state_ahead_of_commit" in line for line in restores(caplog))
    answers = asyncio.run(read_all(url, "results", PARTITIONS))
    assert not wrong_answers(answers), wrong_answers(answers)[:10]
    check_answers(answers, 100, exactly_once=False)


def source_offset(record: Record) -> int:
    return int(dict(record.headers)["spate-source-offset"])


async def committed_offsets(url: str) -> dict[int, int]:
    async with spate.connect(url) as broker:
        return {p.partition: p.committed or 0 for p in await broker.lag("summer", ["numbers"])}
