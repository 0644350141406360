"""`ponte bench e2e` writes its report folder on every run, and what --json prints is exactly
report.json's summary (the figures capacity planners quote must not differ by file)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bench.cli import bench
from bench.report import format_figure


@pytest.mark.parametrize("transport, arguments", [
    ("stream", ["--offered", "200", "--seconds", "2"]),
    ("http", ["--seconds", "2"]),
])
def test_e2e_json_equals_report_json(transport, arguments, tmp_path):
    folder = tmp_path / "e2e"
    result = CliRunner().invoke(bench, ["e2e", "--transport", transport, *arguments, "--json",
                                        "--report-dir", str(folder)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    written = json.loads((folder / "report.json").read_text())
    assert printed == written["summary"]
    assert printed["report_dir"] == str(folder)
    (run,) = printed["results"]
    assert run["transport"] == transport
    assert run["transfers_per_s"] > 0
    assert 0 < run["success_rate"] <= 1
    for name in ("report.md", "throughput.png", "latency.png", "resources.png",
                 "outcomes.png"):
        assert (folder / name).stat().st_size > 0, name
    # report.md quotes the same figures, as the same JSON text, in a table.
    markdown = (folder / "report.md").read_text()
    assert "{" not in markdown
    assert f"| `transport` | {format_figure(transport)} |" in markdown
    assert f"| `transfers_per_s` | {format_figure(run['transfers_per_s'])} |" in markdown
    # The plots have something to show: every second has its outcome mix and its p90.
    series = written["series"]
    assert series
    assert all(sample["latency_p90_ms"] is not None for sample in series), series
    assert sum(sum(sample["outcomes"].values()) for sample in series) > 0, series
    assert run["p50_ms"] <= run["p90_ms"] <= run["p99_ms"]
