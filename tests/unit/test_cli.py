from pathlib import Path

import pytest

from tests.conftest import run_lab


@pytest.mark.parametrize("command", [["doctor"], ["up"], ["gc"], ["check"]])
def test_dead_docker_host_gives_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    result = run_lab(*command, env={"DOCKER_HOST": f"unix://{tmp_path}/dead.sock"}, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lab: error: no Docker engine answers at unix://")
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_experiment_is_a_one_line_error_before_any_container(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[experiment]\nname = "x"\n[services.redis]\nmemroy_mb = 5\n')
    # A dead engine proves the config is checked first: the error is about the file.
    result = run_lab("up", "-e", str(bad), env={"DOCKER_HOST": f"unix://{tmp_path}/dead.sock"})
    assert result.returncode == 2
    assert result.stderr.strip() == f"lab: error: {bad}:4: services.redis.memroy_mb: unknown key"


def test_unknown_command_is_a_usage_error() -> None:
    result = run_lab("frobnicate")
    assert result.returncode == 2
    assert "No such command" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_commands() -> None:
    result = run_lab("--help")
    assert result.returncode == 0
    for command in ("doctor", "up", "check", "gc", "images"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://10.1.2.3/"], "load goes only to http:// on the loopback"),
        (["https://127.0.0.1/"], "load goes only to http:// on the loopback"),
        (["http://127.0.0.1:1/", "--duration", "0"], "--duration must be positive"),
        (["http://127.0.0.1:1/", "--warmup", "5", "--duration", "2"], "--warmup must be"),
    ],
)
def test_load_refuses_other_hosts_and_bad_numbers(args: list[str], message: str) -> None:
    result = run_lab("load", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_worker_is_hidden_from_help() -> None:
    assert "worker" not in run_lab("--help").stdout


def test_run_refuses_an_experiment_without_a_workload_before_any_container(tmp_path: Path) -> None:
    result = run_lab("run", "experiments/smoke.toml", env={"DOCKER_HOST": f"unix://{tmp_path}/dead.sock"})
    assert result.returncode == 2
    assert 'experiment.workload is "none": there is nothing to run' in result.stderr
