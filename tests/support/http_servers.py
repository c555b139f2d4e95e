"""Local HTTP test servers with known behaviour, run as subprocesses by the load tests.

    python -m tests.support.http_servers fixed --delay-ms 20
    python -m tests.support.http_servers stall --stall-ms 500 --period-ms 1000

Prints the port it listens on (127.0.0.1), then serves until killed. `fixed` answers every
request after the delay; `stall` answers at once except during the first `stall_ms` of every
period, when answers wait for the stall to end (a server that freezes once per second).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


def delay_for(mode: str, args: argparse.Namespace) -> float:
    if mode == "fixed":
        return float(args.delay_ms) / 1000
    period = args.period_ms / 1000
    phase = time.monotonic() % period
    stall = args.stall_ms / 1000
    return stall - phase if phase < stall else 0.0


async def serve(args: argparse.Namespace) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                delay = delay_for(args.mode, args)
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(RESPONSE)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["fixed", "stall"])
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--stall-ms", type=float, default=500.0)
    parser.add_argument("--period-ms", type=float, default=1000.0)
    asyncio.run(serve(parser.parse_args()))


@contextmanager
def local_server(*args: str) -> Iterator[str]:
    """Start a test server subprocess; yield its base URL; stop it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.http_servers", *args],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":
    main()
