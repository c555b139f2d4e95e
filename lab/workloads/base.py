"""What a workload is: client-side knobs, the services it needs, and what it does per trial.

A workload driver runs on the host (the parent of a run). It prepares its services once per
stack (schema, seed data, indexes), resets their state before every trial, and hands the load
generator an *operation reference* (`module:factory` + JSON parameters) that each worker
process turns into the async operation it calls; the operation holds the client-side knobs the
variants change (pool sizes, L1 cache size, batch size). After a trial the driver turns the
load result (samples, per-worker operation statistics) and the services' own counters into
workload metrics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import polars as pl
from pydantic import BaseModel, ConfigDict

from lab.loadgen.operation import OperationRef
from lab.loadgen.runner import LoadResult
from lab.stack.endpoint import Endpoint


class Knobs(BaseModel):
    """A workload's `[workload]` table: frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class WorkloadDriver(ABC):
    """One kind of workload (cache, database, api, inference)."""

    kind: ClassVar[str]
    knobs_model: ClassVar[type[Knobs]]
    required_services: ClassVar[tuple[str, ...]]

    def __init__(self, knobs: Knobs, endpoints: dict[str, Endpoint], seed: int) -> None:
        self.knobs = knobs
        self.endpoints = endpoints
        self.seed = seed

    @abstractmethod
    def prepare(self) -> None:
        """Once per stack, before any trial: create schema, load seed data, add indexes."""

    @abstractmethod
    def reset(self) -> None:
        """Before every trial: bring the services back to the state a trial starts from."""

    @abstractmethod
    def operation(self, trial_seed: int) -> OperationRef:
        """What each load worker calls; `trial_seed` makes the request stream reproducible."""

    @abstractmethod
    def trial_metrics(self, result: LoadResult) -> dict[str, float]:
        """Workload metrics of a finished trial (hit rates, pool wait, predictions/s, ...)."""


def latency_by_label(
    samples: pl.LazyFrame, quantiles: tuple[int, ...]
) -> tuple[pl.LazyFrame, dict[str, dict[str, Any]], dict[str, Any]]:
    """Completed calls, and over the ok ones the count and latency percentiles (ms) per label
    and overall. Dropped and unfinished requests never completed, so they are not calls here."""
    completed = samples.filter(pl.col("end_ns").is_not_null()).select(
        pl.col("outcome").cast(pl.String),
        pl.col("label").cast(pl.String),
        (pl.col("latency_ns") / 1e6).alias("latency_ms"),
    )
    ok = completed.filter(pl.col("outcome") == "ok")
    latency = [pl.col("latency_ms").quantile(q / 100, interpolation="linear").alias(f"p{q}") for q in quantiles]
    per_label = {
        str(row["label"]): row
        for row in ok.group_by("label").agg(pl.len().alias("n"), *latency).collect().iter_rows(named=True)
    }
    overall = ok.select(pl.len().alias("n"), *latency).collect().row(0, named=True)
    return completed, per_label, overall
