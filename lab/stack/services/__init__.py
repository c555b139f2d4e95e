"""One module per service: how to start it with Testcontainers, describe and check it."""

from __future__ import annotations

from lab.stack.services.base import ServiceDefinition
from lab.stack.services.inference import InferenceService
from lab.stack.services.mock_api import MockApiService
from lab.stack.services.postgres import PostgresService
from lab.stack.services.redis import RedisService

SERVICES: dict[str, type[ServiceDefinition]] = {
    PostgresService.kind: PostgresService,
    RedisService.kind: RedisService,
    MockApiService.kind: MockApiService,
    InferenceService.kind: InferenceService,
}

__all__ = ["SERVICES", "ServiceDefinition"]
