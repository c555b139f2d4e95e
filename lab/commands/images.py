"""`lab images build|list`."""

from __future__ import annotations

import click
import docker

from lab.stack.engine import ensure_engine
from lab.stack.images import build_images, image_statuses


def run_images_build(names: list[str] | None) -> None:
    ensure_engine()
    client = docker.from_env()
    try:
        build_images(client, names)
    finally:
        client.close()


def run_images_list() -> None:
    ensure_engine(log=False)
    client = docker.from_env()
    try:
        for status in image_statuses(client):
            click.echo(f"{status.tag:<40} {'present' if status.present else 'missing'}")
    finally:
        client.close()
