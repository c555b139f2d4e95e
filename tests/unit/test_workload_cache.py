"""The cache workload's parts without Docker: Zipf keys, the LRU, knobs and the trial metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from lab.stack.endpoint import Endpoint
from lab.workloads.cache import (
    DRIVER,
    CacheKnobs,
    CacheWorkload,
    LruCache,
    ZipfKeys,
    seed_copy_chunks,
    zipf_cdf,
)
from tests.support.samples import load_result, write_samples

MS = 1_000_000


def endpoint(service: str, port: int) -> Endpoint:
    return Endpoint(service, "127.0.0.1", port, f"{service}://127.0.0.1:{port}", "id", "name", "image")


# --- Zipf keys ---------------------------------------------------------------------------------


def test_zipf_cdf_gives_each_rank_its_theoretical_probability() -> None:
    keys, s = 1_000, 1.1
    cdf = zipf_cdf(keys, s)
    harmonic = sum(k**-s for k in range(1, keys + 1))
    probabilities = np.diff(cdf, prepend=0.0)
    for rank in (0, 1, 2, 9, 999):
        assert probabilities[rank] == pytest.approx((rank + 1) ** -s / harmonic, rel=1e-9)
    assert cdf[-1] == 1.0 and np.all(np.diff(cdf) > 0)


def test_sampled_top_keys_match_the_zipf_popularity() -> None:
    keys, s, draws = 200_000, 1.1, 200_000
    sampler = ZipfKeys(zipf_cdf(keys, s), np.random.default_rng(5))
    sample = sampler.draw(draws)
    assert sample.min() >= 0 and sample.max() < keys
    harmonic = float(np.sum(np.arange(1, keys + 1, dtype=np.float64) ** -s))
    counts = np.bincount(sample, minlength=keys)
    for rank in range(10):
        p = (rank + 1) ** -s / harmonic
        sigma = np.sqrt(draws * p * (1 - p))
        assert abs(counts[rank] - draws * p) < 4 * sigma, f"rank {rank}: {counts[rank]} vs {draws * p:.0f}"
    # the top 5,000 keys carry their theoretical share of the traffic (82.8 % at s = 1.1)
    top_share = counts[:5_000].sum() / draws
    expected = float(np.sum(np.arange(1, 5_001, dtype=np.float64) ** -s)) / harmonic
    assert abs(top_share - expected) < 0.005


def test_key_stream_depends_on_the_seed_only_not_on_the_block_size() -> None:
    cdf = zipf_cdf(10_000, 1.1)
    a = ZipfKeys(cdf, np.random.default_rng(9), block=4096).draw(5_000)
    b = ZipfKeys(cdf, np.random.default_rng(9), block=7).draw(5_000)
    c = ZipfKeys(cdf, np.random.default_rng(10)).draw(5_000)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_a_single_key_space_always_draws_key_zero() -> None:
    sampler = ZipfKeys(zipf_cdf(1, 2.0), np.random.default_rng(0))
    assert set(sampler.draw(1_000).tolist()) == {0}


# --- LRU -----------------------------------------------------------------------------------------


def test_lru_evicts_the_least_recently_used_and_stays_within_capacity() -> None:
    cache = LruCache(3)
    for key in (1, 2, 3):
        cache.put(key, b"v%d" % key)
    assert cache.get(1) == b"v1"  # 1 is now the most recently used
    cache.put(4, b"v4")
    assert cache.get(2) is None  # 2 was the least recently used
    assert cache.keys() == [3, 1, 4]
    cache.put(3, b"new")  # re-putting refreshes, does not grow
    assert len(cache) == 3 and cache.keys() == [1, 4, 3] and cache.get(3) == b"new"
    for key in range(100, 200):
        cache.put(key, b"x")
        assert len(cache) <= 3
    assert cache.keys() == [197, 198, 199]


def test_lru_of_size_zero_keeps_nothing() -> None:
    cache = LruCache(0)
    cache.put(1, b"v")
    assert cache.get(1) is None and len(cache) == 0


def test_lru_memory_counts_container_keys_and_values() -> None:
    cache = LruCache(2)
    empty = cache.memory_bytes()
    assert empty == sys.getsizeof(cache._entries)
    value = bytes(256)
    cache.put(10**6, value)
    cache.put(10**6 + 1, value)
    per_entry = sys.getsizeof(10**6) + sys.getsizeof(value)
    assert cache.memory_bytes() == sys.getsizeof(cache._entries) + 2 * per_entry
    small = bytes(16)
    cache.put(10**6 + 2, small)  # evicts an entry with a 256-byte value, adds one with 16 bytes
    assert cache.memory_bytes() == sys.getsizeof(cache._entries) + per_entry + 28 + sys.getsizeof(small)
    assert sys.getsizeof(small) == 33 + 16  # CPython: a bytes object is a 33-byte header + payload


# --- knobs ---------------------------------------------------------------------------------------


def test_defaults_are_the_shipped_baseline() -> None:
    knobs = CacheKnobs()
    assert (knobs.keys, knobs.zipf_s, knobs.l1_size, knobs.warming) == (200_000, 1.1, 5_000, False)
    assert (knobs.l2_ttl_s, knobs.value_bytes, knobs.redis_pool, knobs.postgres_pool) == (300, 256, 32, 8)
    assert CacheKnobs.model_validate({"zipf_s": 1}).zipf_s == 1.0  # a TOML integer is a fine float


@pytest.mark.parametrize(
    "bad",
    [
        {"keys": 0},
        {"zipf_s": 0},
        {"zipf_s": -1.0},
        {"l1_size": -1},
        {"l2_ttl_s": 0},
        {"value_bytes": 0},
        {"redis_pool": 0},
        {"postgres_pool": 0},
        {"l1_size": "5000"},  # strict: no strings for numbers
        {"warming": "yes"},
        {"l1_sise": 50_000},  # unknown key
        {"keys": 10_000_000, "value_bytes": 65_536},  # 640 GB of seed data
    ],
)
def test_bad_knobs_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CacheKnobs.model_validate(bad)


def test_knobs_are_frozen() -> None:
    with pytest.raises(ValidationError):
        CacheKnobs().l1_size = 1


# --- driver --------------------------------------------------------------------------------------


def test_driver_describes_itself_and_hands_out_a_json_operation(tmp_path: Path) -> None:
    assert DRIVER is CacheWorkload
    assert CacheWorkload.kind == "cache" and CacheWorkload.required_services == ("redis", "postgres")
    endpoints = {"redis": endpoint("redis", 6379), "postgres": endpoint("postgres", 5432)}
    driver = CacheWorkload(CacheKnobs(l1_size=50_000, warming=True), endpoints, seed=3)
    ref = driver.operation(trial_seed=17)
    assert ref.factory == "lab.workloads.cache:cache_operation"
    assert ref.params["trial_seed"] == 17 and ref.params["redis_port"] == 6379
    assert CacheKnobs.model_validate(ref.params["knobs"]) == driver.config
    with pytest.raises(ValueError, match="redis"):
        CacheWorkload(CacheKnobs(), {"postgres": endpoint("postgres", 5432)}, seed=3)


def test_seed_rows_are_valid_binary_copy_and_deterministic() -> None:
    data = b"".join(seed_copy_chunks(keys=3, value_bytes=4, seed=1))
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
    row_bytes = 2 + 4 + 8 + 4 + 4
    assert len(data) == 19 + 3 * row_bytes + 2
    second_row = data[19 + row_bytes : 19 + 2 * row_bytes]
    assert second_row[:18] == b"\x00\x02" + b"\x00\x00\x00\x08" + (1).to_bytes(8, "big") + b"\x00\x00\x00\x04"
    assert data == b"".join(seed_copy_chunks(keys=3, value_bytes=4, seed=1))
    assert data != b"".join(seed_copy_chunks(keys=3, value_bytes=4, seed=2))


# --- metrics -------------------------------------------------------------------------------------


def test_trial_metrics_from_hand_made_samples(tmp_path: Path) -> None:
    rows: list[tuple[str, str, int | None]] = [
        *[("ok", "l1", ms) for ms in (1, 2, 3, 4, 5)],
        *[("ok", "l2", ms) for ms in (10, 20, 30)],
        ("ok", "l3", 100),
        ("error:redis", "l2", 50),
        ("dropped", "", None),  # never sent: not a lookup
    ]
    write_samples(tmp_path / "load", rows)
    stats = [
        {"l1_bytes": 1_000.0, "l1_entries": 10.0, "warming_s": 0.5},
        {"l1_bytes": 2_000.0, "l1_entries": 20.0, "warming_s": 0.7},
    ]
    endpoints = {"redis": endpoint("redis", 1), "postgres": endpoint("postgres", 2)}
    metrics = CacheWorkload(CacheKnobs(), endpoints, seed=0).trial_metrics(load_result(tmp_path / "load", stats))
    expected = {
        "lookups": 10,
        "l1_hit_rate": 0.5,
        "l2_hit_rate": 3 / 5,  # 5 lookups missed L1 and reached L2; 3 of them hit
        "l2_share": 0.3,
        "l3_share": 0.1,
        "hit_rate": 0.8,
        "errors": 1,
        "error_rate": 0.1,
        # ok latencies 1 2 3 4 5 10 20 30 100: linear interpolation between order statistics
        "lookup_p50_ms": 5.0,
        "lookup_p95_ms": 30 + 0.6 * 70,
        "lookup_p99_ms": 30 + 0.92 * 70,
        "l1_p50_ms": 3.0,
        "l1_p95_ms": 4.8,
        "l1_p99_ms": 4.96,
        "l2_p50_ms": 20.0,
        "l2_p95_ms": 29.0,
        "l2_p99_ms": 29.8,
        "l3_p50_ms": 100.0,
        "l3_p95_ms": 100.0,
        "l3_p99_ms": 100.0,
        "l1_bytes": 3_000,
        "l1_entries": 30,
        "warming_s": 0.7,
    }
    assert set(metrics) == set(expected)
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-9), name


def test_a_tier_that_answered_nothing_has_no_latency(tmp_path: Path) -> None:
    write_samples(tmp_path / "load", [("ok", "l1", 1), ("ok", "l1", 3)])
    endpoints = {"redis": endpoint("redis", 1), "postgres": endpoint("postgres", 2)}
    metrics = CacheWorkload(CacheKnobs(), endpoints, seed=0).trial_metrics(load_result(tmp_path / "load", [{}]))
    assert metrics["l1_hit_rate"] == 1.0 and metrics["hit_rate"] == 1.0
    assert np.isnan(metrics["l2_hit_rate"])  # no lookup reached L2
    assert metrics["l3_share"] == 0.0 and np.isnan(metrics["l3_p50_ms"])
    assert metrics["l1_p50_ms"] == 2.0
