"""Faults on a timeline, on real containers: each kind changes what the load measures while it
lasts, less after; it is recorded with its times and drawn on the report's timelines; no
container outlives the run."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import polars as pl
import pytest

from lab.stack.ownership import lab_containers
from tests.conftest import REPO, run_lab

FAULT_AT_S, FAULT_S, TRIAL_S = 2.5, 1.0, 8.0


def with_fault(tmp_path: Path, kind: str, service: str = "postgres", base: str = "database", extra: str = "") -> Path:
    text = (REPO / "experiments" / f"{base}.toml").read_text()
    fault = (
        f'\n[[faults]]\nkind = "{kind}"\nservice = "{service}"\nat_s = {FAULT_AT_S}\nduration_s = {FAULT_S}\n{extra}'
    )
    path = tmp_path / f"{base}-{kind}.toml"
    path.write_text(text + fault)
    return path


def run_one(experiment: Path, results: Path) -> Path:
    result = run_lab(
        "run", str(experiment), "--quick", "--variant", "optimized", "--duration", str(TRIAL_S),
        "--progress", "none", env={"LAB_RESULTS_DIR": str(results)}, timeout=600,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr  # 1: a target missed under the fault
    (run,) = [p for p in results.iterdir() if p.is_dir()]
    assert json.loads((run / "status.json").read_text())["state"] == "complete"
    return run


def failure_share(samples: pl.DataFrame, low: float, high: float) -> float:
    part = samples.filter((pl.col("t") >= low) & (pl.col("t") < high))
    return float((part["outcome"] != "ok").mean() or 0.0)


@pytest.mark.parametrize("kind", ["pause", "kill", "stop", "network", "restart"])
def test_a_container_fault_hurts_while_it_lasts_and_less_after(
    docker_client: docker.DockerClient, tmp_path: Path, kind: str
) -> None:
    run = run_one(with_fault(tmp_path, kind), tmp_path / "results")
    (trial,) = sorted((run / "trials").iterdir())
    (record,) = json.loads((trial / "faults.json").read_text())
    assert record["kind"] == kind and record["applied"] is True, record
    assert abs(record["start_s"] - FAULT_AT_S) < 0.2
    metrics = json.loads((trial / "trial.json").read_text())["metrics"]
    # during the fault: requests fail or wait (a paused Postgres holds them: latency, not errors)
    hurt = metrics["fault_error_rate"] > 0.1 or metrics["fault_p95_ms"] > 10 * metrics["pre_fault_p95_ms"]
    assert hurt, metrics
    samples = pl.read_parquet(trial / "samples-w0.parquet").with_columns(
        (pl.col("intended_ns") / 1e9).alias("t"), pl.col("outcome").cast(pl.String)
    )
    before = failure_share(samples, 0, record["start_s"])
    during = failure_share(samples, record["start_s"], record["end_s"])
    after = failure_share(samples, record["end_s"] + 1.5, TRIAL_S)
    assert before < 0.01, before
    assert after < during or (during == 0 and metrics["recovered"] == 1.0), (before, during, after)
    # the report draws the window on its timelines; the container is back and then removed
    assert 'class="window"' in (run / "report.html").read_text()
    assert lab_containers(docker_client) == []


def test_the_resilience_experiment_compares_fallback_under_a_redis_kill(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    result = run_lab(
        "run", str(REPO / "experiments" / "resilience.toml"), "--quick", "--progress", "none",
        env={"LAB_RESULTS_DIR": str(results)}, timeout=600,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    (run,) = [p for p in results.iterdir() if p.is_dir()]
    by_variant = {}
    for trial in sorted((run / "trials").iterdir()):
        variant = trial.name.split("-", 1)[1]
        by_variant[variant] = json.loads((trial / "trial.json").read_text())["metrics"]
        assert json.loads((trial / "faults.json").read_text())[0]["applied"] is True
    # without fallback lookups fail while Redis is down; with it they are served from Postgres
    assert by_variant["baseline"]["fault_error_rate"] > 0.2, by_variant["baseline"]
    assert by_variant["optimized"]["fault_error_rate"] < 0.05, by_variant["optimized"]
    assert by_variant["optimized"]["fallbacks"] > 0
    comparison = pl.read_parquet(run / "analysis" / "comparison.parquet")
    assert "fault_error_rate" in comparison["metric"].to_list()
    assert lab_containers(docker_client) == []


@pytest.mark.parametrize(
    ("kind", "extra"),
    [("latency", 'upstream = "llm"\nextra_latency_ms = 1000\n'), ("errors", 'upstream = "llm"\nerror_rate = 0.8\n')],
)
def test_a_degraded_upstream_shows_in_the_window_only(
    docker_client: docker.DockerClient, tmp_path: Path, kind: str, extra: str
) -> None:
    run = run_one(with_fault(tmp_path, kind, service="mock_api", base="api", extra=extra), tmp_path / "results")
    (trial,) = sorted((run / "trials").iterdir())
    (record,) = json.loads((trial / "faults.json").read_text())
    assert record["applied"] is True, record
    metrics = json.loads((trial / "trial.json").read_text())["metrics"]
    if kind == "latency":  # every request waits on the llm: p95 grows by about the extra second
        assert metrics["fault_p95_ms"] > metrics["pre_fault_p95_ms"] + 500, metrics
    else:  # 80 % of llm calls fail, and with them the requests that needed them
        assert metrics["fault_error_rate"] > 0.4, metrics
    assert metrics["mock_llm_fault_errors" if kind == "errors" else "mock_llm_fault_delayed"] > 0
    assert lab_containers(docker_client) == []
