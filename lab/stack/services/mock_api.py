"""The mock third-party API (crm, llm, listings), configured through MOCK_API_CONFIG."""

from __future__ import annotations

import json
from typing import Any

from testcontainers.core.container import DockerContainer

from lab.config.services import MockApiConfig
from lab.stack.container import ReadyOrExited, host_port
from lab.stack.endpoint import Endpoint
from lab.stack.services.base import ServiceDefinition
from lab.stack.services.http import get_json


def mock_api_settings(config: MockApiConfig) -> dict[str, Any]:
    """The server's configuration document: the seed and every upstream key the experiment set."""
    upstreams = {name: profile.model_dump(exclude_none=True) for name, profile in config.upstreams.items()}
    return {"seed": config.seed, "upstreams": upstreams}


class MockApiService(ServiceDefinition):
    kind = "mock_api"
    port = 8080

    def container(self, docker_kwargs: dict[str, Any]) -> DockerContainer:
        assert isinstance(self.config, MockApiConfig)
        container = DockerContainer(self.image, **docker_kwargs)
        container.with_env("MOCK_API_CONFIG", json.dumps(mock_api_settings(self.config)))
        if self.config.command:
            container.with_command(["python", "-m", "lab.services.mock_api", *self.config.command])
        container.waiting_for(
            ReadyOrExited(
                lambda: get_json(f"http://127.0.0.1:{host_port(container, self.port)}/health", 2),
                self.config.startup_timeout_s,
            )
        )
        return container

    def url(self, host_port: int) -> str:
        return f"http://127.0.0.1:{host_port}"

    @staticmethod
    def check(endpoint: Endpoint) -> str:
        health = get_json(f"{endpoint.url}/health")
        stats = get_json(f"{endpoint.url}/stats")
        return f"GET /health -> {health.get('status')} (upstreams: {', '.join(stats.get('upstreams', {}))})"
