"""How a run is judged: `[analysis]` (statistics), `[targets]` (pass/fail goals), `[cost]` (prices).

All three are optional in an experiment file; the defaults are the original success criteria
and a stated price sheet. Which metric names a target may use depends on the workload and is
checked by `lab.analysis.catalog` (config sits below the analysis in the flow).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from lab.config.services import Strict


class AnalysisConfig(Strict):
    """The `[analysis]` table: confidence, noise threshold and bootstrap settings."""

    baseline: str | None = Field(default=None, description='the reference variant; default "baseline" or the first')
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0, description="family-wise, over all compared metrics")
    threshold: float = Field(default=0.05, ge=0, le=10, description="relative noise threshold (0.05 = 5 %)")
    threshold_points: float = Field(default=0.005, ge=0, le=1, description="for rates and shares (0.005 = 0.5 pp)")
    thresholds: dict[str, float] = Field(default_factory=dict, description="per metric, overriding the two above")
    resolution: float = Field(default=0.5, gt=0, le=100, description="a CI wider than +-this is inconclusive")
    resamples: int = Field(default=1000, ge=100, le=100_000, description="bootstrap resamples")
    blocks: int = Field(default=20, ge=2, le=1000, description="time blocks per trial for the block bootstrap")
    min_tail_samples: int = Field(default=10, ge=1, le=100_000, description="samples beyond a percentile")
    seed: int = Field(default=0, ge=0)
    headline: list[str] | None = Field(default=None, description="metrics to compare; default per workload")

    @model_validator(mode="after")
    def thresholds_not_negative(self) -> AnalysisConfig:
        for name, value in self.thresholds.items():
            if value < 0:
                raise ValueError(f"thresholds.{name} must be >= 0")
        return self


class Target(Strict):
    """One goal: the measured value must be below and/or above a bound."""

    below: float | None = None
    above: float | None = None
    expected_max: float | None = Field(default=None, description="informational upper end of the expected band")

    @model_validator(mode="after")
    def has_a_bound(self) -> Target:
        if self.below is None and self.above is None:
            raise ValueError("a target needs `below` or `above`")
        if self.below is not None and self.above is not None and self.above >= self.below:
            raise ValueError("`above` must be smaller than `below`")
        return self

    def describe(self) -> str:
        parts = []
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.below is not None:
            parts.append(f"< {self.below:g}")
        return " and ".join(parts)

    def met(self, value: float) -> bool:
        if value != value:  # NaN: nothing measured, not met
            return False
        return (self.below is None or value < self.below) and (self.above is None or value > self.above)


class TargetsConfig(Strict):
    """The `[targets]` table: `defaults = false` drops the workload's default targets."""

    defaults: bool = True
    metrics: dict[str, Target] = Field(default_factory=dict)


class CostConfig(Strict):
    """The `[cost]` table: a price sheet and the traffic to project to.

    The defaults are stated assumptions (on-demand cloud list prices of the order of a general
    purpose vCPU and GiB-hour), not measurements; every report prints them beside the figures.
    """

    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    requests_per_day: float = Field(default=1_000_000, gt=0, le=1e13, description="projected traffic")
    cpu_core_hour: float = Field(default=0.0416, ge=0, description="price of one CPU core for an hour")
    memory_gb_hour: float = Field(default=0.0052, ge=0, description="price of 1 GiB of memory for an hour")
    upstream_call: dict[str, float] = Field(default_factory=dict, description="price per call, per mock upstream")
    llm_tokens_1k: float = Field(default=0.0, ge=0, description="price per 1,000 tokens of the llm upstream")
    change_cost: float = Field(default=0.0, ge=0, description="one-off cost of making the change, for ROI")

    @model_validator(mode="after")
    def prices_not_negative(self) -> CostConfig:
        for name, value in self.upstream_call.items():
            if value < 0:
                raise ValueError(f"upstream_call.{name} must be >= 0")
        return self
