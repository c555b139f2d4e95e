"""aiohttp's client vs the lab's lean HTTP/1.1 client, as the load generator's hot path.

    .venv/bin/python benchmarks/http_clients.py URL [--seconds 5] [--concurrency 64]

Each client runs closed loop with `--concurrency` requests in flight, on one core (this
process pins itself to core 1; run the server on core 0, e.g. `taskset -c 0 nginx ...`), for
`--seconds`. Prints requests/s and CPU-µs per request of this process for each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from urllib.parse import urlsplit

import aiohttp
import uvloop

from lab.loadgen.http import HttpClient


async def drive(send: object, seconds: float, concurrency: int) -> int:
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await send()  # type: ignore[operator]
            done += 1

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return done


async def with_aiohttp(url: str, seconds: float, concurrency: int) -> int:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send() -> None:
            async with session.get(url) as response:
                await response.read()

        return await drive(send, seconds, concurrency)


async def with_lab_client(url: str, seconds: float, concurrency: int) -> int:
    client = HttpClient(url, connections=concurrency)
    request = client.build_request("GET", urlsplit(url).path or "/")

    async def send() -> None:
        await client.send(request)

    try:
        return await drive(send, seconds, concurrency)
    finally:
        await client.close()


def measure(name: str, run: object, url: str, seconds: float, concurrency: int) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    count = uvloop.run(run(url, seconds, concurrency))  # type: ignore[operator]
    elapsed = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"| {name} | {count / elapsed:,.0f} | {cpu_s / count * 1e6:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    if not args.url.startswith(("http://127.", "http://localhost")):
        raise SystemExit("load goes only to the loopback")
    os.sched_setaffinity(0, {1})
    print("| client (uvloop, one core) | requests/s | CPU µs/request |")
    print("|---|---|---|")
    measure("aiohttp 3 ClientSession", with_aiohttp, args.url, args.seconds, args.concurrency)
    measure("lab.loadgen.http.HttpClient", with_lab_client, args.url, args.seconds, args.concurrency)


if __name__ == "__main__":
    main()
