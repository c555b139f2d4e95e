"""Faults injected into a variant's stack while a trial's load runs, on a timeline.

A `FaultRunner` thread waits for each fault's moment (seconds after the load's start instant,
which `run_load` reports), acts on the container through Docker - kill or stop it and start it
again after `duration_s`, pause/unpause it, restart it, disconnect it from its network and
connect it back - or asks the mock API to degrade an upstream for a window (`/admin/fault`).
Every fault is recorded with the times it began and ended, in the load's time base (the same
as the samples' `intended_ns`), and whether it worked. A killed or stopped container is always
started again before the trial ends, so the next trial finds the stack whole (published ports
are fixed per container, so clients reconnect to the same address).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors

from lab.config.faults import FaultConfig
from lab.loadgen.schedule import Schedule
from lab.stack.endpoint import Endpoint


def fault_start_s(fault: FaultConfig, schedule: Schedule) -> float:
    """When a fault begins, in seconds after the load's start (`after_requests`: when request N is due)."""
    if fault.at_s is not None:
        return fault.at_s
    assert fault.after_requests is not None
    if not schedule.open_loop:
        raise ValueError("after_requests needs open-loop arrivals (constant or poisson)")
    remaining = fault.after_requests
    for chunk in schedule.offsets_ns():
        if remaining <= len(chunk):
            return float(chunk[remaining - 1]) / 1e9
        remaining -= len(chunk)
    return schedule.duration_s  # fewer requests than that: at the end


@dataclass
class FaultRunner:
    """Applies a variant's faults during one trial; `records` says what happened and when."""

    faults: list[FaultConfig]
    endpoints: dict[str, Endpoint]
    schedule: Schedule
    records: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._start_wall_ns: int | None = None
        self._started = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-faults", daemon=True)
        self._client = docker.from_env()
        self._thread.start()

    def load_started(self, start_wall_ns: int) -> None:
        """The load's start instant (wall clock ns), from `run_load`."""
        self._start_wall_ns = start_wall_ns
        self._started.set()

    def finish(self) -> list[dict[str, Any]]:
        """Wait for every fault to end (restoring what it broke) and return the records."""
        self._started.set()
        self._stop.set()
        self._thread.join(timeout=120)
        self._client.close()
        return self.records

    def _now_s(self) -> float:
        assert self._start_wall_ns is not None
        return (time.time_ns() - self._start_wall_ns) / 1e9

    def _wait_until(self, at_s: float) -> bool:
        """Sleep until `at_s` after the load's start; False when the trial ended first."""
        while (left := at_s - self._now_s()) > 0:
            if self._stop.wait(min(left, 0.05)):
                return False
        return True

    def _run(self) -> None:
        self._started.wait()
        if self._start_wall_ns is None:
            return
        timeline = sorted((fault_start_s(f, self.schedule), f) for f in self.faults)
        for at_s, fault in timeline:
            if not self._wait_until(at_s):
                self.records.append({**describe(fault), "planned_s": at_s, "applied": False, "reason": "trial ended"})
                continue
            self.records.append(self._apply(fault, at_s))

    def _apply(self, fault: FaultConfig, planned_s: float) -> dict[str, Any]:
        record: dict[str, Any] = {**describe(fault), "planned_s": planned_s, "start_s": self._now_s()}
        endpoint = self.endpoints[fault.service]
        try:
            container = self._client.containers.get(endpoint.container_id)
            if fault.kind in ("kill", "stop"):
                container.kill() if fault.kind == "kill" else container.stop(timeout=5)
                record["down_s"] = self._now_s()
                self._hold(record, fault)
                container.start()
            elif fault.kind == "pause":
                container.pause()
                self._hold(record, fault)
                container.unpause()
            elif fault.kind == "restart":
                container.restart(timeout=5)
            elif fault.kind == "network":
                networks = list(container.attrs["NetworkSettings"]["Networks"])
                for name in networks:
                    self._client.networks.get(name).disconnect(container)
                self._hold(record, fault)
                for name in networks:
                    self._client.networks.get(name).connect(container)
            else:  # latency, errors: the mock API degrades the upstream for the window itself
                from lab.stack.services.http import post_json

                post_json(
                    f"{endpoint.url}/admin/fault",
                    {
                        "upstream": fault.upstream,
                        "extra_latency_ms": fault.extra_latency_ms,
                        "error_rate": fault.error_rate,
                        "duration_s": fault.duration_s,
                    },
                )
                self._hold(record, fault)
            record["applied"] = True
        except Exception as exc:  # noqa: BLE001 - a fault that could not be applied is recorded, not fatal
            record["applied"] = False
            record["reason"] = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        record["end_s"] = self._now_s()
        return record

    def _hold(self, record: dict[str, Any], fault: FaultConfig) -> None:
        """Keep the fault on for its duration (a trial ending early cuts it short)."""
        end = record["start_s"] + fault.duration_s
        while (left := end - self._now_s()) > 0:
            if self._stop.wait(min(left, 0.05)):
                record["cut_short"] = True
                break


def describe(fault: FaultConfig) -> dict[str, Any]:
    return fault.model_dump(mode="json", exclude_none=True)
