"""The load generator against local servers with known behaviour (no Docker, a few seconds each)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lab.loadgen.histogram import Histogram
from lab.loadgen.operation import OperationRef
from lab.loadgen.runner import LoadResult, run_load, scan_samples
from lab.loadgen.schedule import Schedule
from lab.loadgen.worker import LoadPlan
from tests.support.http_servers import local_server


def http_plan(url: str, schedule: Schedule, **settings: object) -> LoadPlan:
    return LoadPlan(
        schedule=schedule, operation=OperationRef("lab.loadgen.http:http_operation", {"url": url}), **settings
    )  # type: ignore[arg-type]


def run(plan: LoadPlan, tmp_path: Path) -> LoadResult:
    return run_load(plan, tmp_path / "load", display="none")


def test_fixed_20ms_server_measures_p50_between_20_and_23_ms(tmp_path: Path) -> None:
    with local_server("fixed", "--delay-ms", "20") as url:
        result = run(http_plan(url, Schedule.constant(200, 2.5), warmup_s=0.5), tmp_path)
    assert result.counters["errors"] == 0 and result.counters["dropped"] == 0
    assert result.latency.source == "samples" and result.latency.count == 400
    assert 20.0 <= result.latency.percentiles_ms["p50"] <= 23.0
    assert 20.0 <= result.service_time.percentiles_ms["p50"] <= 23.0


@pytest.mark.parametrize("schedule", [Schedule.constant(400, 3), Schedule.poisson(400, 3, seed=2)])
def test_achieved_rate_is_within_two_percent_of_target(tmp_path: Path, schedule: Schedule) -> None:
    with local_server("fixed") as url:
        result = run(http_plan(url, schedule), tmp_path)
    assert result.target_rps == pytest.approx(400)
    assert abs(result.achieved_rps - 400) <= 0.02 * 400
    # the sends themselves follow the schedule: measured from actual start times
    starts = scan_samples(result.out_dir).select("start_ns").collect()["start_ns"].sort().to_numpy()
    span_s = (starts[-1] - starts[0]) / 1e9
    assert abs((starts.size - 1) / span_s - 400) <= 0.02 * 400


def test_a_stalling_server_shows_in_open_loop_p99_but_not_in_closed_loop(tmp_path: Path) -> None:
    with local_server("stall", "--stall-ms", "500", "--period-ms", "1000") as url:
        open_loop = run(http_plan(url, Schedule.constant(100, 3), max_in_flight=1000), tmp_path / "open")
        closed_loop = run(http_plan(url, Schedule.closed(4, 3)), tmp_path / "closed")
    assert open_loop.mode == "open" and closed_loop.mode == "closed"
    # open loop: requests due during the stall queue behind it; ~half the run waits
    assert open_loop.latency.percentiles_ms["p99"] >= 250
    assert open_loop.latency.mean_ms >= 50
    # closed loop: 4 callers wait out each stall and record only 4 slow samples per second
    assert closed_loop.latency.percentiles_ms["p99"] < 250
    assert closed_loop.latency.max_ms >= 250  # the stall happened; it is merely hidden
    assert closed_loop.latency.count > open_loop.latency.count


def test_in_flight_cap_drops_are_counted_and_equal_what_was_not_sent(tmp_path: Path) -> None:
    with local_server("fixed", "--delay-ms", "100") as url:
        result = run(http_plan(url, Schedule.constant(200, 2), max_in_flight=5), tmp_path)
    c = result.counters
    assert c["scheduled"] == 400
    assert c["dropped"] > 200  # 5 in flight x 10/s each = ~50/s served of 200/s
    assert c["sent"] + c["dropped"] == c["scheduled"]
    assert c["completed"] == c["sent"] and c["max_in_flight_seen"] <= 5
    samples = scan_samples(result.out_dir).collect()
    assert samples.filter(pl.col("outcome") == "dropped").height == c["dropped"]
    assert samples.filter(pl.col("start_ns").is_not_null()).height == c["sent"]
    assert result.outcomes["dropped"] == c["dropped"]


def test_two_workers_merge_to_the_sum_of_their_parts(tmp_path: Path) -> None:
    with local_server("fixed", "--delay-ms", "5") as url:
        result = run(http_plan(url, Schedule.poisson(400, 2.5, seed=4), workers=2), tmp_path)
    parts = [json.loads((result.out_dir / f"worker-{i}.json").read_text()) for i in range(2)]
    for key in ("scheduled", "sent", "completed", "errors", "dropped", "late"):
        assert result.counters[key] == sum(part["counters"][key] for part in parts)
    assert all(part["counters"]["sent"] > 400 for part in parts)  # both did real work
    # the merged percentiles are those of one computation over all samples
    frames = [pl.read_parquet(result.out_dir / f"samples-w{i}.parquet") for i in range(2)]
    latency = pl.concat(frames).select((pl.col("end_ns") - pl.col("intended_ns")).alias("l"))["l"].to_numpy()
    for name, q in (("p50", 50), ("p99", 99), ("p99.9", 99.9)):
        assert result.latency.percentiles_ms[name] == pytest.approx(np.percentile(latency, q) / 1e6, rel=1e-9)
    # and the merged histograms agree with the samples to their precision
    histogram = Histogram.from_dict(parts[0]["latency_histogram"]).merge(
        Histogram.from_dict(parts[1]["latency_histogram"])
    )
    assert histogram.total == latency.size
    exact_p99 = float(np.percentile(latency, 99, method="inverted_cdf"))
    assert exact_p99 <= histogram.percentile(99) <= exact_p99 * 1.001 + 1


def test_warmup_is_excluded_and_counted(tmp_path: Path) -> None:
    with local_server("fixed") as url:
        result = run(http_plan(url, Schedule.constant(100, 2), warmup_s=1.0), tmp_path)
    assert result.counters["warmup"] == 100
    assert result.latency.count == 100
    first = scan_samples(result.out_dir).select(pl.col("intended_ns").min()).collect().item()
    assert first >= 1_000_000_000


def test_http_errors_and_refused_connections_are_outcomes(tmp_path: Path) -> None:
    # nothing listens on this port: every call is a connection error, none is lost
    from tests.support.asgi_server import free_port

    result = run(http_plan(f"http://127.0.0.1:{free_port()}/", Schedule.constant(50, 1)), tmp_path)
    assert result.counters["errors"] == result.counters["sent"] == 50
    assert result.outcomes == {"connection_error": 50}
