"""`report.md`: GitHub-flavoured markdown, ready to paste as a pull-request comment.

Order: the verdict line, the targets, the headline comparison with its intervals, the config
diff between the variants; then details in collapsible sections (every comparison, per-variant
figures, cost, the run itself, the method).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.analysis.analyze import METHOD, Analysis
from lab.analysis.cost import assumptions
from lab.analysis.render import change, interval, savings_line, target_text, threshold, title, value
from lab.files import read_json

MARK = {"improved": "🟢 improved", "regressed": "🔴 regressed", "no significant change": "⚪ no significant change"}


def outcome(analysis: Analysis) -> tuple[bool, list[str]]:
    """Whether the run passes (every target of the judged variants met, no regression) and why not."""
    judged = analysis.candidates or analysis.variants
    reasons = []
    for t in analysis.targets:
        if t.variant in judged and not t.met:
            bound, shown = target_text(analysis, t)
            reasons.append(f"{t.variant}: {t.metric} {bound} missed ({shown})")
    reasons += [f"{c.candidate}: {c.metric} regressed ({change(c, c.change, None)})" for c in analysis.regressions()]
    return not reasons, reasons


def verdict_line(analysis: Analysis) -> str:
    passed, _ = outcome(analysis)
    grades = analysis.grades()
    parts = []
    for variant in analysis.candidates or analysis.variants:
        g = grades[variant]
        rows = [c for c in analysis.comparisons if c.candidate == variant]
        counts = {v: sum(c.verdict == v for c in rows) for v in ("improved", "regressed", "inconclusive")}
        text = f"**{variant}**"
        if variant != analysis.baseline:
            text += f" vs {analysis.baseline}: {counts['improved']} improved, {counts['regressed']} regressed"
            text += f", {counts['inconclusive']} inconclusive"
        if g["total"]:
            text += f"; grade **{g['grade']}** ({g['met']}/{g['total']} targets)"
        parts.append(text)
    head = "✅ pass" if passed else "❌ fail"
    return f"### {head} · {analysis.experiment} · " + " · ".join(parts)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def target_table(analysis: Analysis) -> list[str]:
    rows = []
    for t in analysis.targets:
        bound, measured = target_text(analysis, t)
        rows.append([f"`{t.metric}` {bound}", t.variant, measured, "✅ pass" if t.met else "❌ fail", t.source])
    return _table(["target", "variant", "measured", "result", "from"], rows, ["---", "---", "--:", "---", "---"])


def comparison_table(analysis: Analysis, headline_only: bool) -> list[str]:
    rows = []
    for c in analysis.comparisons:
        if headline_only and not c.headline:
            continue
        metric = analysis.catalog.get(c.metric)
        verdict = MARK.get(c.verdict, f"❔ {c.verdict}")
        if c.note:
            verdict += f" ({c.note})"
        rows.append(
            [
                title(metric, c.metric),
                value(metric, c.baseline_value),
                value(metric, c.candidate_value),
                change(c, c.change, metric),
                interval(c, metric),
                threshold(c, metric),
                verdict,
            ]
        )
    if not rows:
        return []
    names = [analysis.baseline, analysis.candidates[0] if len(analysis.candidates) == 1 else "candidate"]
    header = ["metric", *names, "change", "interval", "threshold", "verdict"]
    return _table(header, rows, ["---", "--:", "--:", "--:", "---", "--:", "---"])


def diff_table(config: dict[str, Any]) -> list[str]:
    diff = config.get("diff") or []
    variants = list(config.get("variants") or {})
    if not diff:
        return ["No configuration differs between the variants."]
    rows = [[f"`{d['key']}`", *(f"`{json.dumps(d['values'].get(v))}`" for v in variants)] for d in diff]
    return _table(["key", *variants], rows)


def summary_table(analysis: Analysis) -> list[str]:
    rows = []
    for name, metric in analysis.catalog.metrics.items():
        cells = []
        for variant in analysis.variants:
            e = analysis.estimates[variant].get(name)
            if e is None:
                cells.append("-")
                continue
            low, high = e.interval(metric.scale, analysis.settings.confidence)
            text = value(metric, e.value)
            if low == low:
                text += f" [{value(metric, low)}, {value(metric, high)}]"
            if e.flag:
                text += f" ⚠ {e.flag}"
            cells.append(text)
        if any(c != "-" for c in cells):
            rows.append([title(metric, name), *cells])
    return _table(["metric", *analysis.variants], rows)


def cost_section(analysis: Analysis) -> list[str]:
    currency = analysis.prices.currency
    rows = [
        [
            variant,
            f"{c['cost_per_day']:,.2f}",
            f"{c['cost_per_30_days']:,.2f}",
            f"{c['cost_cpu_per_day']:,.2f}",
            f"{c['cost_memory_per_day']:,.2f}",
            f"{c['cost_upstream_per_day']:,.2f}",
            f"{c['cost_tokens_per_day']:,.2f}",
        ]
        for variant, c in analysis.cost.items()
        if "cost_per_day" in c
    ]
    if not rows:
        return ["No cost: no trial measured its containers' resources."]
    lines = _table(
        [f"variant ({currency})", "per day", "per 30 days", "CPU", "memory", "upstream calls", "tokens"], rows
    )
    lines.extend(f"- {savings_line(analysis, variant)}" for variant in analysis.savings)
    lines.append("")
    lines.append("Assumptions:")
    lines.extend(f"- {line}" for line in assumptions(analysis.prices))
    return lines


def run_section(run: Path, config: dict[str, Any]) -> list[str]:
    manifest = read_json(run / "manifest.json")
    status = read_json(run / "status.json")
    settings = config.get("run") or {}
    project = manifest.get("project") or {}
    host = config.get("host") or {}
    facts = [
        ("run", f"`{run.name}` ({config.get('mode', 'ab')}, {status.get('state', '?')})"),
        (
            "trials",
            f"{status.get('trials_done', '?')} done; {settings.get('trials')} per variant, {settings.get('order')}",
        ),
        (
            "load",
            f"{settings.get('arrivals')} {settings.get('rate_rps')}/s, {settings.get('duration_s')} s per trial "
            f"({settings.get('warmup_s')} s warm-up), seed {settings.get('seed')}",
        ),
        ("host", f"{host.get('cpus')} CPUs ({host.get('cpu_model')}), kernel {host.get('kernel')}"),
        ("lab", f"{config.get('lab_version')}; project commit {project.get('commit') or '-'}"),
    ]
    if manifest.get("engine"):
        facts.append(("engine", f"Docker {manifest['engine'].get('version')}"))
    return [f"- **{k}**: {v}" for k, v in facts]


def render_markdown(run: Path, analysis: Analysis) -> str:
    config = read_json(run / "config.json")
    _, reasons = outcome(analysis)
    lines = [verdict_line(analysis), ""]
    if reasons:
        lines += [f"- {r}" for r in reasons] + [""]
    if analysis.targets:
        lines += ["#### Targets", "", *target_table(analysis), ""]
    headline = comparison_table(analysis, headline_only=True)
    if headline:
        confidence = f"{100 * analysis.settings.confidence:g} %"
        lines += [
            "#### Headline comparison",
            "",
            f"Intervals are simultaneous ({confidence} family-wise over {len(analysis.comparisons)} comparisons); "
            f"thresholds from {analysis.threshold_source}.",
            "",
            *headline,
            "",
        ]
    lines += ["#### What differs between the variants", "", *diff_table(config), ""]
    details = [
        ("Every comparison", comparison_table(analysis, headline_only=False)),
        ("Per variant", summary_table(analysis)),
        ("Projected cost", cost_section(analysis)),
        ("Run", run_section(run, config)),
        ("Method", [METHOD, *(f"\n{note}" for note in analysis.notes)]),
    ]
    for summary, body in details:
        if body:
            lines += ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"
