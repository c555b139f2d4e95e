"""PostgreSQL: testcontainers' PostgresContainer on the lab's image (or any postgres image)."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
from testcontainers.community.postgres import PostgresContainer
from testcontainers.core.container import DockerContainer

from lab.stack.container import ReadyOrExited, host_port
from lab.stack.endpoint import Endpoint
from lab.stack.services.base import ServiceDefinition


class LabPostgresContainer(PostgresContainer):
    """PostgresContainer whose readiness is a real connection from the host, failing fast."""

    startup_timeout_s: float = 60.0

    def _connect(self) -> None:
        def probe() -> None:
            port = host_port(self, self.port)
            dsn = f"postgresql://{self.username}:{self.password}@127.0.0.1:{port}/{self.dbname}"
            with psycopg.connect(dsn, connect_timeout=2) as connection:
                connection.execute("SELECT 1")

        ReadyOrExited(probe, self.startup_timeout_s).wait_until_ready(self)


class PostgresService(ServiceDefinition):
    kind = "postgres"
    port = 5432
    user = "lab"
    dbname = "lab"

    def container(self, docker_kwargs: dict[str, Any]) -> DockerContainer:
        self.password = secrets.token_urlsafe(18)
        container = LabPostgresContainer(
            self.image,
            port=self.port,
            username=self.user,
            password=self.password,
            dbname=self.dbname,
            driver=None,
            **docker_kwargs,
        )
        container.startup_timeout_s = self.config.startup_timeout_s
        if self.config.command:
            container.with_command(["postgres", *self.config.command])
        return container

    def url(self, host_port: int) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{host_port}/{self.dbname}"

    def params(self) -> dict[str, str]:
        return {"user": self.user, "password": self.password, "dbname": self.dbname}

    def secrets(self) -> tuple[str, ...]:
        return (self.password,)

    @staticmethod
    def check(endpoint: Endpoint) -> str:
        with psycopg.connect(endpoint.url, connect_timeout=5) as connection:
            row = connection.execute("SELECT 1, current_setting('server_version')").fetchone()
        assert row is not None
        return f"SELECT 1 -> {row[0]} (PostgreSQL {row[1]})"
