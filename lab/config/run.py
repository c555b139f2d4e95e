"""How an experiment is run: trials and their order, load shape, and the --quick preview."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lab.config.services import Strict

Arrivals = Literal["constant", "poisson", "closed"]
TrialOrder = Literal["interleaved", "blocked"]


class QuickRun(Strict):
    """Overrides that `--quick` applies (a laptop preview; figures are noisier)."""

    trials: int = Field(default=1, ge=1, le=100)
    duration_s: float = Field(default=3.0, gt=0, le=3600)
    warmup_s: float = Field(default=1.0, ge=0, le=600)
    rate_rps: float | None = Field(default=None, gt=0, le=1_000_000)


class RunConfig(Strict):
    """The `[run]` table: trial count and order, and the load every trial applies."""

    trials: int = Field(default=3, ge=1, le=100, description="trials per variant")
    order: TrialOrder = Field(default="interleaved", description="A B B A ... or A A ... B B ...")
    seed: int = Field(default=1, ge=0, description="seeds trial order, request streams and data")
    duration_s: float = Field(default=20.0, gt=0, le=3600, description="per trial, warm-up included")
    warmup_s: float = Field(default=3.0, ge=0, le=600, description="excluded from results")
    arrivals: Arrivals = "poisson"
    rate_rps: float = Field(default=100.0, gt=0, le=1_000_000, description="open loop: requests/s")
    concurrency: int = Field(default=16, ge=1, le=10_000, description="closed loop: requests in flight")
    max_in_flight: int = Field(default=1000, ge=1, le=1_000_000)
    workers: int = Field(default=1, ge=1, le=64, description="load generator processes")
    collect_interval_s: float = Field(
        default=1.0, ge=0, le=60, description="resource and counter time series while a trial runs (0: off)"
    )
    quick: QuickRun = Field(default_factory=QuickRun)

    @model_validator(mode="after")
    def warmup_shorter_than_duration(self) -> RunConfig:
        if self.warmup_s >= self.duration_s:
            raise ValueError("warmup_s must be shorter than duration_s")
        if self.quick.warmup_s >= self.quick.duration_s:
            raise ValueError("quick.warmup_s must be shorter than quick.duration_s")
        return self

    def effective(self, quick: bool, trials: int | None = None, duration_s: float | None = None) -> RunConfig:
        """This run's settings after --quick, --trials and --duration."""
        changes: dict[str, object] = {}
        if quick:
            changes.update(trials=self.quick.trials, duration_s=self.quick.duration_s, warmup_s=self.quick.warmup_s)
            if self.quick.rate_rps is not None:
                changes["rate_rps"] = self.quick.rate_rps
        if trials is not None:
            changes["trials"] = trials
        if duration_s is not None:
            changes["duration_s"] = duration_s
            changes["warmup_s"] = min(float(changes.get("warmup_s", self.warmup_s)), duration_s / 4)  # type: ignore[arg-type]
        return self.model_copy(update=changes)
