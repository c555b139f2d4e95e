"""A run's final figures as OpenMetrics text (`lab export --format openmetrics`), for teams whose
dashboards scrape or import Prometheus data.

Per variant every summary metric (`ablab_<metric>`, milliseconds converted to seconds, MB to
bytes, shares as ratios, as OpenMetrics wants base units), per comparison its change
(`ablab_change_ratio`, with the verdict as a label), per target whether it was met, and the
share of targets met. Labels: experiment, workload, run, variant. NaN values are left out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

NAME = re.compile(r"[^a-zA-Z0-9_]")


def escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(**pairs: Any) -> str:
    return "{" + ",".join(f'{key}="{escape(value)}"' for key, value in pairs.items()) + "}"


def converted(metric: str, unit: str, value: float) -> tuple[str, str, float]:
    """OpenMetrics name, unit and value of one of the lab's metrics."""
    name = NAME.sub("_", f"ablab_{metric}")
    if name.endswith("_ms"):
        return name[:-3] + "_seconds", "seconds", value / 1000
    if name.endswith("_mb") or unit == "MB":
        return re.sub(r"_mb$", "", name) + "_bytes", "bytes", value * 2**20
    if unit == "share":
        return name + "_ratio", "ratio", value
    return name, "", value


def number(value: Any) -> float:
    return float(value) if value is not None else math.nan


def family(name: str, unit: str, help_text: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    rows = [(label_text, v) for label_text, v in samples if math.isfinite(v)]
    if not rows:
        return []
    lines = [f"# TYPE {name} gauge"]
    if unit:
        lines.append(f"# UNIT {name} {unit}")
    lines.append(f"# HELP {name} {escape(help_text)}")
    lines += [f"{name}{label_text} {value!r}" for label_text, value in rows]
    return lines


def render_openmetrics(run_id: str, analysis: dict[str, Any]) -> str:
    """The OpenMetrics exposition of one run's analysis document (`analysis/analysis.json`)."""
    common = {"experiment": analysis.get("experiment", ""), "workload": analysis.get("workload", ""), "run": run_id}
    grouped: dict[str, tuple[str, str, list[tuple[str, float]]]] = {}
    for row in analysis.get("summary") or []:
        if row.get("value") is None:
            continue
        name, unit, value = converted(str(row["metric"]), str(row.get("unit", "")), float(row["value"]))
        entry = grouped.setdefault(name, (unit, str(row.get("title", row["metric"])), []))
        entry[2].append((labels(**common, variant=row["variant"]), value))
    lines: list[str] = []
    for name, (unit, help_text, samples) in sorted(grouped.items()):
        lines += family(name, unit, help_text, samples)
    changes = []
    for c in analysis.get("comparison") or []:
        pair = {"metric": c["metric"], "baseline": c["baseline"], "candidate": c["candidate"], "verdict": c["verdict"]}
        changes.append((labels(**common, **pair), number(c.get("change"))))
    lines += family("ablab_change_ratio", "ratio", "candidate against baseline: relative change, or points", changes)
    targets = [
        (labels(**common, variant=t["variant"], metric=t["metric"], target=t["target"]), 1.0 if t["met"] else 0.0)
        for t in analysis.get("targets") or []
    ]
    lines += family("ablab_target_met", "", "1 when the target was met", targets)
    grades = [
        (labels(**common, variant=variant, grade=g["grade"]), number(g.get("share")))
        for variant, g in (analysis.get("grades") or {}).items()
    ]
    lines += family("ablab_targets_met_ratio", "ratio", "share of the targets met", grades)
    return "\n".join(lines) + "\n# EOF\n"
