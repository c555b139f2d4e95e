"""Settings every lab container gets, whatever the service: labels, limits, loopback ports."""

from __future__ import annotations

from typing import Any

from docker.models.containers import Container
from testcontainers.core.container import DockerContainer

from lab.config.experiment import ServiceConfig

LOOPBACK = "127.0.0.1"


def lab_container_kwargs(config: ServiceConfig, labels: dict[str, str]) -> dict[str, Any]:
    """docker-py create() arguments: labels and the CPU and memory limits of the config."""
    memory_bytes = config.memory_mb * 1024 * 1024
    return {
        "labels": labels,
        "nano_cpus": int(config.cpus * 1e9),
        "mem_limit": memory_bytes,
        "memswap_limit": memory_bytes,  # no swap: a memory-starved variant must show it
    }


def publish_on_loopback(container: DockerContainer, port: int) -> None:
    """Publish a container port on 127.0.0.1 only, on a free host port."""
    container.ports.pop(str(port), None)
    container.ports[f"{port}/tcp"] = (LOOPBACK, None)  # type: ignore[assignment]


def host_port(container: DockerContainer, port: int) -> int:
    """The host port a published container port landed on."""
    wrapped: Container = container.get_wrapped_container()
    wrapped.reload()
    bindings = wrapped.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []
    for binding in bindings:
        if binding.get("HostIp") in (LOOPBACK, "", "0.0.0.0"):
            return int(binding["HostPort"])
    raise RuntimeError(f"port {port} of {wrapped.name} is not published")


def log_tail(container: DockerContainer, lines: int = 8) -> str:
    """The last lines of a container's output, joined for a one-line error."""
    wrapped = container._container
    if wrapped is None:
        return "(container was not created)"
    try:
        text = wrapped.logs(tail=lines).decode(errors="replace")
    except Exception:  # noqa: BLE001 - the container may already be gone; the tail is best effort
        return "(no log)"
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept) or "(empty log)"
