"""The interface each service module implements; shared machinery lives in lab.stack.stack."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from testcontainers.core.container import DockerContainer

from lab.config.services import ServiceConfig
from lab.stack.container import LOOPBACK
from lab.stack.endpoint import Endpoint


class ServiceDefinition(ABC):
    """How one kind of service is started, described to workloads and checked."""

    kind: ClassVar[str]
    port: ClassVar[int]

    def __init__(self, config: ServiceConfig, image: str) -> None:
        self.config = config
        self.image = image

    @abstractmethod
    def container(self, docker_kwargs: dict[str, Any]) -> DockerContainer:
        """A configured (not started) Testcontainers container whose start() waits for ready."""

    def endpoint(self, container: DockerContainer, host_port: int) -> Endpoint:
        """How the host reaches the started container."""
        wrapped = container.get_wrapped_container()
        return Endpoint(
            service=self.kind,
            host=LOOPBACK,
            port=host_port,
            url=self.url(host_port),
            container_id=wrapped.id,
            container_name=wrapped.name,
            image=self.image,
            params=self.params(),
            secrets=self.secrets(),
        )

    @abstractmethod
    def url(self, host_port: int) -> str:
        """The URL (or DSN) a client uses to reach the service on `host_port`."""

    def params(self) -> dict[str, str]:
        """Connection details beyond the URL (user, database, model, ...)."""
        return {}

    def secrets(self) -> tuple[str, ...]:
        """Values to mask wherever the URL is shown."""
        return ()

    @staticmethod
    @abstractmethod
    def check(endpoint: Endpoint) -> str:
        """One real round trip to the service; returns what it answered."""
