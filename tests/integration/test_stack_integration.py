"""Postgres and Redis of one variant, started for real, then gone without a trace."""

from __future__ import annotations

from pathlib import Path

import docker
import psycopg
import pytest
import redis

from lab.config.experiment import VariantConfig, load_experiment, parse_experiment
from lab.errors import ServiceStartError
from lab.stack.ownership import LABEL_RUN_ID, LABEL_SERVICE, lab_containers
from lab.stack.stack import running_stack

SMOKE = Path(__file__).resolve().parents[2] / "experiments" / "smoke.toml"


def only(services: list[str], variant: str = "baseline") -> tuple[str, VariantConfig]:
    """The smoke experiment's variant with only the named services."""
    name, config = load_experiment(SMOKE).variant(variant)
    kept = {kind: c for kind, c in config.services.started().items() if kind in services}
    return name, VariantConfig.model_validate({"services": kept})


def test_postgres_and_redis_answer_then_leave_nothing_behind(docker_client: docker.DockerClient) -> None:
    name, config = only(["postgres", "redis"])
    with running_stack(config, name) as stack:
        run_id = stack.run_id
        assert set(stack.endpoints) == {"postgres", "redis"}
        with psycopg.connect(stack.endpoints["postgres"].url, connect_timeout=5) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        client = redis.Redis(host=stack.endpoints["redis"].host, port=stack.endpoints["redis"].port)
        assert client.ping() is True
        client.close()
        running = lab_containers(docker_client, run_id=run_id)
        assert {c.labels[LABEL_SERVICE] for c in running} == {"postgres", "redis"}
    assert lab_containers(docker_client, run_id=run_id) == []
    assert lab_containers(docker_client) == []


def test_containers_get_limits_labels_and_loopback_ports(docker_client: docker.DockerClient) -> None:
    name, config = only(["postgres", "redis"], "optimized")
    with running_stack(config, name) as stack:
        postgres = docker_client.containers.get(stack.endpoints["postgres"].container_id)
        redis_container = docker_client.containers.get(stack.endpoints["redis"].container_id)
        host_config = postgres.attrs["HostConfig"]
        assert host_config["NanoCpus"] == 1_000_000_000
        assert host_config["Memory"] == 1024 * 1024 * 1024  # the optimized overlay
        assert redis_container.attrs["HostConfig"]["Memory"] == 256 * 1024 * 1024
        for container in (postgres, redis_container):
            bindings = [b for port in container.attrs["NetworkSettings"]["Ports"].values() for b in port or []]
            assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)
            assert container.labels[LABEL_RUN_ID] == stack.run_id
        with psycopg.connect(stack.endpoints["postgres"].url) as connection:
            assert connection.execute("SHOW shared_buffers").fetchone() == ("256MB",)
        # Each stack gets its own random password; the masked URL hides it.
        password = stack.endpoints["postgres"].params["password"]
        assert len(password) >= 20
        assert password not in stack.endpoints["postgres"].public_url()


def test_a_wrong_password_is_refused(docker_client: docker.DockerClient) -> None:
    name, config = only(["postgres"])
    with running_stack(config, name) as stack:
        endpoint = stack.endpoints["postgres"]
        wrong = endpoint.url.replace(endpoint.params["password"], "not-the-password")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(wrong, connect_timeout=5)


def test_a_failed_start_reports_the_log_tail_and_cleans_up(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    experiment = parse_experiment(
        {
            "experiment": {"name": "broken"},
            "services": {
                "postgres": {"command": ["-c", "no_such_setting=1"], "startup_timeout_s": 15},
                "redis": {},
            },
        },
        tmp_path / "broken.toml",
    )
    name, config = experiment.variant(None)
    with pytest.raises(ServiceStartError) as caught, running_stack(config, name, run_id="broken-run"):
        pytest.fail("the stack must not come up")
    assert 'unrecognized configuration parameter "no_such_setting"' in str(caught.value)
    assert caught.value.exit_code == 3
    assert lab_containers(docker_client, run_id="broken-run") == []
