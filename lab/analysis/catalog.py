"""Which metrics the analysis knows, how each is measured, which way is better, and per workload
which ones are headline (compared, with a verdict) and which targets apply by default.

Three sources:
- `samples`: computed from the raw request samples, per time block, so the block bootstrap can
  resample them (latency percentiles and mean, throughput, error/throttle rates, label shares);
- `trials`: one value per trial from `trials.parquet` (the driver's pool statistics, container
  resources); their spread over trials is all there is to judge them by;
- `derived`: computed per trial from other trial metrics (CPU per 1k requests, memory, cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lab.config.analysis import Target
from lab.config.experiment import Experiment

Better = Literal["lower", "higher"]
Scale = Literal["relative", "absolute"]
Source = Literal["samples", "trials", "derived", "accuracy"]

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 0.50),
    ("p90", 0.90),
    ("p95", 0.95),
    ("p99", 0.99),
    ("p99.9", 0.999),
)


@dataclass(frozen=True)
class Metric:
    """One metric the analysis reports: its meaning, unit and which way is better."""

    name: str
    title: str
    unit: str  # "ms", "/s", "share", "MB", "CPU-s/1k", "$/day"
    better: Better
    scale: Scale  # relative: changes in %; absolute: changes in points (shares) or units
    source: Source
    quantile: float | None = None  # samples: a latency percentile
    labels: tuple[str, ...] = ()  # samples: the share of requests with one of these labels
    per_prediction: bool = False  # samples: throughput times the batch size


def _latency(tag: str, q: float) -> Metric:
    return Metric(
        f"latency_{tag.replace('.', '_')}_ms", f"latency {tag}", "ms", "lower", "relative", "samples", quantile=q
    )


LATENCY = tuple(_latency(tag, q) for tag, q in PERCENTILES)
COMMON: tuple[Metric, ...] = (
    *LATENCY,
    Metric("latency_mean_ms", "latency mean", "ms", "lower", "relative", "samples"),
    Metric("throughput_rps", "throughput (ok)", "/s", "higher", "relative", "samples"),
    Metric("error_rate", "error rate", "share", "lower", "absolute", "samples"),
    Metric("cpu_s_per_1k", "CPU per 1k requests", "CPU-s", "lower", "relative", "derived"),  # predictions: inference
    Metric("memory_mb", "memory (all containers)", "MB", "lower", "relative", "derived"),
    Metric("cost_per_day", "projected cost per day", "$", "lower", "relative", "derived"),
    # under an injected fault ([[faults]]; lab.analysis.resilience)
    Metric("fault_error_rate", "failed during the fault", "share", "lower", "absolute", "trials"),
    Metric("fault_p95_ms", "p95 during the fault", "ms", "lower", "relative", "trials"),
    Metric("recovery_s", "time to recover after the fault", "s", "lower", "absolute", "trials"),
    Metric("fault_lost", "requests lost in the fault", "", "lower", "absolute", "trials"),
)
BY_WORKLOAD: dict[str, tuple[Metric, ...]] = {
    "api": (Metric("throttle_rate", "throttled (429) rate", "share", "lower", "absolute", "samples"),),
    "cache": (
        Metric("hit_rate", "hit rate (L1 + L2)", "share", "higher", "absolute", "samples", labels=("l1", "l2")),
        Metric("l1_hit_rate", "L1 hit rate", "share", "higher", "absolute", "samples", labels=("l1",)),
        Metric("l3_share", "served by Postgres (L3)", "share", "lower", "absolute", "samples", labels=("l3",)),
        Metric("l1_bytes", "L1 size", "B", "lower", "relative", "trials"),
    ),
    "database": (
        Metric("pool_efficiency", "pool efficiency", "share", "higher", "absolute", "trials"),
        Metric("pool_wait_ms", "pool wait (mean)", "ms", "lower", "relative", "trials"),
        Metric("slow_query_share", "slow queries", "share", "lower", "absolute", "trials"),
    ),
    "inference": (
        Metric("predictions_per_s", "predictions/s", "/s", "higher", "relative", "samples", per_prediction=True),
        Metric("inference_memory_mb", "inference server memory", "MB", "lower", "relative", "trials"),
        Metric("model_accuracy", "model accuracy (held-out)", "share", "higher", "absolute", "accuracy"),
    ),
    "none": (),
}
HEADLINE: dict[str, tuple[str, ...]] = {
    "api": ("latency_p95_ms", "throughput_rps", "error_rate"),
    "cache": ("hit_rate", "l1_hit_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "l1_bytes"),
    "database": ("latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "pool_wait_ms", "pool_efficiency"),
    "inference": ("latency_p95_ms", "predictions_per_s", "inference_memory_mb", "model_accuracy"),
    "none": (),
}
# compared as well (with a verdict), after the headline ones
SECONDARY: tuple[str, ...] = (
    "latency_p50_ms",
    "latency_p99_ms",
    "throughput_rps",
    "error_rate",
    "cpu_s_per_1k",
    "fault_error_rate",
    "fault_p95_ms",
    "recovery_s",
)
# requests/s of an inference variant depends on its batch size: predictions/s is the comparable one
SKIP_SECONDARY: dict[str, tuple[str, ...]] = {"inference": ("throughput_rps",)}
COST_REDUCTION = "cost_reduction"

DEFAULT_TARGETS: dict[str, dict[str, Target]] = {
    "api": {"latency_p95_ms": Target(below=200)},
    "inference": {"latency_p95_ms": Target(below=500)},
    "database": {"latency_p90_ms": Target(below=50), "pool_efficiency": Target(above=0.90)},
    "cache": {"hit_rate": Target(above=0.95)},
}
DEFAULT_COST_TARGET = Target(above=0.25, expected_max=0.35)


@dataclass(frozen=True)
class Catalog:
    """The metrics of one workload, and the ones its comparison covers."""

    workload: str
    metrics: dict[str, Metric] = field(default_factory=dict)
    compared: tuple[str, ...] = ()
    headline: tuple[str, ...] = ()

    def get(self, name: str) -> Metric | None:
        return self.metrics.get(name)


def catalog(workload: str, headline: list[str] | None = None) -> Catalog:
    """The catalog of a workload; `headline` (from `[analysis] headline`) replaces the default."""
    metrics = {m.name: m for m in (*COMMON, *BY_WORKLOAD.get(workload, ()))}
    chosen = tuple(headline) if headline is not None else HEADLINE.get(workload, ())
    compared = list(chosen)
    if headline is None:
        skipped = SKIP_SECONDARY.get(workload, ())
        compared += [name for name in SECONDARY if name not in compared and name not in skipped]
        compared += ["memory_mb", "cost_per_day"] if "memory_mb" not in compared else ["cost_per_day"]
    return Catalog(workload, metrics, tuple(dict.fromkeys(compared)), chosen)


def target_names(workload: str) -> set[str]:
    """The names a `[targets]` entry may use for this workload."""
    return set(catalog(workload).metrics) | {COST_REDUCTION}


def check_names(experiment: Experiment) -> None:
    """Every metric an experiment's `[targets]` and `[analysis]` name must be one the analysis
    knows for its workload: a ConfigError at the key's line, before any container starts."""
    known = target_names(experiment.meta.workload)
    choices = ", ".join(sorted(known))
    for name in experiment.targets.metrics:
        if name not in known:
            experiment.fail(("targets", name), f"unknown metric; expected one of: {choices}")
    for name in experiment.analysis.thresholds:
        if name not in known:
            experiment.fail(("analysis", "thresholds", name), f"unknown metric; expected one of: {choices}")
    for name in experiment.analysis.headline or []:
        if name not in catalog(experiment.meta.workload).metrics:
            experiment.fail(("analysis", "headline"), f"{name}: unknown metric; expected one of: {choices}")
