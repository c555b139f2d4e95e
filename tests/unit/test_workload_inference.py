"""The inference workload without Docker: knobs, request bodies, outcomes against the real
server app in-process (a small 64-feature model), metrics and sweep math from hand-made frames."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal
from pydantic import ValidationError

from lab.loadgen.operation import CallResult
from lab.loadgen.runner import run_load, scan_samples
from lab.loadgen.schedule import Schedule
from lab.loadgen.worker import SAMPLE_SCHEMA, LoadPlan
from lab.model.data import generate_leads
from lab.services.inference_server import ServerConfig, create_app
from lab.stack.endpoint import Endpoint
from lab.workloads.inference import (
    DRIVER,
    InferenceKnobs,
    InferenceWorkload,
    best_under_target,
    inference_metrics,
    inference_operation,
    request_bodies,
    ring_size,
    server_metrics,
    sweep_table,
)
from tests.support.asgi_server import free_port, serving
from tests.support.http_servers import local_server
from tests.support.tiny_model import write_tiny_model


def endpoint(url: str) -> dict[str, Endpoint]:
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    return {"inference": Endpoint("inference", "127.0.0.1", port, url, "c0ffee", "ablab-test", "ablab/inference")}


# ---------------------------------------------------------------------------------------------
# knobs and driver wiring


def test_default_knobs_are_the_shipped_baseline() -> None:
    knobs = InferenceKnobs()
    assert (knobs.batch_size, knobs.payload, knobs.timeout_s, knobs.connections) == (1, "json", 10.0, 16)
    assert knobs.latency_target_ms == 500.0


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "8"}, "batch_size"),  # strict: a string is not a number
        ({"payload": "protobuf"}, "payload"),
        ({"connections": 0}, "connections"),
        ({"timeout_s": -1}, "timeout_s"),
        ({"latency_target_ms": 0}, "latency_target_ms"),
        ({"batch": 8}, "batch"),  # unknown key
    ],
)
def test_bad_knobs_are_rejected_naming_the_key(table: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        InferenceKnobs.model_validate(table)
    assert caught.value.errors()[0]["loc"][0] == where


def test_driver_declares_its_kind_services_and_operation() -> None:
    assert DRIVER is InferenceWorkload
    assert InferenceWorkload.kind == "inference" and InferenceWorkload.required_services == ("inference",)
    assert InferenceWorkload.knobs_model is InferenceKnobs
    knobs = InferenceKnobs(batch_size=32, payload="binary", connections=4)
    ref = InferenceWorkload(knobs, endpoint("http://127.0.0.1:9"), seed=1).operation(trial_seed=5)
    assert ref.factory == "lab.workloads.inference:inference_operation" and ref.load() is inference_operation
    assert ref.params == {
        "url": "http://127.0.0.1:9",
        "batch_size": 32,
        "payload": "binary",
        "connections": 4,
        "timeout_s": 10.0,
        "seed": 5,
    }


def test_ring_holds_64_bodies_unless_the_batches_are_huge() -> None:
    assert [ring_size(batch) for batch in (1, 64, 256, 1024, 65_536)] == [64, 64, 64, 16, 2]


@pytest.mark.parametrize("payload", ["json", "binary"])
def test_bodies_carry_the_generated_leads_exactly(payload: str) -> None:
    bodies = request_bodies(4, payload, seed=11)  # type: ignore[arg-type]
    leads = generate_leads(64 * 4, seed=11).features
    if payload == "json":
        decoded = np.array([orjson.loads(body)["rows"] for body in bodies], dtype=np.float32).reshape(-1, 64)
    else:
        decoded = np.frombuffer(b"".join(bodies), dtype="<f4").reshape(-1, 64)
    assert np.array_equal(decoded, leads)  # float32 -> JSON -> float32 round-trips exactly
    assert bodies == request_bodies(4, payload, seed=11)  # type: ignore[arg-type]
    assert bodies != request_bodies(4, payload, seed=12)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# the real server app in-process


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = write_tiny_model(tmp_path_factory.mktemp("model") / "leads-fp32.onnx", features=64, hidden=64)
    with serving(create_app(ServerConfig(model_path=model, precision="fp32", max_rows=64))) as url:
        yield url


def predict(url: str, count: int, **params: Any) -> tuple[list[CallResult], dict[str, float]]:
    async def main() -> tuple[list[CallResult], dict[str, float]]:
        settings = {"url": url, "batch_size": 1, "payload": "json", "connections": 4, "timeout_s": 5.0, "seed": 1}
        operation = await inference_operation({**settings, **params})
        try:
            results = await asyncio.gather(*(operation.call(seq) for seq in range(count)))
            return list(results), operation.stats()
        finally:
            await operation.close()

    return asyncio.run(main())


@pytest.mark.parametrize("payload", ["json", "binary"])
def test_both_payloads_are_served(server_url: str, payload: str) -> None:
    results, stats = predict(server_url, 10, batch_size=8, payload=payload)
    assert results == [CallResult("ok", "batch8")] * 10
    assert stats["requests"] == stats["ok"] == 10 and stats["rows_ok"] == 80


def test_failures_are_outcomes(server_url: str) -> None:
    (too_big,), stats = predict(server_url, 1, batch_size=65)  # the server takes at most 64 rows
    assert too_big == CallResult("http_413", "batch65") and stats["ok"] == 0
    (refused,), _ = predict(f"http://127.0.0.1:{free_port()}", 1)
    assert refused.outcome == "connection_error"
    with local_server("fixed", "--delay-ms", "500") as slow_url:
        (late,), _ = predict(slow_url.rstrip("/"), 1, timeout_s=0.1)
    assert late.outcome == "timeout"


def test_a_trial_reads_the_server_counters_around_it(server_url: str, tmp_path: Path) -> None:
    driver = InferenceWorkload(InferenceKnobs(batch_size=4, payload="binary"), endpoint(server_url), seed=1)
    driver.prepare()
    driver.reset()
    plan = LoadPlan(Schedule.constant(100, 1.5), driver.operation(trial_seed=2), warmup_s=0.5)
    result = run_load(plan, tmp_path / "load", display="none")
    metrics = driver.trial_metrics(result)
    assert metrics["requests"] == metrics["ok"] == 100 and metrics["errors"] == 0
    assert metrics["requests_per_s"] == 100.0 and metrics["predictions_per_s"] == 400.0
    assert 0 < metrics["latency_p50_ms"] <= metrics["latency_p95_ms"] < 500 and metrics["meets_target"] == 1.0
    # warm-up included on the server's side: 150 requests of 4 rows, one onnxruntime call each
    assert metrics["server_requests"] == metrics["server_onnxruntime_calls"] == 150
    assert metrics["server_rows"] == 600 and metrics["server_rows_per_call"] == 4.0
    assert metrics["server_rejected"] == 0 and metrics["precision_bits"] == 32.0
    assert driver.server_info == {"model": "leads-fp32.onnx", "precision": "fp32"}


# ---------------------------------------------------------------------------------------------
# metrics and sweep math from hand-made frames


def hand_made_samples(folder: Path, latencies_ms: list[float], outcomes: list[str]) -> pl.LazyFrame:
    folder.mkdir(parents=True, exist_ok=True)
    intended = [k * 1_000_000 for k in range(len(latencies_ms))]
    ends = [i + round(ms * 1e6) for i, ms in zip(intended, latencies_ms, strict=True)]
    table = pa.table(
        {
            "worker": pa.array([0] * len(ends), pa.int16()),
            "seq": pa.array(range(len(ends)), pa.int64()),
            "intended_ns": pa.array(intended, pa.int64()),
            "start_ns": pa.array(intended, pa.int64()),
            "end_ns": pa.array(ends, pa.int64()),
            "outcome": pa.array(outcomes).dictionary_encode().cast(SAMPLE_SCHEMA.field("outcome").type),
            "label": pa.array(["batch8"] * len(ends)).dictionary_encode().cast(SAMPLE_SCHEMA.field("label").type),
        },
        schema=SAMPLE_SCHEMA,
    )
    pq.write_table(table, folder / "samples-w0.parquet")
    return scan_samples(folder)


def test_inference_metrics_from_hand_made_samples(tmp_path: Path) -> None:
    latencies_ms = [float(ms) for ms in range(1, 21)]  # 1, 2, ..., 20 ms
    outcomes = ["ok"] * 19 + ["http_413"]
    samples = hand_made_samples(tmp_path, latencies_ms, outcomes)
    metrics = inference_metrics(samples, measured_s=0.5, batch_size=8, latency_target_ms=19.0)
    assert metrics["latency_p50_ms"] == pytest.approx(10.5)
    assert metrics["latency_p95_ms"] == pytest.approx(19.05)
    assert metrics["latency_p99_ms"] == pytest.approx(19.81)
    assert (metrics["requests"], metrics["ok"], metrics["errors"]) == (20, 19, 1)
    assert metrics["requests_per_s"] == 38.0 and metrics["predictions_per_s"] == 304.0
    assert metrics["error_rate"] == 0.05 and metrics["meets_target"] == 0.0  # 19.05 ms > 19 ms, and an error
    relaxed = inference_metrics(
        hand_made_samples(tmp_path / "ok", latencies_ms, ["ok"] * 20), 0.5, 8, latency_target_ms=20.0
    )
    assert relaxed["meets_target"] == 1.0


def test_server_metrics_are_deltas_of_its_counters() -> None:
    before = {"requests": 10, "rows": 80, "onnxruntime_calls": 10, "rows_per_call": 8.0, "inference_s": 0.5}
    after = {"requests": 110, "rows": 880, "onnxruntime_calls": 60, "rows_per_call": 14.666666666666666}
    after |= {"inference_s": 0.8}
    metrics = server_metrics({**before, "rejected": {"413": 1}}, {**after, "rejected": {"413": 3, "400": 1}})
    assert metrics["server_requests"] == 100 and metrics["server_rows"] == 800
    assert metrics["server_onnxruntime_calls"] == 50
    assert metrics["server_rows_per_call"] == pytest.approx(16.0)  # (880 - 80) rows in 50 calls
    assert metrics["server_inference_ms_per_call"] == pytest.approx(6.0)
    assert metrics["server_rejected"] == 3


CELLS = pl.DataFrame(
    {
        "batch": [1, 8, 32, 1, 8, 32],
        "concurrency": [1, 1, 1, 4, 4, 4],
        "requests_per_s": [1000.0, 500.0, 150.0, 1500.0, 700.0, 200.0],
        "predictions_per_s": [1000.0, 4000.0, 4800.0, 1500.0, 5600.0, 6400.0],
        "p50_ms": [1.0, 2.0, 6.0, 2.5, 5.0, 18.0],
        "p95_ms": [2.0, 3.0, 9.0, 4.0, 8.0, 30.0],
        "p99_ms": [3.0, 4.0, 12.0, 6.0, 12.0, 45.0],
        "errors": [0, 0, 0, 0, 2, 0],
    }
)


def test_sweep_table_adds_speedup_and_target() -> None:
    table = sweep_table(CELLS.reverse(), latency_target_ms=10.0)
    expected = CELLS.with_columns(
        pl.Series("batch_speedup", [1.0, 4.0, 4.8, 1.0, 5600 / 1500, 6400 / 1500]),
        # batch 8 at concurrency 4 is fast enough but had errors; batch 32 there is too slow
        pl.Series("meets_target", [True, True, True, True, False, False]),
    )
    assert_frame_equal(table, expected)
    assert best_under_target(table) == {
        "batch": 32,
        "concurrency": 1,
        "requests_per_s": 150.0,
        "predictions_per_s": 4800.0,
        "p50_ms": 6.0,
        "p95_ms": 9.0,
        "p99_ms": 12.0,
        "errors": 0,
        "batch_speedup": 4.8,
        "meets_target": True,
    }


def test_sweep_without_batch_one_or_without_a_winner() -> None:
    table = sweep_table(CELLS.filter(pl.col("batch") > 1), latency_target_ms=1.0)
    assert table["batch_speedup"].null_count() == table.height == 4
    assert not table["meets_target"].any()
    assert best_under_target(table) == {}
    nan_cell = sweep_table(CELLS.head(1).with_columns(pl.lit(math.nan).alias("p95_ms")), latency_target_ms=10.0)
    assert nan_cell["meets_target"].to_list() == [False]  # nothing completed: no latency, no target met


def test_health_metrics_take_accuracy_from_the_card_of_the_served_file() -> None:
    from lab.model.card import load_card
    from lab.stack.services.inference import MODELS_DIR
    from lab.workloads.inference import health_metrics

    card = load_card(MODELS_DIR)
    assert card is not None, "make setup builds the model (lab model build)"
    int8 = health_metrics({"precision": "int8", "sha256": card.int8.sha256})
    assert int8["model_accuracy"] == card.int8_heldout.accuracy
    assert int8["model_disagreement"] == pytest.approx(1 - card.agreement.class_agreement)
    assert int8["model_heldout_rows"] == card.agreement.rows
    fp32 = health_metrics({"precision": "fp32", "sha256": card.fp32.sha256})
    assert fp32["model_accuracy"] == card.fp32_heldout.accuracy and fp32["model_disagreement"] == 0.0
    # a file the lab did not build: no accuracy claimed
    assert "model_accuracy" not in health_metrics({"precision": "fp32", "sha256": "0" * 64})
