"""`lab gc`: remove lab containers whose owner process is gone."""

from __future__ import annotations

import click
import docker

from lab.report.rundir import mark_abandoned, results_root
from lab.stack.engine import probe_engine
from lab.stack.ownership import reap_orphans


def run_gc(everything: bool) -> None:
    probe_engine()
    client = docker.from_env()
    try:
        removed = reap_orphans(client, everything=everything)
    finally:
        client.close()
    for name in removed:
        click.echo(f"removed {name}")
    click.echo(f"{len(removed)} container(s) removed")
    for run in mark_abandoned(results_root()):
        click.echo(f"marked {run} interrupted: its lab process is gone")
