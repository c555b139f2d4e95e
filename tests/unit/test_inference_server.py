"""The inference server in-process: same scores as onnxruntime, batching, bad input refused."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import onnxruntime as ort
import orjson
import pytest

from lab.services.inference_server import ServerConfig, create_app, parse_args
from tests.support.asgi_server import serving
from tests.support.tiny_model import write_tiny_model

FEATURES = 16


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny-fp32.onnx", features=FEATURES)


def in_process_scores(model_path: Path, rows: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["score"], {"features": rows})[0])[:, 0]


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[str]:
    with serving(create_app(ServerConfig(model_path=model_path, precision="fp32", max_rows=64))) as url:
        yield url


@pytest.fixture(scope="module")
def batching_server(model_path: Path) -> Iterator[str]:
    config = ServerConfig(model_path=model_path, precision="fp32", batching=True, max_batch=32, max_delay_ms=20)
    with serving(create_app(config)) as url:
        yield url


async def post(url: str, body: bytes, content_type: str = "application/json", accept: str = "") -> tuple[int, Any]:
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    data: bytes | io.BytesIO = io.BytesIO(body) if len(body) > 1_000_000 else body  # aiohttp warns on big bytes
    async with aiohttp.ClientSession() as session, session.post(url, data=data, headers=headers) as response:
        raw = await response.read()
        if response.content_type == "application/octet-stream":
            return response.status, np.frombuffer(raw, dtype="<f4")
        return response.status, orjson.loads(raw)


def rows_of(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, FEATURES)).astype(np.float32)


def test_json_scores_equal_in_process_onnxruntime_exactly(server: str, model_path: Path) -> None:
    rows = rows_of(50)
    status, answer = asyncio.run(post(f"{server}/predict", orjson.dumps({"rows": rows.tolist()})))
    assert status == 200
    assert answer["rows"] == 50 and answer["precision"] == "fp32"
    served = np.array(answer["scores"], dtype=np.float64).astype(np.float32)
    assert np.array_equal(served, in_process_scores(model_path, rows))


def test_binary_rows_in_and_out(server: str, model_path: Path) -> None:
    rows = rows_of(8, seed=2)
    status, scores = asyncio.run(
        post(f"{server}/predict", rows.tobytes(), "application/octet-stream", accept="application/octet-stream")
    )
    assert status == 200
    assert np.array_equal(scores, in_process_scores(model_path, rows))


def test_dynamic_batching_returns_each_caller_its_own_rows(batching_server: str, model_path: Path) -> None:
    requests = [rows_of(count, seed=10 + count) for count in (1, 3, 5, 2, 7, 1, 4, 6)]

    async def all_at_once() -> list[tuple[int, Any]]:
        bodies = [orjson.dumps({"rows": rows.tolist()}) for rows in requests]
        return await asyncio.gather(*(post(f"{batching_server}/predict", body) for body in bodies))

    answers = asyncio.run(all_at_once())
    for rows, (status, answer) in zip(requests, answers, strict=True):
        assert status == 200
        assert answer["rows"] == rows.shape[0]
        served = np.array(answer["scores"], dtype=np.float64).astype(np.float32)
        # Batched through one call, each row's score is the one computed alone (to float32 rounding).
        np.testing.assert_allclose(served, in_process_scores(model_path, rows), rtol=1e-5, atol=1e-6)

    async def stats() -> Any:
        async with aiohttp.ClientSession() as session, session.get(f"{batching_server}/stats") as response:
            return await response.json()

    counters = asyncio.run(stats())
    assert counters["requests"] == 8 and counters["rows"] == 29
    assert counters["onnxruntime_calls"] < 8  # gathered into fewer calls
    assert counters["rows_per_call"] > 1


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b'{"rows": [[1, 2', "application/json", 400, "malformed JSON"),
        (b'{"rows": [[NaN' + b", 0" * 15 + b"]]}", "application/json", 400, "malformed JSON"),
        (b"[[1, 2]]", "application/json", 400, "expected a JSON object"),
        (b'{"rows": []}', "application/json", 400, "non-empty list"),
        (orjson.dumps({"rows": [[1.0] * (FEATURES - 1)]}), "application/json", 400, "row 0 must be a list of 16"),
        (orjson.dumps({"rows": [["a"] * FEATURES]}), "application/json", 400, "numbers only"),
        (orjson.dumps({"rows": [[1e39] * FEATURES]}), "application/json", 400, "NaN or infinite"),
        (orjson.dumps({"rows": [[0.0] * FEATURES] * 65}), "application/json", 413, "65 rows exceed the limit of 64"),
        (np.full((1, FEATURES), np.nan, dtype=np.float32).tobytes(), "application/octet-stream", 400, "NaN"),
        (b"\0" * 10, "application/octet-stream", 400, "whole rows"),
        (b"rows=1", "text/plain", 415, "Content-Type must be"),
        (b"x" * (5 * 1024 * 1024), "application/json", 413, "body larger than"),
    ],
)
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(
    server: str, body: bytes, content_type: str, status: int, message: str
) -> None:
    got_status, answer = asyncio.run(post(f"{server}/predict", body, content_type))
    assert got_status == status
    assert message in answer["error"]
    ok_status, ok = asyncio.run(post(f"{server}/predict", orjson.dumps({"rows": rows_of(1).tolist()})))
    assert ok_status == 200 and len(ok["scores"]) == 1


def test_health_describes_the_model(server: str) -> None:
    async def health() -> Any:
        async with aiohttp.ClientSession() as session, session.get(f"{server}/health") as response:
            return response.status, await response.json()

    status, document = asyncio.run(health())
    assert status == 200
    assert document["features"] == FEATURES and document["input"]["name"] == "features"
    assert document["batching"]["enabled"] is False


def test_arguments_are_checked(model_path: Path) -> None:
    config, host, port = parse_args(["--model", str(model_path), "--batching", "--max-batch", "8", "--port", "9"])
    assert (config.batching, config.max_batch, config.precision, host, port) == (True, 8, "fp32", "127.0.0.1", 9)
    with pytest.raises(SystemExit):
        parse_args(["--model", str(model_path), "--threads", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--model", "/nonexistent.onnx"])
