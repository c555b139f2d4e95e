"""The verdicts' error rates, measured by simulation at the default settings.

Each repetition draws two variants of 3 trials (the default trial count) x 1,700 requests (the
default 100 requests/s for 17 measured seconds) with lognormal latencies (sigma 0.5: p99 about
3.2 x the median) and a 1 % error rate, and runs the full comparison (every compared metric of
the api workload, family-wise control included).
"""

from __future__ import annotations

import numpy as np

from lab.analysis.analyze import Analysis, analyze
from lab.analysis.blocks import variant_from_arrays
from lab.config.analysis import AnalysisConfig, CostConfig, TargetsConfig
from lab.config.run import RunConfig

REPETITIONS = 200
DEFAULTS = RunConfig()
PER_TRIAL = int(DEFAULTS.rate_rps * (DEFAULTS.duration_s - DEFAULTS.warmup_s))
SIGMA = 0.5


def simulated(rng: np.random.Generator, scale_b: float) -> Analysis:
    settings = AnalysisConfig()
    samples = {}
    for name, scale in (("baseline", 1.0), ("optimized", scale_b)):
        latencies = [scale * rng.lognormal(np.log(50.0), SIGMA, PER_TRIAL) for _ in range(DEFAULTS.trials)]
        outcomes = [np.where(rng.random(PER_TRIAL) < 0.01, "crm_http_503", "ok") for _ in range(DEFAULTS.trials)]
        measured = DEFAULTS.duration_s - DEFAULTS.warmup_s
        samples[name] = variant_from_arrays(name, latencies, settings.blocks, measured, outcomes=outcomes)
    return analyze(
        experiment="simulation",
        workload="api",
        samples=samples,
        trials={name: [{}] * DEFAULTS.trials for name in samples},
        settings=settings,
        targets=TargetsConfig(),
        prices=CostConfig(),
    )


def test_defaults_are_what_the_simulation_assumes() -> None:
    assert (DEFAULTS.trials, PER_TRIAL) == (3, 1700)
    assert AnalysisConfig().confidence == 0.95


def test_aa_false_positive_rate_is_at_most_5_percent() -> None:
    rng = np.random.default_rng(6)
    false_alarms = 0
    tested = set()
    for _ in range(REPETITIONS):
        analysis = simulated(rng, 1.0)
        tested |= {c.metric for c in analysis.comparisons if c.verdict != "inconclusive"}
        false_alarms += any(c.verdict in ("improved", "regressed") for c in analysis.comparisons)
    # any metric of the family flagged counts as one false alarm for the repetition
    assert {"latency_p95_ms", "latency_p50_ms", "latency_p99_ms", "throughput_rps", "error_rate"} <= tested
    assert false_alarms / REPETITIONS <= 0.05, false_alarms


def test_a_true_10_percent_shift_in_p95_is_detected_90_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    detected = 0
    for _ in range(REPETITIONS):
        analysis = simulated(rng, 1.10)
        p95 = next(c for c in analysis.comparisons if c.metric == "latency_p95_ms")
        detected += p95.verdict == "regressed"
    assert detected / REPETITIONS >= 0.90, detected
