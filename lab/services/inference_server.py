"""An HTTP inference server on onnxruntime, with optional dynamic batching.

Runs INSIDE the inference image (`python -m lab.services.inference_server --model PATH`);
imports only the standard library, numpy, onnxruntime, orjson, starlette and uvicorn.

    POST /predict   {"rows": [[f1, ..., fN], ...]}          -> {"scores": [...], "rows": n, ...}
                    or raw little-endian float32 rows (Content-Type: application/octet-stream),
                    answered in kind when the client accepts application/octet-stream
    GET  /health    model, precision, input signature, threads, batching settings
    GET  /stats     requests, rows, onnxruntime calls, rows per call, rejections, queue depth

Bad input (malformed JSON, wrong shape, NaN or infinity, too many rows, too big a body) gets a
4xx with a JSON message and the server keeps serving. With dynamic batching, concurrent
requests wait up to `max_delay_ms` to be gathered into one onnxruntime call of at most
`max_batch` rows; each caller gets back exactly its own rows.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

Precision = Literal["fp32", "int8"]
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class ServerConfig:
    """How the server runs one model."""

    model_path: Path
    precision: Precision
    intra_op_threads: int = 1
    max_rows: int = 256
    max_body_bytes: int = 4 * 1024 * 1024
    batching: bool = False
    max_batch: int = 64
    max_delay_ms: float = 2.0


@dataclass
class Counters:
    requests: int = 0
    rows: int = 0
    calls: int = 0
    call_rows: int = 0
    inference_s: float = 0.0
    max_queue_rows: int = 0
    rejected: dict[str, int] = field(default_factory=dict)

    def reject(self, status: int) -> None:
        key = str(status)
        self.rejected[key] = self.rejected.get(key, 0) + 1


class BadRequest(Exception):
    """A request the server refuses with a 4xx status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Model:
    """One onnxruntime session with a float32 [batch, features] input."""

    def __init__(self, config: ServerConfig) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            str(config.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 2:
            raise SystemExit(f"inference: {config.model_path}: expected one float input of shape [batch, features]")
        features = inputs[0].shape[1]
        if not isinstance(features, int):
            raise SystemExit(f"inference: {config.model_path}: the feature dimension must be fixed")
        self.input_name: str = inputs[0].name
        self.input_shape: list[Any] = list(inputs[0].shape)
        self.output_name: str = self.session.get_outputs()[0].name
        self.features: int = features

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Scores for `rows` (float32 [n, features]) as a flat float32 array of n values."""
        (output,) = self.session.run([self.output_name], {self.input_name: rows})
        return np.asarray(output, dtype=np.float32).reshape(rows.shape[0], -1)[:, 0]


class Batcher:
    """Gathers concurrent requests into one onnxruntime call (dynamic batching)."""

    def __init__(self, run: Callable[[np.ndarray], Awaitable[np.ndarray]], config: ServerConfig, counters: Counters):
        self._run = run
        self._max_batch = config.max_batch
        self._max_delay_s = config.max_delay_ms / 1000
        self._counters = counters
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = asyncio.Queue()
        self._queued_rows = 0
        self._task: asyncio.Task[None] | None = None

    async def predict(self, rows: np.ndarray) -> np.ndarray:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queued_rows += rows.shape[0]
        self._counters.max_queue_rows = max(self._counters.max_queue_rows, self._queued_rows)
        await self._queue.put((rows, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            pending = [first]
            total = first[0].shape[0]
            deadline = loop.time() + self._max_delay_s
            while total < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if total + item[0].shape[0] > self._max_batch:
                    # Too big to join this batch: it starts the next one, never splits.
                    await self._run_batch(pending, total)
                    pending, total = [item], item[0].shape[0]
                    deadline = loop.time() + self._max_delay_s
                    continue
                pending.append(item)
                total += item[0].shape[0]
            await self._run_batch(pending, total)

    async def _run_batch(self, pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]], total: int) -> None:
        self._queued_rows -= total
        batch = pending[0][0] if len(pending) == 1 else np.concatenate([rows for rows, _ in pending])
        try:
            scores = await self._run(batch)
        except Exception as exc:  # noqa: BLE001 - every waiter must learn of the failure
            for _, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return
        offset = 0
        for rows, future in pending:
            count = rows.shape[0]
            if not future.done():
                future.set_result(scores[offset : offset + count])
            offset += count


def create_app(config: ServerConfig) -> Starlette:
    """The Starlette app serving `config.model_path`."""
    model = Model(config)
    counters = Counters()
    started = time.monotonic()
    # Without batching, onnxruntime runs on the event loop's thread: handing each call to a
    # worker thread cost 0.4 ms per request here (2 cores), more than a batch-1 inference.
    # With batching, a worker thread runs the batch while the loop gathers the next one.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime") if config.batching else None

    async def run_model(rows: np.ndarray) -> np.ndarray:
        began = time.perf_counter()
        if executor is None:
            scores = model.predict(rows)
        else:
            scores = await asyncio.get_running_loop().run_in_executor(executor, model.predict, rows)
        counters.calls += 1
        counters.call_rows += rows.shape[0]
        counters.inference_s += time.perf_counter() - began
        return scores

    batcher = Batcher(run_model, config, counters) if config.batching else None

    async def predict(scope: Scope, receive: Receive, send: Send) -> None:
        # Raw ASGI: Starlette's Request/Response wrapping costs as much as a small inference.
        headers = dict(scope["headers"])
        try:
            rows = await read_rows(headers, receive, model.features, config)
        except BadRequest as exc:
            counters.reject(exc.status)
            await send_body(send, exc.status, orjson.dumps({"error": str(exc)}), JSON_TYPE)
            return
        scores = await (batcher.predict(rows) if batcher else run_model(rows))
        counters.requests += 1
        counters.rows += rows.shape[0]
        if BINARY_TYPE in headers.get(b"accept", b"").decode("latin-1"):
            await send_body(send, 200, scores.astype("<f4").tobytes(), BINARY_TYPE)
            return
        body = {"scores": scores, "rows": int(rows.shape[0]), "precision": config.precision}
        await send_body(send, 200, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), JSON_TYPE)

    model_sha256 = hashlib.sha256(config.model_path.read_bytes()).hexdigest()

    async def health(_: Request) -> Response:
        return json_response(
            {
                "status": "ok",
                "model": config.model_path.name,
                "sha256": model_sha256,
                "precision": config.precision,
                "input": {"name": model.input_name, "shape": model.input_shape},
                "features": model.features,
                "intra_op_threads": config.intra_op_threads,
                "max_rows": config.max_rows,
                "batching": {
                    "enabled": config.batching,
                    "max_batch": config.max_batch,
                    "max_delay_ms": config.max_delay_ms,
                },
                "onnxruntime": ort.__version__,
            }
        )

    async def stats(_: Request) -> Response:
        return json_response(
            {
                "uptime_s": round(time.monotonic() - started, 3),
                "requests": counters.requests,
                "rows": counters.rows,
                "onnxruntime_calls": counters.calls,
                "rows_per_call": counters.call_rows / counters.calls if counters.calls else 0.0,
                "inference_s": round(counters.inference_s, 6),
                "max_queue_rows": counters.max_queue_rows,
                "rejected": counters.rejected,
            }
        )

    async def not_allowed(request: Request) -> Response:
        counters.reject(405)
        return error(405, f"{request.method} is not allowed here; use POST /predict")

    return Starlette(
        routes=[
            Route("/predict", RawEndpoint(predict), methods=["POST"]),
            Route("/predict", not_allowed, methods=["GET", "PUT", "DELETE", "PATCH"]),
            Route("/health", health, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
        ],
    )


class RawEndpoint:
    """Wraps an ASGI callable so Starlette's router hands it the raw scope (not a Request)."""

    def __init__(self, handler: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


async def send_body(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(headers: dict[bytes, bytes], receive: Receive, limit_bytes: int) -> bytes:
    """The whole request body, refusing (413) to buffer more than `limit_bytes`."""
    declared = headers.get(b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit_bytes):
        raise BadRequest(413, f"body larger than {limit_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest(400, "client disconnected before the body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit_bytes:
            raise BadRequest(413, f"body larger than {limit_bytes} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_rows(headers: dict[bytes, bytes], receive: Receive, features: int, config: ServerConfig) -> np.ndarray:
    """Parse and check a /predict body into float32 [n, features]; raise BadRequest if wrong."""
    body = await read_body(headers, receive, config.max_body_bytes)
    content_type = headers.get(b"content-type", JSON_TYPE.encode()).decode("latin-1").split(";")[0].strip()
    if content_type == BINARY_TYPE:
        if len(body) == 0 or len(body) % (4 * features):
            raise BadRequest(400, f"binary body must hold whole rows of {features} little-endian float32 values")
        rows = np.frombuffer(body, dtype="<f4").reshape(-1, features)
    elif content_type == JSON_TYPE:
        rows = parse_json_rows(body, features)
    else:
        raise BadRequest(415, f"Content-Type must be {JSON_TYPE} or {BINARY_TYPE}")
    if rows.shape[0] > config.max_rows:
        raise BadRequest(413, f"{rows.shape[0]} rows exceed the limit of {config.max_rows} per request")
    if not np.isfinite(rows).all():
        raise BadRequest(400, "rows contain NaN or infinite values")
    return rows


def parse_json_rows(body: bytes, features: int) -> np.ndarray:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(400, f"malformed JSON: {exc}") from None
    if not isinstance(document, dict) or "rows" not in document:
        raise BadRequest(400, 'expected a JSON object {"rows": [[...], ...]}')
    raw_rows = document["rows"]
    if not isinstance(raw_rows, list) or not raw_rows:
        raise BadRequest(400, "rows must be a non-empty list of rows")
    for index, row in enumerate(raw_rows):
        if not isinstance(row, list) or len(row) != features:
            raise BadRequest(400, f"row {index} must be a list of {features} numbers")
    try:
        # JSON true/false become 1.0/0.0, as numpy (and most clients' serializers) treat them.
        # Straight to float32: one rounding from the JSON double, as float64 -> float32 would do.
        with np.errstate(over="ignore"):
            rows = np.array(raw_rows, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise BadRequest(400, f"rows must hold numbers only: {exc}") from None
    # Rows of equal-length lists ({"rows": [[[], [], ...]]}) pass the checks above as a 3-D array,
    # which onnxruntime refused with a 500 (found by tests/unit/test_fuzz_servers.py).
    if rows.ndim != 2:
        raise BadRequest(400, f"rows must hold numbers only, not lists ({rows.ndim}-dimensional rows)")
    return rows


def json_response(document: object, status: int = 200) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type=JSON_TYPE)


def error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def parse_args(argv: list[str] | None = None) -> tuple[ServerConfig, str, int]:
    """The server configuration and the address to listen on, from the command line."""
    parser = argparse.ArgumentParser(prog="inference_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--precision", choices=["fp32", "int8"], default=None, help="default: from the file name")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("INFERENCE_THREADS", "1")))
    parser.add_argument("--max-rows", type=int, default=256)
    parser.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--batching", action="store_true", help="gather concurrent requests into one call")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-delay-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    for name in ("threads", "max_rows", "max_body_bytes", "max_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_delay_ms < 0:
        parser.error("--max-delay-ms must not be negative")
    if not args.model.exists():
        parser.error(f"model file {args.model} does not exist")
    precision: Precision = args.precision or ("int8" if "int8" in args.model.name.lower() else "fp32")
    config = ServerConfig(
        model_path=args.model,
        precision=precision,
        intra_op_threads=args.threads,
        max_rows=args.max_rows,
        max_body_bytes=args.max_body_bytes,
        batching=args.batching,
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
    )
    return config, args.host, args.port


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    config, host, port = parse_args(argv)
    app = create_app(config)
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    print(
        f"inference listening on {host}:{port} model={config.model_path.name} precision={config.precision}", flush=True
    )
    uvicorn.run(app, host=host, port=port, loop=loop, http="httptools", access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
