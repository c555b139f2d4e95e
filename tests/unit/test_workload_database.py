"""The database workload's parts without Docker: knobs, seed data, the query stream and metrics."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from lab.stack.endpoint import Endpoint
from lab.workloads.database import (
    ACTIVITY_KINDS,
    DRIVER,
    INSERT_SQL,
    POINT_SQL,
    REGIONS,
    SEARCH_SQL,
    STATUSES,
    DatabaseKnobs,
    DatabaseWorkload,
    QueryStream,
    activity_copy_chunks,
    lead_columns,
    lead_copy_chunks,
)
from tests.support.samples import load_result, write_samples

MS = 1_000_000


def postgres_endpoints() -> dict[str, Endpoint]:
    return {"postgres": Endpoint("postgres", "127.0.0.1", 5432, "postgresql://x@127.0.0.1:5432/lab", "i", "n", "img")}


# --- knobs ---------------------------------------------------------------------------------------


def test_defaults_are_the_shipped_baseline() -> None:
    knobs = DatabaseKnobs()
    assert (knobs.leads, knobs.activities_per_lead, knobs.pool_size, knobs.read_pool_size) == (100_000, 3.0, 20, 0)
    assert (knobs.indexes, knobs.mix(), knobs.slow_query_ms, knobs.pool_timeout_s) == (False, (0.6, 0.3, 0.1), 50, 5)
    assert knobs.seeded_activities == 300_000
    # TOML integers are fine floats, and a mix of one kind is allowed
    assert DatabaseKnobs.model_validate({"activities_per_lead": 3, "mix_point": 0, "mix_search": 1, "mix_insert": 0})


@pytest.mark.parametrize(
    "bad",
    [
        {"mix_point": 0.5},  # 0.5 + 0.3 + 0.1 = 0.9
        {"mix_point": 0.7, "mix_search": 0.3, "mix_insert": 0.1},  # 1.1
        {"mix_point": 1.2, "mix_search": -0.1, "mix_insert": -0.1},  # sums to 1, shares out of range
        {"leads": 0},
        {"activities_per_lead": -1},
        {"pool_size": 0},
        {"read_pool_size": -1},
        {"slow_query_ms": 0},
        {"pool_timeout_s": 0},
        {"indexes": 1},  # strict: a bool is a bool
        {"pool_size": "20"},
        {"pool": 20},  # unknown key
    ],
)
def test_bad_knobs_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DatabaseKnobs.model_validate(bad)


def test_the_mix_error_says_what_it_summed_to() -> None:
    with pytest.raises(ValidationError, match=r"must be 1 \(got 0\.9\)"):
        DatabaseKnobs(mix_point=0.5)


# --- seed data -----------------------------------------------------------------------------------


def test_seeded_leads_are_copy_rows_with_every_column_and_deterministic() -> None:
    columns = lead_columns(50_000, seed=4)
    text = "".join(lead_copy_chunks(columns))
    lines = text.splitlines()
    assert len(lines) == 50_000
    first = lines[0].split("\t")
    assert len(first) == 9 and first[0] == "1" and first[1] == "lead1@example.com"
    assert first[3] in REGIONS and first[4] in STATUSES and 0 <= int(first[6]) <= 100
    assert first[8].startswith("2024-") and first[8].endswith("Z")
    assert lines[-1].startswith("50000\t")
    assert text == "".join(lead_copy_chunks(lead_columns(50_000, seed=4)))
    assert text != "".join(lead_copy_chunks(lead_columns(50_000, seed=5)))


def test_seeded_activities_belong_to_leads_and_follow_their_creation() -> None:
    leads = lead_columns(1_000, seed=4)
    lines = "".join(activity_copy_chunks(leads, 30_000, seed=4)).splitlines()
    assert len(lines) == 30_000
    ids = [int(line.split("\t")[0]) for line in lines]
    assert ids == list(range(1, 30_001))
    for line in lines[:500]:
        _, lead, kind, at, payload = line.split("\t")
        assert 1 <= int(lead) <= 1_000 and kind in ACTIVITY_KINDS and payload.startswith('{"seeded": true')
        created = np.datetime64("2024-01-01T00:00:00", "s") + leads["created_s"][int(lead) - 1]
        assert np.datetime64(at.removesuffix("Z"), "s") >= created


# --- query stream --------------------------------------------------------------------------------


def test_query_kinds_follow_the_mix() -> None:
    draws = 40_000
    stream = QueryStream(DatabaseKnobs(), np.random.default_rng(1))
    counts: Counter[str] = Counter(stream.kinds(draws))
    for kind, share in (("point", 0.6), ("search", 0.3), ("insert", 0.1)):
        sigma = np.sqrt(draws * share * (1 - share))
        assert abs(counts[kind] - draws * share) < 4 * sigma, counts
    only_search = DatabaseKnobs(mix_point=0.0, mix_search=1.0, mix_insert=0.0)
    assert set(QueryStream(only_search, np.random.default_rng(1)).kinds(5_000)) == {"search"}


def test_query_parameters_are_in_range_and_reproducible() -> None:
    knobs = DatabaseKnobs(leads=500)
    stream = QueryStream(knobs, np.random.default_rng(7), block=64)
    queries = [stream.next() for _ in range(1_000)]
    again = QueryStream(knobs, np.random.default_rng(7), block=64)
    assert queries == [again.next() for _ in range(1_000)]
    for kind, sql, params in queries:
        if kind == "point":
            assert sql == POINT_SQL and 1 <= params[0] <= 500
        elif kind == "search":
            status, region, low, high = params
            assert sql == SEARCH_SQL and status in STATUSES and region in REGIONS
            assert low >= 0 and high == low + 20 and high <= 100
        else:
            assert sql == INSERT_SQL and 1 <= params[0] <= 500 and params[1] in ACTIVITY_KINDS


# --- driver and metrics --------------------------------------------------------------------------


def test_driver_describes_itself_and_hands_out_a_json_operation() -> None:
    assert DRIVER is DatabaseWorkload
    assert DatabaseWorkload.kind == "database" and DatabaseWorkload.required_services == ("postgres",)
    driver = DatabaseWorkload(DatabaseKnobs(pool_size=50, indexes=True), postgres_endpoints(), seed=2)
    ref = driver.operation(trial_seed=5)
    assert ref.factory == "lab.workloads.database:database_operation"
    assert DatabaseKnobs.model_validate(ref.params["knobs"]) == driver.config
    assert driver.fingerprint == "v1 leads=100000 activities=300000 seed=2"
    # only the data knobs and the seed change the seeded rows, not pools or indexes
    same_data = DatabaseWorkload(DatabaseKnobs(pool_size=2), postgres_endpoints(), seed=2)
    assert same_data.fingerprint == driver.fingerprint


def test_trial_metrics_from_hand_made_samples_and_pool_statistics(tmp_path: Path) -> None:
    rows: list[tuple[str, str, int | None]] = [
        ("ok", "point", 2),
        ("ok", "point", 4),
        ("ok", "point", 6),
        ("ok", "search", 10),
        ("ok", "search", 30),
        ("ok", "insert", 1),
        ("error:timeout", "search", 5_000),
        ("error:db", "point", 3),
        ("dropped", "", None),
    ]
    write_samples(tmp_path / "load", rows)
    worker_stats = [
        {
            "requests_num": 100.0,
            "requests_queued": 10.0,
            "requests_wait_ms": 50.0,
            "usage_ms": 400.0,
            "pool_max": 20.0,
            "active_ms": 100.0,
            "queries": 95.0,
            "slow_queries": 3.0,
            "client_wait_ms": 60.0,
            "client_held_ms": 500.0,
        },
        {
            "requests_num": 300.0,
            "requests_queued": 30.0,
            "requests_wait_ms": 150.0,
            "usage_ms": 600.0,
            "pool_max": 20.0,
            "active_ms": 100.0,
            "queries": 305.0,
            "slow_queries": 1.0,
            "client_wait_ms": 140.0,
            "client_held_ms": 1_500.0,
        },
    ]
    driver = DatabaseWorkload(DatabaseKnobs(), postgres_endpoints(), seed=0)
    metrics = driver.trial_metrics(load_result(tmp_path / "load", worker_stats, measured_s=2.0))
    expected = {
        "queries": 8,  # completed, errors included; the dropped request is not a query
        "throughput_qps": 6 / 2.0,
        "errors": 2,
        "error_rate": 0.25,
        "timeouts": 1,
        # ok latencies 1 2 4 6 10 30, linear interpolation between order statistics
        "query_p50_ms": 5.0,
        "query_p90_ms": 20.0,
        "query_p95_ms": 25.0,
        "query_p99_ms": 29.0,
        "point_count": 3,
        "point_p50_ms": 4.0,
        "point_p90_ms": 5.6,
        "point_p95_ms": 5.8,
        "point_p99_ms": 5.96,
        "search_count": 2,
        "search_p50_ms": 20.0,
        "search_p90_ms": 28.0,
        "search_p95_ms": 29.0,
        "search_p99_ms": 29.8,
        "insert_count": 1,
        "insert_p50_ms": 1.0,
        "insert_p90_ms": 1.0,
        "insert_p95_ms": 1.0,
        "insert_p99_ms": 1.0,
        "pool_requests": 400,
        "pool_queued": 40,
        "pool_efficiency": 0.9,  # 1 - 40 / 400
        "pool_wait_ms": 0.5,  # 200 ms / 400 requests
        "pool_wait_ms_queued": 5.0,  # 200 ms / 40 queued
        "pool_utilisation": 0.25,  # 1000 ms / (20 * 100 ms + 20 * 100 ms)
        "pool_wait_ms_client": 0.5,
        "pool_utilisation_client": 0.5,
        "slow_queries": 4,
        "slow_query_share": 0.01,
    }
    assert set(metrics) == set(expected)
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-9), name


def test_a_kind_that_never_ran_has_no_latency(tmp_path: Path) -> None:
    write_samples(tmp_path / "load", [("ok", "search", 10)])
    driver = DatabaseWorkload(DatabaseKnobs(), postgres_endpoints(), seed=0)
    metrics = driver.trial_metrics(load_result(tmp_path / "load", [{"requests_num": 1.0}], measured_s=1.0))
    assert metrics["point_count"] == 0 and np.isnan(metrics["point_p50_ms"])
    assert metrics["search_p99_ms"] == 10.0 and metrics["pool_efficiency"] == 1.0
