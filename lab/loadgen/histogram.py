"""Log-linear latency histograms in the manner of HdrHistogram, recorded and merged with numpy.

Values are integers (nanoseconds here). Values below 2048 have a bucket each; above, every
power-of-two range is split into 1024 equal buckets, so a bucket is never wider than 1/1024 of
its value (three significant decimal digits, like HdrHistogram's default). Histograms of the
same layout merge by adding counts, so workers' histograms combine exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SUB_BUCKET_BITS = 11
SUB_BUCKETS = 1 << SUB_BUCKET_BITS  # 2048
HALF = SUB_BUCKETS // 2  # 1024
MAX_SHIFT = 40  # up to 2**51 ns: about 26 days


def bucket_index(values: np.ndarray) -> np.ndarray:
    """The bucket of each value (int64 >= 0)."""
    values = np.asarray(values, dtype=np.int64)
    small = values < SUB_BUCKETS
    # exponent of the highest set bit, exact for integers below 2**53
    msb = np.frexp(np.maximum(values, 1).astype(np.float64))[1] - 1
    shift = np.maximum(msb - (SUB_BUCKET_BITS - 1), 0)
    large = shift * HALF + (values >> shift)
    result: np.ndarray = np.where(small, values, large)
    return result


def bucket_low(indices: np.ndarray) -> np.ndarray:
    """The smallest value of each bucket."""
    indices = np.asarray(indices, dtype=np.int64)
    shift = np.maximum(indices // HALF - 1, 0)
    sub = np.where(indices < SUB_BUCKETS, indices, indices % HALF + HALF)
    result: np.ndarray = sub << shift
    return result


def bucket_high(indices: np.ndarray) -> np.ndarray:
    """The largest value of each bucket."""
    indices = np.asarray(indices, dtype=np.int64)
    shift = np.maximum(indices // HALF - 1, 0)
    result: np.ndarray = bucket_low(indices) + (np.int64(1) << shift) - 1
    return result


@dataclass
class Histogram:
    """Counts per bucket; grows as larger values arrive."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(SUB_BUCKETS, dtype=np.int64))

    def record(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        indices = bucket_index(np.clip(values, 0, None))
        needed = int(indices.max()) + 1
        if needed > self.counts.size:
            self.counts = np.concatenate([self.counts, np.zeros(needed - self.counts.size, dtype=np.int64)])
        self.counts += np.bincount(indices, minlength=self.counts.size)

    def merge(self, other: Histogram) -> Histogram:
        size = max(self.counts.size, other.counts.size)
        counts = np.zeros(size, dtype=np.int64)
        counts[: self.counts.size] += self.counts
        counts[: other.counts.size] += other.counts
        return Histogram(counts)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def percentile(self, q: float) -> float:
        """The value at percentile q (0..100), as the highest value of its bucket (HdrHistogram's
        'highest equivalent value'), so a reported percentile is never below the true one."""
        total = self.total
        if total == 0:
            return float("nan")
        rank = max(1, int(np.ceil(q / 100 * total)))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        return float(bucket_high(np.array([index]))[0])

    def to_dict(self) -> dict[str, object]:
        nonzero = np.flatnonzero(self.counts)
        return {
            "layout": f"loglinear-{SUB_BUCKET_BITS}",
            "index": nonzero.tolist(),
            "count": self.counts[nonzero].tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Histogram:
        if data.get("layout") != f"loglinear-{SUB_BUCKET_BITS}":
            raise ValueError(f"unknown histogram layout {data.get('layout')!r}")
        index = np.asarray(data["index"], dtype=np.int64)
        counts = np.zeros(max(SUB_BUCKETS, int(index.max()) + 1 if index.size else 0), dtype=np.int64)
        counts[index] = np.asarray(data["count"], dtype=np.int64)
        return cls(counts)
