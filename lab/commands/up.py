"""`lab up`: one variant's stack for exploring and debugging, kept until Ctrl-C or SIGTERM."""

from __future__ import annotations

import threading
from pathlib import Path

import click

from lab.config.experiment import load_experiment
from lab.stack.stack import running_stack


def run_up(experiment_path: Path, variant: str | None) -> None:
    experiment = load_experiment(experiment_path)
    name, config = experiment.variant(variant)
    click.echo(f"starting {experiment.name}/{name}: {', '.join(config.service_configs())}")
    with running_stack(config, name) as stack:
        for endpoint in stack.endpoints.values():
            click.echo(f"  {endpoint.service:<10} {endpoint.url}   ({endpoint.container_name})")
        click.echo(
            f"stack {stack.run_id} is up after {stack.startup_s:.1f} s; Ctrl-C to stop",
        )
        threading.Event().wait()  # until a signal unwinds us
