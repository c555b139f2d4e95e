"""A run interrupted mid-way - SIGINT, SIGTERM, or SIGKILL then `lab gc` - leaves no container,
and a run directory that says so, keeps its finished trials, and still gets a report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from lab.stack.ownership import lab_containers
from tests.conftest import REPO, run_lab


def start_run(results: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "lab", "run", str(REPO / "experiments" / "cache.toml"),
            "--trials", "3", "--duration", "3", "--progress", "none",
        ],
        cwd=REPO,
        env={**os.environ, "LAB_RESULTS_DIR": str(results)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def wait_for_first_trial(results: Path, process: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        done = list(results.glob("*/trials/00-*/trial.json"))
        if done and json.loads(done[0].read_text()).get("state") == "complete":
            return done[0].parents[2]
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    raise AssertionError("the first trial never finished")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_an_interrupted_run_is_marked_kept_and_reportable(
    docker_client: docker.DockerClient, tmp_path: Path, signum: int
) -> None:
    results = tmp_path / "results"
    process = start_run(results)
    try:
        run = wait_for_first_trial(results, process)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    status = json.loads((run / "status.json").read_text())
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
        assert status["state"] == "running"  # nobody was left to say otherwise ...
        gc = run_lab("gc", env={"LAB_RESULTS_DIR": str(results)})
        assert gc.returncode == 0 and "interrupted" in gc.stdout, gc.stdout
        status = json.loads((run / "status.json").read_text())  # ... until `lab gc` looked
        assert status["state"] == "interrupted" and "killed" in status["reason"]
    else:
        assert process.returncode == 130, stderr
        assert "Traceback" not in stderr
        assert status["state"] == "interrupted" and status["trials_done"] >= 1
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["status"]["state"] == "interrupted" and "trials.parquet" in manifest["files"]
    assert lab_containers(docker_client) == []
    # the finished trials are kept and the run can still be reported on
    report = run_lab("report", str(run), env={"LAB_RESULTS_DIR": str(results)}, timeout=300)
    assert report.returncode == 0, report.stderr
    text = (run / "report.md").read_text()
    assert f"({status['state']})" in text or status["state"] in text
