"""`lab run` end to end on real containers: the shipped experiments, short, and a failure."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import polars as pl
import pytest

from lab.stack.ownership import LABEL_SERVICE, lab_containers
from tests.conftest import REPO, run_lab

EXPERIMENTS = REPO / "experiments"


def run_quick(name: str, results: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    result = run_lab(
        "run",
        str(EXPERIMENTS / f"{name}.toml"),
        "--quick",
        "--progress",
        "none",
        *extra,
        env={"LAB_RESULTS_DIR": str(results)},
        timeout=600,
    )
    dirs = sorted(results.iterdir())
    assert len(dirs) == 1, result.stdout + result.stderr
    # 0: every target met and no regression; 1: the run worked and the answer is "no"
    assert result.returncode in (0, 1), result.stderr
    analysis = json.loads((dirs[0] / "analysis" / "analysis.json").read_text())
    missed = any(not t["met"] for t in analysis["targets"] if t["variant"] != analysis["baseline"])
    assert (result.returncode == 1) == (missed or bool(analysis["regressions"])), result.stderr
    return result, dirs[0]


def metrics_of(rundir: Path) -> pl.DataFrame:
    frame = pl.read_parquet(rundir / "trials.parquet")
    return frame.pivot(on="metric", index=["variant", "trial"], values="value")


LOADED = {"cache": "redis", "database": "postgres", "api": "mock_api", "inference": "inference"}


def check_time_series(rundir: Path, config: dict[str, object]) -> None:
    """Every container of every trial has a resource time series; the loaded service used CPU."""
    workload = str(config["workload"])
    for trial_dir in sorted((rundir / "trials").iterdir()):
        series = pl.read_parquet(trial_dir / "timeseries.parquet")
        variant = trial_dir.name.split("-", 1)[1]
        services = set(config["variants"][variant]["services"])  # type: ignore[index]
        docker_rows = series.filter(pl.col("source") == "docker")
        assert set(docker_rows["service"]) == services, trial_dir
        cpu = (
            docker_rows.filter(pl.col("metric") == "cpu_s")
            .group_by("service")
            .agg((pl.col("value").max() - pl.col("value").min()).alias("used"), pl.len().alias("readings"))
        )
        used = dict(cpu.select("service", "used").iter_rows())
        assert used[LOADED[workload]] > 0, (trial_dir, used)
        assert cpu["readings"].min() >= 2  # the start and the end at least
        assert series.filter(pl.col("source") == "service").height > 0  # the services' own counters
        collector = json.loads((trial_dir / "trial.json").read_text())["collector"]
        assert collector["errors"] == {} and collector["cpu_s"] < 1.0, collector


def check_run_directory(rundir: Path, trials: int) -> pl.DataFrame:
    status = json.loads((rundir / "status.json").read_text())
    assert status["state"] == "complete" and status["trials_done"] == trials
    config = json.loads((rundir / "config.json").read_text())
    assert set(config["variants"]) == {"baseline", "optimized"} and config["diff"]
    assert (rundir / "experiment.toml").exists()
    for trial_dir in sorted((rundir / "trials").iterdir()):
        samples = pl.read_parquet(trial_dir / "samples-w0.parquet")
        assert samples.height > 0
        assert json.loads((trial_dir / "trial.json").read_text())["state"] == "complete"
    check_time_series(rundir, config)
    analysis = json.loads((rundir / "analysis" / "analysis.json").read_text())
    assert analysis["baseline"] == "baseline" and analysis["comparison"]
    assert all(row["verdict"] for row in analysis["comparison"])
    assert analysis["grades"]["optimized"]["grade"] in ("A+", "A", "B+", "B", "C", "D")
    return metrics_of(rundir)


def test_cache_experiment_l1_size_changes_the_l1_hit_rate(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    _, rundir = run_quick("cache", tmp_path)
    metrics = check_run_directory(rundir, trials=2)
    by_variant = {row["variant"]: row for row in metrics.iter_rows(named=True)}
    for row in by_variant.values():
        assert 0 < row["l1_hit_rate"] < 1
        assert row["postgres_cpu_s"] > 0 or row["redis_cpu_s"] > 0
    assert by_variant["optimized"]["l1_hit_rate"] > by_variant["baseline"]["l1_hit_rate"]
    assert lab_containers(docker_client) == []


def test_database_experiment_pool_wait_falls_with_a_larger_pool(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    _, rundir = run_quick("database", tmp_path)
    metrics = check_run_directory(rundir, trials=2)
    by_variant = {row["variant"]: row for row in metrics.iter_rows(named=True)}
    assert by_variant["optimized"]["pool_wait_ms"] <= by_variant["baseline"]["pool_wait_ms"]
    assert by_variant["optimized"]["latency_p90_ms"] > 0


def test_api_experiment_runs_end_to_end(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    _, rundir = run_quick("api", tmp_path)
    metrics = check_run_directory(rundir, trials=2)
    for row in metrics.iter_rows(named=True):
        assert row["throughput_rps"] > 0 and row["latency_p95_ms"] > 0


def test_aa_on_the_quick_api_experiment_finds_no_significant_change(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    result = run_lab(
        "aa",
        str(EXPERIMENTS / "api.toml"),
        "--quick",
        "--progress",
        "none",
        env={"LAB_RESULTS_DIR": str(results)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    (rundir,) = results.iterdir()
    config = json.loads((rundir / "config.json").read_text())
    assert config["mode"] == "aa" and config["aa_of"] == "baseline" and list(config["variants"]) == ["a1", "a2"]
    assert config["variants"]["a1"] == config["variants"]["a2"] and config["diff"] == []
    comparison = pl.read_parquet(rundir / "analysis" / "comparison.parquet")
    headline = {row["metric"]: row for row in comparison.filter(pl.col("headline")).iter_rows(named=True)}
    assert set(headline) == {"latency_p95_ms", "throughput_rps", "error_rate"}
    for metric, row in headline.items():
        assert row["verdict"] == "no significant change", (metric, row, result.stdout)
    floor = json.loads((rundir / "analysis" / "analysis.json").read_text())["noise_floor"]
    assert floor["latency_p95_ms"] > 0
    # the A/A run's noise floor becomes the thresholds of another analysis
    again = run_lab("analyze", str(rundir), "--threshold-from", str(rundir))
    assert again.returncode == 0, again.stderr
    assert f"thresholds from A/A run {rundir.name}" in again.stdout
    assert lab_containers(docker_client) == []


def test_inference_experiment_int8_batch_32_serves_more_predictions(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    _, rundir = run_quick("inference", tmp_path)
    metrics = check_run_directory(rundir, trials=2)
    by_variant = {row["variant"]: row for row in metrics.iter_rows(named=True)}
    assert by_variant["optimized"]["predictions_per_s"] > by_variant["baseline"]["predictions_per_s"]
    assert by_variant["baseline"]["latency_p50_ms"] > 0  # FP32 batch 1: measured, whatever it is


def test_killing_redis_mid_run_fails_the_trial_and_keeps_the_earlier_ones(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab",
            "run",
            str(EXPERIMENTS / "cache.toml"),
            "--trials",
            "3",
            "--duration",
            "3",
            "--progress",
            "none",
        ],
        cwd=REPO,
        env={**__import__("os").environ, "LAB_RESULTS_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        trial_files: list[Path] = []
        while time.monotonic() < deadline and not trial_files:
            trial_files = list(tmp_path.glob("*/trials/00-*/trial.json"))
            time.sleep(0.2)
        assert trial_files, "the first trial never finished"
        # The variant under load is the one whose containers are not paused: kill its Redis.
        victim = None
        while victim is None and time.monotonic() < deadline:
            running = [
                c for c in lab_containers(docker_client) if c.labels[LABEL_SERVICE] == "redis" and c.status == "running"
            ]
            victim = running[0] if len(running) == 1 else None
            time.sleep(0.1)
        assert victim is not None, "no variant's Redis was under load"
        victim.kill()
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)
    assert process.returncode == 3, stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1 and "stopped during the trial" in stderr
    rundir = trial_files[0].parents[2]
    status = json.loads((rundir / "status.json").read_text())
    assert status["state"] == "failed" and status["trials_done"] >= 1
    assert json.loads(trial_files[0].read_text())["state"] == "complete"
    assert pl.read_parquet(rundir / "trials.parquet").height > 0
    assert list((rundir / "logs").glob("*redis*.log"))
    assert lab_containers(docker_client) == []


@pytest.mark.parametrize("name", ["cache", "database", "api", "inference"])
def test_show_prints_the_effective_configs_and_the_diff(name: str) -> None:
    result = run_lab("show", str(EXPERIMENTS / f"{name}.toml"))
    assert result.returncode == 0, result.stderr
    assert "[baseline]" in result.stdout and "[optimized]" in result.stdout
    diff = result.stdout.split("diff between variants:")[1]
    assert "baseline=" in diff and "optimized=" in diff


def test_sweep_reports_the_batch_speedup_and_the_best_cell_within_target(tmp_path: Path) -> None:
    result = run_lab(
        "sweep",
        str(EXPERIMENTS / "inference.toml"),
        "--variant",
        "baseline",
        "--batches",
        "1,32",
        "--concurrency",
        "2",
        "--duration",
        "1.5",
        env={"LAB_RESULTS_DIR": str(tmp_path)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "best within p95 <= 500 ms" in result.stdout
    sweep = pl.read_parquet(next(tmp_path.glob("*/sweep.parquet")))
    by_batch = {row["batch"]: row for row in sweep.iter_rows(named=True)}
    assert by_batch[32]["predictions_per_s"] > by_batch[1]["predictions_per_s"]
    assert by_batch[32]["batch_speedup"] > 1
