"""Plain-text tables of an analysis: what `lab run`, `lab analyze`, `lab aa` and `lab compare` print
(and the golden files the tests compare against)."""

from __future__ import annotations

import math

from lab.analysis.analyze import Analysis, TargetResult
from lab.analysis.catalog import COST_REDUCTION, Metric
from lab.analysis.cost import assumptions
from lab.analysis.stats import Comparison

VERDICT_MARK = {"improved": "+", "regressed": "!", "no significant change": "=", "inconclusive": "?"}


def value(metric: Metric | None, x: float) -> str:
    """A metric's value in its unit, to a sensible precision."""
    if x != x:
        return "-"
    if math.isinf(x):
        return "inf"
    unit = metric.unit if metric else ""
    if unit == "share":
        return f"{100 * x:.2f} %"
    if unit == "$":
        return f"{x:,.2f}"
    return number(x)


def number(x: float) -> str:
    """A plain number to about four significant digits, thousands separated."""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.4g}"


def _signed(c: Comparison, metric: Metric | None) -> tuple[float, str, str]:
    """How a change is shown: percent (relative), percentage points (shares) or plain units."""
    if c.scale == "relative":
        return 100.0, "+.1f", " %"
    if metric and metric.unit == "share":
        return 100.0, "+.2f", " pp"
    return 1.0, "+.4g", ""


def change(c: Comparison, x: float, metric: Metric | None) -> str:
    if x != x:
        return "-"
    factor, spec, unit = _signed(c, metric)
    return f"{factor * x:{spec}}{unit}"


def interval(c: Comparison, metric: Metric | None) -> str:
    if c.low != c.low:
        return "-"
    factor, spec, unit = _signed(c, metric)
    return f"[{factor * c.low:{spec}}, {factor * c.high:{spec}}]{unit}"


def threshold(c: Comparison, metric: Metric | None) -> str:
    if c.scale == "relative":
        return f"{100 * c.threshold:.1f} %"
    if metric and metric.unit == "share":
        return f"{100 * c.threshold:.2f} pp"
    return f"{c.threshold:g}"


def title(metric: Metric | None, name: str) -> str:
    if metric is None:
        return name
    return f"{metric.title} ({metric.unit})" if metric.unit not in ("share", "") else metric.title


def comparison_lines(analysis: Analysis) -> list[str]:
    """One table per candidate: baseline and candidate values, change, interval, verdict."""
    lines: list[str] = []
    confidence = f"{100 * analysis.settings.confidence:g} %"
    for candidate in analysis.candidates:
        rows = [c for c in analysis.comparisons if c.candidate == candidate]
        if not rows:
            continue
        lines.append(
            f"{analysis.experiment}: {candidate} against {analysis.baseline} "
            f"({confidence} intervals, simultaneous over {len(analysis.comparisons)} comparisons; "
            f"thresholds from {analysis.threshold_source})"
        )
        header = (
            f"    {'metric':<32}{analysis.baseline[:13]:>14}{candidate[:13]:>14}{'change':>11}"
            f"  {'interval':<22}{'threshold':>10}  verdict"
        )
        lines.append(header)
        for c in rows:
            metric = analysis.catalog.get(c.metric)
            mark = "*" if c.headline else " "
            notes = [c.note] if c.note else []
            if c.metric == "predictions_per_s" and c.change == c.change:
                notes.append(f"speedup x{1 + c.change:.2f}")
            note = f" ({'; '.join(notes)})" if notes else ""
            lines.append(
                f"  {mark} {title(metric, c.metric)[:31]:<32}{value(metric, c.baseline_value):>14}"
                f"{value(metric, c.candidate_value):>14}{change(c, c.change, metric):>11}  "
                f"{interval(c, metric):<22}{threshold(c, metric):>10}  {c.verdict}{note}"
            )
        lines.append("    * headline metric")
    return lines


def summary_lines(analysis: Analysis) -> list[str]:
    """Per variant: each measured metric with its own interval and the samples behind it."""
    lines = [f"{analysis.experiment}: per variant ({100 * analysis.settings.confidence:g} % intervals)"]
    lines.append(f"    {'metric':<32}" + "".join(f"{v[:30]:>32}" for v in analysis.variants))
    names = [n for n in analysis.catalog.metrics if any(n in e for e in analysis.estimates.values())]
    flags: list[str] = []
    for name in names:
        metric = analysis.catalog.metrics[name]
        cells = []
        for variant in analysis.variants:
            e = analysis.estimates[variant].get(name)
            if e is None:
                cells.append(f"{'-':>32}")
                continue
            low, high = e.interval(metric.scale, analysis.settings.confidence)
            band = f" [{value(metric, low)}, {value(metric, high)}]" if low == low else ""
            mark = "†" if e.flag else ""
            if e.flag:
                flags.append(f"    † {variant}: {e.flag}")
            cells.append(f"{value(metric, e.value) + band + mark:>32}")
        lines.append(f"    {title(metric, name)[:31]:<32}" + "".join(cells))
    samples = [
        f"{v}: {e['latency_p50_ms'].samples:,} samples in {e['latency_p50_ms'].trials} trial(s)"
        for v, e in analysis.estimates.items()
        if "latency_p50_ms" in e and e["latency_p50_ms"].samples
    ]
    if samples:
        lines.append("    requests behind the sample metrics: " + "; ".join(samples))
    lines.extend(dict.fromkeys(flags))
    return lines


def target_text(analysis: Analysis, t: TargetResult) -> tuple[str, str]:
    """A target's bound and its measured value, in the metric's unit (shares and cost reduction in %)."""
    metric = analysis.catalog.get(t.metric)
    percent = t.metric == COST_REDUCTION or (metric is not None and metric.unit == "share")
    if not percent:
        unit = f" {metric.unit}" if metric and metric.unit and t.value == t.value else ""
        return t.target.describe(), value(metric, t.value) + unit
    bound = " ".join(f"{100 * float(part):g} %" if _is_number(part) else part for part in t.target.describe().split())
    return bound, f"{100 * t.value:.1f} %" if t.value == t.value else "-"


def target_lines(analysis: Analysis) -> list[str]:
    if not analysis.targets:
        return []
    lines = ["targets:"]
    for t in analysis.targets:
        bound, shown = target_text(analysis, t)
        band = f" (expected up to {100 * t.target.expected_max:.0f} %)" if t.target.expected_max else ""
        lines.append(
            f"    [{'pass' if t.met else 'FAIL'}] {t.variant:<14} {t.metric} {bound}{band}: {shown} ({t.source})"
        )
    for variant, g in analysis.grades().items():
        if g["total"]:
            lines.append(f"    grade {variant}: {g['grade']} ({g['met']}/{g['total']} targets met)")
    regressions = analysis.regressions()
    lines.append(
        "    regressions: " + (", ".join(f"{c.metric} ({c.candidate})" for c in regressions) if regressions else "none")
    )
    return lines


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def savings_line(analysis: Analysis, variant: str) -> str:
    """What a candidate saves against the baseline, per day and per 30 days, with ROI and payback."""
    s = analysis.savings[variant]
    reduction = s["cost_reduction"]
    share = f"{100 * reduction:.1f} %" if reduction == reduction else "-"
    currency = analysis.prices.currency
    line = (
        f"{variant} saves {s['savings_per_day']:,.2f} {currency} per day, {s['savings_per_30_days']:,.2f} per 30 days "
        f"({share} of {analysis.baseline})"
    )
    if "roi_30_days" in s:
        payback = f"{s['payback_days']:.1f} days" if math.isfinite(s["payback_days"]) else "never (no savings)"
        line += f"; ROI over 30 days {100 * s['roi_30_days']:.0f} %, payback {payback}"
    return line


def cost_lines(analysis: Analysis) -> list[str]:
    currency = analysis.prices.currency
    if not any("cost_per_day" in c for c in analysis.cost.values()):
        return []
    lines = [f"projected cost ({currency}):"]
    for variant, components in analysis.cost.items():
        if "cost_per_day" not in components:
            continue
        lines.append(
            f"    {variant:<14} per day {components['cost_per_day']:>12,.2f}   per 30 days "
            f"{components['cost_per_30_days']:>12,.2f}   (CPU {components['cost_cpu_per_day']:,.2f}, memory "
            f"{components['cost_memory_per_day']:,.2f}, upstream calls {components['cost_upstream_per_day']:,.2f}, "
            f"tokens {components['cost_tokens_per_day']:,.2f})"
        )
    lines.extend(f"    {savings_line(analysis, variant)}" for variant in analysis.savings)
    lines.append("    assumptions:")
    lines.extend(f"      - {line}" for line in assumptions(analysis.prices))
    return lines


def report_lines(analysis: Analysis) -> list[str]:
    """Everything, in the order a reader wants it: verdicts, targets, cost, then the details."""
    sections = [comparison_lines(analysis), target_lines(analysis), cost_lines(analysis), summary_lines(analysis)]
    lines: list[str] = []
    for section in sections:
        if section:
            lines.extend(section)
    lines.extend(f"note: {note}" for note in analysis.notes)
    return lines
