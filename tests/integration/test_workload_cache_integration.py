"""The cache workload against real "redis" and "postgres" containers: seeded L3, real hit rates."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import docker
import psycopg
import pytest
import redis

from lab.config.experiment import VariantConfig
from lab.loadgen.runner import run_load
from lab.loadgen.schedule import Schedule
from lab.loadgen.worker import LoadPlan
from lab.stack.stack import Stack, running_stack
from lab.workloads.cache import CacheKnobs, CacheWorkload, seed_copy_chunks

SEED = 7
TRIAL_SEED = 11
RATE_RPS = 400
DURATION_S = 2.5
WARMUP_S = 0.5
MEASURED = round(RATE_RPS * (DURATION_S - WARMUP_S))


@pytest.fixture(scope="module")
def stack(docker_client: docker.DockerClient) -> Iterator[Stack]:
    config = VariantConfig.model_validate(
        {"services": {"postgres": {"image": "ablab/postgres"}, "redis": {"image": "ablab/redis", "cpus": 0.5}}}
    )
    with running_stack(config, "baseline") as stack:
        CacheWorkload(CacheKnobs(), stack.endpoints, seed=SEED).prepare()
        yield stack


def trial(stack: Stack, tmp_path: Path, **knobs: object) -> dict[str, float]:
    """Reset, run one short open-loop trial with the same key stream, return its metrics."""
    driver = CacheWorkload(CacheKnobs.model_validate(knobs), stack.endpoints, seed=SEED)
    driver.reset()
    plan = LoadPlan(
        schedule=Schedule.constant(RATE_RPS, DURATION_S), operation=driver.operation(TRIAL_SEED), warmup_s=WARMUP_S
    )
    name = "-".join(f"{key}={value}" for key, value in knobs.items()) or "defaults"
    result = run_load(plan, tmp_path / name, display="none")
    assert result.counters["dropped"] == 0
    metrics = driver.trial_metrics(result)
    print(name, {key: round(value, 4) for key, value in metrics.items()})
    return metrics


def test_prepare_seeds_every_key_deterministically_and_reset_empties_redis(stack: Stack) -> None:
    with psycopg.connect(stack.endpoints["postgres"].url) as connection:
        row = connection.execute(
            "SELECT count(*), min(key), max(key), min(length(value)), max(length(value)) FROM cache_items"
        ).fetchone()
        assert row == (200_000, 0, 199_999, 256, 256)
        value = connection.execute("SELECT value FROM cache_items WHERE key = 12345").fetchone()
    assert value is not None
    # the same seed gives the same bytes: the value is the seeded stream's, not random per run
    chunks = b"".join(seed_copy_chunks(200_000, 256, SEED))
    offset = 19 + 12345 * (2 + 4 + 8 + 4 + 256) + 18  # header, 12,345 rows, then this row's framing
    assert hashlib.sha256(bytes(value[0])).digest() == hashlib.sha256(chunks[offset : offset + 256]).digest()
    endpoint = stack.endpoints["redis"]
    client = redis.Redis(host=endpoint.host, port=endpoint.port)
    try:
        client.set("ci:1", b"x")
        CacheWorkload(CacheKnobs(), stack.endpoints, seed=SEED).reset()
        assert client.dbsize() == 0
    finally:
        client.close()


def test_bigger_l1_and_warming_raise_the_l1_hit_rate(stack: Stack, tmp_path: Path) -> None:
    cold_5k = trial(stack, tmp_path, l1_size=5_000)
    warm_5k = trial(stack, tmp_path, l1_size=5_000, warming=True)
    warm_50k = trial(stack, tmp_path, l1_size=50_000, warming=True)
    for metrics in (cold_5k, warm_5k, warm_50k):
        assert metrics["lookups"] == MEASURED and metrics["errors"] == 0
        for rate in ("l1_hit_rate", "l2_hit_rate", "l2_share", "l3_share", "hit_rate"):
            assert 0.0 <= metrics[rate] <= 1.0, rate
        assert metrics["l1_hit_rate"] + metrics["l2_share"] + metrics["l3_share"] == pytest.approx(1.0)
        assert metrics["l1_p50_ms"] < metrics["l3_p50_ms"]  # memory beats a database round trip
    # Same key stream (same trial seed). Warmed, each L1 holds its hottest keys: Zipf(1.1) over
    # 200,000 keys puts 82.8 % of lookups on the top 5,000 and 94.3 % on the top 50,000.
    assert warm_50k["l1_hit_rate"] > warm_5k["l1_hit_rate"] + 0.05
    assert 0.78 <= warm_5k["l1_hit_rate"] <= 0.88 and 0.90 <= warm_50k["l1_hit_rate"] <= 0.98
    # Cold, L1 only hits keys already seen this run (about half of ~1,000 lookups here).
    assert warm_5k["l1_hit_rate"] > cold_5k["l1_hit_rate"] + 0.15
    assert warm_50k["l1_bytes"] > 5 * warm_5k["l1_bytes"] > 0
    assert warm_50k["l1_entries"] == 50_000 and warm_50k["warming_s"] > 0 and cold_5k["warming_s"] == 0


def test_without_l1_redis_answers_the_repeats(stack: Stack, tmp_path: Path) -> None:
    metrics = trial(stack, tmp_path, l1_size=0, l2_ttl_s=60)
    assert metrics["l1_hit_rate"] == 0.0 and metrics["l1_entries"] == 0
    # every lookup reaches L2; a key seen before (in warm-up or measured phase) is there
    assert 0.3 <= metrics["l2_hit_rate"] <= 0.8
    assert metrics["l2_hit_rate"] == pytest.approx(metrics["l2_share"])
    assert metrics["hit_rate"] == pytest.approx(metrics["l2_share"])
    endpoint = stack.endpoints["redis"]
    client = redis.Redis(host=endpoint.host, port=endpoint.port)
    try:
        filled = int(client.dbsize())
        ttl_s = int(client.ttl("ci:0"))
    finally:
        client.close()
    assert filled > 0 and 0 < ttl_s <= 60
