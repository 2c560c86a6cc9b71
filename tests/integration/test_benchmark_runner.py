"""``benchmarks/run.py --smoke``: CI's tiny run of every workload on the embedded
brokers writes its results file and the README table between the markers, and
nothing else. Figures are checked for being there, never for being fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START = "<!-- benchmarks/run.py table: start -->"
END = "<!-- benchmarks/run.py table: end -->"


def test_smoke_run_writes_results_and_the_readme_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\nbefore\n\n{START}\nold table\n{END}\n\nafter\n")
    results = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--smoke",
            "--results-dir",
            str(results),
            "--readme",
            str(readme),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (written,) = results.glob("*-smoke.json")
    data = json.loads(written.read_text())
    assert data["smoke"] is True
    assert data["records"] == 2000
    assert data["skipped"] == {}
    runs = {(r["workload"], r["broker"], r["name"]) for r in data["rows"]}
    assert runs == {
        ("W1", "memory", "plain loop"),
        ("W1", "memory", "spate memory://"),
        ("P1", "memory", "spate"),
        ("W2", "memory", "plain loop"),
        ("W2", "memory", "spate memory://"),
        ("W1", "local", "plain loop"),
        ("W1", "local", "spate local://"),
        ("P1", "local", "spate"),
        ("W2", "local", "plain loop"),
        ("W2", "local", "spate local://"),
    }
    for row in data["rows"]:
        assert row["records_per_s"] > 0
        assert row["cpu_us_per_record"] > 0
        assert row["peak_rss_mib"] > 0
        if row["workload"] in ("W1", "W2"):
            assert row["cpu_vs_raw"] > 0
        else:
            assert row["cpu_vs_raw"] is None

    text = readme.read_text()
    assert text.startswith("# Benchmarks\n\nbefore\n\n")
    assert text.endswith(f"{END}\n\nafter\n")
    table = text.split(START, 1)[1].split(END, 1)[0]
    assert "old table" not in table
    assert "2,000 records" in table
    assert "| W1 | local | spate local:// |" in table
    assert "| W2 | memory | spate memory:// |" in table
    assert table.count("\n| W") + table.count("\n| P") == 10
