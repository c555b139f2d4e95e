"""A run directory's raw samples -> per trial, per time block counts and latency histograms.

One polars pass over every `trials/<nn>-<variant>/samples-w*.parquet` file: each completed
request gets its trial, its time block (the trial's measured phase cut into equal slices by
intended send time) and its latency bin; the pass returns the block counts, the block
histograms and, per variant, the exact percentiles of all its samples. The bootstrap then works
on these small arrays only, whatever the number of requests.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import polars as pl

from lab.analysis.catalog import LATENCY
from lab.analysis.stats import LOG_BIN, TrialBlocks, VariantSamples

TRIAL_DIR = re.compile(r"(\d+)-([a-z0-9_@.:-]+)$")
BASE_COLUMNS = ("completed", "ok", "errors", "throttled", "latency_sum_ms")


def sample_files(run: Path, only: tuple[str, ...] = ()) -> dict[tuple[int, str], list[Path]]:
    """Sample files per (trial index, variant); of the `only` variants if given."""
    files: dict[tuple[int, str], list[Path]] = {}
    for directory in sorted((run / "trials").glob("*")):
        match = TRIAL_DIR.match(directory.name)
        parts = sorted(directory.glob("samples-w*.parquet"))
        if match and parts and (not only or match.group(2) in only):
            files[(int(match.group(1)), match.group(2))] = parts
    return files


def completed_samples(files: dict[tuple[int, str], list[Path]]) -> pl.LazyFrame:
    """Every completed request: trial, variant number, intended send time, latency, outcome and
    label (kept categorical: casting 10M of them to text cost 0.7 s and 0.7 GB)."""
    variants = list(dict.fromkeys(variant for _, variant in files))
    frames = [
        pl.scan_parquet(paths)
        .filter(pl.col("end_ns").is_not_null())
        .select(
            pl.lit(trial, pl.Int32).alias("trial"),
            pl.lit(variants.index(variant), pl.Int16).alias("variant"),
            pl.col("intended_ns"),
            (pl.col("end_ns") - pl.col("intended_ns")).alias("latency_ns"),
            pl.col("outcome").cast(pl.Categorical),
            pl.col("label").cast(pl.Categorical),
        )
        for (trial, variant), paths in files.items()
    ]
    return pl.concat(frames, how="vertical") if frames else pl.LazyFrame()


def load_blocks(
    run: Path,
    blocks: int,
    measured_s: dict[int, float] | None = None,
    batch_size: dict[str, float] | None = None,
    variant_names: dict[str, str] | None = None,
    only: tuple[str, ...] = (),
) -> dict[str, VariantSamples]:
    """Per variant, its trials as TrialBlocks plus the exact pooled latency figures.

    `measured_s` (per trial index, from the trial metrics) sets each trial's duration; without
    it the span of intended send times is used. `variant_names` renames variants (compare).
    One pass: counts per (trial, block, outcome, label), the histogram per (trial, block, bin)
    and the exact percentiles per variant, collected together.
    """
    files = sample_files(run, only)
    if not files:
        return {}
    variants = list(dict.fromkeys(variant for _, variant in files))
    t0 = pl.col("intended_ns").min().over("trial")
    t1 = pl.col("intended_ns").max().over("trial")
    staged = completed_samples(files).with_columns(
        (((pl.col("intended_ns") - t0) * blocks // (t1 - t0 + 1)).clip(0, blocks - 1)).alias("block"),
        (pl.col("latency_ns").cast(pl.Float64).clip(lower_bound=1.0).log() / LOG_BIN)
        .floor()
        .cast(pl.Int32)
        .alias("bin"),
        (pl.col("latency_ns") / 1e6).alias("latency_ms"),
        (t1 - t0).alias("span_ns"),
    )
    counts_lf = staged.group_by("trial", "block", "outcome", "label").agg(
        pl.len().alias("n"), pl.col("latency_ms").sum().alias("latency_sum_ms"), pl.col("span_ns").first()
    )
    hist_lf = staged.group_by("trial", "block", "bin").agg(pl.len().alias("n"))
    exact_lf = staged.group_by("variant").agg(
        *[
            pl.col("latency_ms").quantile(m.quantile, interpolation="linear").alias(m.name)
            for m in LATENCY
            if m.quantile is not None
        ],
        pl.col("latency_ms").mean().alias("latency_mean_ms"),
    )
    counts, hist, exact = pl.collect_all([counts_lf, hist_lf, exact_lf])
    counts = counts.with_columns(pl.col("outcome").cast(pl.String), pl.col("label").cast(pl.String))
    labels = sorted({str(v) for v in counts["label"].to_list() if v is not None})
    columns = (*BASE_COLUMNS, *(f"label:{label}" for label in labels))
    by_variant: dict[str, VariantSamples] = {}
    variant_of = {trial: variant for trial, variant in files}
    for trial in sorted(variant_of):
        variant = variant_of[trial]
        name = (variant_names or {}).get(variant, variant)
        rows = counts.filter(pl.col("trial") == trial)
        if rows.height == 0:
            continue
        matrix = block_matrix(rows, blocks, labels)
        trial_hist = hist.filter(pl.col("trial") == trial)
        bins = trial_hist["bin"].to_numpy()
        bin0 = int(bins.min())
        dense = np.zeros((blocks, int(bins.max()) - bin0 + 1))
        np.add.at(dense, (trial_hist["block"].to_numpy(), bins - bin0), trial_hist["n"].to_numpy())
        span_s = float(rows["span_ns"].cast(pl.Float64).max() or 0.0) / 1e9  # type: ignore[arg-type]
        duration = (measured_s or {}).get(trial) or span_s or math.nan
        entry = by_variant.setdefault(
            name, VariantSamples(name, [], {}, batch_size=(batch_size or {}).get(variant, 1.0))
        )
        entry.trials.append(TrialBlocks(trial, float(duration), matrix, columns, dense, bin0))
    for row in exact.iter_rows(named=True):
        variant = variants[row["variant"]]
        name = (variant_names or {}).get(variant, variant)
        if name in by_variant:
            by_variant[name].exact = {k: float(v) for k, v in row.items() if k != "variant" and v is not None}
    for entry in by_variant.values():
        add_count_estimates(entry)
    return by_variant


def block_matrix(rows: pl.DataFrame, blocks: int, labels: list[str]) -> np.ndarray:
    """One trial's (block, outcome, label) counts as a blocks x columns matrix (BASE_COLUMNS, then
    one column per label)."""
    matrix = np.zeros((blocks, len(BASE_COLUMNS) + len(labels)))
    block = rows["block"].to_numpy()
    n = rows["n"].cast(pl.Float64).to_numpy()
    outcome = rows["outcome"].fill_null("").to_numpy().astype(str)
    failed = outcome != "ok"
    throttled = np.char.endswith(outcome, "throttled")
    for j, values in enumerate((n, n * ~failed, n * failed, n * throttled, rows["latency_sum_ms"].to_numpy())):
        np.add.at(matrix[:, j], block, values)
    label = rows["label"].fill_null("").to_numpy().astype(str)
    for j, name in enumerate(labels, start=len(BASE_COLUMNS)):
        np.add.at(matrix[:, j], block, n * (label == name))
    return matrix


def add_count_estimates(entry: VariantSamples) -> None:
    """Point values of the count metrics (rates, shares, throughput) from all of a variant's blocks."""
    total = sum((t.features.sum(axis=0) for t in entry.trials), np.zeros(len(entry.trials[0].columns)))
    columns = entry.trials[0].columns
    value = dict(zip(columns, total.tolist(), strict=True))
    duration = sum(t.duration_s for t in entry.trials)
    completed = value["completed"]
    entry.exact.setdefault("throughput_rps", value["ok"] / duration if duration else math.nan)
    entry.exact.setdefault("predictions_per_s", value["ok"] * entry.batch_size / duration if duration else math.nan)
    entry.exact.setdefault("error_rate", value["errors"] / completed if completed else math.nan)
    entry.exact.setdefault("throttle_rate", value["throttled"] / completed if completed else math.nan)
    for column, count in value.items():
        if column.startswith("label:"):
            entry.exact[f"share:{column[6:]}"] = count / completed if completed else math.nan


def trial_from_arrays(
    trial: int,
    latency_ms: np.ndarray,
    blocks: int,
    duration_s: float,
    outcomes: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    label_names: tuple[str, ...] = (),
) -> TrialBlocks:
    """The numpy twin of `load_blocks` for one trial of completed requests in send order (equal
    spacing assumed): simulations and tests build trials without writing Parquet files."""
    n = len(latency_ms)
    block = np.minimum(np.arange(n) * blocks // max(n, 1), blocks - 1)
    if outcomes is None:
        failed = throttled = np.zeros(n, dtype=bool)
    else:
        failed = outcomes != "ok"
        kinds, codes = np.unique(outcomes, return_inverse=True)
        throttled = np.array([str(k).endswith("throttled") for k in kinds], dtype=bool)[codes]
    columns = (*BASE_COLUMNS, *(f"label:{name}" for name in label_names))
    features = np.zeros((blocks, len(columns)))
    for j, values in enumerate(
        (np.ones(n), ~failed, failed, throttled, latency_ms, *((labels == name) for name in label_names))
    ):
        features[:, j] = np.bincount(block, weights=np.asarray(values, dtype=np.float64), minlength=blocks)
    bins = np.floor(np.log(np.maximum(latency_ms * 1e6, 1.0)) / LOG_BIN).astype(np.int64)
    bin0 = int(bins.min())
    width = int(bins.max()) - bin0 + 1
    hist = np.bincount(block * width + (bins - bin0), minlength=blocks * width).astype(np.float64)
    hist = hist.reshape(blocks, width)
    return TrialBlocks(trial, duration_s, features, columns, hist, bin0)


def variant_from_arrays(
    name: str,
    trials: list[np.ndarray],
    blocks: int,
    duration_s: float,
    batch_size: float = 1.0,
    outcomes: list[np.ndarray] | None = None,
) -> VariantSamples:
    """A variant from latency arrays (ms) and outcomes (all "ok" if None), exact pooled percentiles."""
    built = [
        trial_from_arrays(i, t, blocks, duration_s, outcomes[i] if outcomes else None) for i, t in enumerate(trials)
    ]
    entry = VariantSamples(name, built, {}, batch_size)
    pooled = np.concatenate(trials)
    for metric in LATENCY:
        if metric.quantile is not None:
            entry.exact[metric.name] = float(np.quantile(pooled, metric.quantile))
    entry.exact["latency_mean_ms"] = float(pooled.mean())
    add_count_estimates(entry)
    return entry
