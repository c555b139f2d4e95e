"""The api workload against the mock API in its container: small pools queue, limits throttle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker

from lab.config.experiment import parse_experiment
from lab.loadgen.runner import LoadResult, run_load
from lab.loadgen.schedule import Schedule
from lab.loadgen.worker import LoadPlan
from lab.stack.stack import Stack, running_stack
from lab.workloads.api import UPSTREAMS, ApiKnobs, ApiWorkload

GENEROUS_LIMIT_RPS = 2_000
# crm: mean ~45 ms, so 2 connections serve ~45 enrichments/s and 20 serve ~450/s
QUEUEING = {
    "crm": {"latency_median_ms": 40, "latency_p99_ms": 120, "rate_limit_rps": GENEROUS_LIMIT_RPS},
    "llm": {"latency_median_ms": 80, "latency_p99_ms": 250, "rate_limit_rps": GENEROUS_LIMIT_RPS},
    "listings": {"latency_median_ms": 50, "latency_p99_ms": 150, "rate_limit_rps": GENEROUS_LIMIT_RPS},
}
OFFERED_RPS = 70.0
DURATION_S = 3.0
WARMUP_S = 0.5


def start(upstreams: dict[str, Any]) -> Any:
    experiment = parse_experiment(
        {
            "experiment": {"name": "api-workload-test"},
            "services": {"mock_api": {"seed": 42, "cpus": 1.0, "upstreams": upstreams}},
        },
        Path("tests/integration/test_workload_api_integration.py"),
    )
    name, config = experiment.variant(None)
    return running_stack(config, name)


def trial(
    stack: Stack, knobs: ApiKnobs, out_dir: Path, rate_rps: float = OFFERED_RPS
) -> tuple[dict[str, float], LoadResult]:
    """One open-loop trial the way the orchestrator runs it: reset, load, metrics."""
    driver = ApiWorkload(knobs, stack.endpoints, seed=1)
    driver.prepare()
    driver.reset()
    plan = LoadPlan(Schedule.constant(rate_rps, DURATION_S), driver.operation(trial_seed=1), warmup_s=WARMUP_S)
    result = run_load(plan, out_dir, display="none")
    return driver.trial_metrics(result), result


def test_small_pools_queue_and_raise_p95(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    with start(QUEUEING) as stack:
        small, small_result = trial(stack, ApiKnobs(crm_pool=2, llm_pool=10, listings_pool=15), tmp_path / "small")
        large, large_result = trial(stack, ApiKnobs(crm_pool=20, llm_pool=50, listings_pool=30), tmp_path / "large")
    for name, metrics in (("small", small), ("large", large)):
        print(
            f"\n{name}: p50 {metrics['latency_p50_ms']:.1f} ms, p95 {metrics['latency_p95_ms']:.1f} ms, "
            f"p99 {metrics['latency_p99_ms']:.1f} ms, throughput {metrics['throughput_rps']:.1f}/s, "
            f"errors {metrics['error_rate']:.3f}, crm p95 {metrics['crm_p95_ms']:.1f} ms, "
            f"crm pool wait mean {metrics['crm_pool_wait_mean_ms']:.1f} ms "
            f"(share {metrics['crm_pool_wait_share']:.2f}), "
            f"mock requests {metrics['mock_requests']:.0f}, llm tokens {metrics['mock_llm_tokens']:.0f}"
        )
    # 70/s offered: 2 crm connections fall behind (~45/s), 20 keep up
    assert small["latency_p95_ms"] > 1.5 * large["latency_p95_ms"]
    assert small["crm_p95_ms"] > 2 * large["crm_p95_ms"]
    assert small["crm_pool_wait_mean_ms"] > 50 > large["crm_pool_wait_mean_ms"]
    # the large pools see only the upstreams' own latency: llm's p95 (~160 ms) and a little more
    assert 100 <= large["latency_p95_ms"] <= 400
    measured = (DURATION_S - WARMUP_S) * OFFERED_RPS
    for metrics, result in ((small, small_result), (large, large_result)):
        assert metrics["requests"] == metrics["ok"] == measured and metrics["error_rate"] == 0.0
        assert metrics["throughput_rps"] == OFFERED_RPS
        sent = result.counters["sent"]
        assert sent == DURATION_S * OFFERED_RPS
        for name in UPSTREAMS:
            # reset before each trial: the server counted what the operation sent, warm-up included
            assert metrics[f"mock_{name}_requests"] == metrics[f"{name}_requests"] == sent
        assert metrics["mock_requests"] == 3 * sent and metrics["mock_throttled"] == 0
        assert metrics["mock_llm_tokens"] > 50 * sent


def test_a_rate_limit_below_the_offered_rate_throttles(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    limited = {**QUEUEING, "listings": {**QUEUEING["listings"], "rate_limit_rps": 20}}
    with start(limited) as stack:
        metrics, result = trial(stack, ApiKnobs(crm_pool=20, llm_pool=50, listings_pool=30), tmp_path / "limited", 60.0)
    print(
        f"\nlimited: throttle rate {metrics['throttle_rate']:.3f}, listings throttle rate "
        f"{metrics['listings_throttle_rate']:.3f}, throughput {metrics['throughput_rps']:.1f}/s, "
        f"mock listings throttled {metrics['mock_listings_throttled']:.0f}, outcomes {result.outcomes}"
    )
    # 60/s offered against 20/s (+ a bucket of 20): about 100 of 180 listings calls get a 429
    assert 0.35 <= metrics["listings_throttle_rate"] <= 0.75
    assert metrics["throttle_rate"] > 0.3 and result.outcomes["listings_throttled"] > 0
    assert metrics["error_rate"] == metrics["throttle_rate"]  # nothing else failed
    assert metrics["mock_listings_throttled"] == round(metrics["listings_throttle_rate"] * metrics["listings_requests"])
    assert metrics["crm_throttle_rate"] == metrics["llm_throttle_rate"] == 0.0
