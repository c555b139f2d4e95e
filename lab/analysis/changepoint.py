"""Change points and trend direction over a history of runs (one value per run, oldest first).

Method: *e-divisive with means* (D. S. Matteson and N. A. James, "A Nonparametric Approach for
Multiple Change Point Analysis of Multivariate Data", JASA 109(505), 2014), univariate, with
distance exponent 1 (the paper's alpha; `alpha` here is the significance level):

- For a segment of m runs, every split into a left part X (n runs) and a right part Y (m - n)
  gets the energy-distance statistic
      q = n (m - n) / m * (2 mean|X - Y| - mean_{i<k}|X_i - X_k| - mean_{j<k}|Y_j - Y_k|),
  the within-part means over distinct pairs (the paper's C(n, 2) normalization). The right part
  always ends at the segment's end, as in MongoDB's signal-processing-algorithms (the paper also
  searches where it ends); that keeps every split O(1) after the O(m^2) step below.
- The best split over all current segments is tested by permutation: each segment's runs are
  shuffled within it, the best split of every shuffled segment is found, and p = (1 + #{shuffled
  max >= observed}) / (1 + permutations). A split with p < alpha becomes a change point and its two
  parts become segments (the paper's hierarchical E-Divisive); the first p >= alpha stops.
- Both parts of a split hold at least `min_size` runs, so one noisy run or a single outlier is
  never a change point (exponent 1 also weighs an outlier linearly, not quadratically).

Why e-divisive rather than PELT or Bayesian online change points: it is nonparametric (benchmark
noise is skewed and heavy-tailed, not normal), finds several change points, and its permutation
test controls false alarms at `alpha` (default 2 %: a CI alert must be rare on pure noise; a
15 % step over 3 % noise still comes out at p = 0.005) without a penalty or hazard rate to tune (PELT needs a noise
model and a penalty, BOCPD a noise model and a hazard rate). MongoDB's CI runs it on every
performance test (Daly et al., ICPE 2020, mongodb/signal-processing-algorithms); Hunter
(datastax-labs/hunter) and Apache Otava keep its split search but test splits with a t-test over
windows, trading exactness under any noise for speed.

Cost: the statistic of every split comes from cumulative sums of each run's distances to the runs
before it (O(m^2) once, then O(1) per split), computed in blocks that stay in the CPU cache. Each
shuffle costs that O(m^2) again. The permutation test stops as soon as p >= alpha is certain (the
decision all shuffles would give), so a series with no change costs a few dozen shuffles; an
accepted change point costs all of them, over the two new segments. Per call at the defaults,
fastest of 20, lognormal noise of 3 % CV, steps of 15 %, on the shared 2-core development VM
(AMD EPYC; +-30 % from run to run):

    runs   no change   one step   two steps
      60      0.5 ms     4.0 ms      6.8 ms
     100      1.5 ms     8.1 ms     12.8 ms
     300      4.5 ms      27 ms       46 ms

`trend` reads the direction off the newest change point; without a large enough one it looks for
gradual drift: a Theil-Sen slope confirmed by a Mann-Kendall test.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

Better = Literal["lower", "higher"]
Direction = Literal["improving", "degrading", "flat"]

FIRST_PERMUTATIONS = 25  # the sequential permutation test draws this many shuffles, then doubles
BLOCK_ELEMENTS = 1 << 16  # pairwise distances held at once (512 KiB): the O(m^2) step stays in cache


@dataclass(frozen=True)
class ChangePoint:
    """A shift in the series: where it starts and the means of the segments on either side."""

    index: int  # first index of the new segment (the run where the shift starts), in the caller's values
    before: float  # mean of the segment before
    after: float  # mean of the segment after
    relative: float  # after / before - 1 (nan if before == 0)
    p_value: float


@dataclass(frozen=True)
class Trend:
    """Whether a metric's history is improving, degrading or flat, and why (one line)."""

    direction: Direction
    evidence: str
    change_points: list[ChangePoint]
    slope_per_run: float  # Theil-Sen slope over the newest segment, relative to its median
    newest_segment_start: int  # the newest change point's index, else the first finite value's


def change_points(
    values: Sequence[float],
    *,
    min_size: int = 5,
    alpha: float = 0.02,
    permutations: int = 199,
    seed: int = 0,
) -> list[ChangePoint]:
    """The change points of `values` (one per run, oldest first), sorted by index.

    NaN and infinite values are dropped; indices still refer to `values`. Deterministic for a seed.
    """
    if min_size < 2:
        raise ValueError(f"min_size must be at least 2 (a segment's spread needs two runs), got {min_size}")
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, got {permutations}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    index, x = _finite(values)
    if len(x) < 2 * min_size:
        return []
    found = _e_divisive(x, min_size, alpha, permutations, np.random.default_rng(seed))
    bounds = [0, *sorted(found), len(x)]
    means = [float(x[a:b].mean()) for a, b in itertools.pairwise(bounds)]
    return [
        ChangePoint(
            index=int(index[split]),
            before=means[k],
            after=means[k + 1],
            relative=means[k + 1] / means[k] - 1 if means[k] != 0 else math.nan,
            p_value=found[split],
        )
        for k, split in enumerate(bounds[1:-1])
    ]


def trend(
    values: Sequence[float],
    better: Better,
    *,
    min_size: int = 5,
    alpha: float = 0.02,
    permutations: int = 199,
    seed: int = 0,
    threshold: float = 0.05,
) -> Trend:
    """Whether the history is improving, degrading or flat.

    The newest change point decides when its shift is at least `threshold` (relative). Otherwise
    the series is flat unless it drifts: a Theil-Sen slope significant by Mann-Kendall at `alpha`
    whose total over the series exceeds `threshold` (a gradual degradation has no step to find).
    """
    index, x = _finite(values)
    points = change_points(values, min_size=min_size, alpha=alpha, permutations=permutations, seed=seed)
    start = points[-1].index if points else (int(index[0]) if len(index) else 0)
    newest = index >= start
    slope = _relative_slope(index[newest], x[newest])

    def result(direction: Direction, evidence: str) -> Trend:
        return Trend(direction, evidence, points, slope, start)

    if len(x) < 3:
        return result("flat", f"too few runs for a trend ({len(x)})")
    if points:
        last = points[-1]
        step = f"step {_shift(last)} at run {last.index} (p = {last.p_value:.2g})"
        change = last.after - last.before
        if abs(last.relative) >= threshold or (last.before == 0 and change != 0):
            segment = f"newest segment {last.index}..{int(index[-1])}"
            means = f"mean {last.after:#.4g} vs {last.before:#.4g} before"
            return result(_direction(change, better), f"{step}; {segment} {means}")
        step = f"newest {step} is below the {threshold * 100:g} % threshold"
    elif len(x) < 2 * min_size:
        step = f"too few runs for change points ({len(x)} < 2 x min_size {min_size})"
    else:
        step = "no change point"

    # no step decides: a gradual drift may
    drift = _relative_slope(index, x) * float(index[-1] - index[0])
    p_value = _mann_kendall(x)
    evidence = (
        f"{step}; drift {_percent(drift)} over runs {int(index[0])}..{int(index[-1])} (Mann-Kendall p = {p_value:.2g})"
    )
    if p_value < alpha and abs(drift) > threshold:
        return result(_direction(drift, better), evidence)
    return result("flat", evidence)


# ---------------------------------------------------------------------------------------------
# e-divisive


class _Segment:
    """Runs between accepted change points: their best split, and the best splits of shuffles."""

    def __init__(self, x: FloatArray, start: int, min_size: int, rng: np.random.Generator) -> None:
        self.x = x
        self.start = start
        self.min_size = min_size
        self.rng = rng
        self.splittable = len(x) >= 2 * min_size
        self.split, self.q = -1, -math.inf
        self.shuffled_q = np.empty(0)
        # each run's distances to all runs of the segment: a shuffle carries them along
        self.distance_sums = np.abs(x[:, None] - x[None, :]).sum(axis=1)
        self.scale = float(self.distance_sums.sum()) / len(x)  # q is at most this
        if self.splittable:
            split, q = _best_splits(x[None, :], self.distance_sums[None, :], min_size)
            self.split, self.q = start + int(split[0]), float(q[0])

    def shuffles(self, count: int) -> FloatArray:
        """The best q of the first `count` random shuffles of the segment (-inf if it is too short
        to split). Drawn on demand and kept: they stay valid while the segment is not split."""
        if not self.splittable:
            return np.full(count, -math.inf)
        missing = count - len(self.shuffled_q)
        if missing > 0:
            order = self.rng.permuted(np.tile(np.arange(len(self.x)), (missing, 1)), axis=1)
            _, q = _best_splits(self.x[order], self.distance_sums[order], self.min_size)
            self.shuffled_q = np.concatenate([self.shuffled_q, q])
        return self.shuffled_q[:count]


def _e_divisive(
    x: FloatArray, min_size: int, alpha: float, permutations: int, rng: np.random.Generator
) -> dict[int, float]:
    """Accepted splits (the first position of each new segment) and their p-values."""
    segments = [_Segment(x, 0, min_size, rng)]
    found: dict[int, float] = {}
    while True:
        best = max(segments, key=lambda s: s.q)
        if not best.splittable:
            return found
        p_value = _permutation_p(best, segments, alpha, permutations)
        if p_value is None:
            return found
        found[best.split] = p_value
        cut = best.split - best.start
        segments.remove(best)
        segments += [
            _Segment(best.x[:cut], best.start, min_size, rng),
            _Segment(best.x[cut:], best.split, min_size, rng),
        ]


def _permutation_p(best: _Segment, segments: list[_Segment], alpha: float, permutations: int) -> float | None:
    """The permutation p-value of the best split, or None as soon as p >= alpha is certain.

    Shuffles are drawn in doubling batches, so a series without a change costs a few dozen; the
    decision is the one all of them would give. A shuffle of the whole series counts when any of
    its segments, each shuffled within itself, has a split at least as good as the best one.
    """
    # a shuffle that happens to equal the data must count: sums in another order differ in the last bits
    reached = best.q - 1e-9 * best.scale
    drawn = min(FIRST_PERMUTATIONS, permutations)
    while True:
        shuffled_q = np.max([segment.shuffles(drawn) for segment in segments], axis=0)
        exceeded = int(np.count_nonzero(shuffled_q >= reached))
        if (1 + exceeded) / (1 + permutations) >= alpha:
            return None
        if drawn == permutations:
            return (1 + exceeded) / (1 + permutations)
        drawn = min(2 * drawn, permutations)


def _best_splits(x: FloatArray, distance_sums: FloatArray, min_size: int) -> tuple[IntArray, FloatArray]:
    """For each row of `x` (series x runs): the split maximizing q (the first run of the right
    part) and that q. `distance_sums[r, k]` is sum_i |x[r, k] - x[r, i]|."""
    m = x.shape[1]
    earlier = _earlier_distance_sums(x)  # sum_{i<k} |x_k - x_i|
    later = distance_sums - earlier  # sum_{i>k} |x_k - x_i|
    # pair sums inside x[:n] for n = 1..m, and inside x[n:] for n = 0..m-1
    within_left = np.cumsum(earlier, axis=1)
    within_right = np.cumsum(later[:, ::-1], axis=1)[:, ::-1]
    n = np.arange(min_size, m - min_size + 1)
    q = _q(m, within_left[:, -1:], within_left[:, n - 1], within_right[:, n], n)
    best = np.argmax(q, axis=1)
    return n[best], q[np.arange(len(q)), best]


def _q(m: int, total: FloatArray | float, left: FloatArray, right: FloatArray, n: IntArray) -> FloatArray:
    """q of the split after `n` runs from the pair sums |x_i - x_k| (i < k) of the whole segment and
    inside each part. The paper's n (m - n) / m * (2 between / (n (m - n)) - left / C(n, 2) - right
    / C(m - n, 2)), with between = total - left - right, simplifies to this: q is large when both
    parts are tight compared with the whole."""
    return 2 / m * (total - (m - 1) * (left / (n - 1) + right / (m - n - 1)))


def _earlier_distance_sums(x: FloatArray) -> FloatArray:
    """sum_{i<k} |x[r, k] - x[r, i]| for every row r and run k: the O(m^2) step, a block of runs
    at a time so that the distances stay in cache."""
    rows, m = x.shape
    block = min(m, max(1, BLOCK_ELEMENTS // (rows * m)))
    before = np.tri(block, k=-1)  # within a block, only the runs before each one count
    sums = np.empty((rows, m))
    for a in range(0, m, block):
        b = min(a + block, m)
        distances = x[:, a:b, None] - x[:, None, :b]
        np.abs(distances, out=distances)
        distances[:, :, a:] *= before[: b - a, : b - a]
        distances.sum(axis=2, out=sums[:, a:b])
    return sums


# ---------------------------------------------------------------------------------------------
# gradual drift


def _relative_slope(index: IntArray, x: FloatArray) -> float:
    """The Theil-Sen slope per run (the median of all pairwise slopes) relative to the median value."""
    if len(x) < 2:
        return math.nan
    i, k = np.triu_indices(len(x), 1)
    slope = float(np.median((x[k] - x[i]) / (index[k] - index[i])))
    middle = float(np.median(x))
    return slope / middle if middle != 0 else math.nan


def _mann_kendall(x: FloatArray) -> float:
    """The two-sided p-value of the Mann-Kendall test for a monotonic trend (normal approximation,
    with the tie correction and the continuity correction)."""
    n = len(x)
    i, k = np.triu_indices(n, 1)
    s = int(np.sign(x[k] - x[i]).sum())
    _, ties = np.unique(x, return_counts=True)
    variance = (n * (n - 1) * (2 * n + 5) - float((ties * (ties - 1) * (2 * ties + 5)).sum())) / 18
    if variance <= 0 or s == 0:
        return 1.0
    z = (abs(s) - 1) / math.sqrt(variance)
    return 2 * NormalDist().cdf(-z)


# ---------------------------------------------------------------------------------------------
# helpers


def _finite(values: Sequence[float]) -> tuple[IntArray, FloatArray]:
    """The positions and values of the finite values (a failed run leaves NaN)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be one value per run, got an array of shape {x.shape}")
    keep = np.isfinite(x)
    return np.flatnonzero(keep).astype(np.int64), x[keep]


def _direction(change: float, better: Better) -> Direction:
    """Which way a change of this sign goes for a metric where `better` is better."""
    up_is_good = better == "higher"
    return "improving" if (change > 0) == up_is_good else "degrading"


def _percent(relative: float) -> str:
    return f"{relative * 100:+.1f} %"


def _shift(point: ChangePoint) -> str:
    return _percent(point.relative) if point.before != 0 else f"from 0 to {point.after:#.4g}"
