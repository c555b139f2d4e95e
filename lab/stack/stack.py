"""Start the services of one variant, hand out their endpoints, and always clean up.

Services are independent, so they start in parallel threads. Whatever happens - a failed
readiness wait, an exception in the caller, SIGINT or SIGTERM - every container that was
created is removed before `running_stack` returns or raises. A SIGKILL gives us no chance:
the containers' owner labels let the next start (and `lab gc`) remove them.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from types import FrameType

import docker
import docker.errors
from testcontainers.core.config import ConnectionMode, testcontainers_config
from testcontainers.core.container import DockerContainer

from lab.config.experiment import VariantConfig
from lab.errors import ServiceStartError
from lab.stack.container import host_port, lab_container_kwargs, log_tail, publish_on_loopback
from lab.stack.endpoint import Endpoint
from lab.stack.engine import ensure_engine
from lab.stack.images import resolve_image
from lab.stack.ownership import Owner, container_labels, lab_containers, reap_orphans
from lab.stack.services import SERVICES, ServiceDefinition

POLL_INTERVAL_S = 0.1


@dataclass
class Stack:
    """The running services of one variant."""

    run_id: str
    variant: str
    endpoints: dict[str, Endpoint]
    startup_s: float
    _containers: list[DockerContainer] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Remove every container of this stack (idempotent)."""
        close_containers(self._containers)
        self._containers.clear()


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


@contextmanager
def running_stack(
    config: VariantConfig,
    variant: str,
    run_id: str | None = None,
    client: docker.DockerClient | None = None,
) -> Iterator[Stack]:
    """Start every service of `config`, yield the Stack, and remove the containers after."""
    stack = start_stack(config, variant, run_id=run_id, client=client)
    try:
        with _signals_as_exceptions():
            yield stack
    finally:
        with signals_deferred():
            stack.close()


def start_stack(
    config: VariantConfig,
    variant: str,
    run_id: str | None = None,
    client: docker.DockerClient | None = None,
) -> Stack:
    """Start every service of `config` in parallel and wait until all are ready.

    On any failure every container already created is removed before the error propagates.
    """
    ensure_engine(log=False)
    client = client or docker.from_env()
    run_id = run_id or new_run_id()
    reap_orphans(client)
    _configure_testcontainers(client, max(s.startup_timeout_s for s in config.service_configs().values()))
    owner = Owner.current()

    definitions: dict[str, ServiceDefinition] = {}
    kind: str
    for kind, service_config in config.service_configs().items():
        image = resolve_image(client, service_config.image)
        definitions[kind] = SERVICES[kind](service_config, image)

    started: list[DockerContainer] = []
    started_lock = threading.Lock()

    def start_one(kind: str, definition: ServiceDefinition) -> Endpoint:
        labels = container_labels(run_id, variant, kind, owner)
        container = definition.container(lab_container_kwargs(definition.config, labels))
        container.with_name(f"ablab-{run_id}-{variant}-{kind}")
        publish_on_loopback(container, definition.port)
        try:
            container.start()
        except Exception as exc:  # noqa: BLE001 - any failure to start becomes one ServiceStartError
            tail = log_tail(container)
            close_containers([container])
            raise ServiceStartError(
                f"{kind} ({definition.image}) did not become ready: {_short(exc)}; last log lines: {tail}",
                hint=f"run `lab doctor`, or raise services.{kind}.startup_timeout_s",
            ) from None
        with started_lock:
            started.append(container)
        return definition.endpoint(container, host_port(container, definition.port))

    began = time.perf_counter()
    endpoints: dict[str, Endpoint] = {}
    futures: dict[str, Future[Endpoint]] = {}
    try:
        with _signals_as_exceptions(), ThreadPoolExecutor(max_workers=len(definitions)) as pool:
            futures = {kind: pool.submit(start_one, kind, d) for kind, d in definitions.items()}
            for kind, future in futures.items():
                endpoints[kind] = future.result()
    except BaseException:
        with signals_deferred():
            for future in futures.values():
                future.cancel()
            # The pool's exit waited for every thread: `started` is now complete.
            close_containers(started)
            _remove_run_leftovers(client, run_id)
        raise
    return Stack(run_id, variant, endpoints, time.perf_counter() - began, _containers=started)


def close_containers(containers: list[DockerContainer]) -> None:
    """Force-remove containers with their anonymous volumes; already-gone ones are fine."""
    for container in containers:
        try:
            container.stop(force=True, delete_volume=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "removal of container" not in str(exc) and "is already in progress" not in str(exc):
                raise


def _remove_run_leftovers(client: docker.DockerClient, run_id: str) -> None:
    # A thread interrupted between create and start leaves a container we never tracked.
    for container in lab_containers(client, run_id=run_id):
        with suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)


def _configure_testcontainers(client: docker.DockerClient, timeout_s: float) -> None:
    """Readiness polls every 100 ms up to the timeout; Ryuk only when its image is here."""
    testcontainers_config.sleep_time = POLL_INTERVAL_S
    testcontainers_config.max_tries = max(1, int(timeout_s / POLL_INTERVAL_S))
    testcontainers_config.ryuk_disabled = not ryuk_available(client)
    # Ports are published on the engine host's loopback; testcontainers would otherwise guess
    # a bridge gateway address whenever /.dockerenv exists (as on some CI VMs).
    testcontainers_config.connection_mode_override = ConnectionMode.docker_host
    logging.getLogger("testcontainers").setLevel(logging.WARNING)


def ryuk_available(client: docker.DockerClient) -> bool:
    """Whether Testcontainers' Ryuk reaper image is present locally (it can't be pulled here)."""
    try:
        client.images.get(testcontainers_config.ryuk_image)
    except docker.errors.ImageNotFound:
        return False
    return True


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) received: unwinds like Ctrl-C so cleanup code runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _signals_as_exceptions() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into Terminated in the main thread (SIGINT already raises)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, _frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, raise_terminated) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold off SIGINT/SIGTERM/SIGHUP while cleaning up or committing a result; re-raise the
    first one afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def remember(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, remember) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise Terminated(received[0]) if received[0] != signal.SIGINT else KeyboardInterrupt()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:240]
