"""Who owns a lab container, and reaping the ones whose owner is dead.

Testcontainers' Ryuk reaper cannot be pulled here, so the lab cleans up after itself: every
container carries labels naming the run, the variant and the owning process (pid, its start
time and the machine's boot id, so a recycled pid or a reboot is not mistaken for a live
owner). A container whose owner on this host is gone is removed by the next start and by
`lab gc`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

LABEL_MANAGED = "ablab.managed"
LABEL_RUN_ID = "ablab.run-id"
LABEL_VARIANT = "ablab.variant"
LABEL_SERVICE = "ablab.service"
LABEL_OWNER_PID = "ablab.owner-pid"
LABEL_OWNER_START = "ablab.owner-start"
LABEL_OWNER_HOST = "ablab.owner-host"
LABEL_OWNER_BOOT = "ablab.owner-boot"


@dataclass(frozen=True)
class Owner:
    """A process identified well enough to tell whether it is still alive."""

    pid: int
    start_ticks: str
    host: str
    boot_id: str

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        return cls(pid=pid, start_ticks=process_start_ticks(pid), host=socket.gethostname(), boot_id=boot_id())

    def is_alive(self) -> bool:
        """True unless we can tell, on this host, that the process is gone."""
        if self.host != socket.gethostname():
            return True  # another machine's lab on a shared engine: not ours to judge
        if self.boot_id and self.boot_id != boot_id():
            return False
        if not Path("/proc/self/stat").exists():
            return _pid_exists(self.pid)  # no procfs (macOS): a recycled pid reads as alive
        return process_start_ticks(self.pid) == self.start_ticks and self.start_ticks != ""


def container_labels(run_id: str, variant: str, service: str, owner: Owner) -> dict[str, str]:
    """The labels every lab container carries."""
    return {
        LABEL_MANAGED: "true",
        LABEL_RUN_ID: run_id,
        LABEL_VARIANT: variant,
        LABEL_SERVICE: service,
        LABEL_OWNER_PID: str(owner.pid),
        LABEL_OWNER_START: owner.start_ticks,
        LABEL_OWNER_HOST: owner.host,
        LABEL_OWNER_BOOT: owner.boot_id,
    }


def owner_of(container: Container) -> Owner:
    labels = container.labels
    return Owner(
        pid=int(labels.get(LABEL_OWNER_PID, "0") or 0),
        start_ticks=labels.get(LABEL_OWNER_START, ""),
        host=labels.get(LABEL_OWNER_HOST, ""),
        boot_id=labels.get(LABEL_OWNER_BOOT, ""),
    )


def lab_containers(client: docker.DockerClient, run_id: str | None = None) -> list[Container]:
    """Every container (running or not) carrying the lab's labels, optionally of one run."""
    filters = [f"{LABEL_MANAGED}=true"]
    if run_id:
        filters.append(f"{LABEL_RUN_ID}={run_id}")
    return list(client.containers.list(all=True, filters={"label": filters}))


def reap_orphans(client: docker.DockerClient, everything: bool = False) -> list[str]:
    """Remove lab containers whose owner is dead (or all of them); return their names."""
    removed = []
    for container in lab_containers(client):
        if everything or not owner_of(container).is_alive():
            try:
                container.remove(force=True, v=True)
                removed.append(container.name or container.short_id)
            except docker.errors.NotFound:
                continue  # removed by someone else meanwhile
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and "already in progress" in str(exc):
                    continue  # its owner (or another reaper) is removing it right now
                raise
    return removed


def process_start_ticks(pid: int) -> str:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
