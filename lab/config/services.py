"""The services a variant's stack may hold, each with the settings that shape its container."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SERVICE_KINDS: tuple[str, ...] = ("postgres", "redis", "mock_api", "inference")
UPSTREAMS: tuple[str, ...] = ("crm", "llm", "listings")
DEFAULT_IMAGES: dict[str, str] = {
    "postgres": "ablab/postgres",
    "redis": "ablab/redis",
    "mock_api": "ablab/mock-api",
    "inference": "ablab/inference",
}


class Strict(BaseModel):
    """Frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ServiceConfig(Strict):
    """One container of a variant's stack."""

    image: str = Field(min_length=1, description="`ablab/<name>` for the lab's own image, or any local image")
    cpus: float = Field(default=1.0, gt=0, le=64, description="CPU limit in cores")
    memory_mb: int = Field(default=512, ge=16, le=65536, description="memory limit in MiB")
    command: tuple[str, ...] = Field(default=(), strict=False, description="extra server arguments")
    startup_timeout_s: float = Field(default=60.0, gt=0, le=600)


class UpstreamProfile(Strict):
    """How one emulated upstream behaves: the system under test, not a result."""

    latency_median_ms: float | None = Field(default=None, ge=0, le=60_000)
    latency_p99_ms: float | None = Field(default=None, ge=0, le=600_000)
    error_rate: float | None = Field(default=None, ge=0, le=1)
    rate_limit_rps: float | None = Field(default=None, gt=0, le=1_000_000)
    concurrency: int | None = Field(default=None, ge=1, le=100_000)
    response_bytes: int | None = Field(default=None, ge=0, le=1_048_576)

    @model_validator(mode="after")
    def p99_not_below_median(self) -> UpstreamProfile:
        if (
            self.latency_median_ms is not None
            and self.latency_p99_ms is not None
            and self.latency_p99_ms < self.latency_median_ms
        ):
            raise ValueError("latency_p99_ms must not be below latency_median_ms")
        return self


class MockApiConfig(ServiceConfig):
    """The mock third-party API: one seed and a profile per upstream (unset keys: server defaults)."""

    memory_mb: int = Field(default=256, ge=16, le=65536)
    seed: int = Field(default=42, ge=0)
    upstreams: dict[Literal["crm", "llm", "listings"], UpstreamProfile] = Field(default_factory=dict)


class InferenceConfig(ServiceConfig):
    """The ONNX inference server: which model, how many threads, optional dynamic batching."""

    memory_mb: int = Field(default=1024, ge=64, le=65536)
    model: str = Field(default="fp32", min_length=1, description='"fp32", "int8" or a path to an .onnx file')
    threads: int = Field(default=1, ge=1, le=64, description="onnxruntime intra-op threads")
    max_rows: int = Field(default=256, ge=1, le=65536)
    batching: bool = False
    max_batch: int = Field(default=64, ge=1, le=65536)
    max_delay_ms: float = Field(default=2.0, ge=0, le=1000)


class ServicesConfig(Strict):
    """The services of one variant; absent ones are not started."""

    postgres: ServiceConfig | None = None
    redis: ServiceConfig | None = None
    mock_api: MockApiConfig | None = None
    inference: InferenceConfig | None = None

    @model_validator(mode="after")
    def at_least_one(self) -> ServicesConfig:
        if not self.started():
            raise ValueError("at least one service is needed")
        return self

    def started(self) -> dict[str, ServiceConfig]:
        """The configured services by kind, in a stable order."""
        return {kind: config for kind in SERVICE_KINDS if (config := getattr(self, kind)) is not None}
