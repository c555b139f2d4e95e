"""`lab doctor`: is everything the lab needs here? One line per fact, and why not if not."""

from __future__ import annotations

import os
import platform

import click
import docker

from lab.errors import LabError
from lab.stack.engine import probe_engine
from lab.stack.images import find_base_image, image_statuses
from lab.stack.stack import ryuk_available


def run_doctor() -> int:
    """Print the report; return 0 when all is well, raise LabError naming what is missing."""
    info = probe_engine()  # raises EngineUnavailable: one line, exit 2
    client = docker.from_env()
    try:
        click.echo(f"engine   Docker {info.server_version} (API {info.api_version}) at {info.address}")
        click.echo(f"engine   {info.operating_system}, {info.cpus} CPUs, {info.memory_bytes / 2**30:.1f} GiB")
        click.echo(
            f"host     {platform.node()} {platform.system()} {platform.release()}, "
            f"{os.cpu_count()} CPUs, {_host_memory_gib():.1f} GiB, Python {platform.python_version()}"
        )
        base = find_base_image(client, pull=False)
        click.echo(f"base     {base or 'missing (built by `lab images build`)'}")
        statuses = image_statuses(client)
        for status in statuses:
            click.echo(f"image    {status.tag:<40} {'present' if status.present else 'MISSING'}")
        ryuk = ryuk_available(client)
        click.echo(f"ryuk     {'available' if ryuk else 'not available: the lab reaps its own containers'}")
    finally:
        client.close()
    missing = [s.name for s in statuses if not s.present]
    if missing:
        raise LabError(f"images missing or out of date: {', '.join(missing)}", hint="run `lab images build`")
    click.echo("ok       everything the lab needs is here")
    return 0


def _host_memory_gib() -> float:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0.0
    return float(pages * page_size) / 2**30
