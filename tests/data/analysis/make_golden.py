"""Writes tests/data/analysis/golden-run/: a small stored run of the api workload (2 variants x
2 trials, 1,500 requests each) whose analysis the unit tests compare against stored answers.

Run once (and again only on purpose): `.venv/bin/python tests/data/analysis/make_golden.py`.
The samples are drawn here, once, and committed; the tests never regenerate them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lab.loadgen.worker import SAMPLE_SCHEMA

HERE = Path(__file__).resolve().parent
RUN = HERE / "golden-run"
ORDER = ["baseline", "optimized", "optimized", "baseline"]
MEDIAN_MS = {"baseline": 100.0, "optimized": 70.0}
PER_TRIAL = 1500
MEASURED_S = 10.0

EXPERIMENT = """\
[experiment]
name = "golden"
workload = "api"
description = "stored samples for the analysis golden tests"

[run]
trials = 2
duration_s = 12.0
warmup_s = 2.0
rate_rps = 150.0

[workload]
crm_pool = 5

[services.mock_api]

[variants.baseline]

[variants.optimized]
workload.crm_pool = 20

[cost]
requests_per_day = 2000000
cpu_core_hour = 0.05
memory_gb_hour = 0.01
upstream_call = { crm = 0.0001, listings = 0.00005 }
llm_tokens_1k = 0.002
change_cost = 100.0
"""


def main() -> None:
    if RUN.exists():
        shutil.rmtree(RUN)
    rng = np.random.default_rng(20261204)
    rows = []
    for index, variant in enumerate(ORDER):
        trial_dir = RUN / "trials" / f"{index:02d}-{variant}"
        trial_dir.mkdir(parents=True)
        n = PER_TRIAL
        start = 1_000_000_000_000 * (index + 1)
        intended = start + np.sort(rng.uniform(0, MEASURED_S * 1e9, n)).astype(np.int64)
        latency = (rng.lognormal(np.log(MEDIAN_MS[variant]), 0.4, n) * 1e6).astype(np.int64)
        outcome = np.where(rng.random(n) < 0.01, "crm_http_503", "ok")
        outcome = np.where(rng.random(n) < 0.005, "llm_throttled", outcome)
        table = pa.table(
            {
                "worker": pa.array(np.zeros(n, np.int16)),
                "seq": pa.array(np.arange(n, dtype=np.int64)),
                "intended_ns": pa.array(intended),
                "start_ns": pa.array(intended + 50_000),
                "end_ns": pa.array(intended + latency),
                "outcome": pa.array(outcome.tolist()).dictionary_encode().cast(SAMPLE_SCHEMA.field("outcome").type),
                "label": pa.array(["enrich"] * n).dictionary_encode().cast(SAMPLE_SCHEMA.field("label").type),
            },
            schema=SAMPLE_SCHEMA,
        )
        pq.write_table(table, trial_dir / "samples-w0.parquet")
        fast = variant == "optimized"
        metrics = {
            "measured_s": MEASURED_S,
            "trial_requests": float(n + 300),
            "mock_api_cpu_s": float(rng.normal(0.9 if fast else 1.2, 0.03)),
            "mock_api_memory_mb": float(rng.normal(42.0, 0.5)),
            "mock_crm_requests": float(n + 300),
            "mock_llm_requests": float(n + 300),
            "mock_listings_requests": float(n + 300),
            "mock_llm_tokens": float(rng.integers(150_000, 160_000)),
        }
        rows.extend(
            {"experiment": "golden", "variant": variant, "trial": index, "metric": k, "value": v}
            for k, v in metrics.items()
        )
    schema = {
        "experiment": pl.String,
        "variant": pl.String,
        "trial": pl.Int64,
        "metric": pl.String,
        "value": pl.Float64,
    }
    pl.DataFrame(rows, schema=schema).write_parquet(RUN / "trials.parquet")
    (RUN / "experiment.toml").write_text(EXPERIMENT)
    config = {
        "lab_version": "0.1.0",
        "mode": "ab",
        "aa_of": None,
        "baseline": "baseline",
        "host": {"hostname": "golden", "cpus": 2, "cpu_model": "stored", "kernel": "6.1", "machine": "x86_64"},
        "experiment": "golden",
        "workload": "api",
        "run": {"trials": 2, "duration_s": 12.0, "warmup_s": 2.0, "rate_rps": 150.0},
        "variants": {
            "baseline": {"services": {"mock_api": {"cpus": 1.0}}, "workload": {"crm_pool": 5}},
            "optimized": {"services": {"mock_api": {"cpus": 1.0}}, "workload": {"crm_pool": 20}},
        },
        "diff": [{"key": "workload.crm_pool", "values": {"baseline": 5, "optimized": 20}}],
    }
    (RUN / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (RUN / "status.json").write_text(json.dumps({"state": "complete", "trials_done": 4}) + "\n")


if __name__ == "__main__":
    main()
