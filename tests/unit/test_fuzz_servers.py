"""Fuzz both HTTP servers over real HTTP: >= 1,000 malformed requests each, never a 5xx, never a crash.

Each server runs for real (uvicorn on 127.0.0.1, as in production: uvloop and httptools).
Hypothesis draws the requests, derandomized so every run sends the same ones: random bytes,
truncated and invalid JSON, JSON of the wrong type at every level, huge numbers and NaN
tokens, row counts around the limit, wrong or missing or doubled headers, bodies just over
the size limit (declared or chunked), unknown paths and methods, junk query strings and,
for the inference server, binary float32 bodies of the wrong length. Every answer must be a
4xx, or a 2xx where the input happens to be valid (counted), or Starlette's 307 from
`/predict/` to `/predict`; a request that is invalid by construction must never get a 2xx.
Then about fifty raw-socket requests with broken HTTP framing, answered with a 4xx or a
closed connection (uvicorn's parser's job). Afterwards `/health` still answers, and uvicorn
logged no application error.

The status histograms land in SUMMARY and are printed (`pytest -s` or `-rP` shows them).
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lab.services import inference_server, mock_api
from tests.support.asgi_server import serving
from tests.support.tiny_model import write_tiny_model

EXAMPLES_PER_SERVER = 1_000
FEATURES = 16
MAX_ROWS = 256  # the inference server's default
# The inference server's limit is a setting (default 4 MiB); a smaller one exercises the same
# code and keeps the oversize probes cheap. The mock API's limit is a constant.
INFERENCE_MAX_BODY_BYTES = 256 * 1024
MOCK_MAX_BODY_BYTES = mock_api.MAX_BODY_BYTES
REQUEST_TIMEOUT_S = 5.0
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_SERVER,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=False,
)
ZERO_LATENCY = {name: {"latency_median_ms": 0, "error_rate": 0} for name in mock_api.UPSTREAM_NAMES}

# what each test saw, per server: {"<server> <probe kind>": Counter({status: count})}
SUMMARY: dict[str, Counter[str]] = {}

Outcome = int | str  # an HTTP status, or "closed" / "timeout"


# ---------------------------------------------------------------------------------------------
# the requests


@dataclass(frozen=True)
class Probe:
    """One generated request; `must_reject`: invalid by construction, so a 2xx would be a bug too."""

    kind: str
    method: str
    target: str  # path and query
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    chunk_bytes: int = 0  # > 0: sent with Transfer-Encoding: chunked, in chunks of this size
    must_reject: bool = False


def encode_json(value: Any, ascii_only: bool = True) -> bytes:
    """JSON text as a sloppy client writes it: NaN/Infinity tokens, big integers, lone surrogates."""
    return json.dumps(value, allow_nan=True, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def is_json_object(body: bytes) -> bool:
    try:
        return isinstance(orjson.loads(body), dict)
    except orjson.JSONDecodeError:
        return False


HUGE_NUMBERS = (2**63, 2**64, -(2**63) - 1, 10**40, 10**400, 1e39, -1e39, 1e308, 5e-324, 1e-400)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and +-inf become NaN / Infinity / -Infinity tokens
    | st.sampled_from(HUGE_NUMBERS)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=12,
)
BAD_JSON_BODIES = (
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b'{"rows": [[NaN]]}',
    b'{"prompt": Infinity}',
    b"{'rows': 1}",
    b'{"a": 1,}',
    b"[1, 2,]",
    b'{"a" 1}',
    b"// comment\n{}",
    b"\xef\xbb\xbf{}",
    b"{}garbage",
    b'{"a": 1}{"b": 2}',
    b"   ",
    b"\x00",
    b"\xff\xfe{\x00}\x00",
    b"1e400",
    b"-1e400",
    b"[" * 5_000,
    b"[" * 1_100 + b"]" * 1_100,  # deeper than orjson's recursion limit
    b'{"a":' * 600 + b"1" + b"}" * 600,
    b"9" * 5_000,
    b'"\\ud800"',
    b'{"\xff": 1}',
    b'{"rows": "\xc3\x28"}',
    b"true",
    b"null",
    b'""',
)
bad_json_bodies = st.sampled_from(BAD_JSON_BODIES)


@st.composite
def truncated_json(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> bytes:
    """A strict, non-empty prefix of an encoded JSON object: never valid JSON."""
    text = encode_json({"key": draw(documents)})
    return text[: draw(st.integers(1, len(text) - 1))]


URL_CHARS = "".join(chr(code) for code in range(0x21, 0x7F))  # what http.client lets through
junk_query = st.one_of(
    st.just(""),
    st.text(URL_CHARS, max_size=40).map(lambda text: "?" + text),
    st.sampled_from(["?%zz", "?a=%00%ff", "?" + "a=1&" * 500, "?=&=&", "?rows=[[1]]", "??#frag", "?%"]),
)
HEADER_VALUE_CHARS = "".join(chr(code) for code in (*range(0x20, 0x7F), *range(0xA0, 0x100)))
junk_header_value = st.text(HEADER_VALUE_CHARS, max_size=60)
JSON_TYPES = ("application/json", "application/json; charset=utf-8", "Application/JSON", " application/json ")
OTHER_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", ";", "*/*")
content_types = st.sampled_from(JSON_TYPES + OTHER_TYPES + ("application/octet-stream",)) | junk_header_value
accepts = st.sampled_from(["*/*", "application/json", "application/octet-stream", "text/html", ""]) | junk_header_value


@st.composite
def header_sets(draw: st.DrawFn, content_type: str | None) -> tuple[tuple[str, str], ...]:
    """`content_type` (maybe left out, doubled or contradicted), an Accept, maybe junk headers."""
    headers: list[tuple[str, str]] = []
    if content_type is not None:
        shape = draw(st.sampled_from(["once", "once", "once", "missing", "doubled", "contradicted"]))
        if shape != "missing":
            headers.append(("Content-Type", content_type))
        if shape == "doubled":
            headers.append(("Content-Type", content_type))
        elif shape == "contradicted":
            headers.append(("Content-Type", draw(content_types)))
    for _ in range(draw(st.integers(0, 2))):
        headers.append(("Accept", draw(accepts)))
    if draw(st.integers(0, 9)) == 0:
        name = draw(st.sampled_from(["X-Junk", "Accept-Encoding", "Cookie", "Expect", "X-" + "a" * 200]))
        headers.append((name, draw(junk_header_value)))
    return tuple(headers)


def post(kind: str, path: str, body: bytes, content_type: str | None, **fields: Any) -> st.SearchStrategy[Probe]:
    """A POST of `body` with generated headers, a junk query and maybe chunked framing."""
    return st.builds(
        Probe,
        kind=st.just(kind),
        method=st.just("POST"),
        target=junk_query.map(lambda query: path + query),
        headers=header_sets(content_type),
        body=st.just(body),
        # one-byte chunks only for small bodies: http.client sends each chunk with its own syscall
        chunk_bytes=st.sampled_from([0, 0, 0, 4096] + ([1, 7] if len(body) <= 2048 else [65_536])),
        **{name: st.just(value) for name, value in fields.items()},
    )


METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "get", "Post", "FOO", "PROPFIND")


def route_probes(paths: tuple[str, ...]) -> st.SearchStrategy[Probe]:
    """Any method on known, almost-known and unknown paths, with a junk query and a small body."""
    path = st.sampled_from(paths) | st.builds(
        lambda base, tail: base + tail,
        st.sampled_from([*paths, "", "/", "//", "/..", "/%2e%2e", "/%00", "/%ff"]),
        st.text(URL_CHARS, max_size=30).map(lambda text: "/" + text) | st.sampled_from(["", "/", "/" + "a" * 8_000]),
    )
    return st.builds(
        Probe,
        kind=st.just("route"),
        method=st.sampled_from(METHODS),
        target=st.builds(lambda base, query: base + query, path, junk_query),
        headers=header_sets(None),
        body=st.sampled_from([b"", b"", b"{}", b"x"]),
    )


def oversize_probes(kind: str, paths: tuple[str, ...], limit_bytes: int) -> st.SearchStrategy[Probe]:
    """A body 1 to 64 bytes over the limit, declared or chunked: always a 413."""
    return st.builds(
        Probe,
        kind=st.just(kind),
        method=st.just("POST"),
        target=st.sampled_from(paths),
        headers=st.just((("Content-Type", "application/json"),)),
        body=st.integers(1, 64).map(lambda extra: b'{"pad": "' + b"x" * (limit_bytes + extra - 11) + b'"}'),
        chunk_bytes=st.sampled_from([0, 0, 65_536]),
        must_reject=st.just(True),
    )


@st.composite
def bad_json_probe(draw: st.DrawFn, paths: tuple[str, ...]) -> Probe:
    """A body that is rarely a JSON object (random bytes, invalid or truncated JSON), posted as JSON."""
    body = draw(bad_json_bodies | truncated_json(json_values) | st.binary(min_size=1, max_size=256))
    return Probe(
        kind="bad_json",
        method="POST",
        target=draw(st.sampled_from(paths)) + draw(junk_query),
        headers=(("Content-Type", "application/json"),),
        body=body,
        chunk_bytes=draw(st.sampled_from([0, 0, 3])),
        must_reject=not is_json_object(body),
    )


# ---------------------------------------------------------------------------------------------
# the mock API's requests

MOCK_POST_PATHS = ("/crm", "/crm/contacts/ct_1", "/llm", "/llm/v1/completions", "/listings/search")
MOCK_ADMIN_PATHS = ("/admin/reset", "/admin/fault")
MOCK_PATHS = (*MOCK_POST_PATHS, *MOCK_ADMIN_PATHS, "/health", "/stats", "/crm/", "/llm//x")
# A fault window answers upstream calls 503 (or slowly) on purpose: the fuzzer resets after each one.
MOCK_RESET = Probe("cleanup", "POST", "/admin/reset")
number_or_junk = st.integers(-5, 10**6) | st.floats() | json_values
fault_fields = st.fixed_dictionaries(
    {},
    optional={
        "upstream": st.sampled_from(mock_api.UPSTREAM_NAMES) | json_values,
        "extra_latency_ms": number_or_junk,
        "error_rate": number_or_junk,
        "duration_s": number_or_junk,
        "other": json_values,
    },
)
llm_fields = st.fixed_dictionaries(
    {},
    optional={
        "prompt": st.text(max_size=30) | st.lists(st.text(max_size=5), max_size=4) | json_values,
        "max_tokens": st.integers(-3, 2**70) | json_values,
        "model": st.text(max_size=20) | json_values,
        "stream": json_values,
    },
)


@st.composite
def mock_json_probe(draw: st.DrawFn) -> Probe:
    """A JSON body of the right or wrong type at every level, to an upstream or an admin route."""
    path = draw(st.sampled_from([*MOCK_POST_PATHS, *MOCK_ADMIN_PATHS]))
    if path == "/admin/reset":
        document = draw(st.fixed_dictionaries({}, optional={"seed": json_values | st.integers()}) | json_values)
    elif path == "/admin/fault":
        document = draw(fault_fields | json_values)
    else:
        document = draw(llm_fields | json_values)
    body = encode_json(document, ascii_only=draw(st.booleans()))
    content_type = draw(st.sampled_from(JSON_TYPES))
    return draw(post("json_types", path, body, content_type))


@st.composite
def mock_content_type_probe(draw: st.DrawFn) -> Probe:
    """A valid body under a wrong, missing or doubled Content-Type."""
    body = draw(st.sampled_from([b"{}", b'{"prompt": "hi"}', b'{"seed": 1}', b"", b"x"]))
    path = draw(st.sampled_from([*MOCK_POST_PATHS, *MOCK_ADMIN_PATHS]))
    return draw(post("content_type", path, body, draw(content_types)))


mock_api_probes = st.one_of(
    mock_json_probe(),
    mock_json_probe(),
    bad_json_probe((*MOCK_POST_PATHS, *MOCK_ADMIN_PATHS)),
    mock_content_type_probe(),
    oversize_probes("oversize", (*MOCK_POST_PATHS, *MOCK_ADMIN_PATHS), MOCK_MAX_BODY_BYTES),
    route_probes(MOCK_PATHS),
)


# ---------------------------------------------------------------------------------------------
# the inference server's requests

finite_features = st.floats(width=32, allow_nan=False, allow_infinity=False)
valid_rows = st.lists(st.lists(finite_features, min_size=FEATURES, max_size=FEATURES), min_size=1, max_size=4)
wrong_rows = st.one_of(
    # rows of the wrong width
    st.lists(
        st.lists(finite_features, max_size=FEATURES + 4).filter(lambda row: len(row) != FEATURES),
        min_size=1,
        max_size=4,
    ),
    # the right width, elements of the wrong type (strings, nulls, booleans, lists, objects, huge numbers)
    st.lists(st.lists(json_values, min_size=FEATURES, max_size=FEATURES), min_size=1, max_size=3),
    # the right width, nested one or two levels too deep
    st.builds(
        lambda inner, count: [[inner] * FEATURES] * count, st.lists(finite_features, max_size=3), st.integers(1, 3)
    ),
    st.builds(lambda inner: [[[inner]] * FEATURES], st.lists(finite_features, max_size=2)),
    # one level too shallow, or not a list at all
    st.lists(finite_features, min_size=1, max_size=FEATURES),
    json_values.filter(lambda value: not isinstance(value, list)),
    st.just([]),
    st.just([[]]),
    # numbers that do not fit a float32, or are not finite
    st.builds(lambda big: [[big] * FEATURES], st.sampled_from([*HUGE_NUMBERS, float("nan"), float("inf")])),
)


@st.composite
def rows_probe(draw: st.DrawFn) -> Probe:
    """{"rows": ...} with the rows right or wrong at every level, maybe with extra keys."""
    rows = draw(valid_rows | wrong_rows)
    document: Any = {"rows": rows}
    extra = draw(st.sampled_from(["none", "none", "extra_key", "wrapped", "duplicate_key"]))
    if extra == "extra_key":
        document["extra"] = draw(json_values)
    elif extra == "wrapped":
        document = draw(st.sampled_from([[document], {"data": document}, {"rows": document}]))
    body = encode_json(document)
    if extra == "duplicate_key":
        body = b'{"rows": [[0]], ' + body[1:]
    return draw(post("json_rows", "/predict", body, draw(st.sampled_from(JSON_TYPES[:2]))))


@st.composite
def long_rows_probe(draw: st.DrawFn) -> Probe:
    """Just under, at and just over the row limit, as JSON or binary; values from a seeded RNG."""
    count = draw(st.sampled_from([MAX_ROWS - 1, MAX_ROWS, MAX_ROWS + 1, MAX_ROWS + 2, 4 * MAX_ROWS]))
    rows = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal((count, FEATURES))
    rows = rows.astype(np.float32)
    if draw(st.booleans()):
        body, content_type = rows.tobytes(), "application/octet-stream"
    else:
        body, content_type = orjson.dumps({"rows": rows.tolist()}), "application/json"
    return draw(post("long_rows", "/predict", body, content_type, must_reject=count > MAX_ROWS))


@st.composite
def binary_probe(draw: st.DrawFn) -> Probe:
    """Little-endian float32 bodies of wrong and right lengths, with random bits (NaN included)."""
    row_bytes = 4 * FEATURES
    length = draw(st.integers(0, 5 * row_bytes) | st.sampled_from([row_bytes, 3 * row_bytes, row_bytes + 4]))
    body = (
        draw(st.binary(min_size=length, max_size=length)) if length <= 64 else random.Random(length).randbytes(length)
    )
    if draw(st.booleans()):  # readable float32 values instead of raw bits
        values = draw(st.lists(st.floats(width=32), min_size=length // 4, max_size=length // 4))
        body = np.array(values, dtype="<f4").tobytes() + body[: length % 4]
    content_type = draw(st.sampled_from(["application/octet-stream", "application/octet-stream; x=1"]))
    probe = draw(post("binary", "/predict", body, content_type))
    wrong_length = length == 0 or length % row_bytes != 0
    return replace(probe, must_reject=wrong_length and _declares_binary(probe.headers))


def _declares_binary(headers: tuple[tuple[str, str], ...]) -> bool:
    """Whether the inference server will read the body as binary (it keeps the last Content-Type)."""
    types = [value for name, value in headers if name.lower() == "content-type"]
    return bool(types) and types[-1].split(";")[0].strip() == "application/octet-stream"


@st.composite
def inference_content_type_probe(draw: st.DrawFn) -> Probe:
    """A valid JSON or binary body under a wrong, missing or doubled Content-Type."""
    rows = np.zeros((1, FEATURES), dtype=np.float32)
    body = draw(st.sampled_from([orjson.dumps({"rows": rows.tolist()}), rows.tobytes(), b""]))
    return draw(post("content_type", "/predict", body, draw(content_types)))


INFERENCE_PATHS = ("/predict", "/health", "/stats", "/predict/", "/Predict", "/health/x")
inference_probes = st.one_of(
    rows_probe(),
    rows_probe(),
    long_rows_probe(),
    binary_probe(),
    bad_json_probe(("/predict",)),
    inference_content_type_probe(),
    oversize_probes("oversize", ("/predict",), INFERENCE_MAX_BODY_BYTES),
    route_probes(INFERENCE_PATHS),
)


# ---------------------------------------------------------------------------------------------
# sending them


class Client:
    """A keep-alive http.client connection that reconnects whenever the server closed it."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.connection: http.client.HTTPConnection | None = None

    def send(self, probe: Probe) -> Outcome:
        """The status of the answer, "closed" if the server hung up on a fresh connection, or "timeout"."""
        while True:
            fresh = self.connection is None
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
            try:
                return self._exchange(self.connection, probe)
            except TimeoutError:
                self.close()
                return "timeout"
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if fresh:
                    return "closed"
                # the server closed the idle keep-alive connection: retry once on a fresh one

    def _exchange(self, connection: http.client.HTTPConnection, probe: Probe) -> int:
        connection.putrequest(probe.method, probe.target, skip_accept_encoding=True)
        for name, value in probe.headers:
            connection.putheader(name, value)
        if probe.chunk_bytes:
            connection.putheader("Transfer-Encoding", "chunked")
            chunks = (probe.body[i : i + probe.chunk_bytes] for i in range(0, len(probe.body), probe.chunk_bytes))
            connection.endheaders(chunks, encode_chunked=True)
        else:
            connection.putheader("Content-Length", str(len(probe.body)))
            connection.endheaders(probe.body)
        response = connection.getresponse()
        response.read()
        if response.will_close:
            self.close()
        return response.status

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.connection = None


STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3})", re.MULTILINE)


def raw_exchange(base_url: str, payload: bytes) -> Outcome:
    """Send `payload` on a fresh socket, half-close, and read the first final status, "closed" or "timeout"."""
    parts = urlsplit(base_url)
    received = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=REQUEST_TIMEOUT_S) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # the server sees the end of the request, whatever its framing said
        except ConnectionError:
            pass  # refused before reading all of it: its answer may still be waiting
        try:
            while chunk := sock.recv(65_536):
                received += chunk
        except TimeoutError:
            return "timeout"
        except ConnectionError:
            pass
    # skip interim answers (100 Continue): the outcome is the first final status
    statuses = [int(match[1]) for match in STATUS_LINE.finditer(received)]
    final = [status for status in statuses if status >= 200]
    return final[0] if final else "closed"


def raw_payloads(host: str, get_target: str, post_target: str) -> list[tuple[str, bytes]]:
    """About fifty requests with broken HTTP; each target answers a 4xx to a well-formed one.

    `post_target` reads its body, so the broken body framings reach the application; their
    bodies are never valid JSON.
    """
    h = f"Host: {host}\r\n".encode()
    get = b"GET " + get_target.encode() + b" HTTP/1.1\r\n" + h
    post = b"POST " + post_target.encode() + b" HTTP/1.1\r\n" + h + b"Content-Type: application/json\r\n"
    chunked = post + b"Transfer-Encoding: chunked\r\n\r\n"
    payloads = [
        ("garbage line", b"GARBAGE\r\n\r\n"),
        ("method only", b"GET\r\n\r\n"),
        ("no version", b"GET " + get_target.encode() + b"\r\n\r\n"),
        ("bad version", get.replace(b"HTTP/1.1", b"HTTP/9.9") + b"\r\n"),
        ("extra token", get.replace(b"HTTP/1.1", b"HTTP/1.1 extra") + b"\r\n"),
        ("control bytes", b"\x00\x01\x02\x03\r\n\r\n"),
        ("lowercase method", b"g" + get[1:] + b"\r\n"),
        ("tab separators", get.replace(b" ", b"\t", 2) + b"\r\n"),
        ("unknown method", b"BREW" + get[3:] + b"\r\n"),
        ("huge request line", b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\n" + h + b"\r\n"),
        ("space in path", b"GET /a b HTTP/1.1\r\n" + h + b"\r\n"),
        ("high bytes in path", b"GET /\xff\xfe HTTP/1.1\r\n" + h + b"\r\n"),
        ("absolute form", get.replace(b"GET ", b"GET http://example.com") + b"\r\n"),
        ("asterisk form", b"OPTIONS * HTTP/1.1\r\n" + h + b"\r\n"),
        ("connect", b"CONNECT example.com:443 HTTP/1.1\r\n" + h + b"\r\n"),
        ("header without colon", get + b"NoColonHere\r\n\r\n"),
        ("space before colon", get + b"X-A : 1\r\n\r\n"),
        ("bad header name", get + b"X(A): 1\r\n\r\n"),
        ("obs-fold", get + b"X-A: 1\r\n continued\r\n\r\n"),
        ("nul in header", get + b"X-A: a\x00b\r\n\r\n"),
        ("huge header", get + b"X-A: " + b"a" * 1_000_000 + b"\r\n\r\n"),
        ("many headers", get + b"X-A: 1\r\n" * 10_000 + b"\r\n"),
        ("bare LF", get.replace(b"\r\n", b"\n") + b"\n"),
        ("no blank line", get),
        ("negative length", post + b"Content-Length: -1\r\n\r\n{x"),
        ("text length", post + b"Content-Length: ten\r\n\r\n{x"),
        ("plus length", post + b"Content-Length: +2\r\n\r\n{x"),
        ("huge length", post + b"Content-Length: 99999999999999999999\r\n\r\n{x"),
        ("two lengths", post + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{x"),
        ("length too long", post + b"Content-Length: 100\r\n\r\n{x"),
        ("length too short", post + b"Content-Length: 1\r\n\r\n{}}}garbage"),
        ("length and chunked", post + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{x\r\n0\r\n\r\n"),
        ("gzip coding", post + b"Transfer-Encoding: gzip\r\n\r\n{x"),
        ("bad chunk size", chunked + b"zz\r\n{x\r\n0\r\n\r\n"),
        ("chunk size overflow", chunked + b"ffffffffffffffffff\r\n{x"),
        ("chunk without CRLF", chunked + b"2\r\n{xXX0\r\n\r\n"),
        ("chunk cut short", chunked + b"9\r\n{x"),
        ("chunk extension junk", chunked + b"2;\x01=\x02\r\n{x\r\n0\r\n\r\n"),
        # no length: the body is empty and "{garbage" a second request (an empty POST /llm is valid)
        ("HTTP/1.0 unframed body", b"POST " + get_target.encode() + b" HTTP/1.0\r\n\r\n{garbage"),
        ("expect continue", post + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
        ("websocket upgrade", get + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
        ("h2c upgrade", get + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n"),
        ("http2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("tls hello", bytes.fromhex("16030100a5010000a10303") + bytes(32)),
        ("pipelined junk", get + b"\r\n\x00\x00garbage\r\n\r\n"),
    ]
    rng = random.Random(20_260_101)
    payloads += [(f"random bytes {index}", rng.randbytes(rng.randint(1, 2_000))) for index in range(10)]
    return payloads


class ErrorRecords(logging.Handler):
    """Keeps the ERROR records of a logger ("Exception in ASGI application", ...)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def uvicorn_errors() -> Iterator[list[logging.LogRecord]]:
    """The ERROR records uvicorn logs while the block runs: an app exception even after its answer began."""
    handler = ErrorRecords()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


def is_acceptable(probe: Probe, outcome: Outcome) -> bool:
    """A 2xx or a 4xx; or Starlette's 307 from `/route/` to `/route` (the inference server keeps its default)."""
    if not isinstance(outcome, int):
        return False
    redirect = outcome == 307 and urlsplit(probe.target).path.endswith("/")
    return 200 <= outcome < 300 or 400 <= outcome < 500 or redirect


def describe(
    server: str, generated: Counter[str], raw: Counter[str], by_kind: dict[str, Counter[str]], took_s: float
) -> str:
    ok_by_kind = {
        kind: sum(n for status, n in counts.items() if status.startswith("2")) for kind, counts in by_kind.items()
    }
    return (
        f"{server}: {generated.total()} generated requests + {raw.total()} raw in {took_s:.1f} s; "
        f"generated {dict(sorted(generated.items()))}; raw {dict(sorted(raw.items()))}; "
        f"2xx by kind {dict(sorted(ok_by_kind.items()))}"
    )


def fuzz(
    server: str, base_url: str, probes: st.SearchStrategy[Probe], post_target: str, health_ok: Callable[[Any], bool]
) -> None:
    """Send EXAMPLES_PER_SERVER generated probes, then the raw ones; no 5xx, no app error, /health fine."""
    began_s = time.perf_counter()
    client = Client(base_url)
    generated: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    wrongly_accepted: list[Probe] = []

    @FUZZ_SETTINGS
    @given(probes)
    def send_one(probe: Probe) -> None:
        outcome = client.send(probe)
        if isinstance(outcome, int) and outcome < 300 and probe.target.startswith("/admin/fault"):
            assert client.send(MOCK_RESET) == 200, "could not clear a fault window"
        generated[str(outcome)] += 1
        by_kind.setdefault(probe.kind, Counter())[str(outcome)] += 1
        if isinstance(outcome, int) and outcome < 300 and probe.must_reject:
            wrongly_accepted.append(probe)
        # asserted here, so Hypothesis shrinks a failure to the smallest input that causes it
        assert is_acceptable(probe, outcome), f"{server}: {outcome} for {probe!r:.2000}"

    raw: Counter[str] = Counter()
    closed_by: list[str] = []  # raw requests the server hung up on without an answer
    with uvicorn_errors() as errors:
        send_one()
        client.close()
        for name, payload in raw_payloads(urlsplit(base_url).netloc, "/no-such-path", post_target):
            outcome = raw_exchange(base_url, payload)
            raw[str(outcome)] += 1
            if outcome == "closed":
                closed_by.append(name)
            assert outcome == "closed" or (isinstance(outcome, int) and 400 <= outcome < 500), (
                f"{server}: raw request {name!r} got {outcome}"
            )
        connection = http.client.HTTPConnection(client.host, client.port, timeout=REQUEST_TIMEOUT_S)
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            health = orjson.loads(response.read())
        finally:
            connection.close()
    summary = describe(server, generated, raw, by_kind, time.perf_counter() - began_s) + f"; closed by {closed_by}"
    SUMMARY.update({f"{server} {kind}": counts for kind, counts in by_kind.items()})
    SUMMARY[f"{server} raw"] = raw
    print(summary)
    assert generated.total() >= EXAMPLES_PER_SERVER, summary
    assert raw.total() >= 50, summary
    assert not wrongly_accepted, f"accepted although invalid: {wrongly_accepted[:3]!r:.2000}\n{summary}"
    assert not errors, f"uvicorn logged: {errors[0].getMessage()} {errors[0].exc_info!r}\n{summary}"
    assert response.status == 200 and health_ok(health), f"/health after fuzzing: {health}\n{summary}"


# ---------------------------------------------------------------------------------------------
# the tests


@pytest.fixture(scope="module")
def mock_api_url() -> Iterator[str]:
    with serving(mock_api.create_app(mock_api.parse_config({"upstreams": ZERO_LATENCY})), loop="uvloop") as url:
        yield url


@pytest.fixture(scope="module")
def inference_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model_path = write_tiny_model(tmp_path_factory.mktemp("model") / "tiny-fp32.onnx", features=FEATURES)
    config = inference_server.ServerConfig(
        model_path=model_path, precision="fp32", max_rows=MAX_ROWS, max_body_bytes=INFERENCE_MAX_BODY_BYTES
    )
    with serving(inference_server.create_app(config), loop="uvloop") as url:
        yield url


def test_mock_api_answers_malformed_requests_with_4xx_and_keeps_serving(mock_api_url: str) -> None:
    fuzz("mock_api", mock_api_url, mock_api_probes, "/llm", lambda health: health == {"status": "ok"})


def test_inference_server_answers_malformed_requests_with_4xx_and_keeps_serving(inference_url: str) -> None:
    fuzz(
        "inference",
        inference_url,
        inference_probes,
        "/predict",
        lambda health: health["status"] == "ok" and health["features"] == FEATURES,
    )


@pytest.mark.parametrize(
    "rows",
    [
        [[[]] * FEATURES],  # what Hypothesis shrank the 500 to
        [[[0.5]] * FEATURES],
        [[[1.0, 2.0]] * FEATURES] * 2,
        [[[[0.0]]] * FEATURES],
    ],
)
def test_rows_of_nested_lists_are_a_400_not_a_500(inference_url: str, rows: list[Any]) -> None:
    """Regression: equal-length nested lists became a 3-D array that onnxruntime refused with a 500."""
    parts = urlsplit(inference_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=REQUEST_TIMEOUT_S)
    try:
        body = orjson.dumps({"rows": rows})
        connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        status, answer = response.status, orjson.loads(response.read())
    finally:
        connection.close()
    assert status == 400
    assert answer["error"].startswith("rows must hold numbers only")
