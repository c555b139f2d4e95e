import os
from pathlib import Path

import pytest

from lab.errors import EngineUnavailable
from lab.stack import engine


def test_dead_docker_host_is_one_line_with_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/dead.sock")
    with pytest.raises(EngineUnavailable) as caught:
        engine.probe_engine(timeout_s=1)
    line = caught.value.one_line()
    assert f"no Docker engine answers at unix://{tmp_path}/dead.sock" in line
    assert "unset DOCKER_HOST" in line
    assert "\n" not in line


def test_an_explicit_docker_host_is_never_replaced_by_a_local_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    assert engine.can_manage_local_engine() is False
    with pytest.raises(EngineUnavailable):
        engine.ensure_engine(start_timeout_s=1, log=False)


def test_the_default_socket_is_managed_only_as_root_on_debian(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert engine.can_manage_local_engine() is False


def test_stale_pid_file_and_socket_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "docker.pid"
    stale.write_text("999999999\n")  # above pid_max: no such process
    live = tmp_path / "live.pid"
    live.write_text(f"{os.getpid()}\n")
    socket = tmp_path / "docker.sock"
    socket.write_text("")
    monkeypatch.setattr(engine, "STALE_PID_FILES", (stale, live))
    monkeypatch.setattr(engine, "DEFAULT_SOCKET", f"unix://{socket}")
    monkeypatch.setattr(engine, "_dockerd_running", lambda: False)
    removed = engine.remove_stale_engine_files()
    assert removed == [stale, socket]
    assert live.exists() and not stale.exists() and not socket.exists()


def test_socket_of_a_running_dockerd_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    socket = tmp_path / "docker.sock"
    socket.write_text("")
    monkeypatch.setattr(engine, "STALE_PID_FILES", ())
    monkeypatch.setattr(engine, "DEFAULT_SOCKET", f"unix://{socket}")
    monkeypatch.setattr(engine, "_dockerd_running", lambda: True)
    assert engine.remove_stale_engine_files() == []
    assert socket.exists()
