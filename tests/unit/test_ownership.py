import os
import socket
import subprocess
import sys
from dataclasses import replace

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
