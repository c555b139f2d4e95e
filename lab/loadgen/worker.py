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
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lab.loadgen.histogram import Histogram
from lab.loadgen.operation import CallResult, Operation, OperationRef
from lab.loadgen.schedule import Schedule
from lab.loadgen.timer import make_sleeper

CHUNK_ROWS = 16_384
PROGRESS_INTERVAL_S = 0.5
SPIN_WINDOW_NS = 1_500_000  # without a timerfd: sleep on the loop's timer until this close
PRECISE_SPIN_NS = 20_000  # with a timerfd: wake this early, then yield to the loop until due
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


class SampleSink:
    """Samples in preallocated numpy columns; full chunks go to a writer thread.

    The event loop only stores integers (outcome and label as small codes); turning a chunk
    into Arrow, recording the histograms and writing a zstd Parquet row group happen in one
    writer thread. Writing on the loop stalled it for 14-75 ms per chunk, which showed up as
    the generator's own p99 (measured: p99 at 2,000/s 10.7-14.1 ms -> 1.2-1.4 ms).
    """

    def __init__(self, path: Path | None, worker: int, track_recent: bool = True) -> None:
        self.path = path
        self.worker = worker
        self.track_recent = track_recent  # the rolling p95 of progress reports, which clear it
        self.latency = Histogram()
        self.service = Histogram()
        self.recent_latency_ns: list[int] = []
        self._codes: dict[str, dict[str, int]] = {"outcome": {}, "label": {}}
        self._new_chunk()
        self._queue: queue.Queue[tuple[dict[str, np.ndarray], int] | None] = queue.Queue()
        self._writer: pq.ParquetWriter | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_chunks, name="samples-writer", daemon=True)
        self._thread.start()

    def _new_chunk(self) -> None:
        self._rows = 0
        self._chunk = {
            name: np.empty(CHUNK_ROWS, dtype=np.int64)
            for name in ("seq", "intended_ns", "start_ns", "end_ns", "outcome", "label")
        }

    def _code(self, column: str, value: str) -> int:
        codes = self._codes[column]
        code = codes.get(value)
        if code is None:
            code = codes[value] = len(codes)
        return code

    def add(self, seq: int, intended: int, start: int | None, end: int | None, outcome: str, label: str) -> None:
        """Store one sample; `start`/`end` None (dropped, unfinished) are stored as -1."""
        row = self._rows
        chunk = self._chunk
        chunk["seq"][row] = seq
        chunk["intended_ns"][row] = intended
        chunk["start_ns"][row] = -1 if start is None else start
        chunk["end_ns"][row] = -1 if end is None else end
        chunk["outcome"][row] = self._code("outcome", outcome)
        chunk["label"][row] = self._code("label", label)
        if end is not None and self.track_recent:
            self.recent_latency_ns.append(end - intended)
        self._rows = row + 1
        if self._rows == CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        """Hand the current chunk to the writer thread and start a new one."""
        if self._rows:
            self._queue.put((self._chunk, self._rows))
            self._new_chunk()

    def close(self) -> None:
        """Flush, wait for the writer, and make sure a samples file exists (maybe empty)."""
        self.flush()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._writer is not None:
            self._writer.close()
        elif self.path is not None:
            pq.write_table(SAMPLE_SCHEMA.empty_table(), str(self.path))

    def _write_chunks(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._write(*item)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the loop's thread by close()
                self._error = exc

    def _write(self, chunk: dict[str, np.ndarray], rows: int) -> None:
        columns = {name: values[:rows] for name, values in chunk.items()}
        done = columns["end_ns"] >= 0
        self.latency.record(columns["end_ns"][done] - columns["intended_ns"][done])
        self.service.record(columns["end_ns"][done] - columns["start_ns"][done])
        if self.path is None:
            return
        started = columns["start_ns"] >= 0
        table = pa.table(
            {
                "worker": pa.array(np.full(rows, self.worker, dtype=np.int16)),
                "seq": pa.array(columns["seq"]),
                "intended_ns": pa.array(columns["intended_ns"]),
                "start_ns": pa.array(columns["start_ns"], mask=~started),
                "end_ns": pa.array(columns["end_ns"], mask=~done),
                "outcome": self._dictionary("outcome", columns["outcome"]),
                "label": self._dictionary("label", columns["label"]),
            },
            schema=SAMPLE_SCHEMA,
        )
        if self._writer is None:
            self._writer = pq.ParquetWriter(str(self.path), SAMPLE_SCHEMA, compression="zstd")
        self._writer.write_table(table)

    def _dictionary(self, column: str, codes: np.ndarray) -> pa.DictionaryArray:
        names = list(self._codes[column])  # insertion order = code order
        return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int16)), pa.array(names, pa.string()))


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
        self.sink = SampleSink(samples_path, index, track_recent=progress is not None)
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
            np.percentile(np.arange(3), 95)  # numpy's first call costs ~18 ms: pay it before the run
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
        late_ns = int(plan.late_threshold_ms * 1e6)
        cap = plan.max_in_flight
        loop = asyncio.get_running_loop()
        clock = self.clock
        sleeper = make_sleeper(loop)
        spin_ns = PRECISE_SPIN_NS if sleeper is not None else SPIN_WINDOW_NS
        seq = 0
        try:
            for chunk in plan.schedule.offsets_ns(self.index, plan.workers):
                for intended in chunk.tolist():
                    now = clock()
                    if intended - now > spin_ns:
                        if sleeper is not None:
                            await sleeper.until(self.base_ns + intended - spin_ns)
                        else:
                            await asyncio.sleep((intended - now - spin_ns) / 1e9)
                        now = clock()
                    while now < intended:
                        await asyncio.sleep(0)
                        now = clock()
                    self._dispatch(operation, seq, intended, now, late_ns, cap)
                    seq += 1
        finally:
            if sleeper is not None:
                sleeper.close()

    def _dispatch(self, operation: Operation, seq: int, intended: int, now: int, late_ns: int, cap: int) -> None:
        """Send request `seq` now, or record it dropped when `cap` requests are in flight."""
        counters = self.counters
        counters.scheduled += 1
        if counters.in_flight >= cap:
            counters.dropped += 1
            self._record(seq, intended, None, None, "dropped", "")
            return
        if now - intended > late_ns:
            counters.late += 1
        task = asyncio.get_running_loop().create_task(self._call(operation, seq, intended))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
