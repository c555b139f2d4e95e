"""How long the lab's analysis takes to summarize and compare 10 million samples.

    .venv/bin/python benchmarks/analysis.py [--samples 10000000] [--repeat 3] [--out DIR [--reuse]]
                                            [--profile 25]

Goal: `analyze_run` on a run directory holding 10 million samples (2 variants x 3 trials) in
<= 3 s on the team's 2-core machine.

1. Synthesize a run directory of the shipped `experiments/api.toml` (in a temporary folder, or
   --out DIR, which is kept): `experiment.toml` (a copy), `config.json` (like `lab run` writes),
   `status.json`, `trials.parquet` (the tidy per-trial metrics, TIDY_SCHEMA) and one
   `trials/<nn>-<variant>/samples-w0.parquet` per trial (SAMPLE_SCHEMA, zstd, 16,384-row row
   groups as the load generator writes them). Trials are interleaved in the order `lab run` would
   use; --samples are split evenly over the 6 trials. Latencies are lognormal (median ~300 ms,
   the optimized variant 10 % faster, each trial drifted by ~1 %), ~0.7 % error outcomes
   (`llm_throttled`, `crm_http_503`), ~0.01 % dropped (no end time), label "enrich", intended send
   times evenly spread over each trial's measured seconds (after the warm-up). The data is
   generated in a child process, chunk by chunk, so neither its time nor its memory is counted.
2. Time `analyze_run(path)` end to end (reading config and trials, the polars pass over every
   sample file, the block bootstrap, the comparisons) --repeat times; then `load_blocks` alone and
   `analyze` alone (on blocks already loaded). Prints min and median of each, the process's peak
   RSS, and the comparison's verdicts for the api headline metrics as a sanity check
   (latency_p95_ms should be "improved"). The sample files were just written, so they are read
   from the page cache: the figure is the warm-cache one (as right after `lab run`).
3. --profile N: one more `analyze_run` under cProfile, the top N functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import multiprocessing
import os
import platform
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lab import __version__
from lab.analysis.analyze import Analysis, analyze
from lab.analysis.blocks import load_blocks
from lab.analysis.runs import analyze_run, load_run
from lab.commands.run import TIDY_SCHEMA, trial_order
from lab.config.experiment import load_experiment
from lab.loadgen.worker import CHUNK_ROWS, SAMPLE_SCHEMA

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "api.toml"
VARIANTS = ("baseline", "optimized")
SPEED = {"baseline": 1.0, "optimized": 0.9}  # latency factor: the candidate is 10 % faster
MEDIAN_MS = 300.0
SIGMA = 0.55  # lognormal shape: p95 ~2.5x, p99 ~3.6x the median
TRIAL_DRIFT = 0.01  # per-trial latency factor, lognormal sd (a shared machine drifts)
OUTCOMES = ("ok", "llm_throttled", "crm_http_503", "dropped")
OUTCOME_SHARE = (0.99290, 0.005, 0.002, 0.0001)
LABELS = ("enrich", "")  # "" for dropped requests, as the worker records them
GENERATE_ROWS = 64 * CHUNK_ROWS  # rows drawn at once (1,048,576), written as 16,384-row groups
COMPARED = ("latency_p95_ms", "throughput_rps", "error_rate")


# ---------------------------------------------------------------------------------------------
# the synthetic run directory


def write_trial_samples(
    path: Path, rows: int, variant: str, warmup_s: float, measured_s: float, rng: np.random.Generator
) -> dict[str, float]:
    """One trial's samples file, written chunk by chunk; returns the trial's load metrics."""
    drift = SPEED[variant] * math.exp(rng.normal(0.0, TRIAL_DRIFT))
    warmup_ns, measured_ns = int(warmup_s * 1e9), int(measured_s * 1e9)
    seq0 = round(rows * warmup_s / measured_s)  # the warm-up's requests were sent but not kept
    latencies = np.empty(rows, dtype=np.float32)  # for the trial's own percentiles
    counts = np.zeros(len(OUTCOMES), dtype=np.int64)
    late = 0
    with pq.ParquetWriter(str(path), SAMPLE_SCHEMA, compression="zstd") as writer:
        for first in range(0, rows, GENERATE_ROWS):
            n = min(GENERATE_ROWS, rows - first)
            index = np.arange(first, first + n, dtype=np.int64)
            intended = warmup_ns + index * measured_ns // rows
            start = intended + rng.exponential(60_000.0, n).astype(np.int64)  # ~60 us to send
            late += int(np.count_nonzero(start - intended > 1_000_000))
            latency_ms = MEDIAN_MS * drift * np.exp(rng.normal(0.0, SIGMA, n))
            outcome = rng.choice(len(OUTCOMES), n, p=OUTCOME_SHARE).astype(np.int16)
            dropped = outcome == OUTCOMES.index("dropped")
            end = intended + (latency_ms * 1e6).astype(np.int64)
            latencies[first : first + n] = latency_ms
            counts += np.bincount(outcome, minlength=len(OUTCOMES))
            table = pa.table(
                {
                    "worker": pa.array(np.zeros(n, dtype=np.int16)),
                    "seq": pa.array(seq0 + index),
                    "intended_ns": pa.array(intended),
                    "start_ns": pa.array(start, mask=dropped),
                    "end_ns": pa.array(end, mask=dropped),
                    "outcome": pa.DictionaryArray.from_arrays(pa.array(outcome), pa.array(OUTCOMES)),
                    "label": pa.DictionaryArray.from_arrays(
                        pa.array(dropped.astype(np.int16)), pa.array(LABELS, pa.string())
                    ),
                },
                schema=SAMPLE_SCHEMA,
            )
            writer.write_table(table, row_group_size=CHUNK_ROWS)
            latencies[first : first + n][dropped] = np.nan
    kept = latencies[np.isfinite(latencies)].astype(np.float64)
    ok, throttled, http_503, dropped_n = (int(c) for c in counts)
    errors = throttled + http_503
    completed = ok + errors
    p50, p90, p95, p99, p999 = np.quantile(kept, [0.5, 0.9, 0.95, 0.99, 0.999])
    sent = rows + seq0
    return {
        "throughput_rps": ok / measured_s,
        "achieved_rps": rows / measured_s,
        "requests": float(rows),
        "ok": float(ok),
        "errors": float(errors),
        "error_rate": errors / completed,
        "throttled": float(throttled),
        "throttle_rate": throttled / completed,
        "dropped": float(dropped_n),
        "unfinished": 0.0,
        "late": float(late),
        "latency_mean_ms": float(kept.mean()),
        "latency_max_ms": float(kept.max()),
        "latency_samples": float(completed),
        "latency_p50_ms": float(p50),
        "latency_p90_ms": float(p90),
        "latency_p95_ms": float(p95),
        "latency_p99_ms": float(p99),
        "latency_p99_9_ms": float(p999),
        "measured_s": measured_s,
        "trial_requests": float(sent - dropped_n),
    }


def mock_api_metrics(variant: str, requests: float, rng: np.random.Generator) -> dict[str, float]:
    """The mock API's counters for a trial: one call per upstream per request, CPU and memory."""
    pools = {"baseline": 30, "optimized": 100}[variant]  # connections held open (crm + llm + listings)
    metrics = {f"mock_{name}_requests": requests for name in ("crm", "llm", "listings")}
    metrics["mock_llm_tokens"] = requests * rng.normal(420.0, 2.0)
    metrics["mock_api_cpu_s"] = requests * 1e-5 * rng.normal(1.0, 0.02)  # 10 us of CPU per request
    metrics["mock_api_memory_mb"] = 96.0 + 0.25 * pools + rng.normal(0.0, 1.5)
    return metrics


def generate(out: Path, samples: int, seed: int) -> None:
    """The whole run directory (runs in a child process: its time and memory are not measured)."""
    experiment = load_experiment(EXPERIMENT)
    settings = experiment.run.effective(False)
    order = trial_order(list(VARIANTS), settings.trials, settings.seed, settings.order)
    measured_s = settings.duration_s - settings.warmup_s
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXPERIMENT, out / "experiment.toml")
    variants = {name: {"services": {}, "workload": {}} for name in VARIANTS}
    config = {
        "lab_version": __version__,
        "mode": "ab",
        "aa_of": None,
        "baseline": "baseline",
        "host": {"hostname": platform.node(), "cpus": os.cpu_count() or 0, "machine": platform.machine()},
        "experiment": experiment.name,
        "workload": "api",
        "description": experiment.meta.description,
        "run": settings.model_dump(mode="json"),
        "quick": False,
        "variants": variants,
        "diff": [],
        "synthetic": f"benchmarks/analysis.py --samples {samples} --seed {seed}",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    per_trial = [samples // len(order) + (1 if i < samples % len(order) else 0) for i in range(len(order))]
    for index, (variant, count) in enumerate(zip(order, per_trial, strict=True)):
        directory = out / "trials" / f"{index:02d}-{variant}"
        directory.mkdir(parents=True, exist_ok=True)
        metrics = write_trial_samples(
            directory / "samples-w0.parquet", count, variant, settings.warmup_s, measured_s, rng
        )
        metrics.update(mock_api_metrics(variant, metrics["trial_requests"], rng))
        (directory / "trial.json").write_text(
            json.dumps({"state": "complete", "index": index, "variant": variant, "metrics": metrics}, indent=2) + "\n"
        )
        rows.extend(
            {"experiment": experiment.name, "variant": variant, "trial": index, "metric": k, "value": v}
            for k, v in metrics.items()
        )
    pl.DataFrame(rows, schema=TIDY_SCHEMA).write_parquet(out / "trials.parquet")
    (out / "status.json").write_text(
        json.dumps({"state": "complete", "trials_done": len(order), "trials_total": len(order)}) + "\n"
    )


# ---------------------------------------------------------------------------------------------
# measuring


def timed(call: Callable[[], Any], repeat: int) -> tuple[list[float], list[float], Any]:
    """Wall-clock seconds and CPU seconds (user + system, all threads) of each call, and the last result."""
    figures, cpu, result = [], [], None
    for _ in range(repeat):
        before = os.times()
        began = time.perf_counter()
        result = call()
        figures.append(time.perf_counter() - began)
        after = os.times()
        cpu.append(after.user + after.system - before.user - before.system)
    return figures, cpu, result


def line(what: str, figures: list[float], cpu: list[float]) -> str:
    runs = ", ".join(f"{f:.2f}" for f in figures)
    return (
        f"{what:<34} min {min(figures):.2f} s, median {statistics.median(figures):.2f} s  ({runs}); "
        f"CPU median {statistics.median(cpu):.2f} s"
    )


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kB on Linux


def verdicts(analysis: Analysis) -> list[str]:
    lines = []
    for c in analysis.comparisons:
        if c.metric in COMPARED:
            scale = "%" if c.scale == "relative" else " pp"
            factor = 100.0
            lines.append(
                f"  {c.metric:<16} {c.baseline_value:10.4f} -> {c.candidate_value:10.4f}  "
                f"change {c.change * factor:+.2f}{scale} [{c.low * factor:+.2f}, {c.high * factor:+.2f}]  {c.verdict}"
            )
    return lines


def machine() -> str:
    model = next(
        (x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in x),
        "?",
    )
    memory_kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in x)
    return (
        f"{os.cpu_count()} cpus ({model}), {memory_kb / 2**20:.0f} GiB, Python {platform.python_version()}, "
        f"polars {pl.__version__}, pyarrow {pa.__version__}, numpy {np.__version__}, "
        f"polars threads {pl.thread_pool_size()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000_000, help="samples over all 6 trials")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each measurement")
    parser.add_argument("--out", type=Path, help="write the run directory here (kept) instead of a temporary one")
    parser.add_argument("--reuse", action="store_true", help="--out already holds a run: analyze it as it is")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile one run, print the top N")
    args = parser.parse_args()
    if args.reuse and not args.out:
        parser.error("--reuse needs --out")

    print(machine())
    temporary = None if args.out else tempfile.mkdtemp(prefix="ablab-bench-analysis-")
    path = args.out or Path(temporary or "")
    try:
        if not args.reuse:
            began = time.perf_counter()
            child = multiprocessing.get_context("spawn").Process(target=generate, args=(path, args.samples, args.seed))
            child.start()
            child.join()
            if child.exitcode != 0:
                sys.exit(f"generating the run directory failed (exit {child.exitcode})")
            print(
                f"generated {args.samples:,} samples in {time.perf_counter() - began:.1f} s "
                f"(child peak RSS {peak_rss_mb(resource.RUSAGE_CHILDREN):.0f} MB), in {path}"
            )
        files = sorted(path.glob("trials/*/samples-w*.parquet"))
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        size = sum(f.stat().st_size for f in files)
        print(f"{len(files)} sample files, {rows:,} rows, {size / 2**20:.0f} MiB on disk")
        print(f"peak RSS before analyzing: {peak_rss_mb():.0f} MB")

        print(f"load average (1 min) before analyzing: {load_average()}")
        first, first_cpu, analysis = timed(lambda: analyze_run(path), 1)  # polars' and numpy's first-use costs
        print(line("analyze_run, first call", first, first_cpu))
        total, total_cpu, analysis = timed(lambda: analyze_run(path), args.repeat)
        print(line(f"analyze_run x{args.repeat}", total, total_cpu))
        record = load_run(path)
        settings = record.experiment.analysis

        def blocks() -> Any:
            return load_blocks(path, settings.blocks, measured_s=record.measured_s(), batch_size=record.batch_sizes())

        loading, loading_cpu, samples = timed(blocks, args.repeat)
        print(line(f"load_blocks x{args.repeat}", loading, loading_cpu))
        trials = {v: record.rows(v) for v in record.variants()}

        def compare() -> Analysis:
            return analyze(
                experiment=record.experiment.name,
                workload=record.workload,
                samples=samples,
                trials=trials,
                settings=settings,
                targets=record.experiment.targets,
                prices=record.experiment.cost,
                baseline="baseline",
            )

        comparing, comparing_cpu, _ = timed(compare, args.repeat)
        print(line(f"analyze (blocks loaded) x{args.repeat}", comparing, comparing_cpu))
        print(f"peak RSS: {peak_rss_mb():.0f} MB; load average (1 min) at the end: {load_average()}")
        completed = sum(int(t.features[:, t.column("completed")].sum()) for v in samples.values() for t in v.trials)
        print(
            f"samples analyzed (completed requests): {completed:,}; {settings.resamples} resamples, "
            f"{settings.blocks} blocks per trial"
        )
        print("comparison (baseline -> optimized):")
        for text in verdicts(analysis):
            print(text)
        goal = statistics.median(total)
        print(f"goal <= 3 s for {args.samples:,} samples: {'met' if goal <= 3.0 else 'MISSED'} (median {goal:.2f} s)")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            analyze_run(path)
            profiler.disable()
            stats = pstats.Stats(profiler).strip_dirs().sort_stats("cumulative")
            stats.print_stats(args.profile)
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    main()
