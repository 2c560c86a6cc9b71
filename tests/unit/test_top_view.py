"""``spate top``'s view, rendered from sample ``/status`` documents of two workers."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from spate.cli.top import Snapshot, answering, fetch, fetch_all, render
from spate.errors import ConnectError
from spate.testing.nats_server import free_port


def _status(partition: int, *, consumed: int, errors: int, ready: bool, lag: int) -> dict[str, Any]:
    return {
        "app": "shop",
        "uptime_s": 12.5,
        "ready": ready,
        "broker_available": True,
        "processors": [
            {
                "name": "bill",
                "group": "billing",
                "running": True,
                "connected": True,
                "consumed": consumed,
                "produced": consumed,
                "errors": errors,
                "rebalances": 1,
                "commits": 3,
                "commit_failures": 0,
                "consumed_per_s": 10.0,
                "produced_per_s": 10.0,
                "partitions": [
                    {
                        "topic": "orders",
                        "partition": partition,
                        "assigned": True,
                        "committed": 40,
                        "end_offset": 40 + lag,
                        "lag": lag,
                    },
                    {
                        "topic": "orders",
                        "partition": 9,
                        "assigned": False,
                        "committed": 1,
                        "end_offset": 1,
                        "lag": 0,
                    },
                ],
            }
        ],
    }


def _text(snapshots: list[Snapshot]) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(render(snapshots))
    return console.export_text()


def _rows(text: str) -> dict[str, list[str]]:
    """Table rows by their second cell (processors: group's processor; partitions: name)."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) > 2:
            rows[cells[0] if cells[1] == "billing" else cells[1]] = cells
    return rows


def test_two_workers_merge_into_one_view() -> None:
    text = _text(
        [
            Snapshot("http://a:9100", _status(0, consumed=150, errors=0, ready=True, lag=0)),
            Snapshot("http://a:9101", _status(1, consumed=50, errors=2, ready=False, lag=7)),
        ]
    )
    rows = _rows(text)
    # summed over the workers: 2/2 running, 20 records/s, 200 consumed, 2 errors = 1.00%
    assert rows["bill"][:9] == [
        "bill",
        "billing",
        "2/2",
        "20.0",
        "20.0",
        "200",
        "200",
        "2",
        "1.00%",
    ]
    # partition 9 is not owned by any worker: not shown
    assert rows["orders[0]"] == ["bill", "orders[0]", "http://a:9100", "40", "40", "0"]
    assert rows["orders[1]"] == ["bill", "orders[1]", "http://a:9101", "40", "47", "7"]
    assert "orders[9]" not in text
    assert "not ready" in text


def test_no_consumed_records_has_no_error_rate() -> None:
    text = _text([Snapshot("u", _status(0, consumed=0, errors=0, ready=True, lag=0))])
    assert "%" not in text


def test_an_unreachable_url_is_a_connect_error_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectError, match=f"{url}/status"):
        fetch(url, timeout_s=1)


def test_a_worker_that_does_not_answer_is_a_row_saying_so_beside_the_others() -> None:
    down = f"http://127.0.0.1:{free_port()}"
    (snapshot,) = fetch_all([down])
    assert snapshot.error is not None
    assert f"{down}/status" in snapshot.error
    up = Snapshot("http://a:9100", _status(0, consumed=150, errors=0, ready=True, lag=0))
    rows = _rows(_text([up, snapshot]))
    assert rows["?"] == [down, "?", "unreachable", "-", "-"]
    assert rows["shop"][:3] == ["http://a:9100", "shop", "ready"]
    assert rows["bill"][2] == "1/2"  # one of the two workers runs it
    assert rows["orders[0]"][2] == "http://a:9100"
    with pytest.raises(ConnectError, match=f"{down}/status"):
        answering([snapshot])
    assert answering([up, snapshot]) == [up, snapshot]


def test_a_partition_restoring_its_state_says_so() -> None:
    status = _status(0, consumed=0, errors=0, ready=False, lag=3)
    status["processors"][0]["partitions"][0]["restoring"] = True
    rows = _rows(_text([Snapshot("http://a:9100", status)]))
    assert rows["orders[0]"][-1] == "restoring"
