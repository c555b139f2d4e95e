"""The api workload: one lead enrichment fans out to the mock API's crm, llm and listings upstreams.

Each operation is one enrichment request: `GET /crm/contacts/{id}`, `POST /llm/v1/completions`
and `GET /listings/search?...` sent concurrently, each through its own upstream's connection
pool (one keep-alive HttpClient per upstream). A pool smaller than the upstream's concurrency
demand queues the call on the client side, which is exactly what the api experiment's pool
sizes (crm 5 -> 20, llm 10 -> 50, listings 15 -> 30) change.

The enrichment is "ok" when every upstream answered 2xx. Otherwise its outcome names the first
failed upstream in fan-out order (not in time, so equal draws give equal outcomes) and how it
failed: `crm_http_503`, `llm_throttled` (a 429), `listings_timeout`, `crm_connection_error`,
`llm_protocol_error`. The other upstreams' calls still run to completion, so the mock API's
counters and ours always describe the same requests.

`timeout_s` bounds one upstream call from the moment it asks its pool for a connection, so a
call stuck behind a full pool times out like a slow answer would (aiohttp's `total` timeout).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import orjson
import polars as pl
from pydantic import Field, field_validator

from lab.loadgen.histogram import Histogram
from lab.loadgen.http import HttpClient, HttpError
from lab.loadgen.operation import CallResult, OperationRef
from lab.loadgen.runner import LoadResult, summarize_samples
from lab.stack.endpoint import Endpoint
from lab.stack.services.http import get_json, post_json
from lab.workloads.base import Knobs, WorkloadDriver

Upstream = Literal["crm", "llm", "listings"]
UPSTREAMS: tuple[Upstream, ...] = get_args(Upstream)
LABEL = "enrich"
RING_SIZE = 256  # distinct leads per trial; request bytes are built once, in the factory
HISTOGRAM_FLUSH = 4_096  # latencies buffered per upstream before they go into the histogram
LLM_MAX_TOKENS = 128
CITIES = ("Austin", "Denver", "Tampa", "Phoenix", "Raleigh", "Boise", "Columbus", "Nashville")
PROPERTY_TYPES = ("single_family", "condo", "townhouse")


class ApiKnobs(Knobs):
    """Client-side settings of the api workload; the defaults are the shipped baseline."""

    crm_pool: int = Field(default=5, ge=1, le=10_000, description="connections to the crm upstream")
    llm_pool: int = Field(default=10, ge=1, le=10_000, description="connections to the llm upstream")
    listings_pool: int = Field(default=15, ge=1, le=10_000, description="connections to the listings upstream")
    timeout_s: float = Field(default=10.0, gt=0, le=600, description="per upstream call, pool wait included")
    # strict=False: TOML gives an array, the model keeps a tuple
    fanout: tuple[Upstream, ...] = Field(default=UPSTREAMS, strict=False, min_length=1, description="upstreams called")

    @field_validator("fanout")
    @classmethod
    def each_upstream_once(cls, fanout: tuple[Upstream, ...]) -> tuple[Upstream, ...]:
        if len(set(fanout)) != len(fanout):
            raise ValueError("each upstream may appear once in fanout")
        return fanout

    def pool_sizes(self) -> dict[Upstream, int]:
        """Connections per upstream that the enrichment calls."""
        sizes: dict[Upstream, int] = {"crm": self.crm_pool, "llm": self.llm_pool, "listings": self.listings_pool}
        return {name: sizes[name] for name in self.fanout}


# ---------------------------------------------------------------------------------------------
# the operation (runs in the load worker processes)


def lead_requests(client: HttpClient, upstream: Upstream, seed: int, count: int = RING_SIZE) -> list[bytes]:
    """`count` prebuilt requests to one upstream; request i of every upstream is about lead i."""
    rng = np.random.default_rng(seed)  # the same draws for every upstream: one lead, three calls
    contact_ids = rng.integers(1, 1_000_000, count)
    cities = rng.integers(0, len(CITIES), count)
    bedrooms = rng.integers(1, 6, count)
    budgets_usd = rng.integers(150, 1_200, count) * 1_000
    kinds = rng.integers(0, len(PROPERTY_TYPES), count)
    requests = []
    for contact_id, city, beds, budget_usd, kind in zip(
        contact_ids.tolist(), cities.tolist(), bedrooms.tolist(), budgets_usd.tolist(), kinds.tolist(), strict=True
    ):
        if upstream == "crm":
            request = client.build_request("GET", f"/crm/contacts/ct_{contact_id:06d}")
        elif upstream == "llm":
            prompt = (
                f"Lead ct_{contact_id:06d} is looking for a {beds}-bedroom {PROPERTY_TYPES[kind]} in "
                f"{CITIES[city]} with a budget of ${budget_usd:,}. Summarize their buying intent and "
                "suggest the next action for the agent in two sentences."
            )
            body = orjson.dumps({"model": "mock-llm-1", "prompt": prompt, "max_tokens": LLM_MAX_TOKENS})
            request = client.build_request("POST", "/llm/v1/completions", body, {"Content-Type": "application/json"})
        else:
            query = f"city={CITIES[city]}&min_beds={beds}&max_price={budget_usd}&type={PROPERTY_TYPES[kind]}"
            request = client.build_request("GET", f"/listings/search?{query}")
        requests.append(request)
    return requests


class UpstreamCalls:
    """One upstream's pool, prebuilt requests, counters and latency histograms."""

    def __init__(self, name: Upstream, client: HttpClient, pool_size: int, requests: list[bytes]) -> None:
        self.name = name
        self.client = client
        self.requests = requests
        self.timeout_s = client.timeout_s
        # Our own gate of the pool's size in front of the client's (which then never blocks):
        # it tells when a connection was granted, so the pool wait can be measured.
        self.slots = asyncio.Semaphore(pool_size)
        self.counts = dict.fromkeys(("requests", "ok", "errors", "throttled", "timeouts", "pool_waits"), 0)
        self.latency = Histogram()
        self.pool_wait = Histogram()
        self._latency_ns: list[int] = []
        self._pool_wait_ns: list[int] = []
        self.latency_ns_sum = 0
        self.pool_wait_ns_sum = 0
        self.outcomes = {
            "timeout": f"{name}_timeout",
            "connection_error": f"{name}_connection_error",
            "protocol_error": f"{name}_protocol_error",
            "throttled": f"{name}_throttled",
        }

    async def call(self, seq: int) -> str:
        """Request `seq` of this upstream: "ok" or the outcome naming its failure."""
        counts = self.counts
        counts["requests"] += 1
        began_ns = time.perf_counter_ns()
        try:
            async with asyncio.timeout(self.timeout_s):
                if self.slots.locked():
                    counts["pool_waits"] += 1
                async with self.slots:
                    wait_ns = time.perf_counter_ns() - began_ns
                    self._pool_wait_ns.append(wait_ns)
                    self.pool_wait_ns_sum += wait_ns
                    status = await self.client.send(self.requests[seq % len(self.requests)])
        except TimeoutError:  # before OSError: TimeoutError is one
            outcome = self.outcomes["timeout"]
        except (ConnectionError, OSError):
            outcome = self.outcomes["connection_error"]
        except HttpError:
            outcome = self.outcomes["protocol_error"]
        else:
            if 200 <= status < 300:
                outcome = "ok"
            elif status == 429:
                outcome = self.outcomes["throttled"]
            else:
                outcome = f"{self.name}_http_{status}"
        latency_ns = time.perf_counter_ns() - began_ns
        self._latency_ns.append(latency_ns)
        self.latency_ns_sum += latency_ns
        if outcome == "ok":
            counts["ok"] += 1
        elif outcome == self.outcomes["throttled"]:
            counts["throttled"] += 1
        else:
            counts["errors"] += 1
            if outcome == self.outcomes["timeout"]:
                counts["timeouts"] += 1
        if len(self._latency_ns) >= HISTOGRAM_FLUSH:
            self.flush()
        return outcome

    def flush(self) -> None:
        """Move the buffered latencies into the histograms (one numpy call per batch, not per call)."""
        self.latency.record(np.array(self._latency_ns, dtype=np.int64))
        self.pool_wait.record(np.array(self._pool_wait_ns, dtype=np.int64))
        self._latency_ns.clear()
        self._pool_wait_ns.clear()

    def stats(self) -> dict[str, float]:
        """Counts, sums and this worker's percentiles, keys prefixed with the upstream's name.

        Keys ending in `_ms` are percentiles or maxima (merge across workers with max), the
        others are counts and sums (merge with +): see `merge_operation_stats`.
        """
        self.flush()
        name = self.name
        stats = {f"{name}_{key}": float(value) for key, value in self.counts.items()}
        stats[f"{name}_latency_ms_sum"] = self.latency_ns_sum / 1e6
        stats[f"{name}_pool_wait_ms_sum"] = self.pool_wait_ns_sum / 1e6
        stats[f"{name}_pool_acquired"] = float(self.pool_wait.total)
        for q in (50, 95, 99):
            stats[f"{name}_p{q}_ms"] = self.latency.percentile(q) / 1e6
        stats[f"{name}_pool_wait_p95_ms"] = self.pool_wait.percentile(95) / 1e6
        stats[f"{name}_pool_wait_max_ms"] = self.pool_wait.percentile(100) / 1e6
        return stats


class EnrichOperation:
    """One lead enrichment per call: the fan-out upstreams concurrently, each through its pool."""

    def __init__(self, upstreams: list[UpstreamCalls]) -> None:
        self.upstreams = upstreams
        self._ok = CallResult("ok", LABEL)
        self._failures: dict[str, CallResult] = {}

    async def call(self, seq: int) -> CallResult:
        outcomes = await asyncio.gather(*(upstream.call(seq) for upstream in self.upstreams))
        for outcome in outcomes:
            if outcome != "ok":
                failure = self._failures.get(outcome)
                if failure is None:
                    failure = self._failures[outcome] = CallResult(outcome, LABEL)
                return failure
        return self._ok

    def stats(self) -> dict[str, float]:
        """Per-upstream counts and latencies since the operation was built (warm-up included:
        the operation does not know where the plan's warm-up ends)."""
        stats: dict[str, float] = {}
        for upstream in self.upstreams:
            stats.update(upstream.stats())
        return stats

    async def close(self) -> None:
        for upstream in self.upstreams:
            await upstream.client.close()


async def api_operation(params: dict[str, Any]) -> EnrichOperation:
    """Factory for `lab.workloads.api:api_operation`: url, pools {upstream: size}, timeout_s, seed."""
    url = str(params["url"])
    timeout_s = float(params["timeout_s"])
    seed = int(params["seed"])
    upstreams = []
    for name, pool_size in params["pools"].items():
        if name not in UPSTREAMS:
            raise ValueError(f"unknown upstream {name!r} (expected one of: {', '.join(UPSTREAMS)})")
        client = HttpClient(url, connections=int(pool_size), timeout_s=timeout_s)
        requests = lead_requests(client, name, seed)
        upstreams.append(UpstreamCalls(name, client, int(pool_size), requests))
    return EnrichOperation(upstreams)


# ---------------------------------------------------------------------------------------------
# metrics (pure functions of what was measured)


def merge_operation_stats(per_worker: list[dict[str, float]]) -> dict[str, float]:
    """The workers' operation stats as one: counts and sums add up; `_ms` percentiles take the
    maximum, exact with one worker and an upper bound with several (if every worker has 95 % of
    its calls at or below its p95, then 95 % of all calls are at or below the largest p95)."""
    merged: dict[str, float] = {}
    for stats in per_worker:
        for key, value in stats.items():
            if key not in merged:
                merged[key] = value
            elif key.endswith("_ms"):
                merged[key] = float(np.fmax(merged[key], value))  # fmax: an idle worker's NaN loses
            else:
                merged[key] += value
    return merged


def request_metrics(samples: pl.LazyFrame, measured_s: float) -> dict[str, float]:
    """End-to-end latency percentiles (all completed requests), throughput and failure rates."""
    latency = summarize_samples(samples, "latency_ns")
    counts = (
        samples.select(
            pl.col("end_ns").is_not_null().sum().alias("completed"),
            (pl.col("outcome") == "ok").sum().alias("ok"),
            pl.col("outcome").cast(pl.String).str.ends_with("_throttled").sum().alias("throttled"),
            (pl.col("outcome") == "dropped").sum().alias("dropped"),
            (pl.col("outcome") == "unfinished").sum().alias("unfinished"),
        )
        .collect()
        .row(0, named=True)
    )
    completed, ok, throttled = int(counts["completed"]), int(counts["ok"]), int(counts["throttled"])
    errors = completed - ok
    return {
        "latency_p50_ms": latency.percentiles_ms["p50"],
        "latency_p95_ms": latency.percentiles_ms["p95"],
        "latency_p99_ms": latency.percentiles_ms["p99"],
        "latency_mean_ms": latency.mean_ms,
        "requests": float(completed),
        "ok": float(ok),
        "errors": float(errors),
        "throttled": float(throttled),
        "dropped": float(counts["dropped"]),
        "unfinished": float(counts["unfinished"]),
        "throughput_rps": ok / measured_s,
        "error_rate": _ratio(errors, completed),
        "throttle_rate": _ratio(throttled, completed),
    }


def upstream_metrics(stats: dict[str, float], fanout: tuple[Upstream, ...]) -> dict[str, float]:
    """Per-upstream p95, error and throttle rates and pool wait, from merged operation stats."""
    metrics: dict[str, float] = {}
    for name in fanout:
        requests = stats.get(f"{name}_requests", 0.0)
        acquired = stats.get(f"{name}_pool_acquired", 0.0)
        metrics[f"{name}_requests"] = requests
        metrics[f"{name}_p50_ms"] = stats.get(f"{name}_p50_ms", math.nan)
        metrics[f"{name}_p95_ms"] = stats.get(f"{name}_p95_ms", math.nan)
        metrics[f"{name}_p99_ms"] = stats.get(f"{name}_p99_ms", math.nan)
        metrics[f"{name}_error_rate"] = _ratio(stats.get(f"{name}_errors", 0.0), requests)
        metrics[f"{name}_throttle_rate"] = _ratio(stats.get(f"{name}_throttled", 0.0), requests)
        metrics[f"{name}_timeouts"] = stats.get(f"{name}_timeouts", 0.0)
        metrics[f"{name}_pool_wait_share"] = _ratio(stats.get(f"{name}_pool_waits", 0.0), requests)
        metrics[f"{name}_pool_wait_mean_ms"] = _ratio(stats.get(f"{name}_pool_wait_ms_sum", 0.0), acquired)
        metrics[f"{name}_pool_wait_p95_ms"] = stats.get(f"{name}_pool_wait_p95_ms", math.nan)
    return metrics


def mock_api_metrics(document: dict[str, Any]) -> dict[str, float]:
    """The mock API's own `/stats` counters (since its last reset), as `mock_*` metrics."""
    metrics: dict[str, float] = {}
    totals = dict.fromkeys(("requests", "ok", "errors", "throttled"), 0.0)
    for name, counters in document["upstreams"].items():
        for key in ("requests", "ok", "errors", "throttled", "max_in_flight", "queued"):
            metrics[f"mock_{name}_{key}"] = float(counters[key])
        for key, value in counters.items():  # an injected fault window's effects (`/admin/fault`)
            if key.startswith("fault_") and isinstance(value, int | float):
                metrics[f"mock_{name}_{key}"] = float(value)
        for key in totals:
            totals[key] += float(counters[key])
    metrics.update({f"mock_{key}": value for key, value in totals.items()})
    metrics["mock_llm_tokens"] = float(document["upstreams"]["llm"]["tokens"])
    return metrics


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


# ---------------------------------------------------------------------------------------------
# the driver (runs in the orchestrating parent)


class ApiWorkload(WorkloadDriver):
    """Lead enrichment against the mock API through per-upstream client pools."""

    kind: ClassVar[str] = "api"
    knobs_model: ClassVar[type[Knobs]] = ApiKnobs
    required_services: ClassVar[tuple[str, ...]] = ("mock_api",)
    knobs: ApiKnobs

    def __init__(self, knobs: Knobs, endpoints: dict[str, Endpoint], seed: int) -> None:
        if not isinstance(knobs, ApiKnobs):
            raise TypeError(f"the api workload takes ApiKnobs, not {type(knobs).__name__}")
        super().__init__(knobs, endpoints, seed)
        self.url = endpoints["mock_api"].url

    def prepare(self) -> None:
        """Nothing to create: the mock API has no data. Checks that it answers."""
        get_json(f"{self.url}/health")

    def reset(self) -> None:
        """POST /admin/reset: fresh counters, refilled rate-limit buckets, and every upstream's
        RNG restarted at its seed, so each trial of each variant meets the same sequence of
        latencies, errors and completion sizes (request i of an upstream gets draw i)."""
        post_json(f"{self.url}/admin/reset", {})

    def operation(self, trial_seed: int) -> OperationRef:
        return OperationRef(
            "lab.workloads.api:api_operation",
            {
                "url": self.url,
                "pools": self.knobs.pool_sizes(),
                "timeout_s": self.knobs.timeout_s,
                "seed": trial_seed,
            },
        )

    def trial_metrics(self, result: LoadResult) -> dict[str, float]:
        """End-to-end latency, throughput and failure rates (measured phase), per-upstream
        latency, failure rates and pool wait (whole trial), and the mock API's own counters
        read now, after the trial (whole trial: they were reset before it)."""
        metrics = request_metrics(result.samples(), result.measured_s)
        metrics.update(upstream_metrics(merge_operation_stats(result.operation_stats), self.knobs.fanout))
        metrics.update(mock_api_metrics(get_json(f"{self.url}/stats")))
        return metrics


DRIVER = ApiWorkload
