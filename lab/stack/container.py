"""Settings every lab container gets, whatever the service: labels, limits, loopback ports."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from docker.models.containers import Container
from testcontainers.core.container import DockerContainer
from testcontainers.core.waiting_utils import WaitStrategy, WaitStrategyTarget

from lab.config.services import ServiceConfig

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
    """Publish a container port on 127.0.0.1 only, on a free host port chosen now: a fixed port
    survives the container's restart (Docker gives an ephemeral binding a new port each time it
    starts, measured), so clients reconnect after a kill/stop/restart fault."""
    container.ports.pop(str(port), None)
    container.ports[f"{port}/tcp"] = (LOOPBACK, free_loopback_port())  # type: ignore[assignment]


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


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


class ContainerExited(RuntimeError):
    """The container stopped while we waited for it to become ready."""


class ReadyOrExited(WaitStrategy):
    """Poll `probe` from the host until it succeeds; fail at once if the container exits.

    Testcontainers' own strategies keep polling a dead container until the timeout; a
    service that crashed on a bad setting should fail in a second with its log.
    """

    def __init__(self, probe: Callable[[], object], timeout_s: float, poll_s: float = 0.05) -> None:
        super().__init__()
        self._probe = probe
        self._timeout_s = timeout_s
        self._poll_s = poll_s

    def wait_until_ready(self, container: WaitStrategyTarget) -> None:
        wrapped: Container = container.get_wrapped_container()
        deadline = time.monotonic() + self._timeout_s
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            wrapped.reload()
            if wrapped.status in ("exited", "dead"):
                code = wrapped.attrs.get("State", {}).get("ExitCode")
                raise ContainerExited(f"container exited with status {code}")
            try:
                self._probe()
                return
            except Exception as exc:  # noqa: BLE001 - any failure of the probe means "not yet"
                last_error = " ".join(str(exc).split())[:120] or type(exc).__name__
            time.sleep(self._poll_s)
        raise TimeoutError(f"not ready after {self._timeout_s:.0f} s (last probe: {last_error})")
