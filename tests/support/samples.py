"""Hand-made load results for workload metric tests: samples with known latencies."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lab.loadgen.runner import LatencySummary, LoadResult
from lab.loadgen.worker import SAMPLE_SCHEMA

MS = 1_000_000


def write_samples(out_dir: Path, rows: list[tuple[str, str, int | None]]) -> None:
    """One worker's samples: (outcome, label, latency_ms or None for a request never sent)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    intended = [i * MS for i in range(len(rows))]
    ends = [None if latency is None else t + latency * MS for t, (_, _, latency) in zip(intended, rows, strict=True)]
    table = pa.table(
        {
            "worker": pa.array([0] * len(rows), pa.int16()),
            "seq": pa.array(range(len(rows)), pa.int64()),
            "intended_ns": pa.array(intended, pa.int64()),
            "start_ns": pa.array([None if e is None else t for t, e in zip(intended, ends, strict=True)], pa.int64()),
            "end_ns": pa.array(ends, pa.int64()),
            "outcome": pa.array([r[0] for r in rows]).dictionary_encode().cast(SAMPLE_SCHEMA.field("outcome").type),
            "label": pa.array([r[1] for r in rows]).dictionary_encode().cast(SAMPLE_SCHEMA.field("label").type),
        },
        schema=SAMPLE_SCHEMA,
    )
    pq.write_table(table, out_dir / "samples-w0.parquet")


def load_result(out_dir: Path, operation_stats: list[dict[str, float]], measured_s: float = 1.0) -> LoadResult:
    """A LoadResult around samples written by write_samples (the figures a driver reads)."""
    empty = LatencySummary("samples", 0, {}, float("nan"), float("nan"))
    return LoadResult(
        out_dir=out_dir,
        mode="open",
        target_rps=10.0,
        measured_s=measured_s,
        counters={},
        achieved_rps=10.0,
        latency=empty,
        service_time=empty,
        operation_stats=operation_stats,
    )
