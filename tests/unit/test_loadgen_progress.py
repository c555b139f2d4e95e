"""Progress: the workers' lines summed into one plain line per interval (CI logs)."""

from __future__ import annotations

from lab.loadgen.operation import OperationRef
from lab.loadgen.progress import ProgressDisplay
from lab.loadgen.schedule import Schedule
from lab.loadgen.worker import LoadPlan


def test_plain_line_sums_workers_and_shows_rate_target_and_p95() -> None:
    plan = LoadPlan(Schedule.constant(1000, 10), OperationRef("m:f", {}), workers=2)
    display = ProgressDisplay(plan, "plain", label="api")
    common = {"scheduled": 2000, "completed": 1990, "dropped": 3, "late": 1, "in_flight": 5}
    display.update({"worker": 0, "elapsed_s": 4.0, "sent": 2000, "errors": 2, "p95_ms": 12.5, **common})
    display.update({"worker": 1, "elapsed_s": 4.0, "sent": 2000, "errors": 0, "p95_ms": 14.0, **common})
    line = display.line()
    assert line.startswith("api:   4.0/10 s")
    assert "rate 1,000/s / target 1,000/s" in line
    assert "in flight 10" in line and "errors 2" in line and "dropped 6" in line and "late 2" in line
    assert "p95 14.0 ms" in line  # the slowest worker's rolling p95


def test_closed_loop_is_labelled() -> None:
    plan = LoadPlan(Schedule.closed(8, 5), OperationRef("m:f", {}))
    display = ProgressDisplay(plan, "plain", label="db")
    display.update({"worker": 0, "elapsed_s": 1.0, "sent": 100, "p95_ms": None})
    assert "(closed loop)" in display.line() and "p95 -" in display.line()
