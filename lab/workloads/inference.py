"""The inference workload: requests of `batch_size` lead rows to the ONNX inference server.

Rows are realistic leads from the model's own generator (lab.model.data), seeded by the trial
seed, so the model sees the distribution it was trained on. The factory prebuilds a ring of
request bodies (JSON `{"rows": ...}` or raw little-endian float32) and the hot path only sends
bytes: serializing 64 x 64 floats per request would otherwise cost the generator more than the
server's inference.

`run_sweep` measures the batch-size trade-off: for each (batch, concurrency) one closed-loop
run, then predictions/s, latency, the speedup over batch 1 and whether the latency target holds.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import orjson
import polars as pl
from pydantic import Field

from lab.loadgen.http import HttpClient, HttpError
from lab.loadgen.operation import CallResult, OperationRef
from lab.loadgen.runner import LoadResult, run_load, summarize_samples
from lab.loadgen.schedule import Schedule
from lab.loadgen.worker import LoadPlan
from lab.model.card import load_card
from lab.model.data import FEATURE_COUNT, generate_leads
from lab.stack.endpoint import Endpoint
from lab.stack.services.http import get_json
from lab.stack.services.inference import MODELS_DIR
from lab.workloads.base import Knobs, WorkloadDriver

Payload = Literal["json", "binary"]
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
RING_BODIES = 64  # distinct request bodies per trial (fewer for huge batches, see ring_size)
RING_ROWS_MAX = 16_384  # rows held in the ring at most: 4 MiB of float32, ~10 MiB as JSON
SERVER_COUNTERS = ("requests", "rows", "onnxruntime_calls", "inference_s")
SWEEP_COLUMNS = (
    "batch",
    "concurrency",
    "requests_per_s",
    "predictions_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "errors",
    "batch_speedup",
    "meets_target",
)


class InferenceKnobs(Knobs):
    """Client-side settings of the inference workload; the defaults are the shipped baseline."""

    batch_size: int = Field(default=1, ge=1, le=65_536, description="rows per request")
    payload: Payload = Field(default="json", description='"json" ({"rows": [[...]]}) or "binary" (raw float32)')
    timeout_s: float = Field(default=10.0, gt=0, le=600, description="per request")
    connections: int = Field(default=16, ge=1, le=10_000, description="keep-alive connections to the server")
    latency_target_ms: float = Field(default=500.0, gt=0, le=600_000, description="p95 that meets the target")


# ---------------------------------------------------------------------------------------------
# the operation (runs in the load worker processes)


def ring_size(batch_size: int) -> int:
    """How many distinct bodies to prebuild: 64, fewer when the batches are huge (at least 2)."""
    return max(2, min(RING_BODIES, RING_ROWS_MAX // batch_size))


def request_bodies(batch_size: int, payload: Payload, seed: int) -> list[bytes]:
    """Prebuilt /predict bodies of `batch_size` generated leads each."""
    count = ring_size(batch_size)
    features = generate_leads(count * batch_size, seed).features.reshape(count, batch_size, FEATURE_COUNT)
    if payload == "binary":
        return [block.astype("<f4").tobytes() for block in features]
    # orjson writes float32 in its shortest round-trip form; the server parses it back exactly
    return [orjson.dumps({"rows": block}, option=orjson.OPT_SERIALIZE_NUMPY) for block in features]


class PredictOperation:
    """One POST /predict of `batch_size` rows per call; 2xx is ok, else `http_<status>` etc."""

    def __init__(self, client: HttpClient, requests: list[bytes], batch_size: int) -> None:
        self.client = client
        self.requests = requests
        self.batch_size = batch_size
        self.label = f"batch{batch_size}"
        self._ok = CallResult("ok", self.label)
        self.sent = 0
        self.ok = 0
        self.bytes_sent = 0

    async def call(self, seq: int) -> CallResult:
        request = self.requests[seq % len(self.requests)]
        self.sent += 1
        self.bytes_sent += len(request)
        try:
            status = await self.client.send(request)
        except TimeoutError:  # before OSError: TimeoutError is one
            return CallResult("timeout", self.label)
        except (ConnectionError, OSError):
            return CallResult("connection_error", self.label)
        except HttpError:
            return CallResult("protocol_error", self.label)
        if 200 <= status < 300:
            self.ok += 1
            return self._ok
        return CallResult(f"http_{status}", self.label)

    def stats(self) -> dict[str, float]:
        """Requests and rows sent by this worker (warm-up included)."""
        return {
            "requests": float(self.sent),
            "ok": float(self.ok),
            "rows_ok": float(self.ok * self.batch_size),
            "request_bytes": float(self.bytes_sent),
        }

    async def close(self) -> None:
        await self.client.close()


async def inference_operation(params: dict[str, Any]) -> PredictOperation:
    """Factory for `lab.workloads.inference:inference_operation`:
    url, batch_size, payload, connections, timeout_s, seed."""
    url = str(params["url"])
    batch_size = int(params["batch_size"])
    payload: Payload
    if params["payload"] == "binary":
        payload = "binary"
    elif params["payload"] == "json":
        payload = "json"
    else:
        raise ValueError(f"payload must be json or binary, not {params['payload']!r}")
    client = HttpClient(url, connections=int(params["connections"]), timeout_s=float(params["timeout_s"]))
    content_type = BINARY_TYPE if payload == "binary" else JSON_TYPE
    # binary in, binary out: the server answers raw float32 scores when we accept them
    headers = {"Content-Type": content_type, "Accept": content_type}
    requests = [
        client.build_request("POST", "/predict", body, headers)
        for body in request_bodies(batch_size, payload, int(params["seed"]))
    ]
    return PredictOperation(client, requests, batch_size)


# ---------------------------------------------------------------------------------------------
# metrics (pure functions of what was measured)


def inference_metrics(
    samples: pl.LazyFrame, measured_s: float, batch_size: int, latency_target_ms: float
) -> dict[str, float]:
    """Request latency (all completed requests), requests/s and predictions/s of ok requests."""
    latency = summarize_samples(samples, "latency_ns")
    counts = (
        samples.select(
            pl.col("end_ns").is_not_null().sum().alias("completed"),
            (pl.col("outcome") == "ok").sum().alias("ok"),
        )
        .collect()
        .row(0, named=True)
    )
    completed, ok = int(counts["completed"]), int(counts["ok"])
    errors = completed - ok
    p95_ms = latency.percentiles_ms["p95"]
    return {
        "batch_size": float(batch_size),
        "latency_p50_ms": latency.percentiles_ms["p50"],
        "latency_p95_ms": p95_ms,
        "latency_p99_ms": latency.percentiles_ms["p99"],
        "latency_mean_ms": latency.mean_ms,
        "requests": float(completed),
        "ok": float(ok),
        "errors": float(errors),
        "error_rate": errors / completed if completed else 0.0,
        "requests_per_s": ok / measured_s,
        "predictions_per_s": ok * batch_size / measured_s,
        "meets_target": float(_meets_target(p95_ms, errors, latency_target_ms)),
    }


def _meets_target(p95_ms: float, errors: int, latency_target_ms: float) -> bool:
    # a NaN p95 (nothing completed) or failed requests never meet a latency target
    return math.isfinite(p95_ms) and p95_ms <= latency_target_ms and errors == 0


def server_metrics(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """What the server did during the trial: its `/stats` after minus before (warm-up included)."""
    delta = {key: float(after[key]) - float(before[key]) for key in SERVER_COUNTERS}
    # rows_per_call is cumulative on the server; rows per call of this trial come from the totals
    call_rows = float(after["rows_per_call"]) * float(after["onnxruntime_calls"]) - float(
        before["rows_per_call"]
    ) * float(before["onnxruntime_calls"])
    calls = delta["onnxruntime_calls"]
    return {
        "server_requests": delta["requests"],
        "server_rows": delta["rows"],
        "server_onnxruntime_calls": calls,
        "server_rows_per_call": call_rows / calls if calls else 0.0,
        "server_inference_ms_per_call": 1000 * delta["inference_s"] / calls if calls else 0.0,
        "server_rejected": float(sum(after["rejected"].values()) - sum(before["rejected"].values())),
    }


def health_metrics(health: dict[str, Any], models_dir: Path | None = None) -> dict[str, float]:
    """The model's precision as a number (metrics are floats; the names are in `server_info`),
    and, when the served file is one the lab built (its sha256 is on the model card), the model's
    held-out accuracy and AUC and how often it disagrees with the FP32 model on those rows."""
    metrics = {"precision_bits": 8.0 if health["precision"] == "int8" else 32.0}
    card = load_card(models_dir or MODELS_DIR)
    if card is None:
        return metrics
    for precision, file, heldout in (("fp32", card.fp32, card.fp32_heldout), ("int8", card.int8, card.int8_heldout)):
        if file.sha256 == health.get("sha256"):
            metrics["model_accuracy"] = heldout.accuracy
            metrics["model_auc"] = heldout.auc
            metrics["model_heldout_rows"] = float(card.agreement.rows)
            metrics["model_disagreement"] = 0.0 if precision == "fp32" else 1.0 - card.agreement.class_agreement
    return metrics


# ---------------------------------------------------------------------------------------------
# the driver (runs in the orchestrating parent)


class InferenceWorkload(WorkloadDriver):
    """Batches of generated leads to the inference server."""

    kind: ClassVar[str] = "inference"
    knobs_model: ClassVar[type[Knobs]] = InferenceKnobs
    required_services: ClassVar[tuple[str, ...]] = ("inference",)
    knobs: InferenceKnobs

    def __init__(self, knobs: Knobs, endpoints: dict[str, Endpoint], seed: int) -> None:
        if not isinstance(knobs, InferenceKnobs):
            raise TypeError(f"the inference workload takes InferenceKnobs, not {type(knobs).__name__}")
        super().__init__(knobs, endpoints, seed)
        self.url = endpoints["inference"].url
        self.server_info: dict[str, str] = {}
        self._health: dict[str, Any] | None = None
        self._stats_before: dict[str, Any] | None = None

    def prepare(self) -> None:
        """Nothing to load: reads `/health` once for the model's name and precision."""
        health = get_json(f"{self.url}/health")
        self.server_info = {"model": str(health["model"]), "precision": str(health["precision"])}
        self._health = health

    def reset(self) -> None:
        """The server keeps no state between requests and has no reset: this reads its `/stats`
        counters, which `trial_metrics` subtracts from the ones it reads after the trial."""
        self._stats_before = get_json(f"{self.url}/stats")

    def operation(self, trial_seed: int) -> OperationRef:
        return OperationRef(
            "lab.workloads.inference:inference_operation",
            operation_params(self.url, self.knobs, trial_seed),
        )

    def trial_metrics(self, result: LoadResult) -> dict[str, float]:
        """Latency, requests/s and predictions/s (measured phase), the server's counters over the
        trial (warm-up included), and the model's precision."""
        knobs = self.knobs
        metrics = inference_metrics(result.samples(), result.measured_s, knobs.batch_size, knobs.latency_target_ms)
        after = get_json(f"{self.url}/stats")
        if self._stats_before is not None:
            metrics.update(server_metrics(self._stats_before, after))
        if self._health is None:
            self.prepare()
        assert self._health is not None
        metrics.update(health_metrics(self._health))
        return metrics


DRIVER = InferenceWorkload


def operation_params(url: str, knobs: InferenceKnobs, seed: int) -> dict[str, Any]:
    """The JSON parameters of `inference_operation` for these knobs."""
    return {
        "url": url,
        "batch_size": knobs.batch_size,
        "payload": knobs.payload,
        "connections": knobs.connections,
        "timeout_s": knobs.timeout_s,
        "seed": seed,
    }


# ---------------------------------------------------------------------------------------------
# the batch-size sweep


def run_sweep(
    endpoint_url: str,
    batches: list[int],
    concurrencies: list[int],
    duration_s: float,
    warmup_s: float,
    out_dir: Path,
    latency_target_ms: float,
    payload: Payload = "json",
    seed: int = 0,
) -> pl.DataFrame:
    """One closed-loop run per (batch, concurrency), `warmup_s` then `duration_s` measured.

    Closed loop on purpose: the question is what the server sustains at a given number of
    requests in flight, not how it queues an arrival rate it cannot serve. Each cell's samples
    stay in `out_dir/b<batch>-c<concurrency>/`; the table is also written to `out_dir/sweep.parquet`.
    """
    cells = []
    for concurrency in concurrencies:
        for batch in batches:
            knobs = InferenceKnobs(
                batch_size=batch, payload=payload, connections=concurrency, latency_target_ms=latency_target_ms
            )
            plan = LoadPlan(
                schedule=Schedule.closed(concurrency, warmup_s + duration_s),
                operation=OperationRef(
                    "lab.workloads.inference:inference_operation", operation_params(endpoint_url, knobs, seed)
                ),
                warmup_s=warmup_s,
            )
            result = run_load(plan, out_dir / f"b{batch}-c{concurrency}", display="none")
            metrics = inference_metrics(result.samples(), result.measured_s, batch, latency_target_ms)
            cells.append(
                {
                    "batch": batch,
                    "concurrency": concurrency,
                    "requests_per_s": metrics["requests_per_s"],
                    "predictions_per_s": metrics["predictions_per_s"],
                    "p50_ms": metrics["latency_p50_ms"],
                    "p95_ms": metrics["latency_p95_ms"],
                    "p99_ms": metrics["latency_p99_ms"],
                    "errors": int(metrics["errors"]),
                }
            )
    frame = sweep_table(pl.DataFrame(cells), latency_target_ms)
    path = out_dir / "sweep.parquet"
    temporary = path.with_suffix(".parquet.tmp")
    frame.write_parquet(temporary)
    os.replace(temporary, path)
    return frame


def sweep_table(cells: pl.DataFrame, latency_target_ms: float) -> pl.DataFrame:
    """Add batch_speedup (predictions/s over batch 1's at the same concurrency; null without a
    batch-1 cell) and meets_target (p95 within the target and no errors) to measured cells."""
    baseline = cells.filter(pl.col("batch") == 1).select(
        "concurrency", pl.col("predictions_per_s").alias("batch1_predictions_per_s")
    )
    return (
        cells.join(baseline, on="concurrency", how="left")
        .with_columns(
            (pl.col("predictions_per_s") / pl.col("batch1_predictions_per_s")).alias("batch_speedup"),
            ((pl.col("p95_ms") <= latency_target_ms) & (pl.col("errors") == 0)).fill_null(False).alias("meets_target"),
        )
        .select(SWEEP_COLUMNS)
        .sort("concurrency", "batch")
    )


def best_under_target(frame: pl.DataFrame) -> dict[str, Any]:
    """The sweep row with the highest predictions/s among those meeting the latency target
    ({} when none does); ties go to the smaller batch, then the lower concurrency."""
    meeting = frame.filter(pl.col("meets_target")).sort(
        ["predictions_per_s", "batch", "concurrency"], descending=[True, False, False]
    )
    return meeting.row(0, named=True) if meeting.height else {}
