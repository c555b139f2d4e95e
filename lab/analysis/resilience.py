"""How a variant behaved under a fault, from a trial's samples and its fault records.

For the trial's first applied fault with a window (kill, stop, pause, network, latency, errors):
- `fault_error_rate`: share of the requests due during the window that failed (errors, and
  requests dropped or never answered);
- `fault_lost`: how many those were; `fault_fallbacks`: requests the client served another way
  (the cache workload's fallback to Postgres), when the workload counts them;
- `recovery_s`: from the end of the window until the first whole second whose p95 (of requests
  that succeeded) is back within 10 % of the p95 before the fault, and whose failure share is no
  higher than before (plus 1 point) - NaN when that never happened before the trial ended
  (`recovered` says 0 or 1);
- `pre_fault_p95_ms`, `fault_p95_ms`: the p95 before and during the window.
Times are the load's (intended send time since its start), as the fault records are.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

RECOVERY_TOLERANCE = 0.10
BIN_S = 1.0


def resilience_metrics(
    samples: pl.LazyFrame, records: list[dict[str, Any]], fallbacks: float | None = None
) -> dict[str, float]:
    windowed = [r for r in records if r.get("applied") and r.get("kind") != "restart" and "end_s" in r]
    if not windowed:
        restarts = [r for r in records if r.get("applied")]
        if not restarts:
            return {"faults_applied": 0.0}
        windowed = restarts  # a restart's window is the time the restart took
    fault = windowed[0]
    start, end = float(fault["start_s"]), float(fault["end_s"])
    frame = samples.select(
        (pl.col("intended_ns") / 1e9).alias("t"),
        ((pl.col("end_ns") - pl.col("intended_ns")) / 1e6).alias("latency_ms"),
        (pl.col("outcome").cast(pl.String) == "ok").alias("ok"),
    ).collect()
    before = frame.filter(pl.col("t") < start)
    during = frame.filter((pl.col("t") >= start) & (pl.col("t") <= end))
    after = frame.filter(pl.col("t") > end)

    def p95(part: pl.DataFrame) -> float:
        ok = part.filter(pl.col("ok"))["latency_ms"].to_numpy()
        return float(np.quantile(ok, 0.95)) if len(ok) else math.nan

    def failed_share(part: pl.DataFrame) -> float:
        return float((~part["ok"].to_numpy()).mean()) if part.height else math.nan

    pre_p95, pre_failed = p95(before), failed_share(before)
    recovery = math.nan
    if after.height and math.isfinite(pre_p95):
        bins = (
            after.with_columns(((pl.col("t") - end) // BIN_S).alias("bin"))
            .group_by("bin")
            .agg(
                pl.col("latency_ms").filter(pl.col("ok")).quantile(0.95).alias("p95"),
                (~pl.col("ok")).mean().alias("failed"),
                pl.len().alias("n"),
            )
            .sort("bin")
        )
        limit_failed = (pre_failed if math.isfinite(pre_failed) else 0.0) + 0.01
        for row in bins.iter_rows(named=True):
            good = row["p95"] is not None and row["p95"] <= pre_p95 * (1 + RECOVERY_TOLERANCE)
            if good and row["failed"] <= limit_failed:
                recovery = float(row["bin"]) * BIN_S
                break
    metrics = {
        "faults_applied": float(sum(1 for r in records if r.get("applied"))),
        "fault_window_s": end - start,
        "fault_requests": float(during.height),
        "fault_lost": float((~during["ok"]).sum()) if during.height else 0.0,
        "fault_error_rate": failed_share(during) if during.height else math.nan,
        "pre_fault_p95_ms": pre_p95,
        "fault_p95_ms": p95(during),
        "recovery_s": recovery,
        "recovered": 0.0 if math.isnan(recovery) else 1.0,
    }
    if fallbacks is not None:
        metrics["fault_fallbacks"] = float(fallbacks)
    return metrics
