"""The mock third-party API, run for real: uvicorn in a thread on 127.0.0.1, driven by aiohttp.

Every figure asserted here is measured over real HTTP; the draws are seeded, so the only
noise is the machine's timing.
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn

from lab.services.mock_api import (
    DEFAULT_UPSTREAMS,
    MockApiConfigError,
    create_app,
    parse_config,
)

REPO = Path(__file__).resolve().parents[2]
ZERO_LATENCY = {name: {"latency_median_ms": 0} for name in ("crm", "llm", "listings")}
JSON_HEADERS = {"Content-Type": "application/json"}


@contextmanager
def running_mock_api(raw_config: dict[str, Any]) -> Iterator[str]:
    """Serve `create_app(parse_config(raw_config))` on a free 127.0.0.1 port; yields the base URL."""
    app = create_app(parse_config(raw_config))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, loop="uvloop", http="httptools", access_log=False, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="mock-api", daemon=True)
    thread.start()
    deadline_s = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline_s, "mock API did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Answer:
    """One response, read whole, with the client-side latency."""

    def __init__(self, status: int, headers: Any, body: bytes, latency_ms: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.latency_ms = latency_ms

    def json(self) -> Any:
        return json.loads(self.body)


async def call(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Answer:
    began = time.perf_counter()
    async with session.request(method, url, **kwargs) as response:
        body = await response.read()
    return Answer(response.status, response.headers, body, (time.perf_counter() - began) * 1000.0)


async def get_stats(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    answer = await call(session, "GET", f"{base}/stats")
    assert answer.status == 200
    stats: dict[str, Any] = answer.json()
    return stats


# ---------------------------------------------------------------------------------------------
# behaviour over HTTP


def test_median_latency_per_upstream_is_the_configured_one() -> None:
    # seed 7: the first 200 draws' own medians are within 4 % of the configured ones, which
    # leaves the rest of the 15 % for the server's (and this shared machine's) timing
    medians_ms = {"crm": 20.0, "llm": 40.0, "listings": 60.0}
    upstreams = {name: {"latency_median_ms": ms, "latency_p99_ms": 3 * ms} for name, ms in medians_ms.items()}
    requests_per_upstream, concurrency = 200, 8

    async def scenario(base: str) -> dict[str, list[Answer]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def one_upstream(name: str) -> list[Answer]:
                gate = asyncio.Semaphore(concurrency)

                async def one() -> Answer:
                    async with gate:
                        return await call(session, "GET", f"{base}/{name}/v1/thing")

                return await asyncio.gather(*(one() for _ in range(requests_per_upstream)))

            answers = await asyncio.gather(*(one_upstream(name) for name in medians_ms))
            return dict(zip(medians_ms, answers, strict=True))

    with running_mock_api({"seed": 7, "upstreams": upstreams}) as base:
        by_upstream = asyncio.run(scenario(base))
    for name, answers in by_upstream.items():
        assert {a.status for a in answers} == {200}
        client_ms = statistics.median(a.latency_ms for a in answers)
        server_ms = [float(a.headers["X-Mock-Latency-Ms"]) for a in answers]
        assert abs(client_ms / medians_ms[name] - 1) <= 0.15, (name, client_ms)
        assert abs(statistics.median(server_ms) / medians_ms[name] - 1) <= 0.15, (name, server_ms)
        # the client never sees less than the simulated delay (1 ms: uvloop's timer granularity)
        assert all(a.latency_ms >= s - 1.0 for a, s in zip(answers, server_ms, strict=True))


def test_rate_limit_throttles_above_the_limit_and_never_below() -> None:
    upstreams = {**ZERO_LATENCY, "crm": {"latency_median_ms": 0, "rate_limit_rps": 100}}

    async def scenario(base: str) -> tuple[list[Answer], list[Answer], dict[str, Any]]:
        url = f"{base}/crm/contacts/1"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
            # 50 rps for 1 s: half the limit, paced by the schedule, not by the answers
            paced = []
            began = time.perf_counter()
            for n in range(50):
                await asyncio.sleep(max(0.0, began + n * 0.02 - time.perf_counter()))
                paced.append(await call(session, "GET", url))
            # 300 at once: the bucket holds 100, refill during the burst adds a few
            burst = await asyncio.gather(*(call(session, "GET", url) for _ in range(300)))
            return paced, list(burst), await get_stats(session, base)

    with running_mock_api({"upstreams": upstreams}) as base:
        paced, burst, stats = asyncio.run(scenario(base))
    assert [a.status for a in paced] == [200] * 50
    throttled = [a for a in burst if a.status == 429]
    assert 150 <= len(throttled) <= 200
    assert {a.status for a in burst} == {200, 429}
    assert all(int(a.headers["Retry-After"]) >= 1 and "rate limit" in a.json()["error"] for a in throttled)
    crm = stats["upstreams"]["crm"]
    assert crm["throttled"] == len(throttled)
    assert crm["ok"] == 350 - len(throttled) and crm["requests"] == 350
    assert stats["upstreams"]["llm"]["throttled"] == 0


def test_same_seed_gives_the_same_error_sequence_and_another_seed_another() -> None:
    upstreams = {**ZERO_LATENCY, "crm": {"latency_median_ms": 0, "error_rate": 0.3}}

    async def statuses(session: aiohttp.ClientSession, base: str, *, interleave_llm: bool = False) -> list[int]:
        sequence = []
        for _ in range(100):
            answer = await call(session, "GET", f"{base}/crm/contacts/1")
            if answer.status != 200:
                assert set(answer.json()) == {"error"}
            sequence.append(answer.status)
            if interleave_llm:  # another upstream's traffic must not shift crm's draws
                await call(session, "POST", f"{base}/llm/v1/completions", json={"prompt": "hi"})
        return sequence

    async def reset(session: aiohttp.ClientSession, base: str, seed: int) -> None:
        answer = await call(session, "POST", f"{base}/admin/reset", json={"seed": seed})
        assert answer.status == 200 and answer.json() == {"status": "reset", "seed": seed}

    async def scenario(first: str, second: str) -> list[list[int]]:
        async with aiohttp.ClientSession() as session:
            on_first = await statuses(session, first)
            on_second = await statuses(session, second, interleave_llm=True)
            await reset(session, second, 12)
            other_seed = await statuses(session, second)
            await reset(session, second, 11)
            seed_again = await statuses(session, second)
            return [on_first, on_second, other_seed, seed_again]

    config = {"seed": 11, "upstreams": upstreams}
    with running_mock_api(config) as first, running_mock_api(config) as second:
        on_first, on_second, other_seed, seed_again = asyncio.run(scenario(first, second))
    assert on_first == on_second == seed_again
    assert other_seed != on_first
    errors = [status for status in on_first if status != 200]
    assert 15 <= len(errors) <= 45  # error_rate 0.3 of 100
    assert set(errors) == {500, 502, 503}


def test_concurrency_cap_queues_requests_and_counts_the_wait() -> None:
    upstreams = {**ZERO_LATENCY, "crm": {"latency_median_ms": 100, "latency_p99_ms": 100, "concurrency": 2}}

    async def scenario(base: str) -> tuple[float, list[Answer], dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            began = time.perf_counter()
            answers = await asyncio.gather(*(call(session, "GET", f"{base}/crm/c/{n}") for n in range(6)))
            elapsed_s = time.perf_counter() - began
            return elapsed_s, list(answers), await get_stats(session, base)

    with running_mock_api({"upstreams": upstreams}) as base:
        elapsed_s, answers, stats = asyncio.run(scenario(base))
    assert {a.status for a in answers} == {200}
    assert {a.headers["X-Mock-Latency-Ms"] for a in answers} == {"100.000"}
    # 6 requests, 2 slots, 100 ms each: three waves
    assert elapsed_s >= 0.29
    waves_ms = sorted(a.latency_ms for a in answers)
    assert waves_ms[-1] >= 290 and waves_ms[1] < 200
    crm = stats["upstreams"]["crm"]
    assert crm["max_in_flight"] == 2 and crm["queued"] == 4
    assert crm["in_flight"] == 0 and crm["waiting"] == 0 and crm["ok"] == 6


def test_bad_requests_get_a_json_4xx_and_the_server_keeps_serving() -> None:
    async def chunked_body(total_bytes: int) -> AsyncIterator[bytes]:
        # an async generator makes aiohttp send Transfer-Encoding: chunked, no Content-Length
        for _ in range(total_bytes // 8192):
            yield b" " * 8192

    bad_requests: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", "/crm/contacts", {"data": b'{"name": ', "headers": JSON_HEADERS}, 400, "not valid JSON"),
        ("POST", "/crm/contacts", {"data": b"[1, 2]", "headers": JSON_HEADERS}, 400, "must be a JSON object"),
        ("POST", "/llm/v1/completions", {"json": {"prompt": 5}}, 400, "prompt must be a string"),
        ("POST", "/crm/contacts", {"data": b'{"a": 1}', "headers": {"Content-Type": "text/plain"}}, 415, "text/plain"),
        ("POST", "/crm/contacts", {"data": b" " * 200 * 1024, "headers": JSON_HEADERS}, 413, "204800 bytes"),
        ("POST", "/crm/contacts", {"data": chunked_body(100 * 1024), "headers": JSON_HEADERS}, 413, "exceeds 65536"),
        ("GET", "/payments/v1/charge", {}, 404, "no route for /payments/v1/charge"),
        ("DELETE", "/crm/contacts/1", {}, 405, "expected GET, POST"),
    ]

    async def scenario(base: str) -> tuple[list[tuple[Answer, Answer]], dict[str, Any]]:
        pairs = []
        async with aiohttp.ClientSession() as session:
            for method, path, kwargs, _, _ in bad_requests:
                bad = await call(session, method, base + path, **kwargs)
                good = await call(session, "POST", f"{base}/crm/contacts", json={"firstName": "Ava"})
                pairs.append((bad, good))
            return pairs, await get_stats(session, base)

    with running_mock_api({"upstreams": ZERO_LATENCY}) as base:
        pairs, stats = asyncio.run(scenario(base))
    for (method, path, _, status, message), (bad, good) in zip(bad_requests, pairs, strict=True):
        assert bad.status == status, (method, path, bad.body)
        assert bad.headers["Content-Type"] == "application/json"
        error = bad.json()
        assert set(error) == {"error"} and message in error["error"], error
        assert good.status == 200
    assert pairs[-1][0].headers["Allow"] == "GET, POST"
    # rejected requests consume no draw: the good ones are the crm's 0th, 1st, 2nd... served
    assert [good.json()["sequence"] for _, good in pairs] == list(range(len(pairs)))
    assert stats["rejected"] == {"400": 3, "404": 1, "405": 1, "413": 2, "415": 1}
    assert stats["upstreams"]["crm"]["requests"] == len(pairs)


def test_responses_have_each_upstreams_shape_and_size() -> None:
    upstreams = {
        "crm": {"latency_median_ms": 0, "latency_p99_ms": 300, "response_bytes": 3000},
        "llm": {"latency_median_ms": 0, "response_bytes": 2048},
        "listings": {"latency_median_ms": 0, "response_bytes": 4096},
    }

    async def scenario(base: str) -> list[Answer]:
        async with aiohttp.ClientSession() as session:
            return [
                await call(session, "GET", f"{base}/crm/contacts/abc123"),
                await call(session, "POST", f"{base}/llm/v1/completions", json={"prompt": "x" * 10}),
                await call(session, "GET", f"{base}/listings/search?city=Austin"),
                await call(session, "GET", f"{base}/health"),
            ]

    with running_mock_api({"upstreams": upstreams}) as base:
        crm, llm, listings, health = asyncio.run(scenario(base))
    assert [len(crm.body), len(llm.body), len(listings.body)] == [3000, 2048, 4096]
    assert crm.headers["X-Mock-Latency-Ms"] == "0.000"  # median 0: no delay, whatever the p99
    assert crm.json()["contact"]["id"] == "abc123" and "@" in crm.json()["contact"]["email"]
    completion = llm.json()
    assert completion["object"] == "text_completion" and completion["choices"][0]["text"]
    assert len(listings.json()["listings"]) == 5 and listings.json()["listings"][0]["price_usd"] > 0
    assert health.json() == {"status": "ok"}


def test_llm_usage_tokens_are_deterministic_and_summed_in_stats() -> None:
    prompts = ["", "abc", "x" * 40, "y" * 401, ["four", "more"]]

    async def scenario(base: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            bodies = []
            for prompt in prompts:
                answer = await call(session, "POST", f"{base}/llm/v1/completions", json={"prompt": prompt})
                bodies.append(answer.json())
            capped = await call(session, "POST", f"{base}/llm/v1/completions", json={"prompt": "", "max_tokens": 3})
            bodies.append(capped.json())
            return bodies, await get_stats(session, base)

    config = {"seed": 3, "upstreams": ZERO_LATENCY}
    with running_mock_api(config) as first, running_mock_api(config) as second:
        bodies, stats = asyncio.run(scenario(first))
        again, _ = asyncio.run(scenario(second))
    assert bodies == again
    usages = [body["usage"] for body in bodies]
    assert [u["prompt_tokens"] for u in usages] == [0, 1, 10, 101, 2, 0]
    for body, usage in zip(bodies, usages, strict=True):
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert len(body["choices"][0]["text"]) == 4 * usage["completion_tokens"]
    assert all(16 <= u["completion_tokens"] <= 256 for u in usages[:-1])
    assert len({u["completion_tokens"] for u in usages[:-1]}) > 1  # drawn, not constant
    assert usages[-1]["completion_tokens"] == 3 and bodies[-1]["choices"][0]["finish_reason"] == "length"
    assert stats["upstreams"]["llm"]["tokens"] == sum(u["total_tokens"] for u in usages)
    assert stats["upstreams"]["crm"]["tokens"] == 0


def test_reset_zeroes_counters_and_validates_its_body() -> None:
    async def scenario(base: str) -> tuple[list[Answer], dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            await call(session, "GET", f"{base}/crm/x")
            await call(session, "GET", f"{base}/nope")
            answers = [
                await call(session, "POST", f"{base}/admin/reset", json={"seed": -1}),
                await call(session, "POST", f"{base}/admin/reset", json={"sede": 1}),
                await call(session, "POST", f"{base}/admin/reset", json={"seed": 9}),
                await call(session, "POST", f"{base}/admin/reset"),  # no body: keep the seed
            ]
            return answers, await get_stats(session, base)

    with running_mock_api({"upstreams": ZERO_LATENCY}) as base:
        answers, stats = asyncio.run(scenario(base))
    assert [a.status for a in answers] == [400, 400, 200, 200]
    assert "seed" in answers[0].json()["error"] and "sede" in answers[1].json()["error"]
    assert answers[3].json() == {"status": "reset", "seed": 9}
    assert stats["seed"] == 9
    assert all(n == 0 for n in stats["rejected"].values())
    assert all(n == 0 for upstream in stats["upstreams"].values() for n in upstream.values())


# ---------------------------------------------------------------------------------------------
# fault windows


async def post_fault(session: aiohttp.ClientSession, base: str, **fault: Any) -> Answer:
    answer = await call(session, "POST", f"{base}/admin/fault", json=fault)
    assert answer.status == 200, answer.body
    return answer


def test_fault_latency_is_added_during_the_window_and_not_after() -> None:
    window_s = 1.0

    async def scenario(base: str) -> tuple[Answer, list[Answer], list[Answer], list[Answer], list[dict[str, Any]]]:
        async with aiohttp.ClientSession() as session:
            began = time.perf_counter()
            fault = await post_fault(session, base, upstream="llm", extra_latency_ms=50, duration_s=window_s)
            during = [await call(session, "GET", f"{base}/llm/v1/x") for _ in range(3)]
            other = [await call(session, "GET", f"{base}/crm/c/1") for _ in range(3)]
            stats = [await get_stats(session, base)]
            await asyncio.sleep(max(0.0, began + window_s + 0.1 - time.perf_counter()))
            after = [await call(session, "GET", f"{base}/llm/v1/x") for _ in range(3)]
            return fault, during, other, after, [*stats, await get_stats(session, base)]

    with running_mock_api({"upstreams": ZERO_LATENCY}) as base:
        fault, during, other, after, (in_window, later) = asyncio.run(scenario(base))
    assert fault.json() == {
        "status": "fault",
        "upstream": "llm",
        "extra_latency_ms": 50.0,
        "error_rate": 0.0,  # the defaults, as understood
        "duration_s": 1.0,
    }
    assert [a.status for a in during + other + after] == [200] * 9
    assert {a.headers["X-Mock-Latency-Ms"] for a in during} == {"50.000"}
    assert all(a.latency_ms >= 49.0 for a in during)  # 1 ms: uvloop's timer granularity
    # other upstreams are untouched, and the window ends on time
    assert {a.headers["X-Mock-Latency-Ms"] for a in other + after} == {"0.000"}
    assert in_window["upstreams"]["llm"]["fault_active"] == 1 and in_window["upstreams"]["crm"]["fault_active"] == 0
    llm = later["upstreams"]["llm"]
    assert (llm["fault_active"], llm["fault_delayed"], llm["fault_errors"]) == (0, 3, 0)
    assert (llm["requests"], llm["ok"], llm["errors"]) == (6, 6, 0)
    assert later["upstreams"]["crm"]["fault_delayed"] == 0


def test_fault_errors_follow_the_error_rate_are_counted_and_cleared_by_reset() -> None:
    requests = 200

    async def scenario(base: str) -> tuple[list[Answer], dict[str, Any], list[int], dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            await post_fault(session, base, upstream="crm", error_rate=0.5, duration_s=60)
            faulted = [await call(session, "GET", f"{base}/crm/c/1") for _ in range(requests)]
            stats = await get_stats(session, base)
            reset = await call(session, "POST", f"{base}/admin/reset")
            assert reset.status == 200
            after_reset = [(await call(session, "GET", f"{base}/crm/c/1")).status for _ in range(20)]
            return faulted, stats, after_reset, await get_stats(session, base)

    config = {"seed": 4, "upstreams": ZERO_LATENCY}
    with running_mock_api(config) as first, running_mock_api(config) as second:
        faulted, stats, after_reset, reset_stats = asyncio.run(scenario(first))
        again, _, _, _ = asyncio.run(scenario(second))
    statuses = [a.status for a in faulted]
    assert set(statuses) == {200, 503}
    injected = statuses.count(503)
    assert 0.3 * requests <= injected <= 0.7 * requests
    assert statuses == [a.status for a in again]  # the fault's draws are seeded too
    assert all(a.json() == {"error": "injected fault 503 from crm"} for a in faulted if a.status == 503)
    crm = stats["upstreams"]["crm"]
    assert (crm["fault_errors"], crm["errors"], crm["ok"], crm["requests"]) == (
        injected,
        injected,
        requests - injected,
        requests,
    )
    assert crm["fault_delayed"] == 0 and crm["fault_active"] == 1
    # request i still took crm's own draw i: an injected 503 does not shift the others
    assert [a.json()["sequence"] for a in faulted if a.status == 200] == [i for i, s in enumerate(statuses) if s == 200]
    assert after_reset == [200] * 20
    assert reset_stats["upstreams"]["crm"]["fault_active"] == 0
    assert reset_stats["upstreams"]["crm"]["fault_errors"] == 0 and reset_stats["upstreams"]["crm"]["ok"] == 20


def test_a_latency_window_leaves_the_upstreams_own_sequence_unchanged() -> None:
    upstreams = {**ZERO_LATENCY, "crm": {"latency_median_ms": 2, "latency_p99_ms": 8, "error_rate": 0.3}}
    extra_ms, window_s = 20.0, 0.5

    async def run(base: str, *, with_fault: bool) -> tuple[list[Answer], dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            began = time.perf_counter()
            if with_fault:
                await post_fault(session, base, upstream="crm", extra_latency_ms=extra_ms, duration_s=window_s)
            answers = [await call(session, "GET", f"{base}/crm/c/1") for _ in range(10)]
            await asyncio.sleep(max(0.0, began + window_s + 0.1 - time.perf_counter()))
            answers += [await call(session, "GET", f"{base}/crm/c/1") for _ in range(10)]
            return answers, await get_stats(session, base)

    config = {"seed": 5, "upstreams": upstreams}
    with running_mock_api(config) as plain_base, running_mock_api(config) as fault_base:
        plain, _ = asyncio.run(run(plain_base, with_fault=False))
        faulted, stats = asyncio.run(run(fault_base, with_fault=True))
    # the same statuses and bodies (sequence numbers, simulated errors) request by request
    assert [(a.status, a.body) for a in faulted] == [(a.status, a.body) for a in plain]
    assert 0 < sum(a.status != 200 for a in plain) < 20  # the sequence has errors to keep in place
    # and the same drawn latencies, plus the extra while the window lasted (a prefix of the requests)
    added_ms = [
        float(f.headers["X-Mock-Latency-Ms"]) - float(p.headers["X-Mock-Latency-Ms"])
        for f, p in zip(faulted, plain, strict=True)
    ]
    delayed = [abs(added - extra_ms) < 0.002 for added in added_ms]
    assert all(delayed[:1]) and not any(delayed[10:]), added_ms
    assert delayed == sorted(delayed, reverse=True), added_ms
    assert all(is_delayed or abs(added) < 0.002 for is_delayed, added in zip(delayed, added_ms, strict=True))
    crm = stats["upstreams"]["crm"]
    assert crm["fault_delayed"] == sum(delayed) and crm["fault_errors"] == 0


def test_a_new_fault_replaces_the_window_in_force() -> None:
    async def scenario(base: str) -> tuple[list[int], list[int], dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            await post_fault(session, base, upstream="listings", error_rate=1.0, duration_s=60)
            broken = [(await call(session, "GET", f"{base}/listings/s")).status for _ in range(5)]
            await post_fault(session, base, upstream="listings", extra_latency_ms=5, duration_s=60)
            slow = [await call(session, "GET", f"{base}/listings/s") for _ in range(5)]
            return (
                broken,
                [a.status for a in slow if a.headers["X-Mock-Latency-Ms"] == "5.000"],
                await get_stats(session, base),
            )

    with running_mock_api({"upstreams": ZERO_LATENCY}) as base:
        broken, slow, stats = asyncio.run(scenario(base))
    assert broken == [503] * 5 and slow == [200] * 5
    listings = stats["upstreams"]["listings"]
    assert (listings["fault_errors"], listings["fault_delayed"], listings["fault_active"]) == (5, 5, 1)


def test_bad_fault_requests_get_a_json_400_and_change_nothing() -> None:
    bad_faults: list[tuple[dict[str, Any], int, str]] = [
        ({}, 400, "a fault needs a JSON object body with keys upstream, extra_latency_ms"),
        ({"json": {"duration_s": 1}}, 400, "upstream: required"),
        ({"json": {"upstream": "llm"}}, 400, "duration_s: required"),
        (
            {"json": {"upstream": "payments", "duration_s": 1}},
            400,
            "upstream: expected one of: crm, llm, listings, got 'payments'",
        ),
        ({"json": {"upstream": ["llm"], "duration_s": 1}}, 400, "upstream: expected one of: crm, llm, listings"),
        ({"json": {"upstream": "llm", "duration_s": 0}}, 400, "duration_s: expected a number in (0, 600], got 0"),
        ({"json": {"upstream": "llm", "duration_s": 601}}, 400, "duration_s: expected a number in (0, 600]"),
        (
            {"json": {"upstream": "llm", "duration_s": 1, "error_rate": 1.5}},
            400,
            "error_rate: expected a number in [0, 1]",
        ),
        ({"json": {"upstream": "llm", "duration_s": 1, "error_rate": "0.5"}}, 400, "error_rate: expected a number"),
        ({"json": {"upstream": "llm", "duration_s": 1, "extra_latency_ms": -1}}, 400, "extra_latency_ms: expected a"),
        ({"json": {"upstream": "llm", "duration_s": 1, "extra_latency_ms": True}}, 400, "extra_latency_ms: expected"),
        ({"json": {"upstream": "llm", "duration_s": 1, "latency_ms": 5}}, 400, "latency_ms: unknown key"),
        ({"json": [1]}, 400, "must be a JSON object"),
        ({"data": b"{}", "headers": {"Content-Type": "text/plain"}}, 415, "Content-Type must be application/json"),
    ]

    async def scenario(base: str) -> tuple[list[Answer], Answer, list[Answer], dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            answers = [await call(session, "POST", f"{base}/admin/fault", **kwargs) for kwargs, _, _ in bad_faults]
            wrong_method = await call(session, "GET", f"{base}/admin/fault")
            served = [await call(session, "GET", f"{base}/{name}/x") for name in ("crm", "llm", "listings")]
            return answers, wrong_method, served, await get_stats(session, base)

    with running_mock_api({"upstreams": ZERO_LATENCY}) as base:
        answers, wrong_method, served, stats = asyncio.run(scenario(base))
    for (kwargs, status, message), answer in zip(bad_faults, answers, strict=True):
        assert answer.status == status, (kwargs, answer.body)
        assert answer.headers["Content-Type"] == "application/json"
        error = answer.json()
        assert set(error) == {"error"} and message in error["error"], (kwargs, error)
    assert wrong_method.status == 405 and wrong_method.headers["Allow"] == "POST"
    assert [a.status for a in served] == [200] * 3
    assert {a.headers["X-Mock-Latency-Ms"] for a in served} == {"0.000"}
    assert stats["rejected"]["400"] == 13 and stats["rejected"]["415"] == 1
    assert all(upstream["fault_active"] == 0 for upstream in stats["upstreams"].values())


# ---------------------------------------------------------------------------------------------
# configuration


def test_defaults_and_derived_p99() -> None:
    config = parse_config({})
    assert config.seed == 42 and dict(config.upstreams) == dict(DEFAULT_UPSTREAMS)
    crm = parse_config({"upstreams": {"crm": {"latency_median_ms": 80, "rate_limit_rps": None}}}).upstreams["crm"]
    # only the median given: p99 keeps the default tail ratio (40 -> 200)
    assert (crm.latency_median_ms, crm.latency_p99_ms, crm.rate_limit_rps) == (80, 400, None)
    # only the p99 given: the default median stays, unless it is above the p99
    assert parse_config({"upstreams": {"crm": {"latency_p99_ms": 500}}}).upstreams["crm"].latency_median_ms == 40
    assert parse_config({"upstreams": {"llm": {"latency_p99_ms": 120}}}).upstreams["llm"].latency_median_ms == 25
    # median 0: no delay, also when the p99 (say, from a base an overlay zeroed) is set
    zero = parse_config({"upstreams": {"llm": {"latency_median_ms": 0, "latency_p99_ms": 300}}}).upstreams["llm"]
    assert (zero.latency_median_ms, zero.latency_p99_ms) == (0, 300)


@pytest.mark.parametrize(
    ("raw", "expected_start"),
    [
        ([], "(root): expected an object, got an array"),
        ({"sed": 1}, "sed: unknown key"),
        ({"seed": -1}, "seed: expected an integer in [0, "),
        ({"seed": True}, "seed: expected an integer"),
        ({"upstreams": []}, "upstreams: expected an object"),
        ({"upstreams": {"payments": {}}}, "upstreams.payments: unknown key (expected one of: crm, llm, listings)"),
        ({"upstreams": {"crm": {"latency_ms": 5}}}, "upstreams.crm.latency_ms: unknown key"),
        ({"upstreams": {"crm": {"latency_median_ms": "80"}}}, "upstreams.crm.latency_median_ms: expected a number"),
        ({"upstreams": {"crm": {"latency_median_ms": -1}}}, "upstreams.crm.latency_median_ms: expected a number"),
        (
            {"upstreams": {"crm": {"latency_median_ms": 100, "latency_p99_ms": 50}}},
            "upstreams.crm.latency_p99_ms: expected a number >= latency_median_ms (100), got 50",
        ),
        ({"upstreams": {"crm": {"error_rate": 1.5}}}, "upstreams.crm.error_rate: expected a number in [0, 1], got 1.5"),
        ({"upstreams": {"crm": {"error_rate": -0.1}}}, "upstreams.crm.error_rate: expected a number in [0, 1]"),
        ({"upstreams": {"crm": {"error_rate": math.nan}}}, "upstreams.crm.error_rate: expected a number"),
        ({"upstreams": {"crm": {"rate_limit_rps": 0}}}, "upstreams.crm.rate_limit_rps: expected a number in (0,"),
        ({"upstreams": {"crm": {"concurrency": 0}}}, "upstreams.crm.concurrency: expected an integer in [1,"),
        ({"upstreams": {"crm": {"concurrency": 2.5}}}, "upstreams.crm.concurrency: expected an integer"),
        ({"upstreams": {"crm": {"response_bytes": -1}}}, "upstreams.crm.response_bytes: expected an integer in [0,"),
    ],
)
def test_each_config_mistake_names_the_key_and_what_was_expected(raw: Any, expected_start: str) -> None:
    with pytest.raises(MockApiConfigError) as caught:
        parse_config(raw)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(expected_start), str(caught.value)
    assert "\n" not in str(caught.value)


def run_mock_api(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if key != "MOCK_API_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "lab.services.mock_api", "--host", "127.0.0.1", "--port", "0", *args],
        cwd=REPO,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_main_exits_2_with_one_line_for_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"upstreams": {"crm": {"error_rate": 2}}}))
    broken = tmp_path / "broken.json"
    broken.write_text('{"seed": ')
    cases = [
        (("--config", str(bad)), None, "upstreams.crm.error_rate: expected a number in [0, 1], got 2"),
        (("--config", str(broken)), None, f"{broken}: expected a JSON object, got invalid JSON"),
        (("--config", str(tmp_path / "missing.json")), None, "cannot read the config file (No such file"),
        ((), {"MOCK_API_CONFIG": '{"seed": "x"}'}, "seed: expected an integer"),
        # the file wins over the environment: a good environment does not hide a bad file
        (("--config", str(bad)), {"MOCK_API_CONFIG": "{}"}, "upstreams.crm.error_rate"),
    ]
    for args, env, expected in cases:
        result = run_mock_api(*args, env=env)
        assert result.returncode == 2, result
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("mock-api: config error: "), result.stderr
        assert expected in lines[0]


def test_main_announces_the_real_port_and_the_file_wins_over_the_environment(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"seed": 5}))
    environ = {key: value for key, value in os.environ.items() if key != "MOCK_API_CONFIG"}
    server = subprocess.Popen(
        [sys.executable, "-m", "lab.services.mock_api", "--host", "127.0.0.1", "--port", "0", "--config", str(good)],
        cwd=REPO,
        env={**environ, "MOCK_API_CONFIG": '{"seed": "not even valid"}'},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("mock-api listening on 127.0.0.1:") and line.endswith(" seed=5\n"), line
        port = int(line.split(":")[1].split()[0])
        assert port > 0

        async def health() -> Answer:
            async with aiohttp.ClientSession() as session:
                return await call(session, "GET", f"http://127.0.0.1:{port}/health")

        assert asyncio.run(health()).json() == {"status": "ok"}
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


# ---------------------------------------------------------------------------------------------
# layout


def test_the_service_imports_only_what_its_image_has() -> None:
    """It runs in its own image: the standard library, the web stack, and lab.services only."""
    allowed = set(sys.stdlib_module_names) | {"starlette", "uvicorn", "uvloop", "httptools", "orjson"}
    tree = ast.parse((REPO / "lab" / "services" / "mock_api.py").read_text())
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative imports could reach outside lab.services"
            imported.append(node.module or "")
    for module in imported:
        top = module.split(".")[0]
        if top == "lab":
            assert module == "lab.services" or module.startswith("lab.services."), module
        else:
            assert top in allowed, module
