"""Schedules and histograms: exact, by construction, without any server."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lab.loadgen.histogram import Histogram, bucket_high, bucket_index, bucket_low
from lab.loadgen.schedule import Schedule, Stage


def offsets(schedule: Schedule, worker: int = 0, workers: int = 1, chunk: int = 65_536) -> np.ndarray:
    return np.concatenate([np.empty(0, np.int64), *schedule.offsets_ns(worker, workers, chunk)])


def test_constant_rate_is_evenly_spaced_and_exact() -> None:
    times = offsets(Schedule.constant(200, 2))
    assert times.size == 400
    assert set(np.diff(times).tolist()) == {5_000_000}
    assert times[0] == 0 and times[-1] < 2_000_000_000


def test_poisson_sends_the_target_count_with_exponential_gaps() -> None:
    schedule = Schedule.poisson(1000, 5, seed=3)
    times = offsets(schedule)
    assert times.size == 5000  # conditioned on its expected count
    gaps_s = np.diff(times) / 1e9
    result = stats.kstest(gaps_s, "expon", args=(0, 1 / 1000))
    assert result.pvalue > 0.01
    # and it is not merely evenly spaced: the gaps vary as an exponential's do
    assert 0.9 < gaps_s.std() / gaps_s.mean() < 1.1


def test_poisson_is_seeded() -> None:
    assert np.array_equal(offsets(Schedule.poisson(300, 2, seed=5)), offsets(Schedule.poisson(300, 2, seed=5)))
    assert not np.array_equal(offsets(Schedule.poisson(300, 2, seed=5)), offsets(Schedule.poisson(300, 2, seed=6)))


@pytest.mark.parametrize("schedule", [Schedule.constant(333, 3), Schedule.poisson(333, 3, seed=1)])
def test_workers_share_exactly_the_single_generator_schedule(schedule: Schedule) -> None:
    whole = offsets(schedule)
    parts = [offsets(schedule, worker, 3, chunk=97) for worker in range(3)]
    assert sum(part.size for part in parts) == whole.size
    assert np.array_equal(np.sort(np.concatenate(parts)), whole)


def test_ramp_and_step_stages() -> None:
    # 1 s ramp 0 -> 100/s (50 arrivals), then a step to 300/s for 1 s (300 arrivals)
    schedule = Schedule("constant", (Stage(1, 0, 100), Stage(1, 300, 300)))
    times = offsets(schedule)
    assert times.size == 350
    assert (times < 1e9).sum() == 50
    first_half = (times < 0.5e9).sum()
    assert 11 <= first_half <= 14  # Λ(0.5) = 12.5: a ramp puts a quarter of its arrivals in the first half
    assert schedule.rate_at(0.5) == 50 and schedule.rate_at(1.5) == 300


def test_histogram_buckets_bound_every_value_within_a_thousandth() -> None:
    values = np.concatenate([np.arange(0, 5000), np.random.default_rng(1).integers(0, 10**11, 50_000)])
    index = bucket_index(values)
    assert (bucket_low(index) <= values).all() and (bucket_high(index) >= values).all()
    width = (bucket_high(index) - bucket_low(index)) / np.maximum(values, 1)
    assert width.max() < 1 / 1000


def test_histogram_percentiles_and_merge_match_the_samples() -> None:
    rng = np.random.default_rng(2)
    a, b = (rng.lognormal(16, 1, 20_000).astype(np.int64) for _ in range(2))
    left, right = Histogram(), Histogram()
    left.record(a)
    right.record(b)
    merged = left.merge(right)
    both = np.concatenate([a, b])
    assert merged.total == both.size
    for q in (50, 90, 99, 99.9):
        exact = float(np.percentile(both, q, method="inverted_cdf"))
        assert exact <= merged.percentile(q) <= exact * 1.001 + 1
    assert Histogram.from_dict(merged.to_dict()).percentile(99) == merged.percentile(99)
