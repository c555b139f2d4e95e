"""The parent of a load run: start the workers, show progress, merge what they measured.

Workers are `lab worker SPEC` subprocesses (one Python process per core is what lets the
generator scale past one core). Each loads its operation and says it is ready; the parent
then hands every worker the same start instant, so their shares of the schedule line up.
Workers stream samples to Parquet and keep histograms; the parent merges them with polars.
Percentiles come from the raw samples when they were kept (exact) and from the merged
histograms otherwise (within 0.1 %); the result says which.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from lab.errors import InfrastructureError
from lab.loadgen.histogram import Histogram, bucket_high, bucket_low
from lab.loadgen.progress import ProgressDisplay
from lab.loadgen.worker import LoadPlan

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
START_LEAD_S = 0.2
Display = Literal["auto", "rich", "plain", "none"]


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles in milliseconds and where they come from."""

    source: Literal["samples", "histogram"]
    count: int
    percentiles_ms: dict[str, float]
    mean_ms: float
    max_ms: float


@dataclass(frozen=True)
class LoadResult:
    """What a load run measured, merged over its workers."""

    out_dir: Path
    mode: Literal["open", "closed"]
    target_rps: float
    measured_s: float
    counters: dict[str, int]
    achieved_rps: float
    latency: LatencySummary  # from the intended send time (coordinated-omission corrected)
    service_time: LatencySummary  # from the actual send time
    outcomes: dict[str, int] = field(default_factory=dict)
    operation_stats: list[dict[str, float]] = field(default_factory=list)  # one dict per worker

    def samples(self) -> pl.LazyFrame:
        """Every kept sample of the measured phase, with latency_ns and service_ns."""
        return scan_samples(self.out_dir)


def run_load(
    plan: LoadPlan,
    out_dir: Path,
    display: Display = "auto",
    label: str = "",
    on_start: Callable[[int], None] | None = None,
) -> LoadResult:
    """Run `plan` with `plan.workers` worker processes; samples and summaries go to `out_dir`.
    `on_start` is told the load's start instant (wall clock ns; samples' times count from it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_paths = []
    for index in range(plan.workers):
        spec = {"plan": plan.to_dict(), "index": index, "out_dir": str(out_dir), "start_wall_ns": 0}
        path = out_dir / f"worker-{index}.spec.json"
        path.write_text(json.dumps(spec))
        spec_paths.append(path)
    # stderr goes to a file: a pipe nobody reads until the end would block a chatty worker
    logs = [(out_dir / f"worker-{index}.log").open("w") for index in range(plan.workers)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "lab", "worker", str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
        )
        for path, log in zip(spec_paths, logs, strict=True)
    ]
    progress = ProgressDisplay(plan, display, label)
    try:
        _wait_ready(processes, out_dir)
        for path in spec_paths:
            path.unlink()  # read by now; it may hold credentials (a DSN) that must not be kept
        start_wall_ns = time.time_ns() + int(START_LEAD_S * 1e9)
        if on_start is not None:
            on_start(start_wall_ns)
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(f"{start_wall_ns}\n")
            process.stdin.flush()
        readers = [threading.Thread(target=_pump, args=(p, progress), daemon=True) for p in processes]
        for reader in readers:
            reader.start()
        progress.start()
        deadline = time.monotonic() + START_LEAD_S + plan.schedule.duration_s + plan.drain_timeout_s + 30
        for index, process in enumerate(processes):
            try:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise InfrastructureError(
                    f"load worker {index} did not finish in time; see {logs[index].name}"
                ) from None
        for reader in readers:
            reader.join(timeout=5)
    except BaseException:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        raise
    finally:
        progress.stop()
        for process in processes:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
        for log in logs:
            log.close()
    failed = [(i, p) for i, p in enumerate(processes) if p.returncode != 0]
    if failed:
        index, process = failed[0]
        last = _last_line(out_dir / f"worker-{index}.log")
        raise InfrastructureError(f"load worker {index} exited with status {process.returncode}: {last}")
    return merge_results(plan, out_dir)


def _last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return lines[-1] if lines else "(no output)"


def _wait_ready(processes: list[subprocess.Popen[str]], out_dir: Path, timeout_s: float = 60.0) -> None:
    """Each worker prints {"ready": true} once its operation is built (connections may open)."""
    for index, process in enumerate(processes):
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=timeout_s)
            error = _last_line(out_dir / f"worker-{index}.log")
            raise InfrastructureError(f"load worker {index} failed to start: {error}")
        if json.loads(line).get("ready") is not True:
            raise InfrastructureError(f"load worker {index} said {line.strip()!r} instead of ready")


def _pump(process: subprocess.Popen[str], progress: ProgressDisplay) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        try:
            progress.update(json.loads(line))
        except json.JSONDecodeError:
            continue


def scan_samples(out_dir: Path) -> pl.LazyFrame:
    """All workers' samples as one lazy frame, with latency from intended and from actual send."""
    files = sorted(out_dir.glob("samples-w*.parquet"))
    if not files:
        raise FileNotFoundError(f"no samples in {out_dir}")
    return pl.scan_parquet(files).with_columns(
        (pl.col("end_ns") - pl.col("intended_ns")).alias("latency_ns"),
        (pl.col("end_ns") - pl.col("start_ns")).alias("service_ns"),
    )


def merge_results(plan: LoadPlan, out_dir: Path) -> LoadResult:
    """Sum the workers' counters; percentiles from the samples if kept, else the histograms."""
    summaries = [json.loads((out_dir / f"worker-{i}.json").read_text()) for i in range(plan.workers)]
    counters: dict[str, int] = {}
    latency_hist, service_hist = Histogram(), Histogram()
    for summary in summaries:
        for key, value in summary["counters"].items():
            if key in ("in_flight",):
                continue
            counters[key] = counters.get(key, 0) + int(value)
        latency_hist = latency_hist.merge(Histogram.from_dict(summary["latency_histogram"]))
        service_hist = service_hist.merge(Histogram.from_dict(summary["service_histogram"]))
    counters["max_in_flight_seen"] = max(int(s["counters"]["max_in_flight_seen"]) for s in summaries)
    measured_s = max(plan.schedule.duration_s - plan.warmup_s, 1e-9)
    outcomes: dict[str, int] = {}
    if plan.keep_samples:
        frame = scan_samples(out_dir)
        latency = summarize_samples(frame, "latency_ns")
        service = summarize_samples(frame, "service_ns")
        sent_measured = frame.filter(pl.col("start_ns").is_not_null()).select(pl.len()).collect().item()
        outcome_counts = frame.group_by("outcome").agg(pl.len().alias("n")).collect()
        outcomes = {str(row["outcome"]): int(row["n"]) for row in outcome_counts.iter_rows(named=True)}
    else:
        latency = summarize_histogram(latency_hist)
        service = summarize_histogram(service_hist)
        sent_measured = counters["sent"] - counters["warmup"]
    target = plan.schedule.expected_count() / plan.schedule.duration_s if plan.schedule.open_loop else 0.0
    mode: Literal["open", "closed"] = "open" if plan.schedule.open_loop else "closed"
    return LoadResult(
        out_dir=out_dir,
        mode=mode,
        target_rps=target,
        measured_s=measured_s,
        counters=counters,
        achieved_rps=sent_measured / measured_s,
        latency=latency,
        service_time=service,
        outcomes=outcomes,
        operation_stats=[summary.get("operation_stats", {}) for summary in summaries],
    )


def summarize_samples(frame: pl.LazyFrame, column: str) -> LatencySummary:
    """Exact percentiles (numpy's default linear interpolation) over completed samples."""
    values = frame.filter(pl.col(column).is_not_null()).select(pl.col(column))
    exprs = [pl.col(column).quantile(q / 100, interpolation="linear").alias(f"p{q:g}") for q in PERCENTILES]
    row = (
        values.select(
            pl.len().alias("count"),
            *exprs,
            pl.col(column).mean().alias("mean"),
            pl.col(column).max().alias("max"),
        )
        .collect()
        .row(0, named=True)
    )
    count = int(row["count"])

    def ms(value: Any) -> float:
        return float(value) / 1e6 if value is not None else float("nan")

    return LatencySummary(
        source="samples",
        count=count,
        percentiles_ms={f"p{q:g}": ms(row[f"p{q:g}"]) for q in PERCENTILES},
        mean_ms=ms(row["mean"]),
        max_ms=ms(row["max"]),
    )


def summarize_histogram(histogram: Histogram) -> LatencySummary:
    """Percentiles (highest equivalent value), mean (bucket midpoints) and max of a histogram."""
    counts = histogram.counts
    indices = np.arange(counts.size)
    mids = (bucket_low(indices) + bucket_high(indices)) / 2
    total = histogram.total
    mean = float((mids * counts).sum() / total) if total else float("nan")
    nonzero = np.flatnonzero(counts)
    maximum = float(bucket_high(nonzero[-1:])[0]) if nonzero.size else float("nan")
    return LatencySummary(
        source="histogram",
        count=total,
        percentiles_ms={f"p{q:g}": histogram.percentile(q) / 1e6 for q in PERCENTILES},
        mean_ms=mean / 1e6,
        max_ms=maximum / 1e6,
    )


def format_result(result: LoadResult) -> list[str]:
    """Human lines for a load result (the CLI prints them)."""
    c = result.counters
    lat = result.latency
    service = result.service_time
    mode = (
        "open loop (latency from intended send time)"
        if result.mode == "open"
        else ("closed loop (latency from actual send: hides server stalls)")
    )
    lines = [
        f"mode        {mode}",
        f"rate        achieved {result.achieved_rps:,.1f}/s"
        + (f" of target {result.target_rps:,.1f}/s" if result.mode == "open" else ""),
        f"requests    scheduled {c['scheduled']:,}, sent {c['sent']:,}, "
        f"completed {c['completed']:,}, errors {c['errors']:,}, dropped {c['dropped']:,}, late {c['late']:,}, "
        f"warm-up {c['warmup']:,}",
        "latency     "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in lat.percentiles_ms.items())
        + f", max {lat.max_ms:.2f} ms ({lat.source}, n={lat.count:,})",
        "service     " + ", ".join(f"{k} {v:.2f} ms" for k, v in service.percentiles_ms.items()),
    ]
    if result.outcomes:
        lines.append("outcomes    " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.outcomes.items())))
    lines.append(f"samples     {result.out_dir}")
    return lines


def default_out_dir() -> Path:
    root = Path(os.environ.get("LAB_RESULTS_DIR", Path(__file__).resolve().parents[2] / "results"))
    return root / ("load-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}")
