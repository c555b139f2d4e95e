"""When each request is due: constant rate, Poisson arrivals, or stages of ramps and steps.

A schedule is a piecewise-linear request rate r(t) (stages) and an arrival kind. Arrival k of
the whole run is due at Λ⁻¹(u_k), where Λ(t) = ∫ r is the expected count so far and u_k is k
(constant: evenly spaced) or the k-th point of a Poisson process (Poisson).

The Poisson process is conditioned on its expected count n = Λ(T): given n arrivals, their
times are n sorted independent uniforms (the order-statistics property), so the gaps are
exponential as for any Poisson process while the run sends exactly the target number of
requests - a rate check is then not at the mercy of a ±1/√n draw. Sorted uniforms are made
in constant memory as normalized cumulative sums of exponentials (two passes over the same
seeded stream: one for the total, one to emit).

Worker i of N takes arrivals k ≡ i (mod N), so the workers together send exactly the schedule
of one generator, and each computes its share alone (no coordination needed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

ArrivalKind = Literal["constant", "poisson", "closed"]
GRID_S = 0.001  # Λ is tabulated per millisecond; within a linear stage the table is exact


@dataclass(frozen=True)
class Stage:
    """`duration_s` during which the rate goes linearly from `start_rps` to `end_rps`."""

    duration_s: float
    start_rps: float
    end_rps: float

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.start_rps < 0 or self.end_rps < 0:
            raise ValueError("a stage needs a positive duration and non-negative rates")


@dataclass(frozen=True)
class Schedule:
    """Arrivals of a whole run (all workers together)."""

    kind: ArrivalKind
    stages: tuple[Stage, ...] = field(default_factory=tuple)
    concurrency: int = 0  # closed loop only: requests kept in flight
    seed: int = 0

    @classmethod
    def constant(cls, rate_rps: float, duration_s: float) -> Schedule:
        return cls("constant", (Stage(duration_s, rate_rps, rate_rps),))

    @classmethod
    def poisson(cls, rate_rps: float, duration_s: float, seed: int = 0) -> Schedule:
        return cls("poisson", (Stage(duration_s, rate_rps, rate_rps),), seed=seed)

    @classmethod
    def closed(cls, concurrency: int, duration_s: float) -> Schedule:
        return cls("closed", (Stage(duration_s, 0, 0),), concurrency=concurrency)

    @property
    def duration_s(self) -> float:
        return sum(stage.duration_s for stage in self.stages)

    @property
    def open_loop(self) -> bool:
        return self.kind != "closed"

    def expected_count(self) -> float:
        """Λ(end): the number of arrivals the rate function implies."""
        return float(sum(s.duration_s * (s.start_rps + s.end_rps) / 2 for s in self.stages))

    def rate_at(self, t_s: float) -> float:
        elapsed = 0.0
        for stage in self.stages:
            if t_s < elapsed + stage.duration_s:
                fraction = (t_s - elapsed) / stage.duration_s
                return stage.start_rps + (stage.end_rps - stage.start_rps) * fraction
            elapsed += stage.duration_s
        return 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "stages": [[s.duration_s, s.start_rps, s.end_rps] for s in self.stages],
            "concurrency": self.concurrency,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Schedule:
        stages = tuple(Stage(float(d), float(a), float(b)) for d, a, b in data["stages"])  # type: ignore[attr-defined]
        return cls(
            kind=data["kind"],  # type: ignore[arg-type]
            stages=stages,
            concurrency=int(data.get("concurrency", 0)),  # type: ignore[call-overload]
            seed=int(data.get("seed", 0)),  # type: ignore[call-overload]
        )

    def offsets_ns(self, worker: int = 0, workers: int = 1, chunk: int = 65_536) -> Iterator[np.ndarray]:
        """Due times (ns since the start) of this worker's arrivals, in increasing chunks."""
        if not self.open_loop:
            return
        grid_t, grid_count = self._cumulative_table()
        expected = self.expected_count()
        if self.kind == "constant":
            count = int(np.ceil(expected - 1e-9))  # arrivals at 0, 1/r, ... strictly before the end
            scale = 1.0
        else:
            count = round(expected)
            # n sorted uniforms on [0, Λ(T)) = Λ(T) * S_k / S_(n+1), S the sums of exponentials
            total = sum(float(part.sum()) for part in self._exponentials(count + 1, chunk))
            scale = expected / total
        exponentials = self._exponentials(count, chunk) if self.kind == "poisson" else None
        partial = 0.0
        for index in range(0, count, chunk):
            size = min(chunk, count - index)
            if exponentials is None:
                u = np.arange(index, index + size, dtype=np.float64)
            else:
                sums = partial + np.cumsum(next(exponentials))
                partial = float(sums[-1])
                u = sums * scale
            mine = (np.arange(index, index + size) % workers) == worker
            times = np.interp(u[mine], grid_count, grid_t)
            if times.size:
                yield np.round(times * 1e9).astype(np.int64)

    def _exponentials(self, count: int, chunk: int) -> Iterator[np.ndarray]:
        """The seeded stream of unit exponentials, `count` of them in chunks of `chunk`."""
        rng = np.random.default_rng(self.seed)
        for index in range(0, count, chunk):
            yield rng.exponential(1.0, min(chunk, count - index))

    def _cumulative_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Λ(t) at every stage boundary, and per millisecond inside ramps, strictly increasing.

        Within a constant-rate stage Λ is linear, so its two ends make interpolation exact;
        only ramps (quadratic Λ) need a grid. Memory is then independent of run length for
        constant stages (an hour at a constant rate is two points, not 3.6 million).
        """
        times = [np.zeros(1)]
        counts = [np.zeros(1)]
        elapsed = 0.0
        count = 0.0
        for stage in self.stages:
            if stage.start_rps == stage.end_rps:
                t = np.array([stage.duration_s])
            else:
                steps = max(1, int(np.ceil(stage.duration_s / GRID_S)))
                t = np.linspace(0.0, stage.duration_s, steps + 1)[1:]
            slope = (stage.end_rps - stage.start_rps) / stage.duration_s
            stage_counts = count + stage.start_rps * t + slope * t * t / 2
            times.append(elapsed + t)
            counts.append(stage_counts)
            elapsed += stage.duration_s
            count = float(stage_counts[-1])
        grid_t = np.concatenate(times)
        grid_count = np.concatenate(counts)
        # np.interp needs increasing x: a zero-rate stretch maps to its last instant
        grid_count = np.maximum.accumulate(grid_count + np.arange(grid_count.size) * 1e-12)
        return grid_t, grid_count
