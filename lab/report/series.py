"""The data behind the report's plots, as small tidy polars frames derived from a run directory.

Sources: the request samples (`trials/<nn>-<variant>/samples-w*.parquet`), the per-trial metrics
(`trials.parquet`), an optional `sweep.parquet` (`lab sweep`) and the Analysis (cost, and the
inference fallback for the sweep plot). A run that lacks what a plot needs gives an empty frame
and the report leaves that plot out; nothing here fails on a missing file or metric.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl

from lab.analysis.analyze import Analysis
from lab.analysis.blocks import sample_files

MAX_CDF_POINTS = 400
TAIL_POINTS = 60  # of MAX_CDF_POINTS, spread over the tail (p99, p99.9, ...) on a log scale of 1 - p
BIN_S = 1.0
COST_COMPONENTS = (
    ("cost_cpu_per_day", "CPU"),
    ("cost_memory_per_day", "memory"),
    ("cost_upstream_per_day", "upstream calls"),
    ("cost_tokens_per_day", "llm tokens"),
)

CDF_SCHEMA = {"variant": pl.String, "latency_ms": pl.Float64, "cumulative": pl.Float64}
TIMELINE_SCHEMA = {
    "trial": pl.Int64,
    "variant": pl.String,
    "second": pl.Float64,
    "ok_per_s": pl.Float64,
    "in_flight": pl.Float64,
}
SHARE_SCHEMA = {"variant": pl.String, "label": pl.String, "requests": pl.Int64, "share": pl.Float64}
TRIAL_METRIC_SCHEMA = {"trial": pl.Int64, "variant": pl.String, "value": pl.Float64}
RESOURCE_SCHEMA = {
    "trial": pl.Int64,
    "variant": pl.String,
    "service": pl.String,
    "cpu_s": pl.Float64,
    "memory_mb": pl.Float64,
}
SWEEP_SCHEMA = {
    "variant": pl.String,
    "concurrency": pl.Int64,
    "batch": pl.Int64,
    "predictions_per_s": pl.Float64,
    "p95_ms": pl.Float64,
}
COST_SCHEMA = {"variant": pl.String, "component": pl.String, "per_day": pl.Float64}


def samples(run_dir: Path) -> pl.LazyFrame:
    """Every measured request of every trial: trial, variant, intended/start/end ns, outcome, label."""
    frames = [
        pl.scan_parquet(paths).select(
            pl.lit(trial, pl.Int64).alias("trial"),
            pl.lit(variant, pl.String).alias("variant"),
            "intended_ns",
            "start_ns",
            "end_ns",
            pl.col("outcome").cast(pl.Categorical),
            pl.col("label").cast(pl.Categorical),
        )
        for (trial, variant), paths in sample_files(run_dir).items()
    ]
    if not frames:
        return pl.LazyFrame(
            schema={
                "trial": pl.Int64,
                "variant": pl.String,
                "intended_ns": pl.Int64,
                "start_ns": pl.Int64,
                "end_ns": pl.Int64,
                "outcome": pl.Categorical,
                "label": pl.Categorical,
            }
        )
    return pl.concat(frames, how="vertical")


def trial_metrics(run_dir: Path) -> pl.DataFrame:
    """`trials.parquet` (experiment, variant, trial, metric, value), or an empty frame."""
    path = run_dir / "trials.parquet"
    if not path.exists():
        return pl.DataFrame(schema={"variant": pl.String, "trial": pl.Int64, "metric": pl.String, "value": pl.Float64})
    return pl.read_parquet(path)


def cdf_ranks(n: int, max_points: int = MAX_CDF_POINTS) -> np.ndarray:
    """Ranks (0-based, ascending) of the sorted samples a CDF curve keeps: every sample when there are
    at most `max_points`, else evenly spaced quantiles plus a log-spaced tail, always the minimum and
    the maximum."""
    if n <= max_points:
        return np.arange(n)
    body = np.linspace(0.0, 1.0, max_points - TAIL_POINTS)
    tail = 1.0 - np.logspace(-2.0, math.log10(1.0 / n), TAIL_POINTS)
    probabilities = np.concatenate((body, tail))
    ranks = np.clip(np.ceil(probabilities * n).astype(np.int64) - 1, 0, n - 1)
    return np.unique(np.concatenate((ranks, [0, n - 1])))


def latency_cdf(frame: pl.LazyFrame | pl.DataFrame, max_points: int = MAX_CDF_POINTS) -> pl.DataFrame:
    """Per variant, the empirical CDF of latency from the intended send time (end - intended) of every
    completed request, pooled over its trials (the requests the analysis' percentiles count), at most
    `max_points` points: (latency_ms, share of requests at or below it), ending at 1."""
    latencies = (
        frame.lazy()
        .filter(pl.col("end_ns").is_not_null())
        .select("variant", ((pl.col("end_ns") - pl.col("intended_ns")) / 1e6).alias("latency_ms"))
        .collect()
    )
    parts = []
    # one sort per variant: sorting the whole frame by (variant, latency) is ~30x slower at 10M rows
    for (variant,), part in latencies.partition_by("variant", as_dict=True, maintain_order=True).items():
        values = np.sort(part["latency_ms"].to_numpy())
        ranks = cdf_ranks(len(values), max_points)
        parts.append(
            pl.DataFrame(
                {"variant": variant, "latency_ms": values[ranks], "cumulative": (ranks + 1) / len(values)},
                schema=CDF_SCHEMA,
            )
        )
    return pl.concat(parts) if parts else pl.DataFrame(schema=CDF_SCHEMA)


def mean_in_flight(start_s: np.ndarray, end_s: np.ndarray, edges_s: np.ndarray) -> np.ndarray:
    """The time-averaged number of requests in flight (started, not yet ended; an unfinished one has
    end = inf) in each interval between consecutive `edges_s`.

    With F(T) = the request-seconds spent in flight before T = sum over requests started before T of
    min(end, T) - start, the mean in [a, b) is (F(b) - F(a)) / (b - a); sorted starts and ends give
    F at every edge in O(n log n)."""
    starts, ends = np.sort(start_s), np.sort(end_s)
    start_sums = np.concatenate(([0.0], np.cumsum(starts)))
    end_sums = np.concatenate(([0.0], np.cumsum(np.where(np.isfinite(ends), ends, 0.0))))
    started = np.searchsorted(starts, edges_s, side="left")
    ended = np.searchsorted(ends, edges_s, side="left")
    spent = end_sums[ended] + edges_s * (started - ended) - start_sums[started]
    mean: np.ndarray = np.diff(spent) / np.diff(edges_s)
    return mean


def timeline(
    frame: pl.LazyFrame | pl.DataFrame, measured_s: dict[int, float] | None = None, bin_s: float = BIN_S
) -> pl.DataFrame:
    """Per trial and `bin_s` bin from the trial's first intended send time: ok completions per second
    and the mean number of requests in flight. Only whole bins within the measured phase (`measured_s`
    per trial, else the span of intended send times), so the last bin is not a partial one."""
    rows = (
        frame.lazy()
        .select("trial", "variant", "intended_ns", "start_ns", "end_ns", (pl.col("outcome") == "ok").alias("ok"))
        .collect()
    )
    parts = []
    for (trial,), group in rows.partition_by("trial", as_dict=True, maintain_order=True).items():
        variant = group["variant"][0]  # one variant per trial; partitioning by it too costs ~1 s at 10M rows
        t0_ns = group.select(pl.min("intended_ns")).item()
        duration_s = (measured_s or {}).get(int(trial)) or (group.select(pl.max("intended_ns")).item() - t0_ns) / 1e9
        bins = max(math.floor(duration_s / bin_s + 1e-9), 1)
        edges = np.arange(bins + 1) * bin_s
        sent = group.filter(pl.col("start_ns").is_not_null())  # a dropped request was never in flight
        start_s = ((sent["start_ns"] - t0_ns) / 1e9).to_numpy()
        end_s = ((sent["end_ns"] - t0_ns) / 1e9).fill_null(math.inf).to_numpy()
        ok_ends = end_s[sent["ok"].fill_null(False).to_numpy() & np.isfinite(end_s)]
        completed, _ = np.histogram(ok_ends, bins=edges)
        in_flight = mean_in_flight(start_s, end_s, edges)
        parts.append(
            pl.DataFrame(
                {
                    "trial": int(trial),
                    "variant": str(variant),
                    "second": edges[:-1],
                    "ok_per_s": completed / bin_s,
                    "in_flight": in_flight,
                },
                schema=TIMELINE_SCHEMA,
            )
        )
    return pl.concat(parts) if parts else pl.DataFrame(schema=TIMELINE_SCHEMA)


def label_shares(frame: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """Per variant and label (the cache tier, the database query kind), the share of completed
    requests, as the analysis counts label shares. Empty unless some variant has two labels or more."""
    counts = (
        frame.lazy()
        .filter(pl.col("end_ns").is_not_null())
        .group_by("variant", "label")
        .agg(pl.len().alias("requests"))
        .collect()
        .with_columns(pl.col("label").cast(pl.String).fill_null("(none)"), pl.col("requests").cast(pl.Int64))
    )
    most = counts.group_by("variant").agg(pl.col("label").n_unique())["label"].max()
    if not isinstance(most, int) or most < 2:  # one label per variant (inference: its batch size) says nothing
        return pl.DataFrame(schema=SHARE_SCHEMA)
    return (
        counts.with_columns((pl.col("requests") / pl.col("requests").sum().over("variant")).alias("share"))
        .select(list(SHARE_SCHEMA))
        .sort("variant", "label")
    )


def trial_metric(trials: pl.DataFrame, metric: str) -> pl.DataFrame:
    """One per-trial metric (e.g. pool_wait_ms) per variant, in trial order; empty when never measured."""
    return (
        trials.filter((pl.col("metric") == metric) & pl.col("value").is_not_nan())
        .select(pl.col("trial").cast(pl.Int64), "variant", pl.col("value").cast(pl.Float64))
        .sort("trial")
    )


def resources(trials: pl.DataFrame) -> pl.DataFrame:
    """Per trial and service: the CPU-seconds its container used during the trial and the memory it
    held at the end (`{service}_cpu_s`, `{service}_memory_mb`), in trial order."""
    found = (
        trials.filter(pl.col("metric").str.ends_with("_cpu_s") | pl.col("metric").str.ends_with("_memory_mb"))
        .with_columns(
            pl.col("metric").str.replace(r"_(cpu_s|memory_mb)$", "").alias("service"),
            pl.when(pl.col("metric").str.ends_with("_cpu_s"))
            .then(pl.lit("cpu_s"))
            .otherwise(pl.lit("memory_mb"))
            .alias("kind"),
            pl.col("trial").cast(pl.Int64),
        )
        .select("trial", "variant", "service", "kind", pl.col("value").cast(pl.Float64))
    )
    if found.height == 0:
        return pl.DataFrame(schema=RESOURCE_SCHEMA)
    wide = found.pivot(on="kind", index=["trial", "variant", "service"], values="value", aggregate_function="first")
    for kind in ("cpu_s", "memory_mb"):
        if kind not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Float64).alias(kind))
    return wide.select(list(RESOURCE_SCHEMA)).sort("trial", "service")


def sweep_points(run_dir: Path, analysis: Analysis, trials: pl.DataFrame) -> pl.DataFrame:
    """Latency p95 against predictions/s: every cell of `sweep.parquet` when the run has one, else
    (an inference run) one point per variant from the analysis, at its batch size."""
    path = run_dir / "sweep.parquet"
    if path.exists():
        sweep = pl.read_parquet(path)
        if {"batch", "concurrency", "predictions_per_s", "p95_ms"} <= set(sweep.columns):
            if "variant" not in sweep.columns:
                sweep = sweep.with_columns(pl.lit(analysis.baseline).alias("variant"))
            return sweep.select(pl.col(name).cast(dtype) for name, dtype in SWEEP_SCHEMA.items()).sort(
                "variant", "concurrency", "batch"
            )
    if analysis.workload != "inference":
        return pl.DataFrame(schema=SWEEP_SCHEMA)
    batch = dict(
        trials.filter(pl.col("metric") == "batch_size").group_by("variant").agg(pl.col("value").first()).iter_rows()
    )
    rows = []
    for variant in analysis.variants:
        estimates = analysis.estimates.get(variant, {})
        speed, p95 = estimates.get("predictions_per_s"), estimates.get("latency_p95_ms")
        if speed is None or p95 is None or not (math.isfinite(speed.value) and math.isfinite(p95.value)):
            continue
        size = batch.get(variant)
        rows.append(
            {
                "variant": variant,
                "concurrency": None,
                "batch": int(size) if size is not None and math.isfinite(size) else None,
                "predictions_per_s": speed.value,
                "p95_ms": p95.value,
            }
        )
    return pl.DataFrame(rows, schema=SWEEP_SCHEMA)


def cost_breakdown(analysis: Analysis) -> pl.DataFrame:
    """Per variant, the projected cost per day by component (CPU, memory, upstream calls, tokens),
    leaving out components that are zero for every variant."""
    rows = [
        {"variant": variant, "component": title, "per_day": analysis.cost[variant].get(key, math.nan)}
        for variant in analysis.variants
        if "cost_per_day" in analysis.cost.get(variant, {})
        for key, title in COST_COMPONENTS
    ]
    frame = pl.DataFrame(rows, schema=COST_SCHEMA)
    used = frame.group_by("component").agg((pl.col("per_day").fill_nan(0.0).abs().sum() > 0).alias("used"))
    keep = used.filter(pl.col("used"))["component"].to_list()
    return frame.filter(pl.col("component").is_in(keep))


def measured_seconds(trials: pl.DataFrame) -> dict[int, float]:
    """Per trial index, the length of its measured phase (`measured_s`)."""
    frame = trial_metric(trials, "measured_s")
    return {int(t): float(v) for t, _, v in frame.iter_rows()}


def container_cpu(run_dir: Path) -> pl.DataFrame:
    """CPU cores each container used between the collector's readings, per trial (from each
    trial's `timeseries.parquet`): (trial, variant, service, time_s at the interval's middle, cores)."""
    frames = []
    for directory in sorted((run_dir / "trials").glob("*")):
        path = directory / "timeseries.parquet"
        trial, _, variant = directory.name.partition("-")
        if not path.exists() or not trial.isdigit():
            continue
        cpu = (
            pl.read_parquet(path)
            .filter((pl.col("source") == "docker") & (pl.col("metric") == "cpu_s"))
            .sort("service", "time_s")
            .with_columns(
                ((pl.col("value").diff() / pl.col("time_s").diff()).over("service")).alias("cores"),
                ((pl.col("time_s") + pl.col("time_s").shift()) / 2).over("service").alias("middle"),
            )
            .drop_nulls("cores")
            .select(
                pl.lit(int(trial), pl.Int64).alias("trial"),
                pl.lit(variant).alias("variant"),
                "service",
                pl.col("middle").alias("time_s"),
                "cores",
            )
        )
        frames.append(cpu)
    schema = {"trial": pl.Int64, "variant": pl.String, "service": pl.String, "time_s": pl.Float64, "cores": pl.Float64}
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def fault_windows(run_dir: Path, frame: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """Each trial's injected faults (`faults.json`) on the timeline's axis: seconds from the
    trial's first intended send (the records count from the load's start, warm-up included)."""
    schema = {"trial": pl.Int64, "label": pl.String, "start": pl.Float64, "end": pl.Float64}
    records = []
    for directory in sorted((run_dir / "trials").glob("*")):
        path = directory / "faults.json"
        trial = directory.name.partition("-")[0]
        if path.exists() and trial.isdigit():
            for record in json.loads(path.read_text()):
                if record.get("applied") and "start_s" in record and "end_s" in record:
                    label = f"{record['kind']} {record['service']}"
                    records.append((int(trial), label, float(record["start_s"]), float(record["end_s"])))
    if not records:
        return pl.DataFrame(schema=schema)
    t0 = (
        frame.lazy()
        .group_by("trial")
        .agg((pl.col("intended_ns").min() / 1e9).alias("t0"))
        .collect()
        .with_columns(pl.col("trial").cast(pl.Int64))
    )
    return (
        pl.DataFrame(records, schema=schema, orient="row")
        .join(t0, on="trial", how="left")
        .with_columns((pl.col("start") - pl.col("t0").fill_null(0)), (pl.col("end") - pl.col("t0").fill_null(0)))
        .drop("t0")
    )
