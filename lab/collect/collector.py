"""A time series of every container and service of the stack under load, while a trial runs.

Every `interval_s` (default 1 s) a background thread reads, per container, Docker's one-shot
stats (cumulative CPU-seconds, working-set memory, network and block I/O bytes), and per
service its own counters: Redis `INFO` (hits, misses, memory, clients, commands), Postgres
`pg_stat_database` / `pg_stat_activity` (commits, rollbacks, blocks hit/read, connections by
state), the mock API's and the inference server's `/stats`. Rows go to a tidy frame
(`time_s, service, source, metric, value`) written as `timeseries.parquet` in the trial's folder.

A source that fails is counted, never fatal: the trial's own liveness check decides whether a
dead container fails the trial. The collector measures itself: wall time and CPU time per tick
(the thread's own `thread_time`), kept in the trial's `trial.json`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import docker
import docker.errors
import polars as pl

from lab.stack.endpoint import Endpoint

SCHEMA = {"time_s": pl.Float64, "service": pl.String, "source": pl.String, "metric": pl.String, "value": pl.Float64}
Reader = Callable[[], dict[str, float]]


def docker_metrics(stats: dict[str, Any]) -> dict[str, float]:
    """CPU-seconds (cumulative), working-set memory, network and block I/O bytes (cumulative)."""
    cpu = stats.get("cpu_stats", {})
    memory = stats.get("memory_stats", {})
    details = memory.get("stats", {})
    inactive = details.get("total_inactive_file", details.get("inactive_file", 0))
    networks = stats.get("networks") or {}
    io = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    return {
        "cpu_s": cpu.get("cpu_usage", {}).get("total_usage", 0) / 1e9,
        "memory_mb": max(float(memory.get("usage", 0)) - float(inactive), 0.0) / 2**20,
        "net_rx_bytes": float(sum(n.get("rx_bytes", 0) for n in networks.values())),
        "net_tx_bytes": float(sum(n.get("tx_bytes", 0) for n in networks.values())),
        "block_read_bytes": float(sum(e.get("value", 0) for e in io if str(e.get("op", "")).lower() == "read")),
        "block_write_bytes": float(sum(e.get("value", 0) for e in io if str(e.get("op", "")).lower() == "write")),
    }


CGROUP = Path("/sys/fs/cgroup")
PROC = Path("/proc")


class CgroupProbe:
    """A container's CPU, memory and block I/O read from its cgroup files, and its network from
    /proc/<pid>/net/dev - what Docker's stats API reports, without the API: on Docker 20.10 a
    second one-shot stats call waits a full second (measured), which would make a 1 s series
    impossible with more than one container. cgroup v1 (cgroupfs) and v2 layouts; None when the
    files are not there (a remote engine, rootless Docker), and the API is used instead."""

    def __init__(self, files: dict[str, Path], pid: int, proc: Path = PROC) -> None:
        self.files = files
        self.net_dev = proc / str(pid) / "net" / "dev"

    @classmethod
    def find(cls, container_id: str, pid: int, root: Path = CGROUP, proc: Path = PROC) -> CgroupProbe | None:
        v1 = {
            "cpu": root / "cpuacct" / "docker" / container_id / "cpuacct.usage",
            "memory": root / "memory" / "docker" / container_id / "memory.usage_in_bytes",
            "memory_stat": root / "memory" / "docker" / container_id / "memory.stat",
            "io": root / "blkio" / "docker" / container_id / "blkio.throttle.io_service_bytes",
        }
        if all(path.exists() for path in v1.values()):
            return cls(v1, pid, proc)
        for folder in (root / "system.slice" / f"docker-{container_id}.scope", root / "docker" / container_id):
            v2 = {
                "cpu_stat": folder / "cpu.stat",
                "memory": folder / "memory.current",
                "memory_stat": folder / "memory.stat",
                "io_stat": folder / "io.stat",
            }
            if all(path.exists() for path in v2.values()):
                return cls(v2, pid, proc)
        return None

    def read(self) -> dict[str, float]:
        f = self.files
        stat = dict(_pairs(f["memory_stat"].read_text()))
        inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0.0))
        if "cpu" in f:  # cgroup v1
            cpu_s = int(f["cpu"].read_text()) / 1e9
            read_bytes = write_bytes = 0.0
            for line in f["io"].read_text().splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] == "Read":
                    read_bytes += float(parts[2])
                elif len(parts) == 3 and parts[1] == "Write":
                    write_bytes += float(parts[2])
        else:
            cpu_s = dict(_pairs(f["cpu_stat"].read_text())).get("usage_usec", 0.0) / 1e6
            io = [dict(kv.split("=", 1) for kv in line.split()[1:]) for line in f["io_stat"].read_text().splitlines()]
            read_bytes = float(sum(float(entry.get("rbytes", 0)) for entry in io))
            write_bytes = float(sum(float(entry.get("wbytes", 0)) for entry in io))
        rx = tx = 0.0
        for line in self.net_dev.read_text().splitlines()[2:]:
            name, _, numbers = line.partition(":")
            fields = numbers.split()
            if name.strip() != "lo" and len(fields) >= 9:
                rx += float(fields[0])
                tx += float(fields[8])
        return {
            "cpu_s": cpu_s,
            "memory_mb": max(float(f["memory"].read_text()) - inactive, 0.0) / 2**20,
            "net_rx_bytes": rx,
            "net_tx_bytes": tx,
            "block_read_bytes": read_bytes,
            "block_write_bytes": write_bytes,
        }


def _pairs(text: str) -> list[tuple[str, float]]:
    pairs = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                pairs.append((parts[0], float(parts[1])))
            except ValueError:
                continue
    return pairs


def container_reading(client: docker.DockerClient, container_id: str) -> dict[str, float]:
    """One reading of a container's resources: from its cgroup files when they are here, else
    from Docker's stats API."""
    pid = int(client.api.inspect_container(container_id)["State"]["Pid"])
    cgroup = CgroupProbe.find(container_id, pid) if pid else None
    if cgroup is not None:
        return cgroup.read()
    return docker_metrics(client.api.stats(container_id, stream=False, one_shot=True))


REDIS_KEYS = (
    "keyspace_hits",
    "keyspace_misses",
    "used_memory",
    "connected_clients",
    "total_commands_processed",
    "evicted_keys",
)
POSTGRES_QUERY = """
SELECT xact_commit, xact_rollback, blks_hit, blks_read, tup_returned, tup_inserted,
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'),
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle'),
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database())
FROM pg_stat_database WHERE datname = current_database()
"""
POSTGRES_KEYS = (
    "xact_commit",
    "xact_rollback",
    "blks_hit",
    "blks_read",
    "tup_returned",
    "tup_inserted",
    "connections_active",
    "connections_idle",
    "connections",
)


class Probe(Protocol):
    """A service's own counters, read on every tick."""

    def read(self) -> dict[str, float]: ...

    def close(self) -> None: ...


class RedisProbe:
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)

    def read(self) -> dict[str, float]:
        info = self.client.info()
        return {key: float(info[key]) for key in REDIS_KEYS if key in info}

    def close(self) -> None:
        self.client.close()


class PostgresProbe:
    """One connection of its own (it shows in `connections`: one more than the workload's)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.connection: Any = None

    def read(self) -> dict[str, float]:
        import psycopg

        if self.connection is None or self.connection.closed:
            self.connection = psycopg.connect(self.dsn, connect_timeout=1, autocommit=True)
        row = self.connection.execute(POSTGRES_QUERY).fetchone()
        return {key: float(value) for key, value in zip(POSTGRES_KEYS, row or (), strict=False)}

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


class HttpStatsProbe:
    """A service's `/stats` JSON, flattened to numbers (`upstreams.llm.requests`, `rows`, ...)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def read(self) -> dict[str, float]:
        from lab.stack.services.http import get_json

        return dict(flatten_numbers(get_json(f"{self.url}/stats", timeout_s=0.5)))

    def close(self) -> None:
        """Nothing to release: each reading is one short HTTP request."""


def flatten_numbers(document: Any, prefix: str = "") -> list[tuple[str, float]]:
    if isinstance(document, bool | int | float):
        return [(prefix, float(document))]
    if isinstance(document, dict):
        pairs: list[tuple[str, float]] = []
        for key, value in document.items():
            pairs += flatten_numbers(value, f"{prefix}.{key}" if prefix else str(key))
        return pairs
    return []


def probe_for(endpoint: Endpoint) -> Probe | None:
    if endpoint.service == "redis":
        return RedisProbe(endpoint.url)
    if endpoint.service == "postgres":
        return PostgresProbe(endpoint.url)
    if endpoint.service in ("mock_api", "inference"):
        return HttpStatsProbe(endpoint.url)
    return None


@dataclass
class Collector:
    """Samples a stack's containers and services every `interval_s` on a background thread."""

    endpoints: dict[str, Endpoint]
    interval_s: float = 1.0
    rows: list[tuple[float, str, str, str, float]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    tick_wall_s: list[float] = field(default_factory=list)
    source_wall_s: dict[str, float] = field(default_factory=dict)
    cpu_s: float = 0.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-collector", daemon=True)
        self._client = docker.from_env()
        self._probes = {s: p for s, e in self.endpoints.items() if (p := probe_for(e)) is not None}
        self._cgroups: dict[str, CgroupProbe] = {}
        for service, endpoint in self.endpoints.items():
            with suppress(docker.errors.DockerException, KeyError, OSError):
                pid = int(self._client.api.inspect_container(endpoint.container_id)["State"]["Pid"])
                cgroup = CgroupProbe.find(endpoint.container_id, pid)
                if cgroup is not None:
                    self._cgroups[service] = cgroup
        self._t0 = time.monotonic()

    def __enter__(self) -> Collector:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for probe in self._probes.values():
            with suppress(Exception):  # closing a probe's connection must not fail the trial
                probe.close()
        self._client.close()

    def _run(self) -> None:
        began_cpu = time.thread_time()
        next_tick = time.monotonic()
        while not self._stop.is_set():
            self.tick()
            next_tick += self.interval_s
            self._stop.wait(max(next_tick - time.monotonic(), 0.0))
        self.tick()  # the end of the trial, so cumulative counters cover all of it
        self.cpu_s = time.thread_time() - began_cpu

    def tick(self) -> None:
        began = time.monotonic()
        at = began - self._t0
        for service, endpoint in self.endpoints.items():
            cgroup = self._cgroups.get(service)
            self._sample(service, "docker", at, cgroup.read if cgroup else partial(self._docker, endpoint))
            probe = self._probes.get(service)
            if probe is not None:
                self._sample(service, "service", at, probe.read)
        self.tick_wall_s.append(time.monotonic() - began)

    def _docker(self, endpoint: Endpoint) -> dict[str, float]:
        stats = self._client.api.stats(endpoint.container_id, stream=False, one_shot=True)
        return docker_metrics(stats)

    def _sample(self, service: str, source: str, at: float, read: Reader) -> None:
        key = f"{service}.{source}"
        began = time.monotonic()
        try:
            values = read()
        except Exception:  # noqa: BLE001 - a failing source is counted; the trial decides on dead containers
            self.errors[key] = self.errors.get(key, 0) + 1
            return
        finally:
            self.source_wall_s[key] = self.source_wall_s.get(key, 0.0) + time.monotonic() - began
        self.rows.extend((at, service, source, metric, value) for metric, value in values.items())

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema=SCHEMA, orient="row")

    def summary(self) -> dict[str, Any]:
        ticks = len(self.tick_wall_s)
        return {
            "interval_s": self.interval_s,
            "ticks": ticks,
            "rows": len(self.rows),
            "tick_wall_ms_mean": 1000 * sum(self.tick_wall_s) / ticks if ticks else 0.0,
            "tick_wall_ms_max": 1000 * max(self.tick_wall_s, default=0.0),
            "cpu_s": self.cpu_s,
            "source_wall_ms_mean": {k: 1000 * v / ticks for k, v in self.source_wall_s.items()} if ticks else {},
            "container_source": {s: "cgroup" if s in self._cgroups else "docker stats" for s in self.endpoints},
            "errors": self.errors,
        }
