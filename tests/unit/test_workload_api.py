"""The api workload without Docker: knobs, outcome naming against a fake upstream server,
pool wait, the real mock API app in-process, and metrics from hand-made samples."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lab.loadgen.http import HttpClient
from lab.loadgen.operation import CallResult
from lab.loadgen.runner import run_load, scan_samples
from lab.loadgen.schedule import Schedule
from lab.loadgen.worker import SAMPLE_SCHEMA, LoadPlan
from lab.services.mock_api import create_app, parse_config
from lab.stack.endpoint import Endpoint
from lab.stack.services.http import get_json
from lab.workloads import api
from lab.workloads.api import (
    DRIVER,
    ApiKnobs,
    ApiWorkload,
    api_operation,
    lead_requests,
    merge_operation_stats,
    mock_api_metrics,
    request_metrics,
    upstream_metrics,
)
from tests.support.asgi_server import free_port, serving


def endpoint(url: str) -> dict[str, Endpoint]:
    port = int(url.rsplit(":", 1)[1])
    return {"mock_api": Endpoint("mock_api", "127.0.0.1", port, url, "c0ffee", "ablab-test", "ablab/mock-api")}


# ---------------------------------------------------------------------------------------------
# knobs and driver wiring


def test_default_knobs_are_the_shipped_baseline() -> None:
    knobs = ApiKnobs()
    assert (knobs.crm_pool, knobs.llm_pool, knobs.listings_pool) == (5, 10, 15)
    assert knobs.timeout_s == 10.0 and knobs.fanout == ("crm", "llm", "listings")
    assert knobs.pool_sizes() == {"crm": 5, "llm": 10, "listings": 15}


def test_knobs_from_a_toml_table() -> None:
    knobs = ApiKnobs.model_validate({"crm_pool": 20, "timeout_s": 2, "fanout": ["listings", "crm"]})
    assert knobs.fanout == ("listings", "crm") and knobs.timeout_s == 2.0
    assert knobs.pool_sizes() == {"listings": 15, "crm": 20}  # fan-out order, only the called upstreams


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ({"crm_pool": 0}, "crm_pool"),
        ({"llm_pool": "10"}, "llm_pool"),  # strict: a string is not a number
        ({"listings_pool": 2.5}, "listings_pool"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"fanout": []}, "fanout"),
        ({"fanout": ["crm", "billing"]}, "fanout"),
        ({"fanout": ["crm", "crm"]}, "fanout"),
        ({"crm_pools": 5}, "crm_pools"),  # unknown key
    ],
)
def test_bad_knobs_are_rejected_naming_the_key(table: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ApiKnobs.model_validate(table)
    assert caught.value.errors()[0]["loc"][0] == where


def test_knobs_are_frozen() -> None:
    with pytest.raises(ValidationError):
        ApiKnobs().crm_pool = 50


def test_driver_declares_its_kind_services_and_operation() -> None:
    assert DRIVER is ApiWorkload
    assert ApiWorkload.kind == "api" and ApiWorkload.required_services == ("mock_api",)
    assert ApiWorkload.knobs_model is ApiKnobs
    driver = ApiWorkload(ApiKnobs(crm_pool=20, fanout=("crm", "llm")), endpoint("http://127.0.0.1:9"), seed=1)
    ref = driver.operation(trial_seed=7)
    assert ref.factory == "lab.workloads.api:api_operation"
    assert ref.params == {"url": "http://127.0.0.1:9", "pools": {"crm": 20, "llm": 10}, "timeout_s": 10.0, "seed": 7}
    assert ref.load() is api_operation
    orjson.dumps(ref.params)  # crosses a process boundary as JSON


def test_requests_are_seeded_and_one_lead_spans_the_three_upstreams() -> None:
    client = HttpClient("http://127.0.0.1:9")
    crm = lead_requests(client, "crm", seed=3)
    assert crm == lead_requests(client, "crm", seed=3) and crm != lead_requests(client, "crm", seed=4)
    assert len(crm) == api.RING_SIZE and len(set(crm)) > 200
    llm = lead_requests(client, "llm", seed=3)
    contact = crm[0].split(b" ")[1].rsplit(b"/", 1)[1]  # GET /crm/contacts/ct_123456 HTTP/1.1
    assert contact in llm[0]
    head, body = llm[0].split(b"\r\n\r\n", 1)
    assert b"Content-Type: application/json" in head
    assert orjson.loads(body)["max_tokens"] == api.LLM_MAX_TOKENS
    assert lead_requests(client, "listings", seed=3)[0].startswith(b"GET /listings/search?city=")


# ---------------------------------------------------------------------------------------------
# outcomes, against a fake upstream server whose answers the test sets


class FakeUpstreams:
    """Answers `/{upstream}/...` with the status after the delay the test chose for it."""

    def __init__(self) -> None:
        self.behaviour: dict[str, tuple[int, float]] = {}

    async def answer(self, request: Request) -> Response:
        await request.body()
        status, delay_s = self.behaviour.get(request.path_params["upstream"], (200, 0.0))
        if delay_s:
            await asyncio.sleep(delay_s)
        return Response(b'{"ok": true}', status_code=status, media_type="application/json")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{upstream}/{path:path}", self.answer, methods=["GET", "POST"])])


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeUpstreams, str]]:
    upstreams = FakeUpstreams()
    with serving(upstreams.app()) as url:
        yield upstreams, url


def enrich(
    url: str, count: int = 1, pools: dict[str, int] | None = None, timeout_s: float = 5.0
) -> tuple[list[CallResult], dict[str, float]]:
    """`count` concurrent enrichments; their results and the operation's stats."""

    async def main() -> tuple[list[CallResult], dict[str, float]]:
        params = {"url": url, "pools": pools or {"crm": 5, "llm": 10, "listings": 15}, "timeout_s": timeout_s}
        operation = await api_operation({**params, "seed": 1})
        try:
            results = await asyncio.gather(*(operation.call(seq) for seq in range(count)))
            return list(results), operation.stats()
        finally:
            await operation.close()

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("behaviour", "outcome"),
    [
        ({}, "ok"),
        ({"crm": (503, 0.0)}, "crm_http_503"),
        ({"llm": (429, 0.0)}, "llm_throttled"),
        ({"listings": (200, 1.0)}, "listings_timeout"),
        ({"listings": (404, 0.0)}, "listings_http_404"),
        # the first failure in fan-out order, not the first in time: llm's 429 comes back sooner
        ({"crm": (500, 0.1), "llm": (429, 0.0)}, "crm_http_500"),
    ],
)
def test_outcome_names_the_first_failed_upstream(
    fake: tuple[FakeUpstreams, str], behaviour: dict[str, tuple[int, float]], outcome: str
) -> None:
    upstreams, url = fake
    upstreams.behaviour = behaviour
    (result,), stats = enrich(url, timeout_s=0.3)
    assert result == CallResult(outcome, "enrich")
    # every upstream was called once, whatever failed
    assert [stats[f"{name}_requests"] for name in ("crm", "llm", "listings")] == [1.0, 1.0, 1.0]
    assert stats["llm_throttled"] == (1.0 if behaviour.get("llm", (200,))[0] == 429 else 0.0)
    assert stats["listings_timeouts"] == (1.0 if outcome == "listings_timeout" else 0.0)
    assert stats["crm_errors"] + stats["llm_errors"] + stats["listings_errors"] == (
        0.0 if outcome in ("ok", "llm_throttled") else 1.0
    )


def test_fanout_order_decides_which_failure_is_named(fake: tuple[FakeUpstreams, str]) -> None:
    upstreams, url = fake
    upstreams.behaviour = {"crm": (502, 0.0), "listings": (503, 0.0)}
    (result,), stats = enrich(url, pools={"listings": 1, "crm": 1})
    assert result.outcome == "listings_http_503"
    assert "llm_requests" not in stats


def test_nothing_listening_is_a_connection_error() -> None:
    (result,), stats = enrich(f"http://127.0.0.1:{free_port()}")
    assert result.outcome == "crm_connection_error"
    assert stats["crm_errors"] == stats["llm_errors"] == 1.0


def test_a_small_pool_queues_calls_and_the_wait_is_measured(fake: tuple[FakeUpstreams, str]) -> None:
    upstreams, url = fake
    upstreams.behaviour = {"crm": (200, 0.1)}
    results, stats = enrich(url, count=3, pools={"crm": 1, "llm": 10})
    assert {result.outcome for result in results} == {"ok"}
    # one connection, 100 ms per call: the calls wait 0, ~100 and ~200 ms for it
    assert stats["crm_pool_waits"] == 2.0 and stats["llm_pool_waits"] == 0.0
    assert 0.27e3 <= stats["crm_pool_wait_ms_sum"] <= 0.45e3
    assert 190 <= stats["crm_pool_wait_max_ms"] <= 300
    assert stats["crm_p99_ms"] >= 300 > stats["llm_p99_ms"]
    assert stats["crm_pool_acquired"] == 3.0


def test_a_call_stuck_behind_a_full_pool_times_out(fake: tuple[FakeUpstreams, str]) -> None:
    upstreams, url = fake
    upstreams.behaviour = {"crm": (200, 0.25)}
    results, stats = enrich(url, count=2, pools={"crm": 1}, timeout_s=0.4)
    # the second call waits 250 ms for the connection, then would need 250 ms more
    assert sorted(result.outcome for result in results) == ["crm_timeout", "ok"]
    assert stats["crm_timeouts"] == 1.0 and stats["crm_pool_waits"] == 1.0


# ---------------------------------------------------------------------------------------------
# the real mock API app, in-process


MOCK_CONFIG = {
    "seed": 5,
    "upstreams": {
        "crm": {"latency_median_ms": 2, "latency_p99_ms": 6},
        "llm": {"latency_median_ms": 3, "latency_p99_ms": 9},
        "listings": {"latency_median_ms": 0},
    },
}


@pytest.fixture(scope="module")
def mock_api_url() -> Iterator[str]:
    with serving(create_app(parse_config(MOCK_CONFIG))) as url:
        yield url


def test_the_mock_api_accepts_every_request_the_operation_makes(mock_api_url: str) -> None:
    driver = ApiWorkload(ApiKnobs(), endpoint(mock_api_url), seed=1)
    driver.prepare()
    driver.reset()
    results, stats = enrich(mock_api_url, count=40)
    assert {result.outcome for result in results} == {"ok"}
    counters = mock_api_metrics(get_json(f"{mock_api_url}/stats"))
    for name in ("crm", "llm", "listings"):
        assert counters[f"mock_{name}_requests"] == counters[f"mock_{name}_ok"] == stats[f"{name}_requests"] == 40
    # ~50 prompt tokens + 16..128 completion tokens per call
    assert 40 * 60 <= counters["mock_llm_tokens"] <= 40 * 200


def test_a_trial_through_the_load_generator(mock_api_url: str, tmp_path: Path) -> None:
    driver = ApiWorkload(ApiKnobs(crm_pool=2), endpoint(mock_api_url), seed=1)
    driver.reset()
    plan = LoadPlan(Schedule.constant(40, 1.5), driver.operation(trial_seed=3), warmup_s=0.5)
    result = run_load(plan, tmp_path / "load", display="none")
    metrics = driver.trial_metrics(result)
    assert metrics["requests"] == metrics["ok"] == 40  # the measured second
    assert metrics["throughput_rps"] == pytest.approx(40.0)
    assert metrics["error_rate"] == metrics["throttle_rate"] == 0.0
    assert 2 <= metrics["latency_p50_ms"] <= metrics["latency_p95_ms"] <= metrics["latency_p99_ms"] < 200
    for name in ("crm", "llm", "listings"):
        # reset before the trial: the server counted exactly what the operation sent, warm-up included
        assert metrics[f"mock_{name}_requests"] == metrics[f"{name}_requests"] == 60
        assert metrics[f"{name}_error_rate"] == 0.0 and math.isfinite(metrics[f"{name}_p95_ms"])
    assert metrics["mock_requests"] == 180 and metrics["mock_llm_tokens"] > 0


# ---------------------------------------------------------------------------------------------
# metrics from hand-made samples


def write_samples(folder: Path, rows: list[tuple[int, int | None, str]]) -> pl.LazyFrame:
    """A worker's samples file with (intended_ns, end_ns, outcome) rows; start = intended."""
    folder.mkdir(parents=True, exist_ok=True)
    intended = [row[0] for row in rows]
    table = pa.table(
        {
            "worker": pa.array([0] * len(rows), pa.int16()),
            "seq": pa.array(range(len(rows)), pa.int64()),
            "intended_ns": pa.array(intended, pa.int64()),
            "start_ns": pa.array([i if end is not None else None for i, end, _ in rows], pa.int64()),
            "end_ns": pa.array([row[1] for row in rows], pa.int64()),
            "outcome": pa.array([row[2] for row in rows]).dictionary_encode().cast(SAMPLE_SCHEMA.field("outcome").type),
            "label": pa.array(["enrich"] * len(rows)).dictionary_encode().cast(SAMPLE_SCHEMA.field("label").type),
        },
        schema=SAMPLE_SCHEMA,
    )
    pq.write_table(table, folder / "samples-w0.parquet")
    return scan_samples(folder)


def test_request_metrics_from_hand_made_samples(tmp_path: Path) -> None:
    # ten completed enrichments of 10, 20, ..., 100 ms, then one dropped
    outcomes = ["ok"] * 6 + ["listings_throttled", "crm_http_503", "llm_throttled", "ok"]
    rows: list[tuple[int, int | None, str]] = [
        (k * 1_000_000, k * 1_000_000 + (k + 1) * 10_000_000, outcome) for k, outcome in enumerate(outcomes)
    ]
    rows.append((10_000_000, None, "dropped"))
    metrics = request_metrics(write_samples(tmp_path, rows), measured_s=2.0)
    assert metrics["latency_p50_ms"] == pytest.approx(55.0)  # numpy's linear interpolation
    assert metrics["latency_p95_ms"] == pytest.approx(95.5)
    assert metrics["latency_p99_ms"] == pytest.approx(99.1)
    assert metrics["latency_mean_ms"] == pytest.approx(55.0)
    assert (metrics["requests"], metrics["ok"], metrics["errors"], metrics["throttled"]) == (10, 7, 3, 2)
    assert metrics["dropped"] == 1 and metrics["unfinished"] == 0
    assert metrics["throughput_rps"] == 3.5
    assert metrics["error_rate"] == pytest.approx(0.3) and metrics["throttle_rate"] == pytest.approx(0.2)


def test_operation_stats_merge_across_workers() -> None:
    merged = merge_operation_stats(
        [
            {"crm_requests": 30.0, "crm_errors": 3.0, "crm_p95_ms": 80.0, "crm_pool_wait_ms_sum": 90.0},
            {"crm_requests": 10.0, "crm_errors": 1.0, "crm_p95_ms": 120.0, "crm_pool_wait_ms_sum": 10.0},
            {"crm_requests": 0.0, "crm_errors": 0.0, "crm_p95_ms": math.nan, "crm_pool_wait_ms_sum": 0.0},
        ]
    )
    assert merged == {"crm_requests": 40.0, "crm_errors": 4.0, "crm_p95_ms": 120.0, "crm_pool_wait_ms_sum": 100.0}


def test_upstream_metrics_are_rates_of_the_merged_counts() -> None:
    stats = {
        "crm_requests": 200.0,
        "crm_errors": 10.0,
        "crm_throttled": 30.0,
        "crm_timeouts": 2.0,
        "crm_pool_waits": 50.0,
        "crm_pool_acquired": 198.0,
        "crm_pool_wait_ms_sum": 990.0,
        "crm_p95_ms": 140.0,
        "crm_pool_wait_p95_ms": 20.0,
    }
    metrics = upstream_metrics(stats, ("crm", "llm"))
    assert metrics["crm_error_rate"] == 0.05 and metrics["crm_throttle_rate"] == 0.15
    assert metrics["crm_pool_wait_share"] == 0.25 and metrics["crm_pool_wait_mean_ms"] == 5.0
    assert metrics["crm_p95_ms"] == 140.0 and metrics["crm_timeouts"] == 2.0
    assert metrics["llm_requests"] == 0.0 and metrics["llm_error_rate"] == 0.0 and math.isnan(metrics["llm_p95_ms"])
    assert not any(key.startswith("listings_") for key in metrics)


def test_mock_api_metrics_from_its_stats_document() -> None:
    def upstream(requests: int, errors: int, throttled: int, tokens: int = 0) -> dict[str, int]:
        ok = requests - errors - throttled
        counts = {"requests": requests, "ok": ok, "errors": errors, "throttled": throttled, "tokens": tokens}
        return {**counts, "in_flight": 0, "max_in_flight": 9, "queued": 1, "waiting": 0}

    document = {
        "upstreams": {
            "crm": upstream(100, 2, 0),
            "llm": upstream(100, 0, 7, tokens=12_345),
            "listings": upstream(90, 1, 30),
        }
    }
    metrics = mock_api_metrics(document)
    assert metrics["mock_requests"] == 290 and metrics["mock_errors"] == 3 and metrics["mock_throttled"] == 37
    assert metrics["mock_ok"] == 250 and metrics["mock_llm_tokens"] == 12_345
    assert metrics["mock_listings_throttled"] == 30 and metrics["mock_crm_max_in_flight"] == 9
