"""`lab history` and `lab trend` on synthetic result folders: runs written as `lab run` writes
their config, status and analysis; a degrading step must fail `--fail-on degrade`, a flat
history must not."""

from __future__ import annotations

import json
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from lab.analysis.history import history, wide
from tests.support.cli import run_cli

START = datetime(2026, 11, 1, tzinfo=UTC)


def write_run(root: Path, index: int, p95: float, hit_rate: float = 0.9) -> Path:
    when = START + timedelta(hours=index)
    run = root / f"{when:%Y%m%dT%H%M%SZ}-api-{index:06x}"
    (run / "analysis").mkdir(parents=True)
    config = {
        "experiment": "api",
        "workload": "api",
        "mode": "ab",
        "host": {"hostname": "ci-1"},
        "variants": {"baseline": {"workload": {"crm_pool": 5}}, "optimized": {"workload": {"crm_pool": 20}}},
    }
    (run / "config.json").write_text(json.dumps(config))
    (run / "status.json").write_text(json.dumps({"state": "complete"}))
    summary = [
        {"variant": v, "metric": "latency_p95_ms", "value": p95 * (0.5 if v == "optimized" else 1.0)}
        for v in ("baseline", "optimized")
    ]
    summary += [{"variant": "optimized", "metric": "error_rate", "value": 0.01}]
    (run / "analysis" / "analysis.json").write_text(json.dumps({"experiment": "api", "summary": summary}))
    return run


def histories(root: Path, step: float, runs: int = 60, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    for i in range(runs):
        level = 100.0 * (1 + step if i >= runs // 2 else 1.0)
        write_run(root, i, level * (1 + 0.03 * rng.standard_normal()))


def test_history_is_in_time_order_with_host_and_config_hash(tmp_path: Path) -> None:
    for i in (2, 0, 1):
        write_run(tmp_path, i, 100.0 + i)
    frame = history(tmp_path)
    table = wide(frame, ["latency_p95_ms"])
    baseline = table.filter(table["variant"] == "baseline")
    assert baseline["latency_p95_ms"].to_list() == [100.0, 101.0, 102.0]
    assert set(table["host"]) == {"ci-1"}
    hashes = dict(zip(table["variant"], table["config_hash"], strict=False))
    assert hashes["baseline"] != hashes["optimized"] and len(hashes["baseline"]) == 12


def test_history_reads_bundles_and_counts_a_run_once(tmp_path: Path) -> None:
    run = write_run(tmp_path / "src", 0, 100.0)
    with tarfile.open(tmp_path / f"{run.name}.tar.gz", "w:gz") as archive:
        archive.add(run, arcname=run.name)
    assert history(tmp_path)["run"].unique().to_list() == [run.name]
    write_run(tmp_path, 0, 100.0)  # the same run unpacked beside its bundle
    assert history(tmp_path).height == history(tmp_path / "src").height


def test_trend_fails_on_a_degrading_step_and_names_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    histories(tmp_path, step=0.15)
    monkeypatch.setenv("LAB_RESULTS_DIR", str(tmp_path))
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    alert = tmp_path / "alert.md"
    assert run_cli(monkeypatch, "trend", "--fail-on", "degrade", "--alert", str(alert)) == 1
    captured = capsys.readouterr()
    assert "api/baseline latency_p95_ms: degrading" in captured.out
    assert "degraded" in captured.err and len(captured.err.strip().splitlines()) == 1
    step_run = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())[30]
    text = alert.read_text()
    assert text.startswith("### ❌ ablab trend: degradation")
    # the change point is within two runs of the true one
    starts = [line.split("`")[3] for line in text.splitlines() if line.startswith("| api |")]
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert all(abs(runs.index(s) - runs.index(step_run)) <= 2 for s in starts), starts
    assert summary.read_text() == text


def test_trend_passes_a_flat_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    histories(tmp_path, step=0.0)
    monkeypatch.setenv("LAB_RESULTS_DIR", str(tmp_path))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert run_cli(monkeypatch, "trend", "--fail-on", "degrade") == 0
    out = capsys.readouterr().out
    assert "latency_p95_ms: flat" in out and "no degrading change point" in out


def test_an_improvement_is_reported_but_does_not_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    histories(tmp_path, step=-0.2)
    monkeypatch.setenv("LAB_RESULTS_DIR", str(tmp_path))
    assert run_cli(monkeypatch, "trend", "--fail-on", "degrade", "--experiment", "api") == 0
    assert "latency_p95_ms: improving" in capsys.readouterr().out


def test_history_of_an_empty_folder_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_RESULTS_DIR", str(tmp_path))
    assert run_cli(monkeypatch, "history") == 2
    assert run_cli(monkeypatch, "trend") == 2
