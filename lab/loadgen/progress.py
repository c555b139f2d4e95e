"""Live progress of a load run: a rich panel on a terminal, a plain line per second in CI logs."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Literal

from rich.console import Console
from rich.live import Live
from rich.table import Table

from lab.loadgen.worker import LoadPlan

PLAIN_INTERVAL_S = 1.0


class ProgressDisplay:
    """Collects the workers' progress lines and shows their sum."""

    def __init__(self, plan: LoadPlan, display: Literal["auto", "rich", "plain", "none"], label: str = "") -> None:
        if display == "auto":
            display = "rich" if sys.stdout.isatty() else "plain"
        self.mode = display
        self.plan = plan
        self.label = label or plan.operation.factory.rsplit(":", 1)[-1]
        self.latest: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._began = time.monotonic()

    def update(self, line: dict[str, Any]) -> None:
        if "worker" in line:
            with self._lock:
                self.latest[int(line["worker"])] = line

    def start(self) -> None:
        self._began = time.monotonic()
        if self.mode == "none":
            return
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            lines = list(self.latest.values())
        total: dict[str, Any] = {
            key: sum(int(x.get(key, 0)) for x in lines)
            for key in ("scheduled", "sent", "completed", "errors", "dropped", "late", "in_flight")
        }
        total["elapsed_s"] = max((float(x["elapsed_s"]) for x in lines), default=0.0)
        p95s = [x["p95_ms"] for x in lines if x.get("p95_ms") is not None]
        total["p95_ms"] = max(p95s) if p95s else None
        return total

    def line(self) -> str:
        s = self.snapshot()
        duration = self.plan.schedule.duration_s
        elapsed = min(s["elapsed_s"], duration)
        rate = s["sent"] / elapsed if elapsed > 0 else 0.0
        target = self.plan.schedule.rate_at(elapsed) if self.plan.schedule.open_loop else None
        p95 = f"{s['p95_ms']:.1f} ms" if s["p95_ms"] is not None else "-"
        target_text = f" / target {target:,.0f}/s" if target is not None else " (closed loop)"
        return (
            f"{self.label}: {elapsed:5.1f}/{duration:.0f} s  rate {rate:,.0f}/s{target_text}  "
            f"in flight {s['in_flight']}  errors {s['errors']}  dropped {s['dropped']}  late {s['late']}  p95 {p95}"
        )

    def _run(self) -> None:
        if self.mode == "plain":
            while not self._stop.wait(PLAIN_INTERVAL_S):
                print(self.line(), flush=True)
            return
        console = Console()
        with Live(self._table(), console=console, refresh_per_second=4, transient=True) as live:
            while not self._stop.wait(0.25):
                live.update(self._table())

    def _table(self) -> Table:
        s = self.snapshot()
        duration = self.plan.schedule.duration_s
        elapsed = min(s["elapsed_s"], duration)
        table = Table(title=f"load: {self.label}", show_header=False)
        table.add_row("elapsed / remaining", f"{elapsed:.1f} s / {max(duration - elapsed, 0):.1f} s")
        rate = s["sent"] / elapsed if elapsed > 0 else 0.0
        if self.plan.schedule.open_loop:
            table.add_row("rate achieved / target", f"{rate:,.0f}/s / {self.plan.schedule.rate_at(elapsed):,.0f}/s")
        else:
            table.add_row("rate (closed loop)", f"{rate:,.0f}/s")
        table.add_row("in flight", str(s["in_flight"]))
        table.add_row("errors / dropped / late", f"{s['errors']} / {s['dropped']} / {s['late']}")
        table.add_row("p95 (last 0.5 s)", f"{s['p95_ms']:.2f} ms" if s["p95_ms"] is not None else "-")
        return table
