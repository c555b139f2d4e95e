"""`lab up` ended by SIGTERM, SIGINT and SIGKILL: no lab container survives (after gc for KILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from lab.stack.ownership import LABEL_RUN_ID, lab_containers
from tests.conftest import REPO, run_lab


def start_lab_up() -> tuple[subprocess.Popen[str], str]:
    """Start `lab up` and return it with its run id once the stack is up."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lab", "up", "--variant", "baseline"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    for line in process.stdout:
        if line.startswith("stack ") and " is up " in line:
            return process, line.split()[1]
        if time.monotonic() > deadline:
            break
    process.kill()
    _, stderr = process.communicate()
    pytest.fail(f"lab up did not come up: {stderr}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_lab_up_cleans_up_on_a_signal(docker_client: docker.DockerClient, signum: int) -> None:
    process, run_id = start_lab_up()
    assert {c.labels[LABEL_RUN_ID] for c in lab_containers(docker_client)} == {run_id}
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().startswith("lab: interrupted")
    assert lab_containers(docker_client) == []


def test_after_sigkill_lab_gc_removes_the_orphans(docker_client: docker.DockerClient) -> None:
    process, run_id = start_lab_up()
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    orphans = lab_containers(docker_client, run_id=run_id)
    assert len(orphans) == 4  # a SIGKILL leaves them: nothing of ours ran
    result = run_lab("gc")
    assert result.returncode == 0, result.stderr
    assert "4 container(s) removed" in result.stdout
    assert lab_containers(docker_client) == []


def test_after_sigkill_the_next_start_removes_the_orphans(docker_client: docker.DockerClient) -> None:
    process, first_run = start_lab_up()
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert len(lab_containers(docker_client, run_id=first_run)) == 4
    second, second_run = start_lab_up()
    try:
        assert lab_containers(docker_client, run_id=first_run) == []
        assert len(lab_containers(docker_client, run_id=second_run)) == 4
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=60)
    assert lab_containers(docker_client) == []


def test_gc_leaves_live_runs_alone(docker_client: docker.DockerClient) -> None:
    process, run_id = start_lab_up()
    try:
        result = run_lab("gc")
        assert "0 container(s) removed" in result.stdout
        assert len(lab_containers(docker_client, run_id=run_id)) == 4
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)


def test_doctor_and_check_pass_with_a_working_engine(docker_client: docker.DockerClient) -> None:
    doctor = run_lab("doctor")
    assert doctor.returncode == 0, doctor.stderr
    assert "ok       everything the lab needs is here" in doctor.stdout
    check = run_lab("check")
    assert check.returncode == 0, check.stdout + check.stderr
    for answer in ("SELECT 1 -> 1", "PING -> PONG", "GET /health -> ok", "POST /predict -> score"):
        assert check.stdout.count(answer) == 2, check.stdout


def test_images_build_is_idempotent() -> None:
    result = run_lab("images", "build")
    assert result.returncode == 0, result.stderr
    assert "building" not in result.stdout
    assert result.stdout.count("is up to date") == 4


def test_an_experiment_may_name_a_missing_image(tmp_path: Path) -> None:
    experiment = tmp_path / "other.toml"
    experiment.write_text('[experiment]\nname = "other"\n[services.redis]\nimage = "nosuch/redis:9"\n')
    result = run_lab("up", "-e", str(experiment))
    assert result.returncode == 2
    assert result.stderr.startswith("lab: error: image nosuch/redis:9 is not present and cannot be pulled")
    assert len(result.stderr.strip().splitlines()) == 1
