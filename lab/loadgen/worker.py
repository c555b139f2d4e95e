"""One load-generating process: its share of the schedule, samples to Parquet in chunks.

Open loop: request k is due at its scheduled time whatever happened to earlier ones; latency
is measured from that *intended* time (so a stalled server cannot hide its queue: coordinated
omission) and also from the actual send. When `max_in_flight` requests are outstanding at a
due time, the request is not sent and is recorded as `dropped`; a request sent more than
`late_threshold_ms` after its due time is counted `late`. Nothing is skipped silently.

Closed loop: `concurrency` callers each send the next request when the last one returned; the
intended time is the send time, which is exactly what hides a server's stalls (labelled so).

Timing: the event loop's timers are millisecond-grained (uvloop returns at once from sleeps
under 1 ms), so the scheduler sleeps until ~1.5 ms before a due time and then yields to the
loop (`sleep(0)`, which still serves I/O) until it is due: sub-millisecond accuracy, and at low
rates the process idles instead of spinning a core.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lab.loadgen.histogram import Histogram
from lab.loadgen.operation import CallResult, Operation, OperationRef
from lab.loadgen.schedule import Schedule

CHUNK_ROWS = 16_384
PROGRESS_INTERVAL_S = 0.5
SPIN_WINDOW_NS = 1_500_000
SAMPLE_SCHEMA = pa.schema(
    [
        ("worker", pa.int16()),
        ("seq", pa.int64()),
        ("intended_ns", pa.int64()),
        ("start_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("outcome", pa.dictionary(pa.int16(), pa.string())),
        ("label", pa.dictionary(pa.int16(), pa.string())),
    ]
)


@dataclass(frozen=True)
class LoadPlan:
    """A whole run of load: schedule, operation, and the limits that keep it honest."""

    schedule: Schedule
    operation: OperationRef
    warmup_s: float = 0.0
    max_in_flight: int = 1_000
    late_threshold_ms: float = 1.0
    drain_timeout_s: float = 10.0
    keep_samples: bool = True
    workers: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule.to_dict(),
            "operation": {"factory": self.operation.factory, "params": self.operation.params},
            "warmup_s": self.warmup_s,
            "max_in_flight": self.max_in_flight,
            "late_threshold_ms": self.late_threshold_ms,
            "drain_timeout_s": self.drain_timeout_s,
            "keep_samples": self.keep_samples,
            "workers": self.workers,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadPlan:
        return cls(
            schedule=Schedule.from_dict(data["schedule"]),
            operation=OperationRef(data["operation"]["factory"], data["operation"]["params"]),
            warmup_s=float(data["warmup_s"]),
            max_in_flight=int(data["max_in_flight"]),
            late_threshold_ms=float(data["late_threshold_ms"]),
            drain_timeout_s=float(data["drain_timeout_s"]),
            keep_samples=bool(data["keep_samples"]),
            workers=int(data["workers"]),
        )


@dataclass
class WorkerCounters:
    scheduled: int = 0
    sent: int = 0
    completed: int = 0
    errors: int = 0
    dropped: int = 0
    late: int = 0
    unfinished: int = 0
    warmup: int = 0
    in_flight: int = 0
    max_in_flight_seen: int = 0


@dataclass
class SampleSink:
    """Buffers samples column by column and writes a Parquet row group per chunk."""

    path: Path | None
    worker: int
    warmup_ns: int
    columns: dict[str, list[Any]] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)
    service: Histogram = field(default_factory=Histogram)
    recent_latency_ns: list[int] = field(default_factory=list)
    _writer: pq.ParquetWriter | None = None

    def __post_init__(self) -> None:
        self.columns = {name: [] for name in ("seq", "intended_ns", "start_ns", "end_ns", "outcome", "label")}

    def add(self, seq: int, intended: int, start: int | None, end: int | None, outcome: str, label: str) -> None:
        c = self.columns
        c["seq"].append(seq)
        c["intended_ns"].append(intended)
        c["start_ns"].append(start)
        c["end_ns"].append(end)
        c["outcome"].append(outcome)
        c["label"].append(label)
        if end is not None:
            self.recent_latency_ns.append(end - intended)
        if len(c["seq"]) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        c = self.columns
        if not c["seq"]:
            return
        intended = np.array(c["intended_ns"], dtype=np.int64)
        done = np.array([end is not None for end in c["end_ns"]])
        if done.any():
            ends = np.array([e for e in c["end_ns"] if e is not None], dtype=np.int64)
            starts = np.array([s for s, d in zip(c["start_ns"], done, strict=True) if d], dtype=np.int64)
            self.latency.record(ends - intended[done])
            self.service.record(ends - starts)
        if self.path is not None:
            table = pa.table(
                {
                    "worker": pa.array(np.full(intended.size, self.worker, dtype=np.int16)),
                    "seq": pa.array(c["seq"], pa.int64()),
                    "intended_ns": pa.array(intended),
                    "start_ns": pa.array(c["start_ns"], pa.int64()),
                    "end_ns": pa.array(c["end_ns"], pa.int64()),
                    "outcome": pa.array(c["outcome"], pa.string())
                    .dictionary_encode()
                    .cast(SAMPLE_SCHEMA.field("outcome").type),
                    "label": pa.array(c["label"], pa.string())
                    .dictionary_encode()
                    .cast(SAMPLE_SCHEMA.field("label").type),
                },
                schema=SAMPLE_SCHEMA,
            )
            if self._writer is None:
                self._writer = pq.ParquetWriter(str(self.path), SAMPLE_SCHEMA, compression="zstd")
            self._writer.write_table(table)
        for values in c.values():
            values.clear()

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()
        elif self.path is not None:
            pq.write_table(SAMPLE_SCHEMA.empty_table(), str(self.path))


class Worker:
    """Runs one worker's share of a LoadPlan and reports progress as JSON lines."""

    def __init__(self, plan: LoadPlan, index: int, out_dir: Path, progress: TextIO | None = None) -> None:
        self.plan = plan
        self.index = index
        self.out_dir = out_dir
        self.progress = progress
        self.counters = WorkerCounters()
        self.warmup_ns = int(plan.warmup_s * 1e9)
        samples_path = out_dir / f"samples-w{index}.parquet" if plan.keep_samples else None
        self.sink = SampleSink(samples_path, index, self.warmup_ns)
        self.base_ns = 0
        self.operation_stats: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def clock(self) -> int:
        return time.perf_counter_ns() - self.base_ns

    async def run(self, start_wall_ns: int, control: TextIO | None = None) -> dict[str, Any]:
        """Build the operation, then (with `control`) say ready and read the start instant."""
        # Each worker's operation learns its index, to draw its own share of a seeded stream.
        params = {**self.plan.operation.params, "worker_index": self.index}
        operation = await self.plan.operation.load()(params)
        try:
            if control is not None and self.progress is not None:
                self.progress.write(json.dumps({"ready": True}) + "\n")
                self.progress.flush()
                start_wall_ns = int(control.readline())
            # All workers start together: sleep until the agreed wall-clock instant.
            delay_s = (start_wall_ns - time.time_ns()) / 1e9
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            self.base_ns = time.perf_counter_ns()
            reporter = asyncio.get_running_loop().create_task(self._report_progress())
            try:
                if self.plan.schedule.open_loop:
                    await self._open_loop(operation)
                else:
                    await self._closed_loop(operation)
                await self._drain()
            finally:
                reporter.cancel()
            self.operation_stats = {key: float(value) for key, value in operation.stats().items()}
        finally:
            await operation.close()
        elapsed_ns = self.clock()
        self.sink.close()
        self._emit_progress(final=True)
        return self._summary(elapsed_ns)

    async def _open_loop(self, operation: Operation) -> None:
        plan = self.plan
        counters = self.counters
        late_ns = int(plan.late_threshold_ms * 1e6)
        cap = plan.max_in_flight
        loop = asyncio.get_running_loop()
        clock = self.clock
        seq = 0
        for chunk in plan.schedule.offsets_ns(self.index, plan.workers):
            for intended in chunk.tolist():
                now = clock()
                wait = intended - now
                if wait > SPIN_WINDOW_NS:
                    await asyncio.sleep((wait - SPIN_WINDOW_NS) / 1e9)
                    now = clock()
                while now < intended:
                    await asyncio.sleep(0)
                    now = clock()
                counters.scheduled += 1
                if counters.in_flight >= cap:
                    counters.dropped += 1
                    self._record(seq, intended, None, None, "dropped", "")
                else:
                    if now - intended > late_ns:
                        counters.late += 1
                    task = loop.create_task(self._call(operation, seq, intended))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                seq += 1

    async def _closed_loop(self, operation: Operation) -> None:
        plan = self.plan
        total = plan.schedule.concurrency
        mine = total // plan.workers + (1 if self.index < total % plan.workers else 0)
        end_ns = int(plan.schedule.duration_s * 1e9)
        next_seq = 0

        async def caller() -> None:
            nonlocal next_seq
            while self.clock() < end_ns:
                seq = next_seq
                next_seq += 1
                self.counters.scheduled += 1
                await self._call(operation, seq, self.clock())

        await asyncio.gather(*(caller() for _ in range(mine)))

    async def _call(self, operation: Operation, seq: int, intended: int) -> None:
        counters = self.counters
        counters.sent += 1
        counters.in_flight += 1
        if counters.in_flight > counters.max_in_flight_seen:
            counters.max_in_flight_seen = counters.in_flight
        start = self.clock()
        try:
            result = await operation.call(seq)
        except asyncio.CancelledError:
            counters.in_flight -= 1
            counters.unfinished += 1
            self._record(seq, intended, start, None, "unfinished", "")
            raise
        except Exception as exc:  # noqa: BLE001 - a failing call is a measured outcome
            result = CallResult(f"error:{type(exc).__name__}")
        end = self.clock()
        counters.in_flight -= 1
        counters.completed += 1
        if result.outcome != "ok":
            counters.errors += 1
        self._record(seq, intended, start, end, result.outcome, result.label)

    def _record(self, seq: int, intended: int, start: int | None, end: int | None, outcome: str, label: str) -> None:
        if intended < self.warmup_ns:
            self.counters.warmup += 1
            return
        self.sink.add(seq, intended, start, end, outcome, label)

    async def _drain(self) -> None:
        """Wait for outstanding requests; those still out after the drain timeout are cancelled."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.plan.drain_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    async def _report_progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            self._emit_progress(final=False)

    def _emit_progress(self, final: bool) -> None:
        if self.progress is None:
            return
        recent = self.sink.recent_latency_ns
        p95_ms = float(np.percentile(recent, 95)) / 1e6 if recent else None
        recent.clear()
        c = self.counters
        line = {
            "worker": self.index,
            "final": final,
            "elapsed_s": self.clock() / 1e9,
            "scheduled": c.scheduled,
            "sent": c.sent,
            "completed": c.completed,
            "errors": c.errors,
            "dropped": c.dropped,
            "late": c.late,
            "in_flight": c.in_flight,
            "p95_ms": p95_ms,
        }
        self.progress.write(json.dumps(line) + "\n")
        self.progress.flush()

    def _summary(self, elapsed_ns: int) -> dict[str, Any]:
        c = self.counters
        return {
            "worker": self.index,
            "pid": os.getpid(),
            "mode": "open" if self.plan.schedule.open_loop else "closed",
            "elapsed_s": elapsed_ns / 1e9,
            "counters": c.__dict__.copy(),
            "operation_stats": self.operation_stats,
            "latency_histogram": self.sink.latency.to_dict(),
            "service_histogram": self.sink.service.to_dict(),
            "samples_file": self.sink.path.name if self.sink.path else None,
        }


def run_worker(
    plan: LoadPlan,
    index: int,
    out_dir: Path,
    start_wall_ns: int,
    progress: TextIO | None,
    control: TextIO | None = None,
) -> Path:
    """Run one worker to completion; write and return its summary JSON (histograms inside)."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency; this keeps Windows usable
        runner = asyncio.run
    worker = Worker(plan, index, out_dir, progress)
    summary = runner(worker.run(start_wall_ns, control))
    path = out_dir / f"worker-{index}.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(summary))
    os.replace(temporary, path)
    return path


def main_from_spec(spec_path: Path) -> None:
    """Entry of the hidden `lab worker SPEC` command: the spec names plan, index, start, folder."""
    spec = json.loads(spec_path.read_text())
    plan = LoadPlan.from_dict(spec["plan"])
    out_dir = Path(spec["out_dir"])
    run_worker(plan, int(spec["index"]), out_dir, int(spec["start_wall_ns"]), sys.stdout, sys.stdin)
