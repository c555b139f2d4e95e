"""The inference workload against the inference server in its container: batching pays, INT8
latency is measured, the binary payload is served."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import polars as pl
import pytest

from lab.config.experiment import parse_experiment
from lab.loadgen.runner import run_load
from lab.loadgen.schedule import Schedule
from lab.loadgen.worker import LoadPlan
from lab.stack.stack import Stack, running_stack
from lab.workloads.inference import InferenceKnobs, InferenceWorkload, best_under_target, run_sweep


def start(model: str) -> Any:
    experiment = parse_experiment(
        {"experiment": {"name": "inference-workload-test"}, "services": {"inference": {"model": model}}},
        Path("tests/integration/test_workload_inference_integration.py"),
    )
    name, config = experiment.variant(None)
    return running_stack(config, name)


@pytest.fixture(scope="module")
def fp32(docker_client: docker.DockerClient) -> Iterator[Stack]:
    with start("fp32") as stack:
        yield stack


def trial(stack: Stack, knobs: InferenceKnobs, out_dir: Path) -> dict[str, float]:
    """One closed-loop trial the way the orchestrator runs it: prepare, reset, load, metrics."""
    driver = InferenceWorkload(knobs, stack.endpoints, seed=1)
    driver.prepare()
    driver.reset()
    plan = LoadPlan(Schedule.closed(2, 2.5), driver.operation(trial_seed=1), warmup_s=0.5)
    result = run_load(plan, out_dir, display="none")
    metrics = driver.trial_metrics(result)
    # every request the generator sent was served, warm-up included, with batch_size rows each
    assert metrics["server_requests"] == result.counters["sent"]
    assert metrics["server_rows"] == result.counters["sent"] * knobs.batch_size
    return metrics


def test_batch_32_makes_more_predictions_per_second_than_batch_1(fp32: Stack, tmp_path: Path) -> None:
    url = fp32.endpoints["inference"].url
    frame = run_sweep(url, [1, 32], [2], duration_s=2.0, warmup_s=0.5, out_dir=tmp_path, latency_target_ms=500.0)
    print("\n" + str(frame.select("batch", "requests_per_s", "predictions_per_s", "p95_ms", "batch_speedup")))
    batch1, batch32 = frame.row(0, named=True), frame.row(1, named=True)
    assert (batch1["batch"], batch32["batch"]) == (1, 32)
    assert batch32["predictions_per_s"] > batch1["predictions_per_s"]
    assert batch32["batch_speedup"] > 1.0 and batch1["batch_speedup"] == pytest.approx(1.0)
    assert frame["errors"].sum() == 0 and frame["meets_target"].all()
    assert best_under_target(frame)["batch"] == 32
    assert pl.read_parquet(tmp_path / "sweep.parquet").equals(frame)


def test_the_binary_payload_is_served(fp32: Stack, tmp_path: Path) -> None:
    metrics = trial(fp32, InferenceKnobs(batch_size=8, payload="binary"), tmp_path)
    print(
        f"\nfp32 binary batch 8: p50 {metrics['latency_p50_ms']:.2f} ms, p95 {metrics['latency_p95_ms']:.2f} ms, "
        f"{metrics['predictions_per_s']:.0f} predictions/s, {metrics['server_rows_per_call']:.1f} rows per call"
    )
    assert metrics["ok"] > 100 and metrics["errors"] == 0 and metrics["server_rejected"] == 0
    assert metrics["predictions_per_s"] == pytest.approx(8 * metrics["requests_per_s"])
    assert metrics["server_rows_per_call"] == 8.0 and metrics["precision_bits"] == 32.0


def test_int8_latency_at_batch_1_is_measured(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    with start("int8") as stack:
        metrics = trial(stack, InferenceKnobs(), tmp_path)
    print(
        f"\nint8 json batch 1: p50 {metrics['latency_p50_ms']:.2f} ms, p95 {metrics['latency_p95_ms']:.2f} ms, "
        f"p99 {metrics['latency_p99_ms']:.2f} ms, {metrics['requests_per_s']:.0f} requests/s"
    )
    for key in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
        assert math.isfinite(metrics[key]) and metrics[key] > 0
    assert metrics["ok"] > 100 and metrics["errors"] == 0 and metrics["precision_bits"] == 8.0
