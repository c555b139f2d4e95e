"""The inference server in its container serves the built FP32 and INT8 models exactly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import docker
import numpy as np
import onnxruntime as ort
import orjson
import pytest

from lab.config.experiment import parse_experiment
from lab.stack.services.inference import MODELS_DIR
from lab.stack.stack import running_stack


def start(model: str, **settings: Any) -> Any:
    experiment = parse_experiment(
        {"experiment": {"name": "inference-test"}, "services": {"inference": {"model": model, **settings}}},
        Path("tests/integration/test_inference_integration.py"),
    )
    name, config = experiment.variant(None)
    return running_stack(config, name)


def in_process(precision: str, rows: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(MODELS_DIR / f"model-{precision}.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return np.asarray(session.run(None, {"features": rows})[0])[:, 0]


async def predict(url: str, rows: np.ndarray) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/predict", data=orjson.dumps({"rows": rows.tolist()}), headers={"Content-Type": "application/json"}
        ) as response,
    ):
        return response.status, orjson.loads(await response.read())


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_server_scores_equal_in_process_onnxruntime(docker_client: docker.DockerClient, precision: str) -> None:
    rows = np.random.default_rng(3).standard_normal((40, 64)).astype(np.float32)
    with start(precision) as stack:
        url = stack.endpoints["inference"].url
        status, answer = asyncio.run(predict(url, rows))
    assert status == 200 and answer["precision"] == precision
    served = np.array(answer["scores"], dtype=np.float64).astype(np.float32)
    assert np.array_equal(served, in_process(precision, rows))


def test_dynamic_batching_in_the_container(docker_client: docker.DockerClient) -> None:
    requests = [np.random.default_rng(n).standard_normal((n, 64)).astype(np.float32) for n in (1, 2, 3, 4, 5, 6)]
    with start("fp32", batching=True, max_batch=32, max_delay_ms=20) as stack:
        url = stack.endpoints["inference"].url

        async def all_at_once() -> list[tuple[int, Any]]:
            return await asyncio.gather(*(predict(url, rows) for rows in requests))

        answers = asyncio.run(all_at_once())

        async def stats() -> Any:
            async with aiohttp.ClientSession() as session, session.get(f"{url}/stats") as response:
                return await response.json()

        counters = asyncio.run(stats())
    for rows, (status, answer) in zip(requests, answers, strict=True):
        assert status == 200 and answer["rows"] == rows.shape[0]
        served = np.array(answer["scores"], dtype=np.float64).astype(np.float32)
        np.testing.assert_allclose(served, in_process("fp32", rows), rtol=1e-5, atol=1e-6)
    assert counters["onnxruntime_calls"] < len(requests)


def test_bad_requests_then_a_good_one(docker_client: docker.DockerClient) -> None:
    with start("int8", max_rows=16) as stack:
        url = stack.endpoints["inference"].url

        async def send(body: bytes) -> int:
            async with (
                aiohttp.ClientSession() as session,
                session.post(f"{url}/predict", data=body, headers={"Content-Type": "application/json"}) as response,
            ):
                await response.read()
                return response.status

        for body in (b"{", b'{"rows": [[1, 2]]}', b'{"rows": [[NaN]]}', orjson.dumps({"rows": [[0.0] * 64] * 17})):
            assert 400 <= asyncio.run(send(body)) < 500
        status, answer = asyncio.run(predict(url, np.zeros((1, 64), dtype=np.float32)))
        assert status == 200 and len(answer["scores"]) == 1
