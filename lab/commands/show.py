"""`lab show EXPERIMENT`: each variant's effective configuration and what differs between them."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lab.commands.run import RunOptions, effective_config
from lab.config.experiment import load_experiment
from lab.workloads import bind_knobs


def run_show(path: Path, quick: bool) -> None:
    experiment = load_experiment(path)
    knobs = bind_knobs(experiment)
    settings = experiment.run.effective(quick)
    document = effective_config(experiment, list(experiment.variants), knobs, settings, RunOptions(quick=quick))
    click.echo(f"# {experiment.name} ({experiment.meta.workload}): {experiment.meta.description}")
    click.echo(f"run: {json.dumps(document['run'])}")
    for name, variant in document["variants"].items():
        click.echo(f"\n[{name}]")
        click.echo(json.dumps(variant, indent=2))
    click.echo("\ndiff between variants:")
    if not document["diff"]:
        click.echo("  (none: the variants are identical)")
    for row in document["diff"]:
        values = "  ".join(f"{variant}={json.dumps(value)}" for variant, value in row["values"].items())
        click.echo(f"  {row['key']}: {values}")
