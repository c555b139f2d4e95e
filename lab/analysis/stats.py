"""Estimates, confidence intervals and verdicts.

Method (see `docs`-style notes in lab/analysis/__init__.py for the reasoning):

- Sample-level metrics (latency percentiles and mean, throughput, error and throttle rates,
  label shares) come from each trial's requests cut into equal time blocks. A *stratified block
  bootstrap* resamples blocks with replacement within every trial (requests close in time are
  correlated through queues, so blocks, not requests, are the resampled unit), pools the trials
  and recomputes the metric: its spread is the within-trial noise. Trial-to-trial noise (a
  shared machine drifts) is added on top as a random effect, DerSimonian-Laird's tau^2 estimated
  from how much the per-trial values disagree beyond their own bootstrap noise.
- Trial-level metrics (pool statistics, container CPU and memory, cost) have one value per
  trial: mean and standard error over trials, Welch's t. One trial per variant: inconclusive.
- Relative metrics are compared on the log scale (a ratio), shares and rates as differences.
- Many metrics are compared at once: every interval is a Bonferroni-simultaneous interval at
  the configured family-wise confidence, so the chance that *any* metric of an A/A comparison
  comes out significant is at most 1 - confidence.
- A verdict needs both: statistically significant (interval excludes 0) and larger than the
  noise threshold (practically significant; an A/A run measures it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal

import numpy as np
from scipy import stats as scipy_stats

from lab.analysis.catalog import Metric

BIN_RATIO = 1.005  # histogram bins are 0.5 % wide: the bootstrap's latency resolution
LOG_BIN = math.log(BIN_RATIO)
TRIAL_RESAMPLES = 400

Verdict = Literal["improved", "regressed", "no significant change", "inconclusive"]


def bin_value_ms(bins: np.ndarray) -> np.ndarray:
    """The geometric middle of each bin, in ms."""
    return np.exp((bins.astype(np.float64) + 0.5) * LOG_BIN) / 1e6


@dataclass
class TrialBlocks:
    """One trial's samples reduced to per-block counts (all the bootstrap needs)."""

    trial: int
    duration_s: float  # the measured phase; blocks split it equally
    features: np.ndarray  # blocks x len(columns): additive counts and sums
    columns: tuple[str, ...]
    hist: np.ndarray  # blocks x bins: latency histogram of completed requests
    bin0: int  # the bin of hist's column 0

    def column(self, name: str) -> int:
        return self.columns.index(name)


@dataclass
class VariantSamples:
    """One variant's trials, and the exact pooled figures computed from every sample."""

    variant: str
    trials: list[TrialBlocks]
    exact: dict[str, float]  # metric name -> value from all samples (percentiles exactly)
    batch_size: float = 1.0


@dataclass
class Estimate:
    """A metric of one variant: value, variance of its (log) value, and what stands behind it."""

    metric: str
    value: float
    variance: float  # of log(value) for relative metrics, of value for absolute ones
    samples: int  # requests (sample metrics) or trials (trial metrics) behind it
    trials: int
    df: float = math.inf  # degrees of freedom of the variance (inf: normal)
    per_trial: list[float] = field(default_factory=list)
    flag: str = ""  # why the value cannot be judged ("p99 from 230 samples"), or ""
    tau2: float = 0.0  # between-trial variance component included in `variance`

    def interval(self, scale: str, confidence: float = 0.95) -> tuple[float, float]:
        """A two-sided interval for this variant's own value (not simultaneous)."""
        if not math.isfinite(self.variance) or self.value != self.value:
            return math.nan, math.nan
        crit = critical(1 - confidence, 1, self.df)
        half = crit * math.sqrt(self.variance)
        if scale == "relative":
            if self.value <= 0:
                return math.nan, math.nan
            return self.value * math.exp(-half), self.value * math.exp(half)
        return self.value - half, self.value + half


def critical(alpha: float, tests: int, df: float = math.inf) -> float:
    """The two-sided critical value at family-wise level `alpha` over `tests` (Bonferroni)."""
    p = 1 - alpha / (2 * max(tests, 1))
    if math.isinf(df):
        return NormalDist().inv_cdf(p)
    return float(scipy_stats.t.ppf(p, df))


# ---------------------------------------------------------------------------------------------
# sample-level metrics


def sample_values(
    metrics: Sequence[Metric],
    features: np.ndarray,
    cumulative: np.ndarray,
    bin0: int,
    columns: Sequence[str],
    duration_s: float,
    batch_size: float = 1.0,
) -> dict[str, np.ndarray]:
    """Each metric for each row of `features` and `cumulative` (the latency histograms summed
    along their bins); rows are bootstrap resamples or trials."""
    quantiles = [m.quantile for m in metrics if m.quantile is not None]
    found = cumulative_quantiles(cumulative, quantiles, bin0) if quantiles else []
    by_quantile = dict(zip(quantiles, found, strict=True))
    col = {name: i for i, name in enumerate(columns)}
    values: dict[str, np.ndarray] = {}
    for metric in metrics:
        completed = features[:, col["completed"]]
        if metric.quantile is not None:
            values[metric.name] = by_quantile[metric.quantile]
            continue
        if metric.name == "latency_mean_ms":
            part = features[:, col["latency_sum_ms"]]
        elif metric.name == "throughput_rps" or metric.per_prediction:
            part = features[:, col["ok"]] * (batch_size if metric.per_prediction else 1.0)
            completed = np.full(len(features), duration_s)
        elif metric.name == "error_rate":
            part = features[:, col["errors"]]
        elif metric.name == "throttle_rate":
            part = features[:, col["throttled"]]
        elif metric.labels:
            present = [col[f"label:{label}"] for label in metric.labels if f"label:{label}" in col]
            part = features[:, present].sum(axis=1) if present else np.zeros(len(features))
        else:
            raise ValueError(f"{metric.name} is not a sample-level metric")
        with np.errstate(divide="ignore", invalid="ignore"):
            values[metric.name] = np.asarray(part / completed, dtype=np.float64)
    return values


def cumulative_quantiles(cumulative: np.ndarray, quantiles: Sequence[float], bin0: int) -> list[np.ndarray]:
    """Per row and quantile q, the value (ms) of the first bin whose cumulative count reaches q of
    the row's total. One search over all rows at once: offsetting each row by the totals of the
    rows before it (plus one) keeps the flattened array sorted."""
    rows, width = cumulative.shape
    total = cumulative[:, -1]
    offsets = np.concatenate(([0.0], np.cumsum(total + 1.0)[:-1]))
    flat = (cumulative + offsets[:, None]).ravel()
    start = np.arange(rows) * width
    result = []
    for q in quantiles:
        # the smallest column whose count >= q x total (less a hair: rounding of the weights)
        index = np.searchsorted(flat, offsets + q * total - 1e-9 * np.maximum(total, 1.0), side="left") - start
        values = bin_value_ms(np.clip(index, 0, width - 1) + bin0)
        values[total <= 0] = np.nan
        result.append(values)
    return result


def cumulative_histogram(trial: TrialBlocks, bin0: int, width: int) -> np.ndarray:
    """A trial's block histograms summed along the bins, on the variant's common bin range."""
    own = np.cumsum(trial.hist, axis=1)
    cumulative = np.empty((own.shape[0], width))
    offset = trial.bin0 - bin0
    cumulative[:, :offset] = 0.0
    cumulative[:, offset : offset + own.shape[1]] = own
    cumulative[:, offset + own.shape[1] :] = own[:, -1:]
    return cumulative


def transform(values: np.ndarray | float, scale: str) -> np.ndarray:
    """Log for relative metrics (non-positive values become NaN), identity for absolute ones."""
    array = np.asarray(values, dtype=np.float64)
    if scale != "relative":
        return array
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(array > 0, np.log(np.where(array > 0, array, 1.0)), np.nan)


def dersimonian_laird(values: np.ndarray, variances: np.ndarray) -> float:
    """Between-trial variance tau^2 from per-trial estimates and their within-trial variances."""
    ok = np.isfinite(values) & np.isfinite(variances)
    values, variances = values[ok], np.maximum(variances[ok], 1e-12)
    k = len(values)
    if k < 2:
        return 0.0
    weights = 1.0 / variances
    mean = float(np.sum(weights * values) / np.sum(weights))
    q = float(np.sum(weights * (values - mean) ** 2))
    c = float(np.sum(weights) - np.sum(weights**2) / np.sum(weights))
    return max(0.0, (q - (k - 1)) / c) if c > 0 else 0.0


def bootstrap_samples(
    variant: VariantSamples,
    metrics: Sequence[Metric],
    resamples: int,
    rng: np.random.Generator,
    min_tail_samples: int,
) -> dict[str, Estimate]:
    """Stratified block bootstrap of every sample-level metric of one variant."""
    if not variant.trials:
        return {}
    columns = variant.trials[0].columns
    bin0 = min(t.bin0 for t in variant.trials)
    width = max(t.bin0 + t.hist.shape[1] for t in variant.trials) - bin0
    pooled_features = np.zeros((resamples, len(columns)))
    pooled_cumulative = np.zeros((resamples, width))
    duration = sum(t.duration_s for t in variant.trials)
    per_trial: dict[str, list[tuple[float, float]]] = {m.name: [] for m in metrics}
    # a trial's own spread only weighs it against the others (DerSimonian-Laird): fewer resamples do
    few = min(resamples, TRIAL_RESAMPLES)
    for trial in variant.trials:
        blocks = trial.features.shape[0]
        weights = rng.multinomial(blocks, np.full(blocks, 1.0 / blocks), size=resamples).astype(np.float64)
        block_cumulative = cumulative_histogram(trial, bin0, width)
        features = weights @ trial.features
        cumulative = weights @ block_cumulative
        pooled_features += features
        pooled_cumulative += cumulative
        if len(variant.trials) < 2:
            continue
        observed_features = trial.features.sum(axis=0, keepdims=True)
        observed_cumulative = block_cumulative.sum(axis=0, keepdims=True)
        args = (bin0, columns, trial.duration_s, variant.batch_size)
        observed_values = sample_values(metrics, observed_features, observed_cumulative, *args)
        spread_values = sample_values(metrics, features[:few], cumulative[:few], *args)
        for metric in metrics:
            observed = transform(observed_values[metric.name], metric.scale)[0]
            spread = transform(spread_values[metric.name], metric.scale)
            noise = float(np.nanvar(spread)) if np.isfinite(spread).any() else math.nan
            per_trial[metric.name].append((float(observed), noise))
    completed = float(sum(t.features[:, t.column("completed")].sum() for t in variant.trials))
    estimates: dict[str, Estimate] = {}
    pooled = sample_values(metrics, pooled_features, pooled_cumulative, bin0, columns, duration, variant.batch_size)
    for metric in metrics:
        values = transform(pooled[metric.name], metric.scale)
        finite = values[np.isfinite(values)]
        within = float(np.var(finite)) if len(finite) > 1 else math.nan
        trial_points = per_trial[metric.name]
        tau2 = dersimonian_laird(np.array([p for p, _ in trial_points]), np.array([v for _, v in trial_points]))
        value = variant.exact.get(metric.name, math.nan)
        flag = ""
        if metric.quantile is not None:
            tail = completed * (1 - metric.quantile)
            if tail < min_tail_samples:
                needed = math.ceil(min_tail_samples / (1 - metric.quantile))
                flag = f"{metric.title} from {completed:,.0f} samples (needs {needed:,})"
        if not math.isfinite(value) or (metric.scale == "relative" and value <= 0):
            flag = flag or "no value"
        if len(finite) < 0.9 * resamples and not flag:
            flag = "undefined in too many resamples"
        estimates[metric.name] = Estimate(
            metric=metric.name,
            value=value,
            variance=within + tau2 / len(variant.trials),
            samples=int(completed),
            trials=len(variant.trials),
            per_trial=[math.exp(p) if metric.scale == "relative" else p for p, _ in trial_points],
            flag=flag,
            tau2=tau2,
        )
    return estimates


# ---------------------------------------------------------------------------------------------
# trial-level metrics


def trial_estimate(metric: Metric, values: Sequence[float]) -> Estimate:
    """Mean over trials, with the standard error of the mean (on the log scale if relative)."""
    array = np.array([v for v in values if v == v], dtype=np.float64)
    k = len(array)
    if k == 0:
        return Estimate(metric.name, math.nan, math.nan, 0, 0, flag="not measured")
    mean = float(array.mean())
    if k < 2:
        return Estimate(
            metric.name, mean, math.nan, k, k, df=0, per_trial=array.tolist(), flag="1 trial per variant (needs 2)"
        )
    variance = float(array.var(ddof=1)) / k
    if metric.scale == "relative":
        if mean <= 0:
            return Estimate(metric.name, mean, math.nan, k, k, per_trial=array.tolist(), flag="not positive")
        variance /= mean**2
    return Estimate(metric.name, mean, variance, k, k, df=k - 1, per_trial=array.tolist())


# ---------------------------------------------------------------------------------------------
# comparison


@dataclass(frozen=True)
class Comparison:
    """One metric, candidate against baseline."""

    metric: str
    baseline: str
    candidate: str
    baseline_value: float
    candidate_value: float
    change: float  # relative (0.1 = +10 %) or absolute (points / units)
    low: float  # simultaneous confidence interval of the change
    high: float
    threshold: float
    verdict: Verdict
    note: str
    scale: str
    samples: tuple[int, int]
    headline: bool = False
    alpha: float = math.nan  # the two-sided level of this comparison's interval (its share of the family's)


def welch_df(a: Estimate, b: Estimate) -> float:
    if math.isinf(a.df) and math.isinf(b.df):
        return math.inf
    terms = [(e.variance**2 / e.df) for e in (a, b) if e.df > 0 and math.isfinite(e.df)]
    total = a.variance + b.variance
    denominator = sum(terms)
    return total**2 / denominator if denominator > 0 else math.inf


def compare(
    metric: Metric,
    a: Estimate,
    b: Estimate,
    names: tuple[str, str],
    threshold: float,
    alpha: float,
    resolution: float,
    fixed_variance: float | None = None,
) -> Comparison:
    """The change from `a` (baseline) to `b` (candidate), its interval at two-sided level `alpha`
    (the caller's share of the family-wise level for this test) and the verdict."""
    relative = metric.scale == "relative"
    if relative and a.value > 0 and b.value > 0:
        difference = math.log(b.value) - math.log(a.value)
    else:
        difference = b.value - a.value
    variance = fixed_variance if fixed_variance is not None else a.variance + b.variance
    df = math.inf if fixed_variance is not None else welch_df(a, b)
    reason = untestable(metric, a, b, variance)
    if reason:
        change = plain_change(relative, a.value, b.value)
        return Comparison(
            metric.name,
            *names,
            a.value,
            b.value,
            change,
            math.nan,
            math.nan,
            threshold,
            "inconclusive",
            reason,
            metric.scale,
            (a.samples, b.samples),
        )
    half = critical(alpha, 1, df) * math.sqrt(max(variance, 0.0))
    low, high = difference - half, difference + half
    if relative:
        change, low, high = math.expm1(difference), math.expm1(low), math.expm1(high)
    else:
        change = difference
    verdict, note = judge(metric, change, low, high, threshold, resolution)
    return Comparison(
        metric.name,
        *names,
        a.value,
        b.value,
        change,
        low,
        high,
        threshold,
        verdict,
        note,
        metric.scale,
        (a.samples, b.samples),
    )


def plain_change(relative: bool, a: float, b: float) -> float:
    """The change from a to b without statistics: b/a - 1 (NaN from 0), or b - a."""
    if not relative:
        return b - a
    return b / a - 1 if a > 0 else math.nan


def untestable(metric: Metric, a: Estimate, b: Estimate, variance: float) -> str:
    """Why two estimates cannot be compared statistically, or "" when they can."""
    reason = "; ".join(dict.fromkeys(flag for flag in (a.flag, b.flag) if flag))
    if metric.scale == "relative" and not (a.value > 0 and b.value > 0):
        reason = reason or "a value is zero"
    if not reason and not math.isfinite(variance):
        reason = "no variance estimate"
    return reason


def judge(
    metric: Metric, change: float, low: float, high: float, threshold: float, resolution: float
) -> tuple[Verdict, str]:
    """Improved/regressed only when significant *and* beyond the noise threshold."""
    significant = low > 0 or high < 0
    if significant and abs(change) >= threshold:
        better = (change < 0) == (metric.better == "lower")
        return ("improved" if better else "regressed"), ""
    if significant:
        return "no significant change", "within the noise threshold"
    if max(abs(low), abs(high)) > resolution:
        return "inconclusive", "interval too wide to judge"
    return "no significant change", "interval includes 0"
