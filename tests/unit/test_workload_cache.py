"""The cache workload's parts without Docker: Zipf keys, the LRU, knobs, the trial metrics, and
the lookup path's Redis fallback against a fake Redis server (real redis-py client, real
sockets) and a fake Postgres pool."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import psycopg
import pytest
from pydantic import ValidationError

from lab.loadgen.operation import CallResult
from lab.stack.endpoint import Endpoint
from lab.workloads.cache import (
    DRIVER,
    L2_HIT,
    L3_HIT,
    POSTGRES_ERROR,
    REDIS_ERROR,
    SELECT_VALUE,
    CacheKnobs,
    CacheOperation,
    CacheWorkload,
    LruCache,
    ZipfKeys,
    redis_pool_client,
    seed_copy_chunks,
    zipf_cdf,
)
from tests.support.samples import load_result, write_samples

MS = 1_000_000


def endpoint(service: str, port: int) -> Endpoint:
    return Endpoint(service, "127.0.0.1", port, f"{service}://127.0.0.1:{port}", "id", "name", "image")


# --- Zipf keys ---------------------------------------------------------------------------------


def test_zipf_cdf_gives_each_rank_its_theoretical_probability() -> None:
    keys, s = 1_000, 1.1
    cdf = zipf_cdf(keys, s)
    harmonic = sum(k**-s for k in range(1, keys + 1))
    probabilities = np.diff(cdf, prepend=0.0)
    for rank in (0, 1, 2, 9, 999):
        assert probabilities[rank] == pytest.approx((rank + 1) ** -s / harmonic, rel=1e-9)
    assert cdf[-1] == 1.0 and np.all(np.diff(cdf) > 0)


def test_sampled_top_keys_match_the_zipf_popularity() -> None:
    keys, s, draws = 200_000, 1.1, 200_000
    sampler = ZipfKeys(zipf_cdf(keys, s), np.random.default_rng(5))
    sample = sampler.draw(draws)
    assert sample.min() >= 0 and sample.max() < keys
    harmonic = float(np.sum(np.arange(1, keys + 1, dtype=np.float64) ** -s))
    counts = np.bincount(sample, minlength=keys)
    for rank in range(10):
        p = (rank + 1) ** -s / harmonic
        sigma = np.sqrt(draws * p * (1 - p))
        assert abs(counts[rank] - draws * p) < 4 * sigma, f"rank {rank}: {counts[rank]} vs {draws * p:.0f}"
    # the top 5,000 keys carry their theoretical share of the traffic (82.8 % at s = 1.1)
    top_share = counts[:5_000].sum() / draws
    expected = float(np.sum(np.arange(1, 5_001, dtype=np.float64) ** -s)) / harmonic
    assert abs(top_share - expected) < 0.005


def test_key_stream_depends_on_the_seed_only_not_on_the_block_size() -> None:
    cdf = zipf_cdf(10_000, 1.1)
    a = ZipfKeys(cdf, np.random.default_rng(9), block=4096).draw(5_000)
    b = ZipfKeys(cdf, np.random.default_rng(9), block=7).draw(5_000)
    c = ZipfKeys(cdf, np.random.default_rng(10)).draw(5_000)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_a_single_key_space_always_draws_key_zero() -> None:
    sampler = ZipfKeys(zipf_cdf(1, 2.0), np.random.default_rng(0))
    assert set(sampler.draw(1_000).tolist()) == {0}


# --- LRU -----------------------------------------------------------------------------------------


def test_lru_evicts_the_least_recently_used_and_stays_within_capacity() -> None:
    cache = LruCache(3)
    for key in (1, 2, 3):
        cache.put(key, b"v%d" % key)
    assert cache.get(1) == b"v1"  # 1 is now the most recently used
    cache.put(4, b"v4")
    assert cache.get(2) is None  # 2 was the least recently used
    assert cache.keys() == [3, 1, 4]
    cache.put(3, b"new")  # re-putting refreshes, does not grow
    assert len(cache) == 3 and cache.keys() == [1, 4, 3] and cache.get(3) == b"new"
    for key in range(100, 200):
        cache.put(key, b"x")
        assert len(cache) <= 3
    assert cache.keys() == [197, 198, 199]


def test_lru_of_size_zero_keeps_nothing() -> None:
    cache = LruCache(0)
    cache.put(1, b"v")
    assert cache.get(1) is None and len(cache) == 0


def test_lru_memory_counts_container_keys_and_values() -> None:
    cache = LruCache(2)
    empty = cache.memory_bytes()
    assert empty == sys.getsizeof(cache._entries)
    value = bytes(256)
    cache.put(10**6, value)
    cache.put(10**6 + 1, value)
    per_entry = sys.getsizeof(10**6) + sys.getsizeof(value)
    assert cache.memory_bytes() == sys.getsizeof(cache._entries) + 2 * per_entry
    small = bytes(16)
    cache.put(10**6 + 2, small)  # evicts an entry with a 256-byte value, adds one with 16 bytes
    assert cache.memory_bytes() == sys.getsizeof(cache._entries) + per_entry + 28 + sys.getsizeof(small)
    assert sys.getsizeof(small) == 33 + 16  # CPython: a bytes object is a 33-byte header + payload


# --- knobs ---------------------------------------------------------------------------------------


def test_defaults_are_the_shipped_baseline() -> None:
    knobs = CacheKnobs()
    assert (knobs.keys, knobs.zipf_s, knobs.l1_size, knobs.warming) == (200_000, 1.1, 5_000, False)
    assert (knobs.l2_ttl_s, knobs.value_bytes, knobs.redis_pool, knobs.postgres_pool) == (300, 256, 32, 8)
    # no fallback, and Redis waits as long as it always did (10 s)
    assert (knobs.fallback, knobs.redis_timeout_ms, knobs.redis_backoff_ms) == (False, 10_000, 200)
    assert CacheKnobs.model_validate({"zipf_s": 1}).zipf_s == 1.0  # a TOML integer is a fine float


@pytest.mark.parametrize(
    "bad",
    [
        {"keys": 0},
        {"zipf_s": 0},
        {"zipf_s": -1.0},
        {"l1_size": -1},
        {"l2_ttl_s": 0},
        {"value_bytes": 0},
        {"redis_pool": 0},
        {"postgres_pool": 0},
        {"l1_size": "5000"},  # strict: no strings for numbers
        {"warming": "yes"},
        {"fallback": "true"},
        {"redis_timeout_ms": 0},
        {"redis_timeout_ms": 0.5},  # whole milliseconds
        {"redis_backoff_ms": -1},
        {"l1_sise": 50_000},  # unknown key
        {"keys": 10_000_000, "value_bytes": 65_536},  # 640 GB of seed data
    ],
)
def test_bad_knobs_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CacheKnobs.model_validate(bad)


def test_knobs_are_frozen() -> None:
    with pytest.raises(ValidationError):
        CacheKnobs().l1_size = 1


# --- driver --------------------------------------------------------------------------------------


def test_driver_describes_itself_and_hands_out_a_json_operation(tmp_path: Path) -> None:
    assert DRIVER is CacheWorkload
    assert CacheWorkload.kind == "cache" and CacheWorkload.required_services == ("redis", "postgres")
    endpoints = {"redis": endpoint("redis", 6379), "postgres": endpoint("postgres", 5432)}
    driver = CacheWorkload(CacheKnobs(l1_size=50_000, warming=True), endpoints, seed=3)
    ref = driver.operation(trial_seed=17)
    assert ref.factory == "lab.workloads.cache:cache_operation"
    assert ref.params["trial_seed"] == 17 and ref.params["redis_port"] == 6379
    assert CacheKnobs.model_validate(ref.params["knobs"]) == driver.config
    with pytest.raises(ValueError, match="redis"):
        CacheWorkload(CacheKnobs(), {"postgres": endpoint("postgres", 5432)}, seed=3)


def test_seed_rows_are_valid_binary_copy_and_deterministic() -> None:
    data = b"".join(seed_copy_chunks(keys=3, value_bytes=4, seed=1))
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")
    row_bytes = 2 + 4 + 8 + 4 + 4
    assert len(data) == 19 + 3 * row_bytes + 2
    second_row = data[19 + row_bytes : 19 + 2 * row_bytes]
    assert second_row[:18] == b"\x00\x02" + b"\x00\x00\x00\x08" + (1).to_bytes(8, "big") + b"\x00\x00\x00\x04"
    assert data == b"".join(seed_copy_chunks(keys=3, value_bytes=4, seed=1))
    assert data != b"".join(seed_copy_chunks(keys=3, value_bytes=4, seed=2))


# --- metrics -------------------------------------------------------------------------------------


def test_trial_metrics_from_hand_made_samples(tmp_path: Path) -> None:
    rows: list[tuple[str, str, int | None]] = [
        *[("ok", "l1", ms) for ms in (1, 2, 3, 4, 5)],
        *[("ok", "l2", ms) for ms in (10, 20, 30)],
        ("ok", "l3", 100),
        ("error:redis", "l2", 50),
        ("dropped", "", None),  # never sent: not a lookup
    ]
    write_samples(tmp_path / "load", rows)
    stats = [
        {"l1_bytes": 1_000.0, "l1_entries": 10.0, "warming_s": 0.5, "lookups": 6.0, "fallbacks": 1.0},
        {"l1_bytes": 2_000.0, "l1_entries": 20.0, "warming_s": 0.7, "lookups": 4.0, "fallbacks": 2.0},
    ]
    endpoints = {"redis": endpoint("redis", 1), "postgres": endpoint("postgres", 2)}
    metrics = CacheWorkload(CacheKnobs(), endpoints, seed=0).trial_metrics(load_result(tmp_path / "load", stats))
    expected = {
        "lookups": 10,
        "l1_hit_rate": 0.5,
        "l2_hit_rate": 3 / 5,  # 5 lookups missed L1 and reached L2; 3 of them hit
        "l2_share": 0.3,
        "l3_share": 0.1,
        "hit_rate": 0.8,
        "errors": 1,
        "error_rate": 0.1,
        # ok latencies 1 2 3 4 5 10 20 30 100: linear interpolation between order statistics
        "lookup_p50_ms": 5.0,
        "lookup_p95_ms": 30 + 0.6 * 70,
        "lookup_p99_ms": 30 + 0.92 * 70,
        "l1_p50_ms": 3.0,
        "l1_p95_ms": 4.8,
        "l1_p99_ms": 4.96,
        "l2_p50_ms": 20.0,
        "l2_p95_ms": 29.0,
        "l2_p99_ms": 29.8,
        "l3_p50_ms": 100.0,
        "l3_p95_ms": 100.0,
        "l3_p99_ms": 100.0,
        "l1_bytes": 3_000,
        "l1_entries": 30,
        "warming_s": 0.7,
        # from the operations' counters: 3 of their 10 lookups
        "fallbacks": 3,
        "fallback_share": 0.3,
    }
    assert set(metrics) == set(expected)
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-9), name


def test_a_tier_that_answered_nothing_has_no_latency(tmp_path: Path) -> None:
    write_samples(tmp_path / "load", [("ok", "l1", 1), ("ok", "l1", 3)])
    endpoints = {"redis": endpoint("redis", 1), "postgres": endpoint("postgres", 2)}
    metrics = CacheWorkload(CacheKnobs(), endpoints, seed=0).trial_metrics(load_result(tmp_path / "load", [{}]))
    assert metrics["l1_hit_rate"] == 1.0 and metrics["hit_rate"] == 1.0
    assert np.isnan(metrics["l2_hit_rate"])  # no lookup reached L2
    assert metrics["l3_share"] == 0.0 and np.isnan(metrics["l3_p50_ms"])
    assert metrics["l1_p50_ms"] == 2.0
    assert metrics["fallbacks"] == 0.0 and np.isnan(metrics["fallback_share"])  # no counters: no lookups


# --- Redis fallback --------------------------------------------------------------------------------

VALUE = b"v" * 16
HELLO_REPLY = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n"


async def read_command(reader: asyncio.StreamReader) -> list[bytes] | None:
    """One RESP command (an array of bulk strings), or None at the end of the stream."""
    header = await reader.readline()
    if not header:
        return None
    args = []
    for _ in range(int(header[1:])):
        length = int((await reader.readline())[1:])
        args.append((await reader.readexactly(length + 2))[:-2])
    return args


class FakeRedis:
    """Enough of Redis for redis-py (HELLO 3, GET, SET, PING) on one 127.0.0.1 port, with faults:
    killed (`stop`: no listener, connections closed) and started again on the same port,
    paused (connections accepted, nothing answered), or restarted behind the client's back
    (`forget_connections`: the open connections go silent, new ones are served)."""

    def __init__(self) -> None:
        self.port = 0
        self.data: dict[bytes, bytes] = {}
        self.connections = 0  # accepted since creation
        self.commands: list[bytes] = []  # GET and SET received, answered or not
        self.received = 0  # every command received (HELLO, CLIENT, GET...), answered or not
        self.failing: set[bytes] = set()  # commands answered with an error reply
        self.generation = 0  # connections of an older generation are never answered
        self.running = asyncio.Event()
        self.running.set()
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Like `docker kill`: the listener and every connection closed, the data lost."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for handler in list(self.handlers):
            handler.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        self.data.clear()

    def forget_connections(self) -> None:
        self.generation += 1
        self.data.clear()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self.handlers.add(cast("asyncio.Task[None]", handler))
        self.connections += 1
        generation = self.generation
        try:
            while (args := await read_command(reader)) is not None:
                command = args[0].upper()
                self.received += 1
                if command in (b"GET", b"SET"):
                    self.commands.append(command)
                await self.running.wait()
                if generation == self.generation:
                    writer.write(self.answer(command, args))
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.handlers.discard(cast("asyncio.Task[None]", handler))

    def answer(self, command: bytes, args: list[bytes]) -> bytes:
        if command in self.failing:
            return b"-ERR injected failure\r\n"
        if command == b"HELLO":
            return HELLO_REPLY
        if command == b"GET":
            value = self.data.get(args[1])
            return b"_\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)
        if command == b"SET":
            self.data[args[1]] = args[2]
            return b"+OK\r\n"
        return b"+PONG\r\n" if command == b"PING" else b"+OK\r\n"  # CLIENT SETINFO and the like


class FakeCursor:
    def __init__(self, row: tuple[bytes] | None) -> None:
        self.row = row

    async def fetchone(self) -> tuple[bytes] | None:
        return self.row


class FakePostgres:
    """The pool as a lookup uses it: one connection, the one SELECT, answered from a dict."""

    def __init__(self, values: dict[int, bytes]) -> None:
        self.values = values
        self.queries = 0
        self.broken = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[FakePostgres]:
        yield self

    async def execute(self, query: str, params: tuple[int], binary: bool = False) -> FakeCursor:
        assert query == SELECT_VALUE
        self.queries += 1
        if self.broken:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        value = self.values.get(params[0])
        return FakeCursor(None if value is None else (value,))

    async def close(self) -> None:
        pass


Scenario = Callable[[CacheOperation, FakeRedis, FakePostgres], Awaitable[None]]


def run_lookups(scenario: Scenario, **knobs: Any) -> dict[str, float]:
    """Run `scenario` on an operation against a fresh fake Redis and Postgres; its stats after.

    One key and no L1: every lookup is key 0 and reaches Redis (or the fallback).
    """

    async def main() -> dict[str, float]:
        redis_server, postgres = FakeRedis(), FakePostgres({0: VALUE})
        await redis_server.start()
        config = CacheKnobs(keys=1, l1_size=0, **knobs)
        keys = ZipfKeys(zipf_cdf(1, 1.1), np.random.default_rng(0))
        client = redis_pool_client("127.0.0.1", redis_server.port, config)
        operation = CacheOperation(config, keys, client, cast(Any, postgres))
        try:
            await scenario(operation, redis_server, postgres)
        finally:
            await operation.close()
            await redis_server.stop()
        return operation.stats()

    return asyncio.run(main())


async def lookups(operation: CacheOperation, count: int) -> list[CallResult]:
    return [await operation.call(seq) for seq in range(count)]


def test_redis_pool_client_takes_its_timeouts_from_the_knob_and_never_retries() -> None:
    client = redis_pool_client("127.0.0.1", 6379, CacheKnobs(redis_timeout_ms=100, redis_pool=7))
    pool = cast(Any, client.connection_pool)
    assert (pool.max_connections, pool.timeout) == (7, 0.1)  # the wait for a free connection
    connection = pool.make_connection()
    assert (connection.socket_timeout, connection.socket_connect_timeout) == (0.1, 0.1)
    assert connection.retry.get_retries() == 0  # a failure is seen after one timeout, not four


def test_without_fallback_a_redis_failure_is_an_error_every_time() -> None:
    results: list[CallResult] = []

    async def scenario(operation: CacheOperation, redis_server: FakeRedis, postgres: FakePostgres) -> None:
        await redis_server.stop()
        results.extend(await lookups(operation, 2))  # refused
        await redis_server.start()
        redis_server.failing.add(b"SET")
        results.extend(await lookups(operation, 1))  # filling L2 fails
        redis_server.failing.clear()
        results.extend(await lookups(operation, 2))  # no back-off: Redis is used at once

    stats = run_lookups(scenario, redis_timeout_ms=200)
    assert results == [REDIS_ERROR, REDIS_ERROR, REDIS_ERROR, L3_HIT, L2_HIT]
    assert (stats["errors"], stats["hits_l3"], stats["hits_l2"]) == (3, 1, 1)
    assert stats["fallbacks"] == stats["redis_failures"] == stats["redis_skipped"] == 0


def test_with_fallback_a_redis_failure_is_an_l3_hit_counted_as_a_fallback() -> None:
    results: list[CallResult] = []
    queries: list[int] = []

    async def scenario(operation: CacheOperation, redis_server: FakeRedis, postgres: FakePostgres) -> None:
        await redis_server.stop()
        results.extend(await lookups(operation, 1))  # refused: served by Postgres
        queries.append(postgres.queries)
        await redis_server.start()
        redis_server.failing.add(b"SET")
        results.extend(await lookups(operation, 1))  # the value came from Postgres; filling L2 failed
        redis_server.failing.clear()
        results.extend(await lookups(operation, 2))  # Redis again: filled, then hit
        await redis_server.stop()
        postgres.broken = True
        results.extend(await lookups(operation, 1))  # nothing left to fall back to

    stats = run_lookups(scenario, fallback=True, redis_timeout_ms=200, redis_backoff_ms=0)
    assert results == [L3_HIT, L3_HIT, L3_HIT, L2_HIT, POSTGRES_ERROR]
    assert queries == [1]
    assert (stats["lookups"], stats["hits_l3"], stats["hits_l2"], stats["errors"]) == (5, 3, 1, 1)
    assert (stats["fallbacks"], stats["redis_failures"], stats["redis_skipped"]) == (2, 3, 0)


def test_back_off_skips_redis_for_its_window_then_one_lookup_probes_it() -> None:
    backoff_s = 0.3
    results: list[CallResult] = []
    seen: list[tuple[int, list[bytes]]] = []

    async def scenario(operation: CacheOperation, redis_server: FakeRedis, postgres: FakePostgres) -> None:
        await redis_server.stop()
        failed_at = time.monotonic()
        results.extend(await lookups(operation, 1))
        await redis_server.start()  # back already, but the back-off is not over
        results.extend(await lookups(operation, 3))
        assert time.monotonic() - failed_at < backoff_s / 2, "too slow a machine for this test"
        seen.append((redis_server.connections, list(redis_server.commands)))
        await asyncio.sleep(max(0.0, failed_at + backoff_s + 0.05 - time.monotonic()))
        results.extend(await lookups(operation, 2))
        seen.append((redis_server.connections, list(redis_server.commands)))

    stats = run_lookups(scenario, fallback=True, redis_timeout_ms=200, redis_backoff_ms=int(backoff_s * 1000))
    assert results == [L3_HIT] * 4 + [L3_HIT, L2_HIT]
    assert seen[0] == (0, [])  # during the back-off nobody even connected
    assert seen[1] == (1, [b"GET", b"SET", b"GET"])  # after it, Redis is used again and filled
    assert (stats["fallbacks"], stats["redis_skipped"], stats["redis_failures"]) == (4, 3, 1)
    assert stats["hits_l3"] == 5 and stats["errors"] == 0


def test_a_paused_redis_costs_one_short_timeout_per_back_off_and_is_used_again_when_resumed() -> None:
    timeout_s, backoff_s = 0.05, 0.1
    durations_s: list[float] = []
    results: list[CallResult] = []
    probes: list[int] = []

    async def scenario(operation: CacheOperation, redis_server: FakeRedis, postgres: FakePostgres) -> None:
        results.extend(await lookups(operation, 2))  # filled, then hit
        redis_server.running.clear()  # docker pause
        end_s = time.monotonic() + 0.5
        while time.monotonic() < end_s:
            began = time.monotonic()
            results.extend(await lookups(operation, 1))
            durations_s.append(time.monotonic() - began)
            await asyncio.sleep(0.005)
        # once the back-off is over, lookups arriving together send one probe (its connection's
        # HELLO times out: the failed connection was closed) and the others fall back
        await asyncio.sleep(backoff_s + 0.05)
        before = redis_server.received
        results.extend(await asyncio.gather(*(operation.call(seq) for seq in range(5))))
        probes.append(redis_server.received - before)
        redis_server.running.set()  # docker unpause
        await asyncio.sleep(backoff_s + 0.05)
        results.extend(await lookups(operation, 1))

    stats = run_lookups(scenario, fallback=True, redis_timeout_ms=int(timeout_s * 1000), redis_backoff_ms=100)
    paused = len(durations_s) + 5
    assert results == [L3_HIT, L2_HIT] + [L3_HIT] * paused + [L2_HIT]  # the data outlived the pause
    assert stats["fallbacks"] == paused and stats["errors"] == 0
    # 0.5 s paused: a timeout, a back-off, a timeout ... (one cycle is 0.15 s), never the default 10 s
    assert 2 <= stats["redis_failures"] <= 5 + 1
    assert max(durations_s) < 0.5
    assert sorted(durations_s)[len(durations_s) // 2] < timeout_s / 2  # most lookups skip Redis
    assert probes == [1] and stats["redis_skipped"] == paused - stats["redis_failures"]


def test_after_a_restart_behind_its_back_the_pool_reconnects_every_connection() -> None:
    results: list[CallResult] = []

    async def scenario(operation: CacheOperation, redis_server: FakeRedis, postgres: FakePostgres) -> None:
        results.extend(await lookups(operation, 1))  # key 0 filled
        # four lookups at once: four pooled connections, now idle
        results.extend(await asyncio.gather(*(operation.call(seq) for seq in range(4))))
        assert redis_server.connections == 4
        redis_server.forget_connections()  # restarted: the old connections silently dead, the data gone
        results.extend(await lookups(operation, 1))  # a dead connection times out: fallback, back-off
        await asyncio.sleep(0.15)
        results.extend(await lookups(operation, 1))  # the probe: a new connection, key 0 filled again
        results.extend(await asyncio.gather(*(operation.call(seq) for seq in range(4))))

    stats = run_lookups(scenario, fallback=True, redis_timeout_ms=50, redis_backoff_ms=100)
    # without dropping the idle connections, the last four would meet three dead ones
    assert results == [L3_HIT] + [L2_HIT] * 4 + [L3_HIT, L3_HIT] + [L2_HIT] * 4
    assert (stats["fallbacks"], stats["redis_failures"], stats["errors"]) == (1, 1, 0)
