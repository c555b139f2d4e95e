"""The `[[faults]]` timeline of an experiment: what goes wrong, when, for how long, to whom.

[[faults]]
kind = "kill"          # kill | stop | pause | restart | network | latency | errors
service = "redis"      # the container (latency/errors: the mock_api)
at_s = 4.0             # seconds after the trial's load started (warm-up included) ...
after_requests = 400   # ... or when request N is due (open-loop arrivals only)
duration_s = 2.0       # down / paused / cut / degraded this long, then restored
upstream = "llm"       # latency, errors: which mock upstream
extra_latency_ms = 200 # latency
error_rate = 0.5       # errors: share of that upstream's requests answered 503
variants = ["baseline"]  # default: every variant
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lab.config.services import Strict

FaultKind = Literal["kill", "stop", "pause", "restart", "network", "latency", "errors"]
WINDOWED: tuple[str, ...] = ("kill", "stop", "pause", "network", "latency", "errors")


class FaultConfig(Strict):
    """One fault in a trial's timeline."""

    kind: FaultKind
    service: str = Field(min_length=1)
    at_s: float | None = Field(default=None, ge=0, le=3600)
    after_requests: int | None = Field(default=None, ge=1)
    duration_s: float = Field(default=2.0, gt=0, le=600)
    upstream: str | None = None
    extra_latency_ms: float = Field(default=0.0, ge=0, le=60_000)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    variants: list[str] | None = None

    @model_validator(mode="after")
    def one_start(self) -> FaultConfig:
        if (self.at_s is None) == (self.after_requests is None):
            raise ValueError("give exactly one of at_s or after_requests")
        if self.kind in ("latency", "errors"):
            if self.service != "mock_api":
                raise ValueError(f"a {self.kind} fault acts on the mock_api service")
            if self.upstream is None:
                raise ValueError(f"a {self.kind} fault names its upstream (crm, llm or listings)")
        if self.kind == "latency" and self.extra_latency_ms <= 0:
            raise ValueError("a latency fault needs extra_latency_ms > 0")
        if self.kind == "errors" and self.error_rate <= 0:
            raise ValueError("an errors fault needs error_rate > 0")
        return self

    def applies_to(self, variant: str) -> bool:
        return self.variants is None or variant in self.variants
