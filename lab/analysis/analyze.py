"""From per-variant samples and per-trial metrics to summaries, comparisons, targets, grade and cost."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl

from lab.analysis.catalog import (
    COST_REDUCTION,
    DEFAULT_COST_TARGET,
    DEFAULT_TARGETS,
    Catalog,
    Metric,
    catalog,
)
from lab.analysis.cost import assumptions, savings, trial_cost
from lab.analysis.stats import (
    Comparison,
    Estimate,
    VariantSamples,
    bootstrap_samples,
    compare,
    trial_estimate,
    untestable,
)
from lab.config.analysis import AnalysisConfig, CostConfig, Target, TargetsConfig

GRADES = ((1.0, "A+"), (0.9, "A"), (0.8, "B+"), (0.7, "B"), (0.6, "C"), (0.0, "D"))
METHOD = (
    "Sample metrics: stratified block bootstrap (time blocks resampled within each trial, trials pooled) "
    "plus a DerSimonian-Laird between-trial variance; trial metrics: mean over trials, Welch's t. "
    "Relative changes on the log scale, shares as differences. Intervals are Bonferroni-simultaneous "
    "over every compared metric at the family-wise confidence; a verdict needs the interval to exclude 0 "
    "and the change to exceed the noise threshold."
)


def grade(share: float) -> str:
    """A+ when every target is met, then A (90-99 %), B+, B, C, and D below 60 %."""
    for bound, letter in GRADES:
        if share >= bound - 1e-12:
            return letter
    return "D"


@dataclass(frozen=True)
class TargetResult:
    variant: str
    metric: str
    target: Target
    value: float
    met: bool
    source: str  # "default" or "experiment"


@dataclass
class Analysis:
    """Everything the analysis found about one run (or a comparison of two runs)."""

    experiment: str
    workload: str
    baseline: str
    variants: list[str]
    settings: AnalysisConfig
    prices: CostConfig
    catalog: Catalog
    estimates: dict[str, dict[str, Estimate]]
    comparisons: list[Comparison]
    targets: list[TargetResult]
    cost: dict[str, dict[str, float]]
    savings: dict[str, dict[str, float]]
    thresholds: dict[str, float]
    threshold_source: str
    trial_summary: pl.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def candidates(self) -> list[str]:
        return [v for v in self.variants if v != self.baseline]

    def grades(self) -> dict[str, dict[str, Any]]:
        """Per variant: targets met out of targets, and the letter grade."""
        result: dict[str, dict[str, Any]] = {}
        for variant in self.variants:
            own = [t for t in self.targets if t.variant == variant]
            met = sum(t.met for t in own)
            share = met / len(own) if own else math.nan
            result[variant] = {"met": met, "total": len(own), "share": share, "grade": grade(share) if own else "-"}
        return result

    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict == "regressed"]

    def noise_floor(self) -> dict[str, float]:
        """Per compared metric, the largest change this run's noise alone can produce (A/A)."""
        floor: dict[str, float] = {}
        for c in self.comparisons:
            if math.isfinite(c.low) and math.isfinite(c.high):
                floor[c.metric] = max(floor.get(c.metric, 0.0), abs(c.low), abs(c.high))
        return floor

    def summary_frame(self) -> pl.DataFrame:
        rows = []
        for variant, estimates in self.estimates.items():
            for name, e in estimates.items():
                metric = self.catalog.metrics[name]
                low, high = e.interval(metric.scale, self.settings.confidence)
                rows.append(
                    {
                        "variant": variant,
                        "metric": name,
                        "title": metric.title,
                        "unit": metric.unit,
                        "value": e.value,
                        "ci_low": low,
                        "ci_high": high,
                        "samples": e.samples,
                        "trials": e.trials,
                        "flag": e.flag,
                    }
                )
        return pl.DataFrame(rows, schema=SUMMARY_SCHEMA)

    def comparison_frame(self) -> pl.DataFrame:
        rows = [
            {
                "metric": c.metric,
                "headline": c.headline,
                "baseline": c.baseline,
                "candidate": c.candidate,
                "baseline_value": c.baseline_value,
                "candidate_value": c.candidate_value,
                "change": c.change,
                "ci_low": c.low,
                "ci_high": c.high,
                "scale": c.scale,
                "threshold": c.threshold,
                "verdict": c.verdict,
                "note": c.note,
                "baseline_samples": c.samples[0],
                "candidate_samples": c.samples[1],
            }
            for c in self.comparisons
        ]
        return pl.DataFrame(rows, schema=COMPARISON_SCHEMA)

    def to_document(self) -> dict[str, Any]:
        """The analysis as JSON (NaN and inf become null)."""
        document = {
            "experiment": self.experiment,
            "workload": self.workload,
            "baseline": self.baseline,
            "variants": self.variants,
            "method": METHOD,
            "settings": self.settings.model_dump(mode="json"),
            "thresholds": self.thresholds,
            "threshold_source": self.threshold_source,
            "tests": len(self.comparisons),
            "summary": self.summary_frame().to_dicts(),
            "comparison": self.comparison_frame().to_dicts(),
            "targets": [
                {
                    "variant": t.variant,
                    "metric": t.metric,
                    "target": t.target.describe(),
                    "expected_max": t.target.expected_max,
                    "value": t.value,
                    "met": t.met,
                    "source": t.source,
                }
                for t in self.targets
            ],
            "grades": self.grades(),
            "regressions": [c.metric for c in self.regressions()],
            "cost": {
                "prices": self.prices.model_dump(mode="json"),
                "assumptions": assumptions(self.prices),
                "per_variant": self.cost,
                "savings": self.savings,
            },
            "noise_floor": self.noise_floor(),
            "notes": self.notes,
        }
        cleaned: dict[str, Any] = clean(document)
        return cleaned


SUMMARY_SCHEMA = {
    "variant": pl.String,
    "metric": pl.String,
    "title": pl.String,
    "unit": pl.String,
    "value": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "samples": pl.Int64,
    "trials": pl.Int64,
    "flag": pl.String,
}
COMPARISON_SCHEMA = {
    "metric": pl.String,
    "headline": pl.Boolean,
    "baseline": pl.String,
    "candidate": pl.String,
    "baseline_value": pl.Float64,
    "candidate_value": pl.Float64,
    "change": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "scale": pl.String,
    "threshold": pl.Float64,
    "verdict": pl.String,
    "note": pl.String,
    "baseline_samples": pl.Int64,
    "candidate_samples": pl.Int64,
}


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def choose_baseline(variants: Sequence[str], configured: str | None) -> str:
    if configured is not None and configured in variants:
        return configured
    return "baseline" if "baseline" in variants else variants[0]


def analyze(
    *,
    experiment: str,
    workload: str,
    samples: Mapping[str, VariantSamples],
    trials: Mapping[str, Sequence[Mapping[str, float]]],
    settings: AnalysisConfig,
    targets: TargetsConfig,
    prices: CostConfig,
    baseline: str | None = None,
    noise: Mapping[str, float] | None = None,
    noise_source: str = "",
) -> Analysis:
    """Summaries, comparisons (baseline against every other variant), targets, grade and cost.

    `samples`: per variant, its trials' block counts (lab.analysis.blocks); `trials`: per variant,
    one dict of metrics per trial (trials.parquet). `noise`: per-metric thresholds from an A/A run.
    """
    variants = list(dict.fromkeys([*trials, *samples]))
    if not variants:
        raise ValueError("nothing to analyze: no trials")
    base = choose_baseline(variants, baseline or settings.baseline)
    variants = [base, *(v for v in variants if v != base)]
    cat = catalog(workload, settings.headline)
    rows = {v: [dict(row) | trial_cost(row, prices) for row in trials.get(v, [])] for v in variants}
    rng = np.random.default_rng(settings.seed)
    estimates = {v: variant_estimates(cat, samples.get(v), rows[v], settings, rng) for v in variants}
    thresholds = {
        name: resolve_threshold(cat.metrics[name], settings, noise) for name in cat.compared if name in cat.metrics
    }
    comparisons = compare_all(cat, estimates, rows, base, settings, thresholds)
    cost = {v: mean_components(rows[v]) for v in variants}
    saved = {
        v: savings(cost[base].get("cost_per_day", math.nan), cost[v].get("cost_per_day", math.nan), prices)
        for v in variants
        if v != base
    }
    notes = []
    if any(len(rows[v]) < 2 for v in variants):
        notes.append("1 trial per variant: trial-to-trial noise is not estimated; trial metrics are inconclusive")
    return Analysis(
        experiment=experiment,
        workload=workload,
        baseline=base,
        variants=variants,
        settings=settings,
        prices=prices,
        catalog=cat,
        estimates=estimates,
        comparisons=comparisons,
        targets=evaluate_targets(workload, targets, estimates, rows, base, saved),
        cost=cost,
        savings=saved,
        thresholds=thresholds,
        threshold_source=noise_source or "experiment settings",
        trial_summary=trial_summary(rows),
        notes=notes,
    )


def variant_estimates(
    cat: Catalog,
    samples: VariantSamples | None,
    rows: list[dict[str, float]],
    settings: AnalysisConfig,
    rng: np.random.Generator,
) -> dict[str, Estimate]:
    estimates: dict[str, Estimate] = {}
    sample_metrics = [m for m in cat.metrics.values() if m.source == "samples"]
    if samples is not None and samples.trials:
        for metric in sample_metrics:
            if metric.labels:
                samples.exact[metric.name] = sum(samples.exact.get(f"share:{label}", 0.0) for label in metric.labels)
        estimates.update(bootstrap_samples(samples, sample_metrics, settings.resamples, rng, settings.min_tail_samples))
    else:
        for metric in sample_metrics:
            estimates[metric.name] = Estimate(metric.name, math.nan, math.nan, 0, 0, flag="no samples")
    for metric in cat.metrics.values():
        if metric.source in ("trials", "derived", "accuracy"):
            values = [row.get(metric.name, math.nan) for row in rows]
            if all(v != v for v in values):
                continue
            if metric.source == "accuracy":
                estimates[metric.name] = Estimate(metric.name, float(np.nanmean(values)), 0.0, len(rows), len(rows))
            else:
                estimates[metric.name] = trial_estimate(metric, values)
    return estimates


def resolve_threshold(metric: Metric, settings: AnalysisConfig, noise: Mapping[str, float] | None) -> float:
    if noise and metric.name in noise:
        return float(noise[metric.name])
    if metric.name in settings.thresholds:
        return settings.thresholds[metric.name]
    return settings.threshold if metric.scale == "relative" else settings.threshold_points


def compare_all(
    cat: Catalog,
    estimates: dict[str, dict[str, Estimate]],
    rows: dict[str, list[dict[str, float]]],
    base: str,
    settings: AnalysisConfig,
    thresholds: dict[str, float],
) -> list[Comparison]:
    pairs = [
        (candidate, name)
        for candidate in estimates
        if candidate != base
        for name in cat.compared
        if name in estimates[base] and name in estimates[candidate]
    ]
    fixed = {
        pair: accuracy_variance(rows[base], rows[pair[0]]) if cat.metrics[pair[1]].source == "accuracy" else None
        for pair in pairs
    }

    def variance(pair: tuple[str, str]) -> float:
        given = fixed[pair]
        return given if given is not None else estimates[base][pair[1]].variance + estimates[pair[0]][pair[1]].variance

    testable = [
        pair
        for pair in pairs
        if not untestable(cat.metrics[pair[1]], estimates[base][pair[1]], estimates[pair[0]][pair[1]], variance(pair))
    ]
    alphas = family_alphas(testable, cat.headline, 1 - settings.confidence)
    comparisons = []
    for pair in pairs:
        candidate, name = pair
        comparison = compare(
            cat.metrics[name],
            estimates[base][name],
            estimates[candidate][name],
            (base, candidate),
            thresholds[name],
            alphas.get(pair, 1 - settings.confidence),
            settings.resolution,
            fixed_variance=fixed[pair],
        )
        comparisons.append(replace(comparison, headline=name in cat.headline, alpha=alphas.get(pair, math.nan)))
    return comparisons


HEADLINE_SHARE = 0.8


def family_alphas(
    tests: list[tuple[str, str]], headline: tuple[str, ...], alpha: float
) -> dict[tuple[str, str], float]:
    """Weighted Bonferroni: 80 % of the family-wise alpha split over the headline comparisons, 20 %
    over the others (all of it when one group is empty). The chance that any comparison of an A/A
    run comes out significant stays at most `alpha`, and the headline metrics keep most power."""
    primary = [t for t in tests if t[1] in headline]
    secondary = [t for t in tests if t[1] not in headline]
    share = HEADLINE_SHARE if primary and secondary else 1.0
    alphas = {t: alpha * share / len(primary) for t in primary}
    alphas.update({t: alpha * (1 - share if primary else 1.0) / len(secondary) for t in secondary})
    return alphas


def accuracy_variance(a: list[dict[str, float]], b: list[dict[str, float]]) -> float:
    """Variance of an accuracy difference measured on the same held-out rows (paired): the two
    models disagree on a share d of the rows, so Var(accuracy_b - accuracy_a) <= d / rows."""
    if not a or not b:
        return math.nan
    disagree_a = a[0].get("model_disagreement", math.nan)
    disagree_b = b[0].get("model_disagreement", math.nan)
    rows = a[0].get("model_heldout_rows", math.nan)
    if a[0].get("precision_bits") == b[0].get("precision_bits"):
        return 0.0
    return max(disagree_a, disagree_b) / rows


def mean_components(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in (rows[0] if rows else {}) if k.startswith("cost_") or k in ("cpu_s_per_1k", "memory_mb")]
    return {k: float(np.mean([row.get(k, math.nan) for row in rows])) for k in keys}


def resolved_targets(workload: str, targets: TargetsConfig) -> dict[str, tuple[Target, str]]:
    chosen: dict[str, tuple[Target, str]] = {}
    if targets.defaults:
        chosen.update({k: (t, "default") for k, t in DEFAULT_TARGETS.get(workload, {}).items()})
        chosen[COST_REDUCTION] = (DEFAULT_COST_TARGET, "default")
    chosen.update({k: (t, "experiment") for k, t in targets.metrics.items()})
    return chosen


def evaluate_targets(
    workload: str,
    targets: TargetsConfig,
    estimates: dict[str, dict[str, Estimate]],
    rows: dict[str, list[dict[str, float]]],
    base: str,
    saved: dict[str, dict[str, float]],
) -> list[TargetResult]:
    """Every target, for every variant (cost reduction: for candidates only)."""
    results = []
    for variant, estimate in estimates.items():
        for name, (target, source) in resolved_targets(workload, targets).items():
            if name == COST_REDUCTION:
                if variant == base:
                    continue
                value = saved[variant]["cost_reduction"]
            elif name in estimate:
                value = estimate[name].value
            else:
                values = [row.get(name, math.nan) for row in rows[variant]]
                value = float(np.nanmean(values)) if any(v == v for v in values) else math.nan
            results.append(TargetResult(variant, name, target, value, target.met(value), source))
    return results


def trial_summary(rows: dict[str, list[dict[str, float]]]) -> pl.DataFrame:
    """Every per-trial metric: mean, sd, min, max over a variant's trials."""
    records = [
        {"variant": variant, "trial": i, "metric": k, "value": float(v)}
        for variant, trials in rows.items()
        for i, row in enumerate(trials)
        for k, v in row.items()
    ]
    if not records:
        return pl.DataFrame(schema={"variant": pl.String, "metric": pl.String})
    frame = pl.DataFrame(records).with_columns(pl.col("value").fill_nan(None))
    return (
        frame.group_by("variant", "metric", maintain_order=True)
        .agg(
            pl.col("value").mean().alias("mean"),
            pl.col("value").std().alias("sd"),
            pl.col("value").min().alias("min"),
            pl.col("value").max().alias("max"),
            pl.col("value").count().alias("trials"),
        )
        .sort("metric", "variant")
    )
