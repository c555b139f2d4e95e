"""`lab load URL`: ad-hoc HTTP load with the lab's generator, for exploring and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlsplit

import click

from lab.errors import LabError
from lab.loadgen.operation import OperationRef
from lab.loadgen.runner import default_out_dir, format_result, run_load
from lab.loadgen.schedule import Schedule
from lab.loadgen.worker import LoadPlan

ALLOWED_HOSTS = ("127.0.0.1", "localhost", "::1")


def run_http_load(
    *,
    url: str,
    rate: float,
    duration: float,
    warmup: float,
    arrivals: str,
    concurrency: int,
    workers: int,
    max_in_flight: int,
    connections: int,
    method: str,
    body: str,
    out: Path | None,
    progress: str,
) -> None:
    host = urlsplit(url).hostname or ""
    if urlsplit(url).scheme != "http" or not (host in ALLOWED_HOSTS or host.startswith("127.")):
        raise LabError(f"{url}: load goes only to http:// on the loopback (127.0.0.0/8, localhost)")
    checks = [
        (rate > 0 or arrivals == "closed", "--rate must be positive"),
        (duration > 0, "--duration must be positive"),
        (0 <= warmup < duration, "--warmup must be at least 0 and shorter than --duration"),
        (workers >= 1 and concurrency >= 1 and max_in_flight >= 1 and connections >= 1, "counts must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise LabError(message)
    if arrivals == "closed":
        schedule = Schedule.closed(concurrency, duration)
    elif arrivals == "poisson":
        schedule = Schedule.poisson(rate, duration, seed=1)
    else:
        schedule = Schedule.constant(rate, duration)
    params = {"url": url, "method": method, "body": body, "connections": connections}
    plan = LoadPlan(
        schedule=schedule,
        operation=OperationRef("lab.loadgen.http:http_operation", params),
        warmup_s=warmup,
        max_in_flight=max_in_flight,
        workers=workers,
    )
    display = cast(Literal["auto", "rich", "plain", "none"], progress)
    result = run_load(plan, out or default_out_dir(), display=display, label=url)
    for line in format_result(result):
        click.echo(line)
