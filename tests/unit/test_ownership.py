import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest

from lab.stack.ownership import Owner, container_labels, process_start_ticks


def test_current_process_is_alive() -> None:
    assert Owner.current().is_alive()


def test_exited_process_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = replace(Owner.current(), pid=child.pid, start_ticks=process_start_ticks(child.pid))
    child.wait()
    assert not owner.is_alive()


def test_recycled_pid_is_dead() -> None:
    # Same pid, different start time: the pid was reused by another process.
    owner = replace(Owner.current(), start_ticks="1")
    assert not owner.is_alive()


def test_after_a_reboot_every_owner_is_dead() -> None:
    assert not replace(Owner.current(), boot_id="another-boot").is_alive()


def test_owners_on_other_hosts_are_left_alone() -> None:
    stranger = Owner(pid=1, start_ticks="0", host=socket.gethostname() + "-elsewhere", boot_id="x")
    assert stranger.is_alive()


def test_start_ticks_survive_odd_process_names() -> None:
    # comm may contain spaces and parentheses; the parse must split after the last ')'.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        ticks = process_start_ticks(child.pid)
        assert ticks.isdigit()
    finally:
        child.kill()
        child.wait()


def test_labels_carry_run_variant_service_and_owner() -> None:
    owner = Owner.current()
    labels = container_labels("run1", "baseline", "redis", owner)
    assert labels["ablab.managed"] == "true"
    assert labels["ablab.run-id"] == "run1"
    assert labels["ablab.owner-pid"] == str(os.getpid())
    assert labels["ablab.owner-start"] == owner.start_ticks


class _Vanishing:
    """A container whose removal races with another remover."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.name = "lab-x"
        self.short_id = "x"
        self.labels = {"ablab.owner.pid": "1", "ablab.owner.start": "0", "ablab.owner.boot": "other-boot"}

    def remove(self, force: bool, v: bool) -> None:
        raise self.error


def test_reaping_skips_a_container_already_being_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    import docker.errors
    import requests

    from lab.stack import ownership

    response = requests.Response()
    response.status_code = 409
    busy = docker.errors.APIError(
        "Conflict", response=response, explanation="removal of container x is already in progress"
    )
    gone = docker.errors.NotFound("gone")
    monkeypatch.setattr(ownership, "lab_containers", lambda client: [_Vanishing(busy), _Vanishing(gone)])
    monkeypatch.setattr(
        ownership, "owner_of", lambda container: ownership.Owner(pid=1, start_ticks="0", host="h", boot_id="b0")
    )
    assert ownership.reap_orphans(object(), everything=True) == []  # type: ignore[arg-type]
    other = docker.errors.APIError("Conflict", response=response, explanation="something else")
    monkeypatch.setattr(ownership, "lab_containers", lambda client: [_Vanishing(other)])
    with pytest.raises(docker.errors.APIError):
        ownership.reap_orphans(object(), everything=True)  # type: ignore[arg-type]
