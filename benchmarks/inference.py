"""Predictions/s and latency of the lead-scoring model: FP32 vs INT8, in-process vs the server.

    .venv/bin/python benchmarks/inference.py [--seconds 4] [--batches 1,8,16,32,64] [--concurrency 2]

In-process: one onnxruntime session (1 intra-op thread) called back to back on the host.
Server: the inference container (1 intra-op thread, no CPU limit so its event loop can parse
the next request while onnxruntime runs) driven by a closed-loop aiohttp client with
`--concurrency` requests in flight, JSON bodies as a real client would send them (and raw
float32 bodies for comparison). Each cell runs `--seconds` after a short warm-up; latency is
per request (a request carries one batch).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import aiohttp
import numpy as np
import onnxruntime as ort
import orjson

from lab.config.experiment import parse_experiment
from lab.stack.services.inference import MODELS_DIR
from lab.stack.stack import running_stack

FEATURES = 64


def percentile_ms(latencies_s: list[float], q: float) -> float:
    return float(np.percentile(np.array(latencies_s) * 1000, q))


def in_process(model: Path, batch: int, seconds: float) -> tuple[float, float, float]:
    """(predictions/s, p50 ms, p99 ms) calling onnxruntime directly."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    rows = np.random.default_rng(batch).standard_normal((batch, FEATURES)).astype(np.float32)
    for _ in range(20):
        session.run(["score"], {"features": rows})
    latencies: list[float] = []
    began = time.perf_counter()
    while time.perf_counter() - began < seconds and len(latencies) < 1_000_000:
        start = time.perf_counter()
        session.run(["score"], {"features": rows})
        latencies.append(time.perf_counter() - start)
    elapsed = time.perf_counter() - began
    return len(latencies) * batch / elapsed, percentile_ms(latencies, 50), percentile_ms(latencies, 99)


async def through_server(
    url: str, batch: int, seconds: float, concurrency: int, binary: bool
) -> tuple[float, float, float]:
    """(predictions/s, p50 ms, p99 ms) through HTTP with `concurrency` requests in flight."""
    rows = np.random.default_rng(batch).standard_normal((batch, FEATURES)).astype(np.float32)
    if binary:
        body = rows.tobytes()
        headers = {"Content-Type": "application/octet-stream", "Accept": "application/octet-stream"}
    else:
        body = orjson.dumps({"rows": rows.tolist()})
        headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(deadline: float, record: bool) -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                async with session.post(f"{url}/predict", data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"status {response.status}")
                if record:
                    latencies.append(time.perf_counter() - start)

        warm_until = time.perf_counter() + 0.5
        await asyncio.gather(*(worker(warm_until, False) for _ in range(concurrency)))
        began = time.perf_counter()
        await asyncio.gather(*(worker(began + seconds, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return len(latencies) * batch / elapsed, percentile_ms(latencies, 50), percentile_ms(latencies, 99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batches", default="1,8,16,32,64")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    print(
        "| model | batch | in-process pred/s | p50 ms | p99 ms | server JSON pred/s | p50 ms | p99 ms "
        "| server/in-process | server binary pred/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for precision in ("fp32", "int8"):
        model = MODELS_DIR / f"model-{precision}.onnx"
        experiment = parse_experiment(
            {
                "experiment": {"name": "inference-bench"},
                "services": {"inference": {"model": precision, "cpus": 2.0, "threads": 1, "max_rows": 256}},
            },
            Path("benchmarks/inference.py"),
        )
        name, config = experiment.variant(None)
        with running_stack(config, name) as stack:
            url = stack.endpoints["inference"].url
            for batch in batches:
                local = in_process(model, batch, args.seconds)
                served = asyncio.run(through_server(url, batch, args.seconds, args.concurrency, binary=False))
                binary = asyncio.run(through_server(url, batch, args.seconds, args.concurrency, binary=True))
                ratio = served[0] / local[0]
                print(
                    f"| {precision} | {batch} | {local[0]:,.0f} | {local[1]:.2f} | {local[2]:.2f} "
                    f"| {served[0]:,.0f} | {served[1]:.2f} | {served[2]:.2f} | {ratio:.0%} | {binary[0]:,.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
