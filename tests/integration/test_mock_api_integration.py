"""The mock third-party API in its container: configured latency, rate limits, seeded errors."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import docker
import pytest

from lab.config.experiment import parse_experiment
from lab.stack.stack import Stack, running_stack

PROFILES = {
    "crm": {"latency_median_ms": 30, "latency_p99_ms": 90},
    "llm": {"latency_median_ms": 60, "latency_p99_ms": 180},
    "listings": {"latency_median_ms": 45, "latency_p99_ms": 120, "rate_limit_rps": 40},
}


def start(upstreams: dict[str, Any], seed: int = 42) -> Any:
    experiment = parse_experiment(
        {
            "experiment": {"name": "mock-api-test"},
            "services": {"mock_api": {"seed": seed, "cpus": 1.0, "upstreams": upstreams}},
        },
        Path("tests/integration/test_mock_api_integration.py"),
    )
    name, config = experiment.variant(None)
    return running_stack(config, name)


@pytest.fixture(scope="module")
def mock_api(docker_client: docker.DockerClient) -> Iterator[Stack]:
    with start(PROFILES) as stack:
        yield stack


async def timed_calls(url: str, count: int, concurrency: int) -> list[tuple[int, float]]:
    """`count` GETs with `concurrency` in flight: (status, latency in ms) each."""
    results: list[tuple[int, float]] = []
    queue = list(range(count))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            while queue:
                queue.pop()
                began = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    results.append((response.status, (time.perf_counter() - began) * 1000))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def test_median_latency_per_upstream_is_the_configured_one(mock_api: Stack) -> None:
    base = mock_api.endpoints["mock_api"].url
    for upstream, path in (("crm", "contacts/7"), ("llm", "v1/models"), ("listings", "search")):
        if upstream == "listings":
            continue  # rate-limited below: measured in its own test
        results = asyncio.run(timed_calls(f"{base}/{upstream}/{path}", count=150, concurrency=10))
        assert {status for status, _ in results} == {200}
        median_ms = statistics.median(latency for _, latency in results)
        configured = PROFILES[upstream]["latency_median_ms"]
        assert abs(median_ms - configured) <= 0.15 * configured, (upstream, median_ms)


def test_429s_appear_above_the_rate_limit_and_not_below(mock_api: Stack) -> None:
    url = f"{mock_api.endpoints['mock_api'].url}/listings/search"

    async def paced(rate_per_s: float, seconds: float) -> list[int]:
        statuses: list[int] = []
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                async with session.get(url) as response:
                    await response.read()
                    statuses.append(response.status)

            tasks = []
            began = time.perf_counter()
            for index in range(int(rate_per_s * seconds)):
                await asyncio.sleep(max(0.0, began + index / rate_per_s - time.perf_counter()))
                tasks.append(asyncio.create_task(one()))
            await asyncio.gather(*tasks)
        return statuses

    time.sleep(1.1)  # let the bucket refill after any earlier test
    below = asyncio.run(paced(20, 2.0))  # half the limit of 40/s
    assert below.count(429) == 0 and below.count(200) == len(below) == 40
    above = asyncio.run(paced(120, 2.0))  # three times the limit
    throttled = above.count(429)
    # About 40 tokens in the bucket + 40/s refill over 2 s = ~120 of 240 served.
    assert 80 <= throttled <= 160, throttled
    assert above.count(200) + throttled == len(above)


def test_the_same_seed_gives_the_same_error_sequence(docker_client: docker.DockerClient) -> None:
    flaky = {"crm": {"latency_median_ms": 0, "latency_p99_ms": 0, "error_rate": 0.3}}

    def statuses(seed: int) -> list[int]:
        with start(flaky, seed=seed) as stack:
            url = f"{stack.endpoints['mock_api'].url}/crm/contacts/1"
            return [status for status, _ in asyncio.run(timed_calls(url, count=60, concurrency=1))]

    first, again, other = statuses(11), statuses(11), statuses(12)
    assert first == again
    assert first != other
    assert 5 <= sum(s >= 500 for s in first) <= 35


def test_bad_requests_get_4xx_and_the_next_good_one_succeeds(mock_api: Stack) -> None:
    base = mock_api.endpoints["mock_api"].url
    bad = [
        ("POST", "/llm/v1/completions", b'{"prompt": ', "application/json", 400),
        ("POST", "/llm/v1/completions", b"[1, 2]", "application/json", 400),
        ("POST", "/llm/v1/completions", b"prompt=x", "text/plain", 415),
        ("POST", "/llm/v1/completions", b'{"p": "' + b"x" * 200_000 + b'"}', "application/json", 413),
        ("GET", "/nosuch/upstream", b"", "", 404),
    ]

    async def send(method: str, path: str, body: bytes, content_type: str) -> tuple[int, Any]:
        headers = {"Content-Type": content_type} if content_type else {}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, base + path, data=body or None, headers=headers) as response,
        ):
            return response.status, json.loads(await response.read())

    for method, path, body, content_type, expected in bad:
        status, answer = asyncio.run(send(method, path, body, content_type))
        assert status == expected, (path, content_type, status)
        assert answer["error"]
        good_status, good = asyncio.run(send("POST", "/llm/v1/completions", b'{"prompt": "hello"}', "application/json"))
        assert good_status == 200 and good["usage"]["total_tokens"] > 0

    async def stats() -> Any:
        async with aiohttp.ClientSession() as session, session.get(f"{base}/stats") as response:
            return await response.json()

    counters = asyncio.run(stats())
    assert counters["rejected"]["400"] >= 2 and counters["rejected"]["413"] >= 1
    assert counters["upstreams"]["llm"]["tokens"] > 0
