"""Projected cost from what a trial measured, times the experiment's price sheet.

Per trial, from `trials.parquet`:
- CPU: the CPU-seconds every container used during the trial (Docker's cgroup counter, read
  before and after), per request the trial sent (warm-up included, as the counters are):
  scales with traffic. Per day = CPU-s/request x requests/day / 3600 x price per core-hour.
- Memory: the memory every container held at the end of the trial, kept all day (a standing
  cost): GiB x 24 h x price per GiB-hour.
- Upstream calls (and llm tokens) the mock API counted during the trial, per request sent,
  times requests/day and the price per call (per 1,000 tokens).
Per 30 days is 30 x per day. Nothing is simulated: a variant that was not measured has no cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lab.config.analysis import CostConfig

UPSTREAMS = ("crm", "llm", "listings")


def trial_cost(metrics: Mapping[str, float], prices: CostConfig) -> dict[str, float]:
    """The cost components (per day) and derived resource figures of one trial's metrics.

    The unit of traffic is a request, or for the inference workload a prediction (a request
    carries `batch_size` of them): a batch-32 request is not comparable with a batch-1 one."""
    requests = metrics.get("trial_requests", math.nan) * metrics.get("batch_size", 1.0)
    cpu_s = sum(v for k, v in metrics.items() if k.endswith("_cpu_s") and v == v)
    memory_mb = sum(v for k, v in metrics.items() if k.endswith("_memory_mb") and v == v)
    per_day = prices.requests_per_day
    if not requests or requests != requests:
        return {"cpu_s": cpu_s, "memory_mb": memory_mb}
    cpu_day = cpu_s / requests * per_day / 3600 * prices.cpu_core_hour
    memory_day = memory_mb / 1024 * 24 * prices.memory_gb_hour
    upstream_day = 0.0
    calls_per_request = 0.0
    for upstream in UPSTREAMS:
        calls = metrics.get(f"mock_{upstream}_requests", 0.0)
        calls_per_request += calls / requests
        upstream_day += calls / requests * per_day * prices.upstream_call.get(upstream, 0.0)
    tokens_day = metrics.get("mock_llm_tokens", 0.0) / requests * per_day / 1000 * prices.llm_tokens_1k
    total = cpu_day + memory_day + upstream_day + tokens_day
    return {
        "cpu_s": cpu_s,
        "memory_mb": memory_mb,
        "cpu_s_per_1k": cpu_s / requests * 1000,
        "upstream_calls_per_request": calls_per_request,
        "cost_cpu_per_day": cpu_day,
        "cost_memory_per_day": memory_day,
        "cost_upstream_per_day": upstream_day,
        "cost_tokens_per_day": tokens_day,
        "cost_per_day": total,
        "cost_per_30_days": total * 30,
    }


def savings(baseline_per_day: float, candidate_per_day: float, prices: CostConfig) -> dict[str, float]:
    """Savings of the candidate against the baseline, and the ROI of the change over 30 days."""
    saved = baseline_per_day - candidate_per_day
    reduction = saved / baseline_per_day if baseline_per_day > 0 else math.nan
    result = {
        "baseline_per_day": baseline_per_day,
        "candidate_per_day": candidate_per_day,
        "savings_per_day": saved,
        "savings_per_30_days": saved * 30,
        "cost_reduction": reduction,
    }
    if prices.change_cost > 0:
        result["roi_30_days"] = (saved * 30 - prices.change_cost) / prices.change_cost
        result["payback_days"] = prices.change_cost / saved if saved > 0 else math.inf
    return result


def assumptions(prices: CostConfig) -> list[str]:
    """The price sheet and traffic, in words, printed beside every cost figure."""
    c = prices.currency
    lines = [
        f"traffic: {prices.requests_per_day:,.0f} requests/day (predictions for inference), load shape as measured",
        f"CPU: {prices.cpu_core_hour:g} {c} per core-hour, scaled by CPU-seconds per request measured",
        f"memory: {prices.memory_gb_hour:g} {c} per GiB-hour, the containers' memory at the end of each trial, all day",
    ]
    if prices.upstream_call:
        priced = ", ".join(f"{k} {v:g}" for k, v in sorted(prices.upstream_call.items()))
        lines.append(f"upstream calls ({c} per call): {priced}; calls per request as the mock API counted them")
    if prices.llm_tokens_1k:
        lines.append(f"llm tokens: {prices.llm_tokens_1k:g} {c} per 1,000, as the mock API counted them")
    if prices.change_cost:
        lines.append(f"one-off cost of the change: {prices.change_cost:,.2f} {c} (for ROI and payback)")
    lines.append("not included: the load generator and the host-side client (an L1 cache lives there)")
    lines.append("memory is a standing cost: it does not scale with the traffic")
    return lines


def as_document(prices: CostConfig) -> dict[str, Any]:
    return prices.model_dump(mode="json")
