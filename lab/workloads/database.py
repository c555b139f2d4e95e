"""The database workload: a lead-management schema under a point / search / insert query mix.

`prepare` seeds `leads` (`leads` rows) and `activities` (`activities_per_lead` per lead on
average, attached to random leads) by COPY from a seeded generator, then ANALYZE. The seed is
fingerprinted in table `lab_seed`: a later `prepare` with the same data knobs and seed only
adds or drops the indexes, so a variant that differs only in `indexes` does not reload rows.

Query kinds (the sample label), drawn per call by the mix `mix_point` / `mix_search` /
`mix_insert` from a seeded numpy Generator:
    point   a lead by id with its last 5 activities (one statement, LATERAL join)
    search  leads of one status and region in a score range, best 20 by score
    insert  one new activity row for a random lead

Indexes (`indexes = true`): leads(status, region, score) serves `search` (equality on both
filters, then the score range read backwards, stopping at 20 rows) and activities(lead_id, at)
serves `point`'s "last 5 activities" (without it, every point query scans all activities:
Postgres does not index foreign keys by itself). Only indexes a query of the mix uses are
made: any other would cost writes and buys nothing here.

Pools: a main pool of `pool_size` connections serves inserts, and reads too unless
`read_pool_size` > 0, which gives point and search a pool of their own (same primary: it
isolates reads from writes, there is no replica). Pools are full from the start
(min_size = max_size), autocommit (one round trip per statement), and a request that gets no
connection within `pool_timeout_s` fails as "error:timeout"; other failures are "error:db".

What `reset` means: activities inserted by earlier trials are deleted (ids above the seeded
ones), the id sequence is set back so every trial inserts the same ids, and
`VACUUM (ANALYZE) activities` runs - it clears the dead rows the delete left and refreshes
statistics at a known moment, instead of autovacuum doing it in the middle of a trial; it takes
a fraction of a second. `leads` is never written. pg_stat_statements is not used.

Pool figures come from psycopg_pool's own `get_stats()`, summed over the pools (and workers);
they cover the whole run, warm-up included, as the pool cannot tell the phases apart:
    pool_efficiency   1 - requests_queued / requests_num: the share of connection requests
                      served at once, without queueing. This is what a pool is for; it does not
                      depend on how fast the server is, and a pool that is too small shows up
                      directly (target > 90 %).
    pool_wait_ms      requests_wait_ms / requests_num: mean wait for a connection per request
                      (pool_wait_ms_queued: per request that had to queue)
    pool_utilisation  usage_ms / (pool_max * active time): the share of the pool's connection
                      time spent lent out; active time is the worker's first call to its last
                      answer.
Utilisation is reported but is not the efficiency: a busy pool may be well sized or far too
small, only the queue tells them apart.
The pool adds each request's wait and use to its counters truncated to whole milliseconds, so
with millisecond queries pool_wait_ms and pool_utilisation read low (a pool of 2 with 40 callers
queued behind it, ~1 ms queries: usage_ms gave 0.47, the client-side time 0.81). The operation
therefore also times both on the client, in nanoseconds: pool_wait_ms_client (request to
connection in hand, timeouts included, per request) and pool_utilisation_client (statement time
while holding a connection / capacity). The queue counts behind pool_efficiency are exact.
Slow queries are those whose statement (after the connection was obtained, so without pool wait)
took more than `slow_query_ms`, timed on the client around execute + fetch.

Query latency percentiles (p50/p90/p95/p99, overall and per kind) are over successful queries
of the measured phase, from the intended send time: they include the pool wait.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Final, Literal

import numpy as np
import polars as pl
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import Field, model_validator

from lab.loadgen.operation import CallResult, OperationRef
from lab.loadgen.runner import LoadResult
from lab.stack.endpoint import Endpoint
from lab.workloads.base import Knobs, WorkloadDriver, latency_by_label

QueryKind = Literal["point", "search", "insert"]
KINDS: Final[tuple[QueryKind, ...]] = ("point", "search", "insert")
QUANTILES: Final = (50, 90, 95, 99)
SEED_VERSION: Final = 1  # bump when the generated data change: stored fingerprints then mismatch

REGIONS: Final = ("north", "south", "east", "west", "central", "emea", "apac", "latam")
STATUSES: Final = ("new", "contacted", "qualified", "proposal", "won", "lost")
SOURCES: Final = ("web", "referral", "ads", "event", "partner", "outbound")
ACTIVITY_KINDS: Final = ("email", "call", "meeting", "note", "visit")
FIRST_NAMES: Final = ("Ada", "Ben", "Chloe", "Dev", "Eva", "Finn", "Gita", "Hugo", "Ines", "Jon", "Kai", "Lena")
LAST_NAMES: Final = ("Alvarez", "Brown", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Jensen")
EPOCH: Final = np.datetime64("2024-01-01T00:00:00", "s")
LEAD_SPAN_S: Final = 365 * 86_400
ACTIVITY_SPAN_S: Final = 180 * 86_400
SEARCH_SCORE_WIDTH: Final = 20
LEADS_STREAM: Final = 1  # SeedSequence tags: each generated thing has its own stream
ACTIVITIES_STREAM: Final = 2
QUERIES_STREAM: Final = 3
COPY_CHUNK_ROWS: Final = 20_000
PARAM_BLOCK: Final = 4096
CONNECT_TIMEOUT_S: Final = 60.0

CREATE_LEADS: Final = """
CREATE TABLE leads (
    id bigint NOT NULL,
    email text NOT NULL,
    name text NOT NULL,
    region text NOT NULL,
    status text NOT NULL,
    source text NOT NULL,
    score int NOT NULL,
    budget_usd int NOT NULL,
    created_at timestamptz NOT NULL
)"""
CREATE_ACTIVITIES: Final = """
CREATE TABLE activities (
    id bigserial,
    lead_id bigint NOT NULL,
    kind text NOT NULL,
    at timestamptz NOT NULL,
    payload jsonb NOT NULL
)"""
INDEXES: Final = {  # name -> what it indexes
    "leads_status_region_score": "leads (status, region, score)",
    "activities_lead_at": "activities (lead_id, at)",
}
POINT_SQL: Final = """
SELECT l.id, l.email, l.name, l.status, l.score, a.kind, a.at
FROM leads l
LEFT JOIN LATERAL (
    SELECT kind, at FROM activities WHERE lead_id = l.id ORDER BY at DESC LIMIT 5
) a ON true
WHERE l.id = %s"""
SEARCH_SQL: Final = """
SELECT id, name, email, score FROM leads
WHERE status = %s AND region = %s AND score BETWEEN %s AND %s
ORDER BY score DESC LIMIT 20"""
INSERT_SQL: Final = "INSERT INTO activities (lead_id, kind, at, payload) VALUES (%s, %s, now(), %s::jsonb)"
POOL_TOTALS: Final = (
    "requests_num",
    "requests_queued",
    "requests_wait_ms",
    "requests_errors",
    "usage_ms",
    "connections_num",
    "connections_ms",
    "connections_errors",
    "connections_lost",
    "returns_bad",
    "pool_min",
    "pool_max",
    "pool_size",
    "pool_available",
    "requests_waiting",
)


class DatabaseKnobs(Knobs):
    """The `[workload]` table of a database experiment; the defaults are the shipped baseline."""

    leads: int = Field(default=100_000, ge=1, le=10_000_000, description="seeded leads")
    activities_per_lead: float = Field(default=3.0, ge=0, le=100, description="seeded activities per lead (mean)")
    pool_size: int = Field(default=20, ge=1, le=1_000, description="main pool connections per worker")
    read_pool_size: int = Field(default=0, ge=0, le=1_000, description="read pool connections (0: reads use main)")
    indexes: bool = Field(default=False, description="create the indexes the query mix uses")
    mix_point: float = Field(default=0.6, ge=0, le=1)
    mix_search: float = Field(default=0.3, ge=0, le=1)
    mix_insert: float = Field(default=0.1, ge=0, le=1)
    slow_query_ms: float = Field(default=50.0, gt=0, le=600_000, description="client-side slow-query threshold")
    pool_timeout_s: float = Field(default=5.0, gt=0, le=600, description="longest wait for a connection")

    @model_validator(mode="after")
    def mix_sums_to_one(self) -> DatabaseKnobs:
        total = self.mix_point + self.mix_search + self.mix_insert
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"mix_point + mix_search + mix_insert must be 1 (got {total:g})")
        return self

    @property
    def seeded_activities(self) -> int:
        return round(self.leads * self.activities_per_lead)

    def mix(self) -> tuple[float, float, float]:
        """The shares of point, search and insert, in the order of KINDS."""
        return (self.mix_point, self.mix_search, self.mix_insert)


def lead_columns(leads: int, seed: int) -> dict[str, np.ndarray]:
    """The seeded leads as columns (categories as indexes into the tuples above)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, LEADS_STREAM]))
    return {
        "id": np.arange(1, leads + 1, dtype=np.int64),
        "first": rng.integers(0, len(FIRST_NAMES), leads),
        "last": rng.integers(0, len(LAST_NAMES), leads),
        "region": rng.integers(0, len(REGIONS), leads),
        "status": rng.integers(0, len(STATUSES), leads),
        "source": rng.integers(0, len(SOURCES), leads),
        "score": rng.integers(0, 101, leads),
        "budget_usd": rng.integers(1_000, 500_001, leads),
        "created_s": rng.integers(0, LEAD_SPAN_S, leads),
    }


def lead_copy_chunks(columns: dict[str, np.ndarray]) -> Iterator[str]:
    """COPY text rows of `leads`, a chunk at a time (no value needs escaping)."""
    count = columns["id"].size
    for start in range(0, count, COPY_CHUNK_ROWS):
        part = slice(start, min(start + COPY_CHUNK_ROWS, count))
        created = np.datetime_as_string(EPOCH + columns["created_s"][part], unit="s")
        rows = zip(
            columns["id"][part].tolist(),
            columns["first"][part].tolist(),
            columns["last"][part].tolist(),
            columns["region"][part].tolist(),
            columns["status"][part].tolist(),
            columns["source"][part].tolist(),
            columns["score"][part].tolist(),
            columns["budget_usd"][part].tolist(),
            created.tolist(),
            strict=True,
        )
        yield "".join(
            f"{i}\tlead{i}@example.com\t{FIRST_NAMES[f]} {LAST_NAMES[n]}\t{REGIONS[r]}\t{STATUSES[s]}\t"
            f"{SOURCES[o]}\t{score}\t{budget}\t{at}Z\n"
            for i, f, n, r, s, o, score, budget, at in rows
        )


def activity_copy_chunks(leads: dict[str, np.ndarray], count: int, seed: int) -> Iterator[str]:
    """COPY text rows of `activities` with ids 1..count, each after its lead was created."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, ACTIVITIES_STREAM]))
    lead_count = leads["id"].size
    for start in range(0, count, COPY_CHUNK_ROWS):
        size = min(COPY_CHUNK_ROWS, count - start)
        lead_index = rng.integers(0, lead_count, size)
        kind = rng.integers(0, len(ACTIVITY_KINDS), size)
        after_s = rng.integers(0, ACTIVITY_SPAN_S, size)
        duration_s = rng.integers(0, 3_600, size)
        at = np.datetime_as_string(EPOCH + leads["created_s"][lead_index] + after_s, unit="s")
        rows = zip(
            range(start + 1, start + size + 1),
            (lead_index + 1).tolist(),
            kind.tolist(),
            at.tolist(),
            duration_s.tolist(),
            strict=True,
        )
        yield "".join(
            f'{i}\t{lead}\t{ACTIVITY_KINDS[k]}\t{when}Z\t{{"seeded": true, "duration_s": {d}}}\n'
            for i, lead, k, when, d in rows
        )


class QueryStream:
    """Query kinds and their parameters from a seeded Generator, drawn a block at a time."""

    def __init__(self, knobs: DatabaseKnobs, rng: np.random.Generator, block: int = PARAM_BLOCK) -> None:
        self.leads = knobs.leads
        cumulative = np.cumsum(knobs.mix())
        # exactly 1 at the end (0.6 + 0.3 + 0.1 sums to 0.999...): a uniform u < 1 then never
        # falls past the last kind, and a kind with share 0 is never drawn
        self.cumulative_mix = cumulative / cumulative[-1]
        self.rng = rng
        self.block = block
        self._columns: list[list[int]] = []
        self._next = block

    def next(self) -> tuple[QueryKind, str, tuple[Any, ...]]:
        """The next query: its kind, SQL and parameters."""
        if self._next >= self.block:
            self._refill()
        i = self._next
        self._next += 1
        kinds, lead_ids, statuses, regions, scores, activity_kinds, durations_s = self._columns
        kind = KINDS[kinds[i]]
        if kind == "point":
            return kind, POINT_SQL, (lead_ids[i],)
        if kind == "search":
            low = scores[i]
            return kind, SEARCH_SQL, (STATUSES[statuses[i]], REGIONS[regions[i]], low, low + SEARCH_SCORE_WIDTH)
        payload = f'{{"seeded": false, "duration_s": {durations_s[i]}}}'
        return kind, INSERT_SQL, (lead_ids[i], ACTIVITY_KINDS[activity_kinds[i]], payload)

    def kinds(self, count: int) -> list[QueryKind]:
        """The kinds of the next `count` queries (consumes them; for tests)."""
        return [self.next()[0] for _ in range(count)]

    def _refill(self) -> None:
        rng, size = self.rng, self.block
        self._columns = [
            np.searchsorted(self.cumulative_mix, rng.random(size), side="right").tolist(),
            rng.integers(1, self.leads + 1, size).tolist(),
            rng.integers(0, len(STATUSES), size).tolist(),
            rng.integers(0, len(REGIONS), size).tolist(),
            rng.integers(0, 101 - SEARCH_SCORE_WIDTH, size).tolist(),
            rng.integers(0, len(ACTIVITY_KINDS), size).tolist(),
            rng.integers(0, 3_600, size).tolist(),
        ]
        self._next = 0


class DatabaseOperation:
    """One worker's queries through its pool(s), with slow-query counts and pool statistics."""

    def __init__(
        self,
        knobs: DatabaseKnobs,
        queries: QueryStream,
        main: AsyncConnectionPool[Any],
        read: AsyncConnectionPool[Any] | None,
    ) -> None:
        self.queries = queries
        self.main = main
        self.read = read
        self.slow_ns = int(knobs.slow_query_ms * 1e6)
        self.counts = {"queries": 0, "slow_queries": 0, "errors": 0, "timeouts": 0}
        self.first_ns: int | None = None
        self.last_ns = 0
        # Measured here in ns, because the pool truncates each request's wait and use to whole ms
        self.wait_ns = 0
        self.held_ns = 0

    def pools(self) -> dict[str, AsyncConnectionPool[Any]]:
        return {"main": self.main} if self.read is None else {"main": self.main, "read": self.read}

    async def call(self, seq: int) -> CallResult:
        kind, sql, params = self.queries.next()
        pool = self.main if kind == "insert" or self.read is None else self.read
        if self.first_ns is None:
            self.first_ns = time.perf_counter_ns()
        counts = self.counts
        requested = time.perf_counter_ns()
        began = 0
        try:
            async with pool.connection() as connection:
                began = time.perf_counter_ns()
                self.wait_ns += began - requested
                cursor = await connection.execute(sql, params)
                if cursor.description is not None:
                    await cursor.fetchall()
                elapsed = time.perf_counter_ns() - began
                self.held_ns += elapsed
        except PoolTimeout:
            self.wait_ns += time.perf_counter_ns() - requested
            counts["timeouts"] += 1
            return CallResult("error:timeout", kind)
        except psycopg.Error:
            if began:
                self.held_ns += time.perf_counter_ns() - began
            counts["errors"] += 1
            return CallResult("error:db", kind)
        finally:
            self.last_ns = time.perf_counter_ns()
        counts["queries"] += 1
        if elapsed > self.slow_ns:
            counts["slow_queries"] += 1
        return CallResult("ok", kind)

    def stats(self) -> dict[str, float]:
        stats: dict[str, float] = {}
        totals: Counter[str] = Counter()
        for name, pool in self.pools().items():
            for key, value in pool.get_stats().items():
                stats[f"{name}.{key}"] = float(value)
                totals[key] += value
        stats.update({key: float(totals[key]) for key in POOL_TOTALS})
        stats.update({key: float(value) for key, value in self.counts.items()})
        active_ns = self.last_ns - self.first_ns if self.first_ns is not None else 0
        stats["active_ms"] = active_ns / 1e6
        stats["client_wait_ms"] = self.wait_ns / 1e6
        stats["client_held_ms"] = self.held_ns / 1e6
        return stats

    async def close(self) -> None:
        for pool in self.pools().values():
            await pool.close()


async def database_operation(params: dict[str, Any]) -> DatabaseOperation:
    """The operation factory a load worker awaits: open the pool(s), full, before saying ready."""
    knobs = DatabaseKnobs.model_validate(params["knobs"])
    # Workers get identical params; a `worker_index` (when the generator supplies one) gives
    # each worker its own query stream, otherwise all workers replay the same stream.
    seed = np.random.SeedSequence([int(params["trial_seed"]), int(params.get("worker_index", 0)), QUERIES_STREAM])
    queries = QueryStream(knobs, np.random.default_rng(seed))

    def pool(name: str, size: int) -> AsyncConnectionPool[Any]:
        return AsyncConnectionPool(
            params["postgres_dsn"],
            min_size=size,
            max_size=size,
            kwargs={"autocommit": True},  # one round trip per statement: no BEGIN/COMMIT around it
            timeout=knobs.pool_timeout_s,
            name=name,
            open=False,
        )

    read = pool("read", knobs.read_pool_size) if knobs.read_pool_size > 0 else None
    operation = DatabaseOperation(knobs, queries, pool("main", knobs.pool_size), read)
    try:
        for each in operation.pools().values():
            await each.open(wait=True, timeout=CONNECT_TIMEOUT_S)
    except BaseException:
        await operation.close()
        raise
    return operation


class DatabaseWorkload(WorkloadDriver):
    """Point lookups, searches and inserts on a seeded lead schema through connection pools."""

    kind = "database"
    knobs_model = DatabaseKnobs
    required_services = ("postgres",)

    def __init__(self, knobs: Knobs, endpoints: dict[str, Endpoint], seed: int) -> None:
        if not isinstance(knobs, DatabaseKnobs):
            raise TypeError(f"the database workload needs DatabaseKnobs, not {type(knobs).__name__}")
        if "postgres" not in endpoints:
            raise ValueError("the database workload needs the service postgres")
        super().__init__(knobs, endpoints, seed)
        self.config: DatabaseKnobs = knobs

    @property
    def fingerprint(self) -> str:
        """What the seeded rows depend on; equal fingerprints mean equal data."""
        knobs = self.config
        return f"v{SEED_VERSION} leads={knobs.leads} activities={knobs.seeded_activities} seed={self.seed}"

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.endpoints["postgres"].url, autocommit=True, connect_timeout=30)

    def prepare(self) -> None:
        """Seed the schema unless the same data are already there; then add or drop indexes."""
        with self.connect() as connection:
            if self.stored_fingerprint(connection) != self.fingerprint:
                self.seed_rows(connection)
            for name, target in INDEXES.items():
                if self.config.indexes:
                    connection.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")
                else:
                    connection.execute(f"DROP INDEX IF EXISTS {name}")
        self.reset()

    @staticmethod
    def stored_fingerprint(connection: psycopg.Connection[Any]) -> str | None:
        exists = connection.execute("SELECT to_regclass('lab_seed') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return None
        row = connection.execute("SELECT fingerprint FROM lab_seed WHERE name = 'database'").fetchone()
        return str(row[0]) if row else None

    def seed_rows(self, connection: psycopg.Connection[Any]) -> None:
        """Drop and reload both tables by COPY; keys and constraints after the rows (faster)."""
        knobs = self.config
        leads = lead_columns(knobs.leads, self.seed)
        with connection.transaction():
            connection.execute("DROP TABLE IF EXISTS activities, leads")
            connection.execute(CREATE_LEADS)
            connection.execute(CREATE_ACTIVITIES)
            with connection.cursor() as cursor:
                columns = "id, email, name, region, status, source, score, budget_usd, created_at"
                with cursor.copy(f"COPY leads ({columns}) FROM STDIN") as copy:
                    for chunk in lead_copy_chunks(leads):
                        copy.write(chunk)
                with cursor.copy("COPY activities (id, lead_id, kind, at, payload) FROM STDIN") as copy:
                    for chunk in activity_copy_chunks(leads, knobs.seeded_activities, self.seed):
                        copy.write(chunk)
            connection.execute("ALTER TABLE leads ADD PRIMARY KEY (id)")
            connection.execute(
                "ALTER TABLE activities ADD PRIMARY KEY (id), ADD FOREIGN KEY (lead_id) REFERENCES leads (id)"
            )
            connection.execute("CREATE TABLE IF NOT EXISTS lab_seed (name text PRIMARY KEY, fingerprint text NOT NULL)")
            connection.execute(
                "INSERT INTO lab_seed VALUES ('database', %s) ON CONFLICT (name) DO UPDATE SET fingerprint = %s",
                (self.fingerprint, self.fingerprint),
            )
        connection.execute("ANALYZE leads")
        connection.execute("ANALYZE activities")

    def reset(self) -> None:
        """Delete the activities earlier trials inserted, rewind their ids, VACUUM (ANALYZE)."""
        seeded = self.config.seeded_activities
        with self.connect() as connection:
            connection.execute("DELETE FROM activities WHERE id > %s", (seeded,))
            # is_called=false with 1: the next id is 1 when nothing was seeded
            connection.execute(
                "SELECT setval(pg_get_serial_sequence('activities', 'id'), %s, %s)", (max(seeded, 1), seeded > 0)
            )
            connection.execute("VACUUM (ANALYZE) activities")

    def operation(self, trial_seed: int) -> OperationRef:
        return OperationRef(
            "lab.workloads.database:database_operation",
            {
                "postgres_dsn": self.endpoints["postgres"].url,
                "knobs": self.config.model_dump(),
                "trial_seed": trial_seed,
            },
        )

    def trial_metrics(self, result: LoadResult) -> dict[str, float]:
        return database_metrics(result.samples(), result.operation_stats, result.measured_s)


def database_metrics(
    samples: pl.LazyFrame, operation_stats: list[dict[str, float]], measured_s: float
) -> dict[str, float]:
    """Query latency per kind, throughput, errors, and pool wait/efficiency of one trial."""
    # one row per query kind: how many succeeded and their latency
    queries, per_kind, overall = latency_by_label(samples, QUANTILES)
    total, errors, timeouts = (
        queries.select(
            pl.len().alias("completed"),
            pl.col("outcome").str.starts_with("error:").sum().alias("errors"),
            (pl.col("outcome") == "error:timeout").sum().alias("timeouts"),
        )
        .collect()
        .row(0)
    )

    def ratio(part: float, whole: float) -> float:
        return part / whole if whole else float("nan")

    def ms(value: Any) -> float:
        return float(value) if value is not None else float("nan")

    def summed(key: str) -> float:
        return sum(stats.get(key, 0.0) for stats in operation_stats)

    requests = summed("requests_num")
    queued = summed("requests_queued")
    wait_ms = summed("requests_wait_ms")
    capacity_ms = sum(stats.get("pool_max", 0.0) * stats.get("active_ms", 0.0) for stats in operation_stats)
    metrics: dict[str, float] = {
        "queries": float(total),
        "throughput_qps": ratio(float(overall["n"]), measured_s),
        "errors": float(errors or 0),
        "error_rate": ratio(float(errors or 0), total),
        "timeouts": float(timeouts or 0),
    }
    for q in QUANTILES:
        metrics[f"query_p{q}_ms"] = ms(overall[f"p{q}"])
    for kind in KINDS:
        row = per_kind.get(kind)
        metrics[f"{kind}_count"] = float(row["n"]) if row else 0.0
        for q in QUANTILES:
            metrics[f"{kind}_p{q}_ms"] = ms(row[f"p{q}"]) if row else float("nan")
    metrics.update(
        {
            "pool_requests": requests,
            "pool_queued": queued,
            "pool_efficiency": 1.0 - ratio(queued, requests),
            "pool_wait_ms": ratio(wait_ms, requests),
            "pool_wait_ms_queued": ratio(wait_ms, queued),
            "pool_utilisation": ratio(summed("usage_ms"), capacity_ms),
            "pool_wait_ms_client": ratio(summed("client_wait_ms"), requests),
            "pool_utilisation_client": ratio(summed("client_held_ms"), capacity_ms),
            "slow_queries": summed("slow_queries"),
            "slow_query_share": ratio(summed("slow_queries"), summed("queries")),
        }
    )
    return metrics


DRIVER = DatabaseWorkload
