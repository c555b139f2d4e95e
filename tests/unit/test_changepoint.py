"""Change points and trends over run histories: detection and false-alarm rates measured on
simulated histories, outliers, several steps, the trend's direction and evidence, and the
statistic checked against the paper's formula."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest

from lab.analysis.changepoint import _best_splits, change_points, trend

RUNS = 60
CV = 0.03  # run-to-run noise of a benchmark on a quiet machine


def noise(seed: int) -> np.ndarray:
    """Runs around 100 (say, p99 latency in ms) with lognormal noise of 3 % CV."""
    return 100 * np.random.default_rng(seed).lognormal(0.0, CV, RUNS)


def history(seed: int) -> list[float]:
    return list(noise(seed))


def stepped(seed: int, at: int = 30, factor: float = 1.15) -> list[float]:
    values = noise(seed)
    values[at:] *= factor
    return list(values)


def test_a_step_is_found_where_it_starts() -> None:
    seeds = range(100)
    found = [any(abs(point.index - 30) <= 2 for point in change_points(stepped(seed))) for seed in seeds]
    rate = sum(found) / len(seeds)
    assert rate >= 0.95, f"a 15 % step at run 30 was found at 30 +- 2 in {rate:.0%} of {len(seeds)} histories"


def test_the_step_is_measured() -> None:
    points = change_points(stepped(0))
    assert [point.index for point in points] == [30]
    point = points[0]
    assert point.relative == pytest.approx(0.15, abs=0.03)
    assert point.relative == pytest.approx(point.after / point.before - 1)
    assert point.p_value == pytest.approx(1 / 200)  # no shuffle of 199 comes close


def test_noise_alone_rarely_has_a_change_point() -> None:
    # The permutation test is exact, so the expected false-alarm rate at the default alpha = 2 % is
    # P(p < 0.02) = 3 / 200 for the first split (p takes the values k / 200); measured 1.8 % over 500 seeds.
    seeds = range(200)
    quiet = [not change_points(history(seed)) for seed in seeds]
    rate = sum(quiet) / len(seeds)
    assert rate >= 0.95, f"{rate:.1%} of {len(seeds)} noise-only histories had no change point"


def test_a_single_outlier_is_not_a_change_point() -> None:
    # An outlier must not raise the false-alarm rate much above the test's own (alpha = 2 %), wherever it is.
    seeds, positions = range(60), (0, 1, 30, 58, 59)
    alarms = 0
    for seed, at in itertools.product(seeds, positions):
        values = noise(seed)
        values[at] *= 3
        points = change_points(list(values))
        alarms += bool(points)
        assert all(point.index not in (at, at + 1) for point in points), f"the outlier at run {at} was isolated"
    rate = alarms / (len(seeds) * len(positions))
    assert rate <= 0.10, f"{rate:.1%} of histories with one 3x outlier had a change point"


def test_two_steps_are_both_found() -> None:
    seeds = range(40)
    found = 0
    for seed in seeds:
        values = noise(seed)
        values[20:40] *= 1.15  # up at run 20, back down at run 40
        indices = [point.index for point in change_points(list(values))]
        found += any(abs(i - 20) <= 2 for i in indices) and any(abs(i - 40) <= 2 for i in indices)
    rate = found / len(seeds)
    assert rate >= 0.95, f"both steps were found in {rate:.0%} of {len(seeds)} histories"


def test_failed_runs_are_skipped_and_indices_kept() -> None:
    values = list(stepped(0))
    values[10:13] = [math.nan] * 3
    values[45] = math.nan
    assert [point.index for point in change_points(values)] == [30]


def test_too_short_or_constant_has_no_change_point() -> None:
    assert change_points(stepped(0)[:9]) == []  # fewer than 2 x min_size runs
    assert change_points([]) == []
    assert change_points([5.0] * 30) == []


def test_same_seed_same_answer() -> None:
    values = stepped(3, at=40, factor=0.9)
    assert change_points(values, seed=7) == change_points(values, seed=7)
    assert trend(values, "lower", seed=7) == trend(values, "lower", seed=7)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="min_size"):
        change_points(history(0), min_size=1)
    with pytest.raises(ValueError, match="alpha"):
        change_points(history(0), alpha=0)
    with pytest.raises(ValueError, match="one value per run"):
        change_points([[1.0, 2.0]])  # type: ignore[list-item]


def test_the_statistic_is_the_papers() -> None:
    """Every split's q from the cumulative sums equals Matteson & James's formula computed directly."""
    rng = np.random.default_rng(1)
    min_size = 3
    for runs in (6, 11, 40):
        x = rng.lognormal(0.0, 0.5, (4, runs))
        distance_sums = np.abs(x[:, :, None] - x[:, None, :]).sum(axis=2)
        split, q = _best_splits(x, distance_sums, min_size)
        for row in range(len(x)):
            direct = {n: paper_q(x[row, :n], x[row, n:]) for n in range(min_size, runs - min_size + 1)}
            best = max(direct, key=lambda n: direct[n])
            assert (split[row], q[row]) == (best, pytest.approx(direct[best], rel=1e-9))


def paper_q(left: np.ndarray, right: np.ndarray) -> float:
    n, m = len(left), len(right)
    between = np.abs(left[:, None] - right[None, :]).mean()
    within_left = np.mean([abs(a - b) for a, b in itertools.combinations(left, 2)])
    within_right = np.mean([abs(a - b) for a, b in itertools.combinations(right, 2)])
    return float(n * m / (n + m) * (2 * between - within_left - within_right))


# ---------------------------------------------------------------------------------------------
# trend


def test_latency_stepping_up_is_degrading() -> None:
    result = trend(stepped(0), "lower")
    assert result.direction == "degrading"
    assert result.newest_segment_start == 30
    assert re.fullmatch(
        r"step \+1\d\.\d % at run 30 \(p = 0\.005\); newest segment 30\.\.59 mean 11\d\.\d vs \d+\.\d+ before",
        result.evidence,
    ), result.evidence


def test_latency_stepping_down_is_improving() -> None:
    result = trend(stepped(1, factor=0.85), "lower")
    assert result.direction == "improving"
    assert "step -1" in result.evidence


def test_throughput_stepping_down_is_degrading() -> None:
    assert trend(stepped(2, factor=0.85), "higher").direction == "degrading"
    assert trend(stepped(2, factor=1.15), "higher").direction == "improving"


def test_noise_is_flat() -> None:
    directions = [trend(history(seed), "lower").direction for seed in range(50)]
    assert directions.count("flat") == len(directions), directions


def test_slow_drift_is_degrading() -> None:
    for seed in range(10):
        drifting = noise(seed) * np.linspace(1.0, 1.2, RUNS)  # +20 % over 60 runs, no step
        result = trend(list(drifting), "lower")
        assert result.direction == "degrading", result.evidence


def test_drift_without_any_step_is_found_by_mann_kendall() -> None:
    drifting = noise(0) * np.linspace(1.0, 1.2, RUNS)
    result = trend(list(drifting), "lower", min_size=31)  # no split can have two parts of 31: no change points
    assert result.change_points == []
    assert result.direction == "degrading"
    assert re.match(r"too few runs for change points .*; drift \+(19|20|21)\.\d % over runs 0\.\.59", result.evidence)
    assert result.slope_per_run == pytest.approx(0.2 / 59, rel=0.2)
    assert trend(list(noise(0) * np.linspace(1.0, 0.8, RUNS)), "lower", min_size=31).direction == "improving"


def test_a_step_below_the_threshold_is_flat() -> None:
    quiet = 100 * np.random.default_rng(0).lognormal(0.0, 0.002, RUNS)
    quiet[30:] *= 1.02  # real (p = 0.005) but smaller than the 5 % that matters
    values = list(quiet)
    result = trend(values, "lower")
    assert [point.index for point in result.change_points] == [30]
    assert result.direction == "flat"
    assert "is below the 5 % threshold" in result.evidence
    assert trend(values, "lower", threshold=0.01).direction == "degrading"


def test_short_histories() -> None:
    assert trend([], "lower").direction == "flat"
    assert trend([100.0, 120.0], "lower").direction == "flat"
    rising = trend([100.0, 104.0, 109.0, 113.0, 118.0, 121.0, 127.0], "lower")
    assert rising.direction == "degrading"
    assert rising.change_points == []
