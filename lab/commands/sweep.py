"""`lab sweep EXPERIMENT`: the inference server's batch-size x concurrency sweep, per variant.

For each variant of an inference experiment: start its stack, then one closed-loop run per
(batch, concurrency); report latency, predictions/s, the speedup over batch 1 and the highest
throughput that still meets the latency target. Results go to a run directory like `lab run`.
"""

from __future__ import annotations

from pathlib import Path

import click
import polars as pl

from lab.config.experiment import load_experiment
from lab.errors import ConfigError
from lab.report.rundir import RunDirectory
from lab.stack.engine import probe_engine
from lab.stack.stack import running_stack
from lab.workloads import bind_knobs
from lab.workloads.inference import InferenceKnobs, best_under_target, run_sweep


def run_sweep_command(
    path: Path, variants: tuple[str, ...], batches: list[int], concurrencies: list[int], duration_s: float
) -> RunDirectory:
    experiment = load_experiment(path)
    if experiment.meta.workload != "inference":
        raise ConfigError(f'{path}: experiment.workload is {experiment.meta.workload!r}; a sweep needs "inference"')
    knobs = bind_knobs(experiment)
    names = list(variants) or list(experiment.variants)
    for name in names:
        experiment.variant(name)
    probe_engine()
    rundir = RunDirectory.create(f"{experiment.name}-sweep")
    rundir.copy_in(experiment.path, "experiment.toml")
    tables = []
    for name in names:
        variant_knobs = knobs[name]
        assert isinstance(variant_knobs, InferenceKnobs)
        with running_stack(experiment.variants[name], name, run_id=rundir.run_id) as stack:
            table = run_sweep(
                stack.endpoints["inference"].url,
                batches,
                concurrencies,
                duration_s=duration_s,
                warmup_s=min(1.0, duration_s / 4),
                out_dir=rundir.path / "sweeps" / name,
                latency_target_ms=variant_knobs.latency_target_ms,
                payload=variant_knobs.payload,
                seed=experiment.run.seed,
            )
        tables.append(table.with_columns(pl.lit(name).alias("variant")))
        best = best_under_target(table)
        click.echo(f"{name}: {stack.endpoints['inference'].params.get('precision', '?')} model")
        with pl.Config(tbl_rows=100, tbl_cols=20, tbl_hide_dataframe_shape=True):
            click.echo(
                str(
                    table.select(
                        "batch", "concurrency", "predictions_per_s", "p50_ms", "p95_ms", "batch_speedup", "meets_target"
                    )
                )
            )
        if best:
            target = variant_knobs.latency_target_ms
            click.echo(
                f"  best within p95 <= {target:g} ms: {best['predictions_per_s']:,.0f} predictions/s "
                f"at batch {best['batch']}, concurrency {best['concurrency']}"
            )
        else:
            click.echo(f"  no cell met p95 <= {variant_knobs.latency_target_ms:g} ms")
    rundir.write_frame("sweep.parquet", pl.concat(tables, how="diagonal"))
    rundir.set_status("complete")
    return rundir
