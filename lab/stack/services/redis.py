"""Redis: testcontainers' RedisContainer on the lab's image (or any redis image)."""

from __future__ import annotations

from typing import Any

import redis
from testcontainers.community.redis import RedisContainer
from testcontainers.core.container import DockerContainer

from lab.stack.container import ReadyOrExited, host_port
from lab.stack.endpoint import Endpoint
from lab.stack.services.base import ServiceDefinition


class RedisService(ServiceDefinition):
    kind = "redis"
    port = 6379

    def container(self, docker_kwargs: dict[str, Any]) -> DockerContainer:
        container = RedisContainer(self.image, port=self.port, **docker_kwargs)

        def probe() -> None:
            client = redis.Redis(host="127.0.0.1", port=host_port(container, self.port), socket_timeout=2)
            try:
                client.ping()
            finally:
                client.close()

        container.waiting_for(ReadyOrExited(probe, self.config.startup_timeout_s))
        if self.config.command:
            container.with_command(["redis-server", "/etc/redis/ablab.conf", *self.config.command])
        return container

    def url(self, host_port: int) -> str:
        return f"redis://127.0.0.1:{host_port}/0"

    @staticmethod
    def check(endpoint: Endpoint) -> str:
        client = redis.Redis(host=endpoint.host, port=endpoint.port, socket_timeout=5)
        try:
            answer = client.ping()
            version = client.info("server").get("redis_version", "?")
        finally:
            client.close()
        return f"PING -> {'PONG' if answer else answer} (Redis {version})"
