"""Find a Docker engine, or start one on a bare Debian machine where we are root.

An engine that answers (Docker Desktop, a remote DOCKER_HOST, a running dockerd) is never
touched. Only when nothing answers at the default socket, and we are root on Debian, do we
install `docker.io` with apt and start `dockerd` in the background; a dockerd killed without
a chance to clean up leaves a pid file and a socket behind, which we remove first.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from lab.errors import EngineUnavailable

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
DOCKERD_LOG = Path("/var/log/ablab-dockerd.log")
# Pid files a dockerd (and the containerd it manages) leaves behind when it is SIGKILLed.
STALE_PID_FILES = (Path("/var/run/docker.pid"), Path("/run/docker/containerd/containerd.pid"))


@dataclass(frozen=True)
class EngineInfo:
    """What the engine says about itself."""

    address: str
    server_version: str
    api_version: str
    operating_system: str
    cpus: int
    memory_bytes: int


def engine_address() -> str:
    """The address the Docker clients will use: DOCKER_HOST, else the default socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def probe_engine(timeout_s: float = 5.0) -> EngineInfo:
    """Ask the engine for its version; raise EngineUnavailable with the reason if it can't."""
    address = engine_address()
    _check_reachable(address, timeout_s)
    try:
        client = docker.DockerClient(base_url=address, version="auto", timeout=timeout_s)
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(
            f"no Docker engine answers at {address}: {_reason(exc)}",
            hint=_hint_for(address),
        ) from None
    try:
        version = client.version()
        info = client.info()
    except (docker.errors.DockerException, OSError) as exc:
        raise EngineUnavailable(
            f"no Docker engine answers at {address}: {_reason(exc)}",
            hint=_hint_for(address),
        ) from None
    finally:
        client.close()
    return EngineInfo(
        address=address,
        server_version=str(version.get("Version", "?")),
        api_version=str(version.get("ApiVersion", "?")),
        operating_system=str(info.get("OperatingSystem", "?")),
        cpus=int(info.get("NCPU", 0)),
        memory_bytes=int(info.get("MemTotal", 0)),
    )


def _check_reachable(address: str, timeout_s: float) -> None:
    """Connect to a unix or tcp address before docker-py does (it leaks the socket on failure)."""
    family_address: tuple[int, str | tuple[str, int]] | None = None
    if address.startswith("unix://"):
        family_address = (socket.AF_UNIX, address.removeprefix("unix://"))
    elif address.startswith(("tcp://", "http://", "https://")):
        host, _, port = address.split("://", 1)[1].rstrip("/").rpartition(":")
        if host and port.isdigit():
            inet = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
            family_address = (inet, (host.strip("[]"), int(port)))
    if family_address is None:
        return  # ssh:// and others: let docker-py try
    family, target = family_address
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout_s)
        try:
            probe.connect(target)
        except OSError as exc:
            raise EngineUnavailable(
                f"no Docker engine answers at {address}: {_reason(exc)}", hint=_hint_for(address)
            ) from None


def ensure_engine(start_timeout_s: float = 90.0, log: bool = True) -> EngineInfo:
    """Return the running engine, starting (and if needed installing) dockerd when allowed."""
    try:
        return probe_engine()
    except EngineUnavailable as first_failure:
        if not can_manage_local_engine():
            raise first_failure from None
    _say(log, "no Docker engine answers; starting dockerd (root on Debian)")
    if shutil.which("dockerd") is None:
        install_docker_io(log)
    if not _dockerd_running():
        remove_stale_engine_files()
        start_dockerd()
    return wait_for_engine(start_timeout_s)


def can_manage_local_engine() -> bool:
    """True when the lab may install and start dockerd itself: root, Debian, default socket."""
    explicit_host = os.environ.get("DOCKER_HOST")
    if explicit_host and explicit_host != DEFAULT_SOCKET:
        return False  # the user pointed us somewhere: starting a local engine would not help
    return os.geteuid() == 0 and Path("/etc/debian_version").exists() and bool(shutil.which("apt-get"))


def install_docker_io(log: bool = True) -> None:
    """Install Debian's docker.io package (engine, containerd, runc)."""
    _say(log, "installing docker.io with apt-get (about a minute)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "docker.io", "iptables"],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = " | ".join(result.stderr.strip().splitlines()[-3:])
            raise EngineUnavailable(
                f"'{' '.join(command)}' failed with status {result.returncode}: {tail}",
                hint="install Docker by hand (apt-get install docker.io) and run again",
            )


def remove_stale_engine_files() -> list[Path]:
    """Remove pid files whose process is gone and a socket nobody listens on."""
    removed = []
    for pid_file in STALE_PID_FILES:
        if pid_file.exists() and not _pid_file_alive(pid_file):
            pid_file.unlink(missing_ok=True)
            removed.append(pid_file)
    socket = Path(DEFAULT_SOCKET.removeprefix("unix://"))
    if socket.exists() and not _dockerd_running():
        socket.unlink(missing_ok=True)
        removed.append(socket)
    return removed


def start_dockerd() -> int:
    """Start dockerd detached from us (its own session), logging to DOCKERD_LOG."""
    DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
    with DOCKERD_LOG.open("ab") as log_file:
        process = subprocess.Popen(
            # No userland proxy: loopback traffic to published ports goes through iptables
            # instead of an extra process copying every byte (it added ~0.3 ms per request).
            ["dockerd", "--host", DEFAULT_SOCKET, "--userland-proxy=false"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


def wait_for_engine(timeout_s: float) -> EngineInfo:
    """Poll until the engine answers, or fail with the tail of dockerd's log."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return probe_engine(timeout_s=2.0)
        except EngineUnavailable:
            if time.monotonic() > deadline:
                raise EngineUnavailable(
                    f"dockerd did not answer within {timeout_s:.0f} s; last log line: {_dockerd_log_tail()}",
                    hint=f"see {DOCKERD_LOG}",
                ) from None
            time.sleep(0.5)


def _dockerd_running() -> bool:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() == "dockerd":
                return True
        except OSError:
            continue
    return False


def _pid_file_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    return Path(f"/proc/{pid}").exists()


def _dockerd_log_tail() -> str:
    try:
        lines = DOCKERD_LOG.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "No such file or directory", "Permission denied", "timed out"):
        if marker in text:
            return marker.lower()
    return " ".join(text.split())[:160]


def _hint_for(address: str) -> str:
    if os.environ.get("DOCKER_HOST"):
        return "start the engine DOCKER_HOST points at, or unset DOCKER_HOST"
    if os.geteuid() != 0:
        return "install and start Docker (https://docs.docker.com/engine/install/), or run as root on Debian"
    return "install Docker (apt-get install docker.io) and start dockerd"


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(f"lab: {message}", flush=True)
