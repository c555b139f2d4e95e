"""The cache workload: a three-tier read path (in-process LRU, Redis, Postgres) under Zipf keys.

Every lookup draws a key from a bounded Zipf distribution over `keys` keys - key k has
popularity rank k, so key 0 is the hottest - and reads it cache-aside through three tiers:

    L1  an LRU of `l1_size` entries inside the worker process (one per worker)
    L2  Redis (a pool of `redis_pool` connections), filled with a TTL of `l2_ttl_s`
    L3  Postgres table `cache_items(key, value)` seeded by `prepare` (a pool of `postgres_pool`)

A miss fills the tiers above the one that answered. As in a plain cache-aside client there is
no request coalescing: concurrent misses of one key each go on to the next tier. The sample's label is that tier ("l1",
"l2", "l3"); failures are "error:redis" / "error:postgres" (and "error:missing" for a key
that is not in L3, which a correct setup never produces).

What `reset` means: before every trial Redis is emptied (FLUSHDB). L1 lives in the worker
processes, which the load generator starts anew for every run, so it starts empty by
construction. L3 is read-only after `prepare`. Every trial therefore starts from the same
cold caches - or, with warming, from the same warmed ones.

Predictive warming (`warming = true`): inside the operation factory - before the worker says
it is ready, so outside the measured run - each worker reads the min(l1_size, keys) hottest
keys (by the known Zipf ranking) from Postgres and puts them into its L1 and into Redis. The
time it takes is reported as `warming_s`; it is a real cost, just not a per-request one.

Fallback (`fallback = true`, for fault-injection experiments): when Redis fails - refused or
reset connections, a timeout (`redis_timeout_ms`; Redis killed, stopped or paused), an error
reply - the lookup reads Postgres instead and succeeds as an "l3" lookup, counted in the
operation's `fallbacks`. A failure also skips Redis for `redis_backoff_ms`: lookups then go
straight to Postgres (counted `redis_skipped`), so a dead Redis costs each lookup nothing,
let alone a timeout. After the back-off one lookup at a time probes Redis again (the others
keep falling back until it answers), so a Redis that came back is used again within about
one back-off. A failure also drops the pool's idle connections: after a restart on the same
port they are dead, and the next lookups reconnect instead of finding that out one by one.
Without fallback a Redis failure is an "error:redis" lookup, every time.

A note for reading results: a cold L1 only feels its size once it is full. In a trial of a few
thousand lookups a 5,000-entry L1 never fills (10,000 Zipf(1.1) draws over 200,000 keys touch
about 3,300 distinct keys), so without warming L1 size barely matters in short trials.

Metrics (`trial_metrics`), from the measured phase's samples; a lookup is a completed call:
    l1_hit_rate   L1 hits / lookups
    l2_hit_rate   L2 hits / lookups that reached L2 (the L1 misses)
    l2_share      L2 hits / lookups;  l3_share: lookups answered by Postgres / lookups
    hit_rate      (L1 hits + L2 hits) / lookups - the cache's overall hit rate
    lookup_p50_ms ... p95, p99 of successful lookups from the intended send time, overall and
                  per tier (l1_p50_ms, ...; NaN for a tier that answered nothing)
    l1_bytes      estimated memory of all workers' L1 at the end of the run (see LruCache)
    errors        failed lookups (error_rate = errors / lookups)
    fallbacks     lookups served by Postgres because Redis failed or was being skipped (part of
                  l3_share); fallback_share = fallbacks / lookups, both from the operation's
                  counters, which cover the whole run (warm-up included: it cannot tell the phases apart)
"""

from __future__ import annotations

import contextlib
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Final, cast

import numpy as np
import polars as pl
import psycopg
import redis
import redis.asyncio
from psycopg_pool import AsyncConnectionPool
from pydantic import Field, model_validator
from redis.exceptions import RedisError

from lab.loadgen.operation import CallResult, OperationRef
from lab.loadgen.runner import LoadResult
from lab.stack.endpoint import Endpoint
from lab.workloads.base import Knobs, WorkloadDriver, latency_by_label

TIERS: Final = ("l1", "l2", "l3")
QUANTILES: Final = (50, 95, 99)
KEY_BLOCK: Final = 4096  # keys drawn per numpy call: one searchsorted per block, not per lookup
COPY_CHUNK_ROWS: Final = 16_384
WARM_CHUNK_KEYS: Final = 2_000
WARM_SCRIPT: Final = "for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[1]) end return #KEYS"
MAX_SEED_BYTES: Final = 4 * 1024**3
CONNECT_TIMEOUT_S: Final = 30.0
REQUEST_TIMEOUT_S: Final = 10.0
VALUES_STREAM: Final = 1  # SeedSequence tags: the seeded values and the key stream never share draws
KEYS_STREAM: Final = 2
SELECT_VALUE: Final = "SELECT value FROM cache_items WHERE key = %s"
# PostgreSQL's binary COPY framing: signature, flags, header-extension length ... trailer
COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER: Final = struct.pack(">h", -1)

# lookups = hits_l1 + hits_l2 + hits_l3 + errors; fallbacks (part of hits_l3) were served by
# Postgres because Redis failed; redis_skipped of them skipped Redis during a back-off;
# redis_failures: Redis errors and timeouts that started a back-off (fallback only)
COUNTS: Final = ("lookups", "hits_l1", "hits_l2", "hits_l3", "errors", "fallbacks", "redis_skipped", "redis_failures")

L1_HIT: Final = CallResult("ok", "l1")
L2_HIT: Final = CallResult("ok", "l2")
L3_HIT: Final = CallResult("ok", "l3")
REDIS_ERROR: Final = CallResult("error:redis", "l2")
POSTGRES_ERROR: Final = CallResult("error:postgres", "l3")
MISSING: Final = CallResult("error:missing", "l3")


class CacheKnobs(Knobs):
    """The `[workload]` table of a cache experiment; the defaults are the shipped baseline."""

    keys: int = Field(default=200_000, ge=1, le=20_000_000, description="key space (rows in L3)")
    zipf_s: float = Field(default=1.1, gt=0, le=10, description="Zipf exponent of key popularity")
    l1_size: int = Field(default=5_000, ge=0, le=10_000_000, description="in-process LRU entries (0: no L1)")
    warming: bool = Field(default=False, description="pre-load the hottest keys into L1 and L2 before measuring")
    l2_ttl_s: int = Field(default=300, ge=1, le=30 * 86_400, description="Redis TTL of a filled key")
    value_bytes: int = Field(default=256, ge=1, le=65_536, description="size of each cached value")
    redis_pool: int = Field(default=32, ge=1, le=1_024, description="Redis connections per worker")
    postgres_pool: int = Field(default=8, ge=1, le=500, description="Postgres connections per worker")
    fallback: bool = Field(default=False, description="serve a lookup from Postgres when Redis fails, not an error")
    redis_timeout_ms: int = Field(
        default=int(REQUEST_TIMEOUT_S * 1000),
        ge=1,
        le=600_000,
        description="Redis connect, command and free-connection timeout (a failure once it passes)",
    )
    redis_backoff_ms: int = Field(
        default=200, ge=0, le=600_000, description="with fallback: how long to skip Redis after it failed"
    )

    @model_validator(mode="after")
    def seed_fits(self) -> CacheKnobs:
        if self.keys * self.value_bytes > MAX_SEED_BYTES:
            raise ValueError(f"keys * value_bytes must stay below {MAX_SEED_BYTES:,} bytes of seed data")
        return self


def zipf_cdf(keys: int, s: float) -> np.ndarray:
    """The CDF of a bounded Zipf over ranks 0..keys-1: P(rank k) is proportional to 1 / (k + 1)**s."""
    weights = np.arange(1, keys + 1, dtype=np.float64) ** -s
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    cdf[-1] = 1.0  # exactly: a uniform draw u < 1 then always lands on a valid rank
    return cdf


class ZipfKeys:
    """Key ranks drawn from a bounded Zipf by inverse CDF, a block of uniforms at a time."""

    def __init__(self, cdf: np.ndarray, rng: np.random.Generator, block: int = KEY_BLOCK) -> None:
        self.cdf = cdf
        self.rng = rng
        self.block = block
        self._keys: list[int] = []
        self._next = 0

    def next(self) -> int:
        if self._next >= len(self._keys):
            # side="right": the first rank whose cumulative probability exceeds u
            self._keys = np.searchsorted(self.cdf, self.rng.random(self.block), side="right").tolist()
            self._next = 0
        key = self._keys[self._next]
        self._next += 1
        return key

    def draw(self, count: int) -> np.ndarray:
        """`count` keys at once (the same stream as `next`, for tests and analysis)."""
        return np.array([self.next() for _ in range(count)], dtype=np.int64)


class LruCache:
    """A bounded least-recently-used map of key -> value bytes that knows what memory it holds.

    `memory_bytes` = sys.getsizeof(the OrderedDict) + sum of sys.getsizeof(key) and
    sys.getsizeof(value) of every entry. On CPython the OrderedDict's own size covers its hash
    table, entry array and linked-list nodes (checked against tracemalloc: equal for 50,000
    entries, ~105 bytes per entry); an int key adds 28 bytes and a 256-byte value 289. Not
    counted: the interpreter and allocator slack (a few percent).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[int, bytes] = OrderedDict()
        self._payload_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: int) -> bytes | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: int, value: bytes) -> None:
        if self.capacity == 0:
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._payload_bytes -= sys.getsizeof(key) + sys.getsizeof(previous)
        self._entries[key] = value
        self._payload_bytes += sys.getsizeof(key) + sys.getsizeof(value)
        while len(self._entries) > self.capacity:
            evicted_key, evicted = self._entries.popitem(last=False)
            self._payload_bytes -= sys.getsizeof(evicted_key) + sys.getsizeof(evicted)

    def keys(self) -> list[int]:
        """Keys from least to most recently used (the next to be evicted first)."""
        return list(self._entries)

    def memory_bytes(self) -> int:
        return sys.getsizeof(self._entries) + self._payload_bytes


def redis_key(key: int) -> str:
    return f"ci:{key}"


class CacheOperation:
    """One worker's lookups through L1, L2 and L3, with per-tier counters."""

    def __init__(
        self,
        knobs: CacheKnobs,
        keys: ZipfKeys,
        redis_client: redis.asyncio.Redis,
        postgres: AsyncConnectionPool[Any],
    ) -> None:
        self.knobs = knobs
        self.keys = keys
        self.l1 = LruCache(knobs.l1_size)
        self.redis = redis_client
        self.postgres = postgres
        self.counts = dict.fromkeys(COUNTS, 0)
        self.warming_s = 0.0
        self.warmed_keys = 0
        # with fallback, after a Redis failure: skip Redis until `redis_retry_at_s`, then let one
        # lookup at a time (the probe) try it until one succeeds
        self.redis_down = False
        self.redis_retry_at_s = 0.0
        self.redis_probing = False

    async def call(self, seq: int) -> CallResult:
        counts = self.counts
        counts["lookups"] += 1
        key = self.keys.next()
        value = self.l1.get(key)
        if value is not None:
            counts["hits_l1"] += 1
            return L1_HIT
        if not self.redis_down:
            return await self.through_redis(key)
        if self.redis_probing or time.monotonic() < self.redis_retry_at_s:
            counts["redis_skipped"] += 1
            return await self.fall_back(key)
        self.redis_probing = True
        try:
            return await self.through_redis(key)
        finally:
            self.redis_probing = False

    async def through_redis(self, key: int) -> CallResult:
        """L2, then L3 filling L2 (cache-aside); with fallback a Redis failure ends in L3 all the same."""
        counts = self.counts
        name = redis_key(key)
        try:
            value = cast(bytes | None, await self.redis.get(name))
        except RedisError:
            if not self.knobs.fallback:
                counts["errors"] += 1
                return REDIS_ERROR
            await self.redis_failed()
            return await self.fall_back(key)
        self.redis_down = False
        if value is not None:
            self.l1.put(key, value)
            counts["hits_l2"] += 1
            return L2_HIT
        found = await self.read_l3(key)
        if isinstance(found, CallResult):
            return found
        try:
            await self.redis.set(name, found, ex=self.knobs.l2_ttl_s)
        except RedisError:
            if not self.knobs.fallback:
                counts["errors"] += 1
                return REDIS_ERROR
            await self.redis_failed()
            counts["fallbacks"] += 1  # the value is good; only filling L2 failed
        self.l1.put(key, found)
        counts["hits_l3"] += 1
        return L3_HIT

    async def read_l3(self, key: int) -> bytes | CallResult:
        """The key's value from Postgres, or the failed lookup's result (counted as an error)."""
        try:
            async with self.postgres.connection() as connection:
                cursor = await connection.execute(SELECT_VALUE, (key,), binary=True)
                row = await cursor.fetchone()
        except psycopg.Error:  # includes the pool's PoolTimeout
            self.counts["errors"] += 1
            return POSTGRES_ERROR
        if row is None:
            self.counts["errors"] += 1
            return MISSING
        return bytes(row[0])

    async def fall_back(self, key: int) -> CallResult:
        """Serve a lookup from L3 (and L1) without Redis."""
        found = await self.read_l3(key)
        if isinstance(found, CallResult):
            return found
        self.l1.put(key, found)
        self.counts["hits_l3"] += 1
        self.counts["fallbacks"] += 1
        return L3_HIT

    async def redis_failed(self) -> None:
        """Skip Redis for the back-off and drop its idle connections.

        After Redis restarts on the same port those connections are dead; dropped, the lookups
        after the back-off connect anew instead of each finding a dead one (and a new back-off).
        """
        self.counts["redis_failures"] += 1
        self.redis_down = True
        self.redis_retry_at_s = time.monotonic() + self.knobs.redis_backoff_ms / 1000
        # a close that times out is no matter: redis-py has let go of the socket all the same
        with contextlib.suppress(RedisError, OSError):
            await self.redis.connection_pool.disconnect(inuse_connections=False)

    async def warm(self) -> None:
        """Load the hottest min(l1_size, keys) keys into L1 and L2, hottest most recently used."""
        began = time.perf_counter()
        count = min(self.knobs.l1_size, self.knobs.keys)
        async with self.postgres.connection() as connection:
            # coldest first: after the inserts the hottest key is the most recently used
            cursor = await connection.execute(
                "SELECT key, value FROM cache_items WHERE key < %s ORDER BY key DESC", (count,), binary=True
            )
            rows = await cursor.fetchall()
        # One script call per chunk: redis-py packs each pipelined command in Python, which made
        # 50,000 pipelined SETs take 2.7 s here; the script takes 0.7 s.
        fill = self.redis.register_script(WARM_SCRIPT)
        for start in range(0, len(rows), WARM_CHUNK_KEYS):
            chunk = rows[start : start + WARM_CHUNK_KEYS]
            await fill(keys=[redis_key(key) for key, _ in chunk], args=[self.knobs.l2_ttl_s, *(v for _, v in chunk)])
        for key, value in rows:
            self.l1.put(int(key), bytes(value))
        self.warmed_keys = len(rows)
        self.warming_s = time.perf_counter() - began

    def stats(self) -> dict[str, float]:
        return {
            **{name: float(value) for name, value in self.counts.items()},
            "l1_entries": float(len(self.l1)),
            "l1_capacity": float(self.l1.capacity),
            "l1_bytes": float(self.l1.memory_bytes()),
            "warming_s": self.warming_s,
            "warmed_keys": float(self.warmed_keys),
        }

    async def close(self) -> None:
        try:
            await self.redis.aclose()
        finally:
            await self.postgres.close()


def redis_pool_client(host: str, port: int, knobs: CacheKnobs) -> redis.asyncio.Redis:
    """A Redis client over a pool of `redis_pool` connections, each wait bounded by `redis_timeout_ms`.

    A blocking pool waits for a free connection instead of failing at `redis_pool` in use. The
    pool's connections do not retry (unlike a client built without a pool), so a failure is
    seen after one timeout; a connection that failed is closed and the next use reconnects.
    """
    timeout_s = knobs.redis_timeout_ms / 1000
    pool = redis.asyncio.BlockingConnectionPool(
        host=host,
        port=port,
        max_connections=knobs.redis_pool,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    return redis.asyncio.Redis.from_pool(pool)


async def cache_operation(params: dict[str, Any]) -> CacheOperation:
    """The operation factory a load worker awaits: connect both pools, warm if asked."""
    knobs = CacheKnobs.model_validate(params["knobs"])
    # Workers get identical params; a `worker_index` (when the generator supplies one) gives
    # each worker its own key stream, otherwise all workers replay the same stream.
    seed = np.random.SeedSequence([int(params["trial_seed"]), int(params.get("worker_index", 0)), KEYS_STREAM])
    keys = ZipfKeys(zipf_cdf(knobs.keys, knobs.zipf_s), np.random.default_rng(seed))
    redis_client = redis_pool_client(params["redis_host"], int(params["redis_port"]), knobs)
    postgres: AsyncConnectionPool[Any] = AsyncConnectionPool(
        params["postgres_dsn"],
        min_size=knobs.postgres_pool,
        max_size=knobs.postgres_pool,
        kwargs={"autocommit": True},  # one round trip per SELECT: no BEGIN/COMMIT around it
        timeout=REQUEST_TIMEOUT_S,
        name="cache-l3",
        open=False,
    )
    operation = CacheOperation(knobs, keys, redis_client, postgres)
    try:
        await postgres.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        await redis_client.ping()
        if knobs.warming:
            await operation.warm()
    except BaseException:
        await operation.close()
        raise
    return operation


def seed_copy_chunks(keys: int, value_bytes: int, seed: int) -> Iterator[bytes]:
    """Binary COPY data for `cache_items`: rows (key, value) with seeded random values.

    Built with numpy as fixed-width binary rows, so 200,000 rows take milliseconds here and the
    COPY is bound by the server.
    """
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("key_length", ">i4"),
            ("key", ">i8"),
            ("value_length", ">i4"),
            ("value", np.uint8, (value_bytes,)),
        ]
    )
    rng = np.random.default_rng(np.random.SeedSequence([seed, VALUES_STREAM]))
    yield COPY_HEADER
    for start in range(0, keys, COPY_CHUNK_ROWS):
        count = min(COPY_CHUNK_ROWS, keys - start)
        block = np.empty(count, dtype=row)
        block["fields"] = 2
        block["key_length"] = 8
        block["key"] = np.arange(start, start + count, dtype=np.int64)
        block["value_length"] = value_bytes
        block["value"] = np.frombuffer(rng.bytes(count * value_bytes), dtype=np.uint8).reshape(count, value_bytes)
        yield block.tobytes()
    yield COPY_TRAILER


class CacheWorkload(WorkloadDriver):
    """Zipf-distributed lookups through an in-process LRU, Redis and Postgres."""

    kind = "cache"
    knobs_model = CacheKnobs
    required_services = ("redis", "postgres")

    def __init__(self, knobs: Knobs, endpoints: dict[str, Endpoint], seed: int) -> None:
        if not isinstance(knobs, CacheKnobs):
            raise TypeError(f"the cache workload needs CacheKnobs, not {type(knobs).__name__}")
        missing = [service for service in self.required_services if service not in endpoints]
        if missing:
            raise ValueError(f"the cache workload needs the services {', '.join(missing)}")
        super().__init__(knobs, endpoints, seed)
        self.config: CacheKnobs = knobs

    def prepare(self) -> None:
        """Create `cache_items` and load `keys` rows by binary COPY; the key index comes after."""
        knobs = self.config
        with psycopg.connect(self.endpoints["postgres"].url, connect_timeout=int(CONNECT_TIMEOUT_S)) as connection:
            connection.execute("DROP TABLE IF EXISTS cache_items")
            # Rows first, primary key after: one index build beats 200,000 index insertions.
            connection.execute("CREATE TABLE cache_items (key bigint NOT NULL, value bytea NOT NULL)")
            with (
                connection.cursor() as cursor,
                cursor.copy("COPY cache_items (key, value) FROM STDIN (FORMAT BINARY)") as copy,
            ):
                for chunk in seed_copy_chunks(knobs.keys, knobs.value_bytes, self.seed):
                    copy.write(chunk)
            connection.execute("ALTER TABLE cache_items ADD PRIMARY KEY (key)")
            connection.commit()
            connection.execute("ANALYZE cache_items")
            connection.commit()

    def reset(self) -> None:
        """Empty L2 (FLUSHDB); L1 starts empty in every run's new worker processes."""
        endpoint = self.endpoints["redis"]
        client = redis.Redis(host=endpoint.host, port=endpoint.port, socket_timeout=CONNECT_TIMEOUT_S)
        try:
            client.flushdb()
        finally:
            client.close()

    def operation(self, trial_seed: int) -> OperationRef:
        redis_endpoint = self.endpoints["redis"]
        return OperationRef(
            "lab.workloads.cache:cache_operation",
            {
                "postgres_dsn": self.endpoints["postgres"].url,
                "redis_host": redis_endpoint.host,
                "redis_port": redis_endpoint.port,
                "knobs": self.config.model_dump(),
                "trial_seed": trial_seed,
            },
        )

    def trial_metrics(self, result: LoadResult) -> dict[str, float]:
        return cache_metrics(result.samples(), result.operation_stats)


def cache_metrics(samples: pl.LazyFrame, operation_stats: list[dict[str, float]]) -> dict[str, float]:
    """Hit rates per tier, lookup latency percentiles and L1 memory of one trial."""
    # one row per tier: how many lookups it answered and their latency
    lookups, per_tier, overall = latency_by_label(samples, QUANTILES)
    total, errors = (
        lookups.select(pl.len().alias("completed"), pl.col("outcome").str.starts_with("error:").sum().alias("errors"))
        .collect()
        .row(0)
    )

    def share(part: float, whole: float) -> float:
        return part / whole if whole else float("nan")

    def ms(value: Any) -> float:
        return float(value) if value is not None else float("nan")

    hits = {tier: float(per_tier[tier]["n"]) if tier in per_tier else 0.0 for tier in TIERS}
    metrics: dict[str, float] = {
        "lookups": float(total),
        "l1_hit_rate": share(hits["l1"], total),
        "l2_hit_rate": share(hits["l2"], total - hits["l1"]),
        "l2_share": share(hits["l2"], total),
        "l3_share": share(hits["l3"], total),
        "hit_rate": share(hits["l1"] + hits["l2"], total),
        "errors": float(errors or 0),
        "error_rate": share(float(errors or 0), total),
    }
    for q in QUANTILES:
        metrics[f"lookup_p{q}_ms"] = ms(overall[f"p{q}"])
    for tier in TIERS:
        for q in QUANTILES:
            metrics[f"{tier}_p{q}_ms"] = ms(per_tier[tier][f"p{q}"]) if tier in per_tier else float("nan")
    metrics["l1_bytes"] = sum(stats.get("l1_bytes", 0.0) for stats in operation_stats)
    metrics["l1_entries"] = sum(stats.get("l1_entries", 0.0) for stats in operation_stats)
    metrics["warming_s"] = max((stats.get("warming_s", 0.0) for stats in operation_stats), default=0.0)
    # the operations' counters: whole run (warm-up included), both sides of the share alike
    fallbacks = sum(stats.get("fallbacks", 0.0) for stats in operation_stats)
    metrics["fallbacks"] = fallbacks
    metrics["fallback_share"] = share(fallbacks, sum(stats.get("lookups", 0.0) for stats in operation_stats))
    return metrics


DRIVER = CacheWorkload
