"""The database workload against a real "postgres" container: seeded rows, pools, indexes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import psycopg
import pytest

from lab.config.experiment import VariantConfig
from lab.loadgen.runner import LoadResult, run_load
from lab.loadgen.schedule import Schedule
from lab.loadgen.worker import LoadPlan
from lab.stack.stack import Stack, running_stack
from lab.workloads.database import DatabaseKnobs, DatabaseWorkload

SEED = 7
TRIAL_SEED = 3


@pytest.fixture(scope="module")
def stack(docker_client: docker.DockerClient) -> Iterator[Stack]:
    config = VariantConfig.model_validate({"services": {"postgres": {"image": "ablab/postgres"}}})
    with running_stack(config, "baseline") as stack:
        DatabaseWorkload(DatabaseKnobs(), stack.endpoints, seed=SEED).prepare()
        yield stack


def trial(stack: Stack, tmp_path: Path, schedule: Schedule, **knobs: object) -> tuple[dict[str, float], LoadResult]:
    """Prepare (indexes as the knobs say; the rows stay), reset, run, return the metrics."""
    driver = DatabaseWorkload(DatabaseKnobs.model_validate(knobs), stack.endpoints, seed=SEED)
    driver.prepare()
    plan = LoadPlan(schedule=schedule, operation=driver.operation(TRIAL_SEED), warmup_s=0.5)
    name = "-".join(f"{key}={value}" for key, value in knobs.items()) + f"-{schedule.kind}"
    result = run_load(plan, tmp_path / name, display="none")
    metrics = driver.trial_metrics(result)
    print(name, {key: round(value, 3) for key, value in metrics.items()})
    return metrics, result


def scalar(connection: psycopg.Connection[tuple[object, ...]], sql: str) -> object:
    row = connection.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_seeded_rows_are_all_there_and_reset_removes_what_trials_inserted(stack: Stack) -> None:
    driver = DatabaseWorkload(DatabaseKnobs(), stack.endpoints, seed=SEED)
    with psycopg.connect(stack.endpoints["postgres"].url, autocommit=True) as connection:
        assert connection.execute("SELECT count(*), min(id), max(id) FROM leads").fetchone() == (100_000, 1, 100_000)
        assert connection.execute("SELECT count(*), max(id) FROM activities").fetchone() == (300_000, 300_000)
        assert (
            scalar(
                connection,
                "SELECT count(*) FROM activities a LEFT JOIN leads l ON l.id = a.lead_id "
                "WHERE l.id IS NULL OR a.at < l.created_at",
            )
            == 0
        )
        assert scalar(connection, "SELECT fingerprint FROM lab_seed") == driver.fingerprint
        for _ in range(3):
            connection.execute("INSERT INTO activities (lead_id, kind, at, payload) VALUES (1, 'call', now(), '{}')")
        assert scalar(connection, "SELECT max(id) FROM activities") == 300_003
        driver.reset()
        assert connection.execute("SELECT count(*), max(id) FROM activities").fetchone() == (300_000, 300_000)
        # the sequence was rewound: the next trial inserts the same ids as this one did
        connection.execute("INSERT INTO activities (lead_id, kind, at, payload) VALUES (1, 'call', now(), '{}')")
        assert scalar(connection, "SELECT max(id) FROM activities") == 300_001
        driver.reset()


def test_a_pool_of_50_waits_less_and_queues_less_than_a_pool_of_2(stack: Stack, tmp_path: Path) -> None:
    # 40 callers: a pool of 2 makes 38 of them queue, a pool of 50 never runs out
    load = Schedule.closed(40, 2.0)
    small, _ = trial(stack, tmp_path, load, pool_size=2, indexes=True)
    large, _ = trial(stack, tmp_path, load, pool_size=50, indexes=True)
    for metrics in (small, large):
        assert metrics["errors"] == 0 and metrics["queries"] > 500
    assert small["pool_efficiency"] < 0.5 < 0.99 <= large["pool_efficiency"]
    assert small["pool_wait_ms"] > 1.0 > large["pool_wait_ms"]
    assert small["pool_wait_ms_client"] > 10 * large["pool_wait_ms_client"]
    assert small["pool_wait_ms_client"] >= small["pool_wait_ms"]  # the pool's counter truncates each wait
    assert 0.5 < small["pool_utilisation_client"] <= 1.0
    # 40 callers can hold at most 40 of the 50 connections at once
    assert 0 < large["pool_utilisation_client"] <= 40 / 50 + 0.01


def test_indexes_make_search_and_point_queries_faster(stack: Stack, tmp_path: Path) -> None:
    load = Schedule.constant(30, 2.5)
    mix = {"mix_point": 0.3, "mix_search": 0.6, "mix_insert": 0.1}
    without, _ = trial(stack, tmp_path, load, indexes=False, **mix)
    with_indexes, _ = trial(stack, tmp_path, load, indexes=True, **mix)
    for metrics in (without, with_indexes):
        assert metrics["errors"] == 0 and metrics["queries"] == 60
        assert metrics["search_count"] > 20 and metrics["point_count"] > 5
    # without an index every search scans 100,000 leads and every point query 300,000 activities
    assert with_indexes["search_p50_ms"] * 2 < without["search_p50_ms"]
    assert with_indexes["point_p50_ms"] * 2 < without["point_p50_ms"]
    assert with_indexes["slow_queries"] <= without["slow_queries"]
    with psycopg.connect(stack.endpoints["postgres"].url) as connection:
        assert scalar(connection, "SELECT count(*) FROM pg_indexes WHERE indexname = 'leads_status_region_score'") == 1


def test_a_read_pool_serves_point_and_search_and_the_main_pool_inserts(stack: Stack, tmp_path: Path) -> None:
    metrics, result = trial(stack, tmp_path, Schedule.constant(100, 1.5), pool_size=4, read_pool_size=6, indexes=True)
    assert metrics["errors"] == 0
    (stats,) = result.operation_stats
    assert stats["main.pool_max"] == 4 and stats["read.pool_max"] == 6 and stats["pool_max"] == 10
    # every request of the run, warm-up included, went through exactly one of the two pools
    assert stats["main.requests_num"] + stats["read.requests_num"] == result.counters["sent"]
    assert 0 < stats["main.requests_num"] < stats["read.requests_num"]  # 10 % inserts vs 90 % reads
    assert metrics["insert_count"] <= stats["main.requests_num"]
