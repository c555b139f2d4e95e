"""Integration tests run against a real engine: the same one `make setup` made sure of."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from lab.stack.engine import ensure_engine


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    ensure_engine(log=False)
    client = docker.from_env()
    yield client
    client.close()
