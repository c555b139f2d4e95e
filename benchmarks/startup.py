"""Time until Postgres and Redis are ready (warm images), and the cold image build time.

    .venv/bin/python benchmarks/startup.py [--repeat 10] [--cold] [--cold-base]

Warm: start the smoke experiment's Postgres and Redis (baseline) `--repeat` times; each figure is from the
moment `start_stack` is called (images already built) until both services answered a real
query from the host, then the stack is removed. Cold: remove the lab's images and build
them again (`--cold-base` also re-makes the Debian base with debootstrap first).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import docker

from lab.config.experiment import VariantConfig, load_experiment
from lab.stack.images import BOOTSTRAPPED_BASE, build_images, image_statuses
from lab.stack.services import SERVICES
from lab.stack.stack import running_stack

SMOKE = Path(__file__).resolve().parents[1] / "experiments" / "smoke.toml"


def measure_warm_start(repeat: int, services: tuple[str, ...] = ("postgres", "redis")) -> list[float]:
    name, full = load_experiment(SMOKE).variant("baseline")
    kept = {kind: c for kind, c in full.services.started().items() if kind in services}
    config = VariantConfig.model_validate({"services": kept})
    figures = []
    for _ in range(repeat):
        began = time.perf_counter()
        with running_stack(config, name) as stack:
            for endpoint in stack.endpoints.values():
                SERVICES[endpoint.service].check(endpoint)
            figures.append(time.perf_counter() - began)
    return figures


def measure_cold_build(client: docker.DockerClient, base_too: bool) -> float:
    for status in image_statuses(client):
        if status.present:
            client.images.remove(status.tag, force=True)
            client.images.remove(status.tag.split(":")[0] + ":latest", force=True)
    if base_too:
        client.images.remove(BOOTSTRAPPED_BASE, force=True)
    began = time.perf_counter()
    build_images(client, log=False)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--cold", action="store_true", help="also time a cold build of the lab's images")
    parser.add_argument("--cold-base", action="store_true", help="with --cold: also re-make the Debian base")
    args = parser.parse_args()
    client = docker.from_env()
    build_images(client, log=False)
    measure_warm_start(1)  # first start pays for page cache and image resolution: not counted
    warm = measure_warm_start(args.repeat)
    print(
        f"warm start, Postgres + Redis ready and answering ({args.repeat} runs): "
        f"median {statistics.median(warm):.2f} s, min {min(warm):.2f} s, max {max(warm):.2f} s"
    )
    if args.cold:
        cold = measure_cold_build(client, args.cold_base)
        what = "base (debootstrap) + images" if args.cold_base else "images on an existing base"
        print(f"cold build, {what}: {cold:.1f} s")


if __name__ == "__main__":
    main()
