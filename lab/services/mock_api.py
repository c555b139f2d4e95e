"""The mock third-party API: three slow upstreams (crm, llm, listings) with exact, seeded behaviour.

It is the system under test of the `api` experiment, so everything it does is deterministic
given its configuration: the i-th request an upstream serves gets the i-th draw of that
upstream's own RNG (latency, simulated 5xx, completion size), whatever the other upstreams
see. Throttled (429) and rejected (4xx) requests consume no draw.

Fault windows (`POST /admin/fault`) degrade one upstream for a while without touching that
sequence: a request served during the window still takes its own draw, then one draw of the
upstream's separate fault RNG decides whether it is answered 503 at once (`error_rate`);
otherwise it is served as usual with `extra_latency_ms` added to its latency (held in its
concurrency slot, like a slow upstream, and reported in X-Mock-Latency-Ms). A new fault for
the upstream replaces its window; `/admin/reset` clears them all. `/stats` counts per upstream
`fault_errors` (also in `errors`) and `fault_delayed`; `fault_active` is 1 while one is in force.

    python -m lab.services.mock_api [--host 0.0.0.0] [--port 8080] [--config FILE]   (the defaults)

Configuration is JSON from `--config FILE` or else the `MOCK_API_CONFIG` environment variable:

    {"seed": 42, "upstreams": {"crm": {"latency_median_ms": 80, "latency_p99_ms": 400,
     "error_rate": 0.01, "rate_limit_rps": 200, "concurrency": 64, "response_bytes": 2048}}}

Routes: `GET /health`, `GET /stats`, `POST /admin/reset` (optional body `{"seed": n}`),
`POST /admin/fault` (body `{"upstream": "llm", "extra_latency_ms": 200, "error_rate": 0.5,
"duration_s": 3.0}`: upstream and duration_s required, the others default to 0) and
`GET|POST /{crm,llm,listings}/{path}`. Every error body is `{"error": "..."}`.

Runs inside the mock API image: imports only the standard library and starlette, uvicorn,
uvloop, httptools and orjson (never the host-side `lab` packages).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import math
import os
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal, NamedTuple

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

UpstreamName = Literal["crm", "llm", "listings"]
UPSTREAM_NAMES: tuple[UpstreamName, ...] = ("crm", "llm", "listings")
CONFIG_ENV = "MOCK_API_CONFIG"
Z_99 = 2.3263478740408408  # standard normal quantile of 0.99: p99 = median * exp(sigma * Z_99)
MAX_BODY_BYTES = 64 * 1024
REJECTED_STATUSES = (400, 404, 405, 413, 415)
SIMULATED_ERROR_STATUSES = (500, 502, 503)
JSON_MEDIA_TYPE = "application/json"
CREATED_S = 1_767_225_600  # fixed `created` stamp (2026-01-01): equal seeds give byte-equal bodies


# ---------------------------------------------------------------------------------------------
# configuration


class MockApiConfigError(ValueError):
    """The configuration is invalid; `str(err)` is `<key path>: <what was expected>`, one line."""

    def __init__(self, key_path: str, expected: str) -> None:
        super().__init__(" ".join(f"{key_path}: {expected}".split()))
        self.key_path = key_path


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """How one emulated upstream behaves."""

    latency_median_ms: float
    latency_p99_ms: float
    error_rate: float
    rate_limit_rps: float | None  # None: unlimited
    concurrency: int | None  # None: no server-side cap
    response_bytes: int


@dataclass(frozen=True, slots=True)
class MockApiConfig:
    """The whole server: a seed and all three upstreams (defaults filled in)."""

    seed: int
    upstreams: Mapping[UpstreamName, UpstreamConfig]


DEFAULT_SEED = 42
DEFAULT_UPSTREAMS: Mapping[UpstreamName, UpstreamConfig] = {
    "crm": UpstreamConfig(40.0, 200.0, 0.0, None, None, 2048),
    "llm": UpstreamConfig(250.0, 1200.0, 0.0, None, None, 2048),
    "listings": UpstreamConfig(60.0, 300.0, 0.0, None, None, 4096),
}
UPSTREAM_KEYS = (
    "latency_median_ms",
    "latency_p99_ms",
    "error_rate",
    "rate_limit_rps",
    "concurrency",
    "response_bytes",
)
MAX_SEED = 2**63 - 1
FAULT_KEYS = ("upstream", "extra_latency_ms", "error_rate", "duration_s")
MAX_EXTRA_LATENCY_MS = 60_000.0
MAX_FAULT_DURATION_S = 600.0
FAULT_ERROR_STATUS = 503


def _describe(value: object) -> str:
    """A short, one-line picture of a JSON value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    return {"dict": "an object", "list": "an array"}.get(type(value).__name__, type(value).__name__)


def _number(value: object, key_path: str, low: float, high: float, *, low_open: bool = False) -> float:
    """A finite JSON number within [low, high] (or (low, high] when `low_open`)."""
    bracket = "(" if low_open else "["
    expected = f"expected a number in {bracket}{low:g}, {high:g}]"
    # bool is an int in Python but `true` is not a number in a config file
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MockApiConfigError(key_path, f"{expected}, got {_describe(value)}")
    number = float(value)
    too_low = number <= low if low_open else number < low
    if not math.isfinite(number) or too_low or number > high:
        raise MockApiConfigError(key_path, f"{expected}, got {_describe(value)}")
    return number


def _integer(value: object, key_path: str, low: int, high: int) -> int:
    """A JSON integer within [low, high] (64.0 is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MockApiConfigError(key_path, f"expected an integer in [{low}, {high}], got {_describe(value)}")
    return value


def _object(value: object, key_path: str, allowed: Sequence[str]) -> Mapping[str, object]:
    """A JSON object whose keys are all in `allowed`."""
    if not isinstance(value, dict):
        raise MockApiConfigError(key_path, f"expected an object, got {_describe(value)}")
    for key in value:
        if key not in allowed:
            where = f"{key_path}.{key}" if key_path != "(root)" else str(key)
            raise MockApiConfigError(where, f"unknown key (expected one of: {', '.join(allowed)})")
    return value


def parse_seed(value: object, key_path: str = "seed") -> int:
    """A seed: a non-negative integer."""
    return _integer(value, key_path, 0, MAX_SEED)


@dataclass(frozen=True, slots=True)
class Fault:
    """A degradation of one upstream for `duration_s` (a validated `/admin/fault` body)."""

    upstream: UpstreamName
    extra_latency_ms: float
    error_rate: float
    duration_s: float


def parse_fault(raw: object) -> Fault:
    """Validate a decoded `/admin/fault` body; raises MockApiConfigError naming the key."""
    body = _object(raw, "(root)", FAULT_KEYS)
    for required in ("upstream", "duration_s"):
        if required not in body:
            raise MockApiConfigError(required, f"required (expected keys: {', '.join(FAULT_KEYS)})")
    upstream = body["upstream"]
    if upstream not in UPSTREAM_NAMES:
        raise MockApiConfigError("upstream", f"expected one of: {', '.join(UPSTREAM_NAMES)}, got {_describe(upstream)}")
    return Fault(
        upstream=upstream,
        extra_latency_ms=_number(body.get("extra_latency_ms", 0), "extra_latency_ms", 0, MAX_EXTRA_LATENCY_MS),
        error_rate=_number(body.get("error_rate", 0), "error_rate", 0, 1),
        duration_s=_number(body["duration_s"], "duration_s", 0, MAX_FAULT_DURATION_S, low_open=True),
    )


def _parse_upstream(name: UpstreamName, raw: object) -> UpstreamConfig:
    """One upstream's section over its defaults.

    A latency given alone never contradicts the default of the other: with only the median,
    the p99 keeps the default's tail ratio (crm 40/200: median 80 gives p99 400); with only
    the p99, the median keeps its default unless that is above the p99, then it takes the
    same ratio. Median 0 means no delay, whatever the p99 (an overlay may zero the median of
    a base that set both).
    """
    where = f"upstreams.{name}"
    section = _object(raw, where, UPSTREAM_KEYS)
    default = DEFAULT_UPSTREAMS[name]
    default_ratio = default.latency_p99_ms / default.latency_median_ms
    given_median = "latency_median_ms" in section
    given_p99 = "latency_p99_ms" in section
    median_ms = default.latency_median_ms
    if given_median:
        median_ms = _number(section["latency_median_ms"], f"{where}.latency_median_ms", 0, 60_000)
    p99_ms = median_ms * default_ratio
    if given_p99:
        p99_ms = _number(section["latency_p99_ms"], f"{where}.latency_p99_ms", 0, 600_000)
        if not given_median and median_ms > p99_ms:
            median_ms = p99_ms / default_ratio
        if p99_ms < median_ms:
            expected = f"expected a number >= latency_median_ms ({median_ms:g}), got {p99_ms:g}"
            raise MockApiConfigError(f"{where}.latency_p99_ms", expected)
    error_rate = default.error_rate
    if "error_rate" in section:
        error_rate = _number(section["error_rate"], f"{where}.error_rate", 0, 1)
    rate_limit_rps = default.rate_limit_rps
    if section.get("rate_limit_rps") is not None:
        rate_limit_rps = _number(section["rate_limit_rps"], f"{where}.rate_limit_rps", 0, 1e6, low_open=True)
    concurrency = default.concurrency
    if section.get("concurrency") is not None:
        concurrency = _integer(section["concurrency"], f"{where}.concurrency", 1, 100_000)
    response_bytes = default.response_bytes
    if "response_bytes" in section:
        response_bytes = _integer(section["response_bytes"], f"{where}.response_bytes", 0, 1024 * 1024)
    return UpstreamConfig(median_ms, p99_ms, error_rate, rate_limit_rps, concurrency, response_bytes)


def parse_config(raw: object) -> MockApiConfig:
    """Validate a decoded JSON configuration and fill in the defaults.

    Raises MockApiConfigError (a ValueError) naming the key path and what was expected.
    """
    root = _object(raw, "(root)", ("seed", "upstreams"))
    seed = parse_seed(root["seed"]) if "seed" in root else DEFAULT_SEED
    sections = _object(root.get("upstreams", {}), "upstreams", UPSTREAM_NAMES)
    upstreams = {
        name: _parse_upstream(name, sections[name]) if name in sections else DEFAULT_UPSTREAMS[name]
        for name in UPSTREAM_NAMES
    }
    return MockApiConfig(seed=seed, upstreams=upstreams)


def load_config(path: str | None, env_value: str | None) -> MockApiConfig:
    """The configuration from a file (wins) or the environment variable's JSON; defaults if neither."""
    if path is not None:
        source = path
        try:
            with open(path, "rb") as file:
                text = file.read()
        except OSError as error:
            raise MockApiConfigError(path, f"cannot read the config file ({error.strerror})") from None
    elif env_value:
        source, text = CONFIG_ENV, env_value.encode()
    else:
        return parse_config({})
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise MockApiConfigError(source, f"expected a JSON object, got invalid JSON ({error})") from None
    return parse_config(raw)


# ---------------------------------------------------------------------------------------------
# request validation


class RejectedRequest(Exception):
    """A bad request: answered with `status` and `{"error": message}`, counted in /stats."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


async def read_json_object(request: Request) -> dict[str, Any] | None:
    """The request's JSON object body, or None without a body.

    The size is checked twice: the declared Content-Length before reading anything, and the
    bytes actually received while streaming (chunked bodies declare nothing), so an oversized
    body is never held in memory; uvicorn discards what we leave unread.
    """
    headers = request.headers
    declared = headers.get("content-length")
    chunked = "transfer-encoding" in headers
    if declared is not None:
        try:
            declared_bytes = int(declared)
        except ValueError:
            raise RejectedRequest(400, f"Content-Length must be an integer, got {declared[:40]!r}") from None
        if declared_bytes > MAX_BODY_BYTES:
            raise RejectedRequest(413, f"request body of {declared_bytes} bytes exceeds {MAX_BODY_BYTES} bytes")
        if declared_bytes == 0 and not chunked:
            return None
    elif not chunked:
        return None
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        got = repr(media_type[:60]) if media_type else "none"
        raise RejectedRequest(415, f"Content-Type must be {JSON_MEDIA_TYPE} with a body, got {got}")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise RejectedRequest(413, f"request body exceeds {MAX_BODY_BYTES} bytes")
    except ClientDisconnect:
        # nobody will read this answer; it only keeps the exception out of the error log
        raise RejectedRequest(400, "client disconnected while sending the body") from None
    if not body:
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RejectedRequest(400, f"request body is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise RejectedRequest(400, f"request body must be a JSON object, got {_describe(value)}")
    return value


# ---------------------------------------------------------------------------------------------
# upstream behaviour


class Draw(NamedTuple):
    """What the RNG decided for one served request."""

    sequence: int  # 0 for the first request served since start or reset
    latency_ms: float
    error_status: int | None
    completion_tokens: int  # only the llm uses it


class LlmInput(NamedTuple):
    """What an llm request asks for (validated)."""

    prompt_tokens: int
    max_tokens: int | None
    model: str


STANDARD_NORMAL = NormalDist()
MIN_COMPLETION_TOKENS = 16
MAX_COMPLETION_TOKENS = 256
FIRST_NAMES = ("Ava", "Liam", "Maya", "Noah", "Zoe", "Ethan", "Iris", "Omar")
LAST_NAMES = ("Garcia", "Nguyen", "Patel", "Smith", "Kowalski", "Okafor", "Rossi", "Tanaka")
CITIES = (("Austin", "TX"), ("Denver", "CO"), ("Tampa", "FL"), ("Phoenix", "AZ"), ("Raleigh", "NC"))
COMPLETION_TEXT = ("The lead shows strong buying intent for a three-bedroom home near good schools. " * 16)[
    : 4 * MAX_COMPLETION_TOKENS
]
PADDING_KEY = b',"padding":"'


def _listings_fragment() -> orjson.Fragment:
    """Five fixed property listings, serialized once: the listings body only varies in metadata."""
    listings = [
        {
            "id": f"lst_{1000 + n}",
            "address": {"street": f"{100 + 17 * n} Oak Street", "city": CITIES[n][0], "state": CITIES[n][1]},
            "price_usd": 285_000 + 47_500 * n,
            "bedrooms": 2 + n % 3,
            "bathrooms": 1.5 + n % 2,
            "living_area_sqft": 1_150 + 240 * n,
            "year_built": 1978 + 7 * n,
            "status": "active" if n % 4 else "pending",
            "days_on_market": 3 + 11 * n,
            "listing_agent": {"name": f"{FIRST_NAMES[n]} {LAST_NAMES[n]}", "phone": f"+1-512-555-01{n:02d}"},
        }
        for n in range(5)
    ]
    return orjson.Fragment(orjson.dumps(listings))


LISTINGS = _listings_fragment()


def parse_llm_input(body: Mapping[str, Any] | None) -> LlmInput:
    """The parts of an OpenAI-like completion request that shape the answer."""
    if body is None:
        return LlmInput(0, None, "mock-llm-1")
    prompt = body.get("prompt", "")
    if isinstance(prompt, str):
        prompt_chars = len(prompt)
    elif isinstance(prompt, list) and all(isinstance(part, str) for part in prompt):
        prompt_chars = sum(len(part) for part in prompt)
    else:
        raise RejectedRequest(400, f"prompt must be a string or an array of strings, got {_describe(prompt)}")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise RejectedRequest(400, f"max_tokens must be a positive integer, got {_describe(max_tokens)}")
    model = body.get("model", "mock-llm-1")
    if not isinstance(model, str):
        raise RejectedRequest(400, f"model must be a string, got {_describe(model)}")
    # about 4 characters per token, as OpenAI's rule of thumb for English text
    return LlmInput(math.ceil(prompt_chars / 4), max_tokens, model[:100])


def render_crm(draw: Draw, path: str) -> bytes:
    """A GoHighLevel-like contact record; the id is the path's last segment."""
    n = draw.sequence
    first, last = FIRST_NAMES[n % len(FIRST_NAMES)], LAST_NAMES[n % len(LAST_NAMES)]
    contact = {
        "id": path.rsplit("/", 1)[-1][:64] or f"ct_{n}",
        "locationId": "loc_mock",
        "firstName": first,
        "lastName": last,
        "email": f"{first.lower()}.{last.lower()}@example.com",
        "phone": f"+1-512-555-{n % 10_000:04d}",
        "tags": ["lead", "buyer"] if n % 2 else ["lead", "seller"],
        "source": "mock-api",
        "dateAdded": "2026-01-01T00:00:00Z",
        "customFields": [{"id": "budget_usd", "value": 250_000 + 1_000 * (n % 500)}],
    }
    return orjson.dumps({"contact": contact, "sequence": n})


def render_llm(draw: Draw, llm_input: LlmInput) -> tuple[bytes, int]:
    """An OpenAI-like text completion, and its total_tokens."""
    completion_tokens, finish_reason = draw.completion_tokens, "stop"
    if llm_input.max_tokens is not None and llm_input.max_tokens < completion_tokens:
        completion_tokens, finish_reason = llm_input.max_tokens, "length"
    total_tokens = llm_input.prompt_tokens + completion_tokens
    completion = {
        "id": f"cmpl-mock-{draw.sequence}",
        "object": "text_completion",
        "created": CREATED_S,
        "model": llm_input.model,
        "choices": [
            {
                "text": COMPLETION_TEXT[: 4 * completion_tokens],
                "index": 0,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": llm_input.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": total_tokens,
        },
    }
    return orjson.dumps(completion), total_tokens


def render_listings(draw: Draw) -> bytes:
    """A page of property listings (always the same five)."""
    return orjson.dumps({"listings": LISTINGS, "count": 5, "page": 1, "sequence": draw.sequence})


class FaultWindow(NamedTuple):
    """A fault in force on an upstream until `until_s` (time.monotonic())."""

    until_s: float
    extra_latency_ms: float
    error_rate: float


class Upstream:
    """One emulated upstream: its RNG, token bucket, concurrency cap, fault window and counters."""

    def __init__(self, name: UpstreamName, config: UpstreamConfig, seed: int) -> None:
        self.name = name
        self.config = config
        self.latency_mu = self.latency_sigma = 0.0  # median 0: no delay, never drawn
        if config.latency_median_ms > 0:
            self.latency_mu = math.log(config.latency_median_ms)
            self.latency_sigma = (math.log(config.latency_p99_ms) - self.latency_mu) / Z_99
        self.rate_per_s = config.rate_limit_rps
        # a bucket must hold one whole token, or a limit below 1 rps would throttle everything
        self.bucket_capacity = max(config.rate_limit_rps or 0.0, 1.0)
        self.semaphore = asyncio.Semaphore(config.concurrency) if config.concurrency else None
        self.padding = b"x" * config.response_bytes
        self.in_flight = 0  # holding a slot (in the simulated latency) right now
        self.waiting = 0  # queued for a slot right now
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Restart the draw sequences, refill the bucket, clear the fault and zero the counters (not the
        live gauges)."""
        self.rng = random.Random(f"{seed}:{self.name}")
        self.fault_rng = random.Random(f"{seed}:{self.name}:fault")
        self.fault: FaultWindow | None = None
        self.draws = 0
        self.bucket_tokens = self.bucket_capacity
        self.bucket_updated_s = time.monotonic()
        self.requests = 0
        self.ok = 0
        self.errors = 0
        self.throttled = 0
        self.queued = 0  # requests that had to wait for a slot, since start or reset
        self.max_in_flight = self.in_flight
        self.usage_tokens = 0
        self.fault_errors = 0  # answered 503 by a fault window (also counted in errors)
        self.fault_delayed = 0  # served with a fault window's extra latency

    def start_fault(self, fault: Fault) -> None:
        """Degrade this upstream from now for `fault.duration_s`, replacing any window in force."""
        until_s = time.monotonic() + fault.duration_s
        self.fault = FaultWindow(until_s, fault.extra_latency_ms, fault.error_rate)

    def faulted(self, fault: FaultWindow, latency_ms: float) -> float | None:
        """The latency of a request that drew `latency_ms` under `fault`, or None: answer it 503 now.

        A window that has ended is cleared here, by the first request after it.
        """
        if time.monotonic() >= fault.until_s:
            self.fault = None
            return latency_ms
        # always one draw per request in a window, from the fault's own RNG
        if self.fault_rng.random() < fault.error_rate:
            self.fault_errors += 1
            self.errors += 1
            return None
        if fault.extra_latency_ms > 0:
            self.fault_delayed += 1
            return latency_ms + fault.extra_latency_ms
        return latency_ms

    def take_token(self) -> float | None:
        """Take a rate-limit token; None if granted, else the seconds until one is available."""
        rate_per_s = self.rate_per_s
        if rate_per_s is None:
            return None
        now_s = time.monotonic()
        self.bucket_tokens = min(
            self.bucket_capacity, self.bucket_tokens + (now_s - self.bucket_updated_s) * rate_per_s
        )
        self.bucket_updated_s = now_s
        if self.bucket_tokens >= 1.0:
            self.bucket_tokens -= 1.0
            return None
        return (1.0 - self.bucket_tokens) / rate_per_s

    def draw(self) -> Draw:
        """The next draw: always four uniforms, so each decision is independent of the others' settings."""
        rng = self.rng
        u_latency, u_error, u_status, u_completion = rng.random(), rng.random(), rng.random(), rng.random()
        latency_ms = 0.0
        if self.config.latency_median_ms > 0:
            # random() can return 0.0, outside inv_cdf's open interval
            z = STANDARD_NORMAL.inv_cdf(max(u_latency, 1e-12))
            latency_ms = math.exp(self.latency_mu + self.latency_sigma * z)
        error_status = None
        if u_error < self.config.error_rate:
            error_status = SIMULATED_ERROR_STATUSES[int(u_status * len(SIMULATED_ERROR_STATUSES))]
        completion_span = MAX_COMPLETION_TOKENS - MIN_COMPLETION_TOKENS + 1
        completion_tokens = MIN_COMPLETION_TOKENS + int(u_completion * completion_span)
        sequence = self.draws
        self.draws += 1
        return Draw(sequence, latency_ms, error_status, completion_tokens)

    async def hold_slot(self, latency_s: float) -> None:
        """Take a concurrency slot (queueing if the cap is reached) and keep it for the simulated latency."""
        semaphore = self.semaphore
        if semaphore is not None:
            if semaphore.locked():
                self.queued += 1
                self.waiting += 1
                try:
                    await semaphore.acquire()
                finally:
                    self.waiting -= 1
            else:
                await semaphore.acquire()  # free slot: returns without yielding
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if latency_s > 0:
                await asyncio.sleep(latency_s)
        finally:
            self.in_flight -= 1
            if semaphore is not None:
                semaphore.release()

    def padded(self, body: bytes) -> bytes:
        """`body` (a JSON object) grown to about response_bytes with a `padding` string."""
        missing = self.config.response_bytes - len(body) - len(PADDING_KEY) - 1  # -1: body[:-1] + b'"}'
        if missing <= 0:
            return body
        return b"".join((body[:-1], PADDING_KEY, self.padding[:missing], b'"}'))

    def stats(self) -> dict[str, int]:
        """Counters since start or reset (queued: requests that waited for a slot), and live gauges
        (fault_active: 1 while a fault window is in force)."""
        fault = self.fault
        return {
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "throttled": self.throttled,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "queued": self.queued,
            "waiting": self.waiting,
            "tokens": self.usage_tokens,
            "fault_errors": self.fault_errors,
            "fault_delayed": self.fault_delayed,
            "fault_active": int(fault is not None and time.monotonic() < fault.until_s),
        }


# ---------------------------------------------------------------------------------------------
# the application


def json_response(status: int, content: object, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, headers=headers, media_type=JSON_MEDIA_TYPE)


async def send_json(send: Send, status: int, body: bytes, header: tuple[bytes, bytes]) -> None:
    """Send a whole JSON response with one extra header, without building a Response object."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), header]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class UpstreamEndpoint:
    """The ASGI endpoint of one upstream (a class, so Starlette routes to it without wrapping)."""

    def __init__(self, api: MockApi, name: UpstreamName) -> None:
        self.api = api
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.api.serve(self.name, scope, receive, send)


class MockApi:
    """The server's state and endpoints."""

    def __init__(self, config: MockApiConfig) -> None:
        self.seed = config.seed
        self.upstreams = {name: Upstream(name, config.upstreams[name], config.seed) for name in UPSTREAM_NAMES}
        self.rejected = dict.fromkeys(REJECTED_STATUSES, 0)
        self.started_s = time.monotonic()

    async def health(self, request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    async def stats(self, request: Request) -> Response:
        return json_response(
            200,
            {
                "uptime_s": round(time.monotonic() - self.started_s, 3),
                "seed": self.seed,
                "upstreams": {name: upstream.stats() for name, upstream in self.upstreams.items()},
                "rejected": {str(status): count for status, count in self.rejected.items()},
            },
        )

    async def reset(self, request: Request) -> Response:
        body = await read_json_object(request) or {}
        for key in body:
            if key != "seed":
                raise RejectedRequest(400, f"unknown key {key[:40]!r} (expected only: seed)")
        if "seed" in body:
            try:
                self.seed = parse_seed(body["seed"])
            except MockApiConfigError as error:
                raise RejectedRequest(400, str(error)) from None
        for upstream in self.upstreams.values():
            upstream.reset(self.seed)
        self.rejected = dict.fromkeys(REJECTED_STATUSES, 0)
        return json_response(200, {"status": "reset", "seed": self.seed})

    async def fault(self, request: Request) -> Response:
        """Degrade one upstream for a window that starts now; answers the fault as understood."""
        body = await read_json_object(request)
        if body is None:
            raise RejectedRequest(400, f"a fault needs a JSON object body with keys {', '.join(FAULT_KEYS)}")
        try:
            fault = parse_fault(body)
        except MockApiConfigError as error:
            raise RejectedRequest(400, str(error)) from None
        self.upstreams[fault.upstream].start_fault(fault)
        return json_response(
            200,
            {
                "status": "fault",
                "upstream": fault.upstream,
                "extra_latency_ms": fault.extra_latency_ms,
                "error_rate": fault.error_rate,
                "duration_s": fault.duration_s,
            },
        )

    async def serve(self, name: UpstreamName, scope: Scope, receive: Receive, send: Send) -> None:
        """One upstream call: validate, throttle, draw, queue for a slot, wait, answer.

        Raw ASGI rather than a Starlette request -> response function: this is the path the
        capacity benchmark measures, and Starlette's Request/Response wrapping about doubles
        its cost. Rejections still raise RejectedRequest, answered by `reject`.
        """
        body = await read_json_object(Request(scope, receive)) if scope["method"] == "POST" else None
        upstream = self.upstreams[name]
        llm_input = parse_llm_input(body) if name == "llm" else None
        upstream.requests += 1
        retry_after_s = upstream.take_token()
        if retry_after_s is not None:
            upstream.throttled += 1
            message = f"rate limit of {upstream.rate_per_s:g} requests/s exceeded for {name}"
            retry_after = str(max(1, math.ceil(retry_after_s))).encode()
            await send_json(send, 429, orjson.dumps({"error": message}), (b"retry-after", retry_after))
            return
        draw = upstream.draw()
        latency_ms = draw.latency_ms
        fault = upstream.fault
        if fault is not None:  # the hot path's only cost of fault injection is this check
            faulted_ms = upstream.faulted(fault, latency_ms)
            if faulted_ms is None:
                error = {"error": f"injected fault {FAULT_ERROR_STATUS} from {name}"}
                await send_json(send, FAULT_ERROR_STATUS, orjson.dumps(error), (b"x-mock-latency-ms", b"0.000"))
                return
            latency_ms = faulted_ms
        await upstream.hold_slot(latency_ms / 1000.0)
        latency_header = (b"x-mock-latency-ms", f"{latency_ms:.3f}".encode())
        if draw.error_status is not None:
            upstream.errors += 1
            error = {"error": f"simulated upstream error {draw.error_status} from {name}"}
            await send_json(send, draw.error_status, orjson.dumps(error), latency_header)
            return
        if llm_input is not None:
            content, total_tokens = render_llm(draw, llm_input)
            upstream.usage_tokens += total_tokens
        elif name == "crm":
            content = render_crm(draw, scope["path_params"].get("path", ""))
        else:
            content = render_listings(draw)
        content = upstream.padded(content)
        upstream.ok += 1
        await send_json(send, 200, content, latency_header)

    async def reject(self, request: Request, error: Exception) -> Response:
        """Every 4xx the server answers itself (bad body, no route, wrong method): counted, JSON."""
        if isinstance(error, RejectedRequest):
            status, message, headers = error.status, error.message, error.headers
        elif isinstance(error, HTTPException):
            status, message, headers = error.status_code, error.detail, error.headers
            if status == 404:
                message = f"no route for {request.scope['path'][:200]} (upstreams: {', '.join(UPSTREAM_NAMES)})"
            elif status == 405:
                # Starlette's Allow header comes from a set: sorted, it is the same every time
                allowed = ", ".join(sorted((headers or {}).get("Allow", "").split(", ")))
                headers = {"Allow": allowed}
                message = f"method {request.method[:20]} not allowed (expected {allowed})"
        else:  # pragma: no cover - only the two classes above are registered
            raise error
        if status in self.rejected:
            self.rejected[status] += 1
        return json_response(status, {"error": message}, headers)


def create_app(config: MockApiConfig) -> Starlette:
    """The mock API as an ASGI app; state lives in the app, so each app starts fresh."""
    api = MockApi(config)
    routes = []  # upstream routes first: the router tries them in order and they are the hot ones
    for name in UPSTREAM_NAMES:
        endpoint = UpstreamEndpoint(api, name)
        for path in (f"/{name}/{{path:path}}", f"/{name}"):
            route = Route(path, endpoint, methods=["GET", "POST"])
            # Starlette adds HEAD to every GET route; an upstream call is GET or POST, nothing else
            route.methods = {"GET", "POST"}
            routes.append(route)
    routes += [
        Route("/health", api.health, methods=["GET"]),
        Route("/stats", api.stats, methods=["GET"]),
        Route("/admin/reset", api.reset, methods=["POST"]),
        Route("/admin/fault", api.fault, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={RejectedRequest: api.reject, HTTPException: api.reject})
    # `/health/` is a 404 like any unknown path, not a redirect
    app.router.redirect_slashes = False
    app.state.mock_api = api
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, load the configuration and serve until stopped (the only exit-code site)."""
    parser = argparse.ArgumentParser(prog="mock-api", description="The ablab mock third-party API.")
    # the defaults are the image's: the host side may replace the image's command with extra flags
    parser.add_argument("--host", default="0.0.0.0", help="default 0.0.0.0 (inside its container)")
    parser.add_argument("--port", type=int, default=8080, help="default 8080; 0 picks a free port")
    parser.add_argument("--config", metavar="FILE", help=f"JSON configuration (wins over ${CONFIG_ENV})")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, os.environ.get(CONFIG_ENV))
    except MockApiConfigError as error:
        print(f"mock-api: config error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    loop: Literal["uvloop", "asyncio"] = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    server_config = uvicorn.Config(
        create_app(config),
        host=args.host,
        port=args.port,
        loop=loop,
        http="httptools",
        access_log=False,
        log_level="warning",
        workers=1,
    )
    # bind and listen before announcing: the line names the real port (also with --port 0), and
    # a client that connects as soon as it reads the line waits in the backlog, not refused
    sock = server_config.bind_socket()
    sock.listen(server_config.backlog)
    port = sock.getsockname()[1]
    print(f"mock-api listening on {args.host}:{port} seed={config.seed}", flush=True)
    uvicorn.Server(server_config).run(sockets=[sock])


if __name__ == "__main__":
    main()
