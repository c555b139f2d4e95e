"""Requests/s the mock API sustains on one core at zero configured latency, with p50 and p99.

    .venv/bin/python benchmarks/mock_api.py [--duration-s 10] [--repeat 3] [--client auto|wrk|aiohttp]

The server (`python -m lab.services.mock_api`, all upstreams at latency 0, no rate limit, no
cap) runs pinned to core 0 with `taskset -c 0`; the client runs on core 1, so the figure is
the server's own ceiling, not a share of the machine. The client is `wrk -t1 -c64` when wrk is
on PATH (a C client costs the measurement least), else an aiohttp + uvloop closed loop with
the same 64 connections. Both are bounded by --duration-s and the aiohttp one also by a
request count. A 1 s warm-up run precedes --repeat measured runs against the same server;
each run is printed and the median run is the headline (a shared VM drifts by +-20 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import uvloop

REPO = Path(__file__).resolve().parents[1]
SERVER_CPU = 0
CLIENT_CPU = 1
ZERO_LATENCY = {"upstreams": {name: {"latency_median_ms": 0} for name in ("crm", "llm", "listings")}}
MAX_AIOHTTP_REQUESTS = 2_000_000  # far above what one core serves in 10 s: the time bound decides
WARM_UP_S = 1.0


@dataclass(frozen=True)
class LoadResult:
    client: str
    requests: int
    duration_s: float
    non_200: int
    p50_ms: float
    p99_ms: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s


def start_server() -> tuple[subprocess.Popen[str], int]:
    """The mock API pinned to core 0 on a free port; returns the process and its port."""
    command = [sys.executable, "-m", "lab.services.mock_api", "--host", "127.0.0.1", "--port", "0"]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(SERVER_CPU), *command]
    server = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "MOCK_API_CONFIG": json.dumps(ZERO_LATENCY)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()  # the server binds before it prints this line
    match = re.search(r"listening on [^ ]+:(\d+) ", line)
    if not match:
        server.kill()
        raise SystemExit(f"mock API did not start: {line!r}")
    port = int(match.group(1))
    for _ in range(50):  # bounded: 5 s
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return server, port
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("mock API did not answer /health within 5 s")


def _wrk_duration_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, duration_s: float, connections: int) -> LoadResult:
    """wrk pinned to core 1; parses its request count, duration and latency distribution."""
    command = ["taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=duration_s + 30).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", output)
    assert done, output
    duration = float(done.group(2)) / (1000.0 if done.group(3) == "ms" else 1.0)
    non_200 = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.MULTILINE))
    version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split()
    return LoadResult(
        client=f"wrk {version[1] if len(version) > 1 else ''} -t1 -c{connections} (core {CLIENT_CPU})",
        requests=int(done.group(1)),
        duration_s=duration,
        non_200=int(non_200.group(1)) if non_200 else 0,
        p50_ms=_wrk_duration_ms(percentiles["50"]),
        p99_ms=_wrk_duration_ms(percentiles["99"]),
    )


async def _aiohttp_load(url: str, duration_s: float, connections: int) -> LoadResult:
    latencies_ms: list[float] = []
    non_200 = 0
    deadline = time.perf_counter() + duration_s

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal non_200
        while time.perf_counter() < deadline and len(latencies_ms) < MAX_AIOHTTP_REQUESTS:
            began = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
                non_200 += response.status != 200
            latencies_ms.append((time.perf_counter() - began) * 1000.0)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed_s = time.perf_counter() - began
    latencies_ms.sort()
    return LoadResult(
        client=f"aiohttp {aiohttp.__version__} + uvloop, {connections} connections (core {CLIENT_CPU})",
        requests=len(latencies_ms),
        duration_s=elapsed_s,
        non_200=non_200,
        p50_ms=latencies_ms[len(latencies_ms) // 2],
        p99_ms=latencies_ms[min(len(latencies_ms) - 1, int(len(latencies_ms) * 0.99))],
    )


def run_aiohttp(url: str, duration_s: float, connections: int) -> LoadResult:
    """A closed loop of `connections` workers in this process, pinned to core 1."""
    os.sched_setaffinity(0, {CLIENT_CPU})
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_aiohttp_load(url, duration_s, connections))


def server_counts(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
        counts: dict[str, int] = json.load(response)["upstreams"]["crm"]
        return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--client", choices=("auto", "wrk", "aiohttp"), default="auto")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs 2 cores: the server gets core 0, the client core 1")
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    load = run_wrk if use_wrk else run_aiohttp
    server, port = start_server()
    try:
        url = f"http://127.0.0.1:{port}/crm/contacts/1"
        load(url, WARM_UP_S, args.connections)
        results = []
        for run in range(1, args.repeat + 1):
            results.append(load(url, args.duration_s, args.connections))
            print(
                f"run {run}: {results[-1].requests_per_s:,.0f} requests/s, "
                f"p50 {results[-1].p50_ms:.2f} ms, p99 {results[-1].p99_ms:.2f} ms",
                flush=True,
            )
        counts = server_counts(port)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    result = sorted(results, key=lambda r: r.requests_per_s)[len(results) // 2]
    rates = [r.requests_per_s for r in results]
    print(f"client: {result.client}")
    if not use_wrk:
        print("note: the Python client saturates its core first: the figure is a lower bound of the server's")
    print(f"server: python -m lab.services.mock_api on core {SERVER_CPU}, GET /crm/contacts/1, latency 0")
    print(f"median of {len(results)} runs: {result.requests} requests in {result.duration_s:.2f} s")
    print(f"requests/s: {result.requests_per_s:,.0f} (runs: min {min(rates):,.0f}, max {max(rates):,.0f})")
    print(f"latency: p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms")
    print(f"non-200 answers in all runs: {sum(r.non_200 for r in results)}")
    print(
        f"server counted (warm-up included): {counts['ok']} ok, {counts['errors']} errors, max in flight "
        f"{counts['max_in_flight']}"
    )


if __name__ == "__main__":
    main()
