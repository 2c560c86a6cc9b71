"""Every benchmark on every broker available here, in one run.

W1 (decode, filter, enrich, publish, commit: ``w1.py``), P1 (publish only:
``p1.py``) and W2 (per user count and sum in tumbling 10-second event-time windows:
``w2.py``), each beside its baseline on the same broker in the same run: for W1 the
raw client loop (on the embedded brokers, a plain Python loop), for P1 the client's
own producer loop (none on the embedded brokers), for W2 on every broker a plain
Python loop doing the same dict-based aggregation.
Every run is its own process, so its CPU time and peak RSS are its own. The figures
go to ``benchmarks/results/<date>.json`` and to the table in ``benchmarks/README.md``
between the markers. Usage::

    python benchmarks/run.py                        # 200,000 records, every broker found
    python benchmarks/run.py --broker redis --broker nats --records 50000
    python benchmarks/run.py --smoke                # 2,000 records, memory:// and local://
    python benchmarks/run.py --workload W2 --broker memory --broker kafka

Brokers: ``memory``, ``local``, ``redis`` (a redis-server on PATH), ``nats``
(nats-server), ``kafka`` (Apache Kafka from the cached jars, needs Java) and ``tansu``.
A broker that cannot start here is skipped and named in the results. ``--smoke``
updates no README unless ``--readme`` is given: its figures mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from w1 import PARTITIONS, Result, make_orders, peak_rss_mib, plain_loop, spate_pipeline

HERE = Path(__file__).resolve().parent
BROKERS = ("memory", "local", "redis", "nats", "kafka", "tansu")
EMBEDDED = ("memory", "local")
START = "<!-- benchmarks/run.py table: start -->"
END = "<!-- benchmarks/run.py table: end -->"
Row = dict[str, Any]


def _w1(broker: str, side: str, url: str, orders: list[tuple[bytes, bytes]]) -> Result:
    if side == "spate":
        return spate_pipeline(url, orders)
    if broker in EMBEDDED:
        return plain_loop(orders)
    if broker == "nats":
        from nats_w1 import raw_loop as nats_loop

        return asyncio.run(nats_loop(url, orders))
    from redis_w1 import raw_loop as redis_loop

    return asyncio.run(redis_loop(url, orders))


def _p1(broker: str, side: str, url: str, orders: list[tuple[bytes, bytes]]) -> Result:
    import p1

    if side == "spate":
        return asyncio.run(p1.spate_publish(url, orders))
    if broker == "nats":
        return asyncio.run(p1.nats_raw(url, orders))
    if broker == "redis":
        return asyncio.run(p1.redis_raw(url, orders))
    return p1.kafka_raw(url, orders)


def _w2(broker: str, side: str, url: str, orders: list[tuple[bytes, bytes]]) -> Result:
    import w2

    return w2.spate_windows(url, orders) if side == "spate" else w2.plain_loop(orders)


WORKLOADS: dict[str, Callable[[str, str, str, list[tuple[bytes, bytes]]], Result]] = {
    "W1": _w1,
    "P1": _p1,
    "W2": _w2,
}


def one(workload: str, broker: str, side: str, url: str, records: int) -> Row:
    """Child process: one side of one workload, its figures."""
    orders = make_orders(records)
    result = WORKLOADS[workload](broker, side, url, orders)
    return {
        "name": result.name,
        "records_per_s": result.rate,
        "cpu_us_per_record": result.cpu_us_per_record,
        "peak_rss_mib": peak_rss_mib(),
    }


def _child(workload: str, broker: str, side: str, url: str, records: int) -> Row:
    command = [sys.executable, __file__, "--one", f"{workload},{broker},{side}", "--url", url]
    out = subprocess.run(
        [*command, "--records", str(records)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{workload} {side} on {broker} failed:\n{out.stderr}")
    row: Row = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def _kafka_w1(kind: str, url: str, records: int) -> Row:
    """W1 on Kafka through kafka_w1.py, which times the steady part after the join."""
    from kafka_w1 import run_one

    result = run_one(kind, url.removeprefix("kafka://"), records)
    name = "raw confluent-kafka" if kind == "raw" else f"spate {kind}"
    return {
        "name": name,
        "records_per_s": result["steady_rate"],
        "cpu_us_per_record": result["steady_cpu_us"],
        "peak_rss_mib": result["peak_rss_mib"],
    }


def _with_ratios(workload: str, broker: str, rows: list[Row]) -> list[Row]:
    """Each row with its rate and CPU relative to the first (the baseline), if any."""
    baseline = rows[0] if not rows[0]["name"].startswith("spate") else None
    for row in rows:
        row |= {"workload": workload, "broker": broker, "rate_vs_raw": None, "cpu_vs_raw": None}
        if baseline is not None:
            row["rate_vs_raw"] = row["records_per_s"] / baseline["records_per_s"]
            row["cpu_vs_raw"] = row["cpu_us_per_record"] / baseline["cpu_us_per_record"]
    return rows


def _w1_rows(broker: str, url: Callable[[], str], records: int, smoke: bool) -> list[Row]:
    if broker in ("kafka", "tansu"):
        address = url()
        if not smoke:
            _kafka_w1("raw", address, records)  # warm-up: a new JVM compiles at first
        return [_kafka_w1(kind, address, records) for kind in ("raw", "at-least-once")]
    return [_child("W1", broker, side, url(), records) for side in ("raw", "spate")]


def run_broker(
    broker: str,
    url: Callable[[], str],
    records: int,
    smoke: bool,
    workloads: tuple[str, ...] = tuple(WORKLOADS),
) -> list[Row]:
    """W1, P1 and W2 (or those of ``workloads``) on one broker: the baseline first,
    then spate, each in a process."""
    rows: list[Row] = []
    if "W1" in workloads:
        rows += _with_ratios("W1", broker, _w1_rows(broker, url, records, smoke))
    if "P1" in workloads:
        sides = ("spate",) if broker in EMBEDDED else ("raw", "spate")
        p1_rows = [_child("P1", broker, side, url(), records) for side in sides]
        rows += _with_ratios("P1", broker, p1_rows)
    if "W2" in workloads:
        if broker in ("kafka", "tansu") and not smoke:
            # Warm-up: a new broker loads its group and transaction coordinators first.
            _child("W2", broker, "spate", url(), min(records, 20_000))
        w2_rows = [_child("W2", broker, side, url(), records) for side in ("plain", "spate")]
        rows += _with_ratios("W2", broker, w2_rows)
    return rows


@contextlib.contextmanager
def serving(broker: str, workdir: Path) -> Iterator[Callable[[], str]]:
    """The broker running (started here for a server), as a function that gives the URL
    for one run: a fresh directory each time for ``local://``."""
    workdir.mkdir(parents=True, exist_ok=True)
    if broker == "memory":
        yield lambda: "memory://"
    elif broker == "local":
        yield lambda: f"local://{tempfile.mkdtemp(dir=workdir)}"
    elif broker == "redis":
        from spate.testing.redis_server import RedisServer

        with RedisServer.start(workdir / "redis") as server:
            yield lambda: server.url
    elif broker == "nats":
        from spate.testing.nats_server import NatsServer

        with NatsServer() as nats:
            yield lambda: nats.url
    else:
        from spate.testing.kafka_server import start_apache_kafka, start_tansu

        if broker == "kafka":
            kafka = start_apache_kafka(workdir / "kafka", cache_dir=HERE.parent / ".cache")
        else:
            kafka = start_tansu(workdir / "tansu")
        try:
            yield lambda: kafka.url
        finally:
            kafka.stop()


def table(rows: list[Row]) -> str:
    """The Markdown table for benchmarks/README.md."""
    lines = [
        "| workload | broker | run | records/s | CPU µs/record | peak RSS MiB "
        "| rate vs raw | CPU vs raw |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rate = "-" if r["rate_vs_raw"] is None else f"{r['rate_vs_raw']:.0%}"
        cpu = "-" if r["cpu_vs_raw"] is None else f"{r['cpu_vs_raw']:.2f}x"
        lines.append(
            f"| {r['workload']} | {r['broker']} | {r['name']} | {r['records_per_s']:,.0f} "
            f"| {r['cpu_us_per_record']:.2f} | {r['peak_rss_mib']:.0f} | {rate} | {cpu} |"
        )
    return "\n".join(lines)


def write_readme(readme: Path, results: dict[str, Any]) -> None:
    """Replace what is between the markers with this run's table and its caption."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} … {END} markers to write the table between")
    skipped = "".join(f"; {name} skipped: {why}" for name, why in results["skipped"].items())
    caption = (
        f"{results['date']}, {results['records']:,} records, {PARTITIONS} partitions, "
        f"{results['machine']['cpus']} CPUs, Python {results['machine']['python']}{skipped}."
    )
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    readme.write_text(f"{before}{START}\n{caption}\n\n{table(results['rows'])}\n{END}{after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=None, help="default 200,000")
    parser.add_argument("--broker", action="append", choices=BROKERS, default=None)
    parser.add_argument("--smoke", action="store_true", help="2,000 records, embedded only")
    parser.add_argument(
        "--workload",
        action="append",
        choices=tuple(WORKLOADS),
        default=None,
        help="only these (the README table is then left alone unless --readme is given)",
    )
    parser.add_argument("--results-dir", type=Path, default=HERE / "results")
    parser.add_argument("--readme", type=Path, default=None, help="default: README.md here")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    records = args.records or (2_000 if args.smoke else 200_000)
    if args.one:
        workload, broker, side = args.one.split(",")
        print(json.dumps(one(workload, broker, side, args.url, records)))
        return
    brokers = args.broker or (EMBEDDED if args.smoke else BROKERS)
    workloads = tuple(args.workload or WORKLOADS)
    partial = args.smoke or args.workload is not None
    readme = args.readme or (None if partial else HERE / "README.md")
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="spate-benchmarks-") as tmp:
        for broker in brokers:
            try:
                with serving(broker, Path(tmp) / broker) as url:
                    rows += run_broker(broker, url, records, args.smoke, workloads)
            except (RuntimeError, OSError, ImportError) as exc:
                if broker in EMBEDDED:
                    raise
                skipped[broker] = " ".join(str(exc).split())[:200]
                print(f"{broker}: skipped: {skipped[broker]}", file=sys.stderr)
    now = datetime.datetime.now(datetime.UTC)
    results = {
        "date": now.date().isoformat(),
        "started": now.isoformat(timespec="seconds"),
        "records": records,
        "smoke": args.smoke,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": rows,
        "skipped": skipped,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    name = f"{results['date']}{'-smoke' if args.smoke else ''}.json"
    (args.results_dir / name).write_text(json.dumps(results, indent=2) + "\n")
    if readme is not None:
        write_readme(readme, results)
    print(table(rows))


if __name__ == "__main__":
    main()
