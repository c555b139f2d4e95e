"""`lab check`: bring each variant's stack up, make one real call to every service, tear down."""

from __future__ import annotations

import time
from pathlib import Path

import click
import docker

from lab.config.experiment import load_experiment
from lab.stack.ownership import lab_containers
from lab.stack.services import SERVICES
from lab.stack.stack import running_stack


def run_check(experiment_path: Path, variants: list[str] | None) -> int:
    """Return 0 when every service of every variant answered and nothing was left behind."""
    experiment = load_experiment(experiment_path)
    names = variants or list(experiment.variants)
    failures = 0
    for name in names:
        name, config = experiment.variant(name)
        with running_stack(config, name) as stack:
            click.echo(f"{experiment.name}/{name}: stack up in {stack.startup_s:.2f} s")
            for endpoint in stack.endpoints.values():
                began = time.perf_counter()
                try:
                    answer = SERVICES[endpoint.service].check(endpoint)
                except Exception as exc:  # noqa: BLE001 - a failed check is reported, not raised
                    failures += 1
                    answer = f"FAILED: {' '.join(str(exc).split())[:200]}"
                elapsed_ms = (time.perf_counter() - began) * 1000
                click.echo(f"  {endpoint.service:<10} {answer}  [{elapsed_ms:.1f} ms]")
            run_id = stack.run_id
        client = docker.from_env()
        left = lab_containers(client, run_id=run_id)
        client.close()
        click.echo(f"  torn down: {len(left)} container(s) of run {run_id} remain")
        failures += len(left)
    click.echo("check passed" if failures == 0 else f"check FAILED ({failures} problem(s))")
    return 0 if failures == 0 else 1
