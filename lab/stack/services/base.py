"""The interface each service module implements; shared machinery lives in lab.stack.stack."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from testcontainers.core.container import DockerContainer

from lab.config.experiment import ServiceConfig
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

    @abstractmethod
    def endpoint(self, container: DockerContainer, host_port: int) -> Endpoint:
        """How the host reaches the started container."""

    @staticmethod
    @abstractmethod
    def check(endpoint: Endpoint) -> str:
        """One real round trip to the service; returns what it answered."""
