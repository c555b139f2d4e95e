"""`report.html`: one self-contained page per run directory - verdicts, targets, comparisons, the
configuration diff, plots as inline SVG, then the details.

Nothing is loaded from elsewhere: inline CSS, SVG drawn by lab.report.svg, and one small inline
script that only checks the page (every plot has a non-empty bounding box; script errors are
recorded) for lab.report.browser - the page reads the same without it. The output is
deterministic: the same run and analysis give the same bytes.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from lab.analysis import render
from lab.analysis.analyze import METHOD, Analysis
from lab.analysis.catalog import COST_REDUCTION
from lab.analysis.cost import assumptions
from lab.analysis.stats import Comparison
from lab.config.analysis import Target
from lab.report import series, svg
from lab.report.svg import Bars, Reference, Series, text

VERDICT_CLASS = {
    "improved": "improved",
    "regressed": "regressed",
    "no significant change": "same",
    "inconclusive": "inconclusive",
}
DASHES = ("", "6 3", "2 3", "8 3 2 3")  # repeated trials of one variant: same colour, another dash
MARKER_BINS = 30  # timelines with at most this many bins get a dot per bin
LEGEND_TRIALS = 8  # timelines of more trials get one legend entry per variant
OTHER_COLORS = 4  # palette index where labels, services and cost components start (variants take 0..)
TIERS = {"l1": "L1 (in-process)", "l2": "L2 (Redis)", "l3": "L3 (Postgres)"}

Cell = str | tuple[str, str]  # text, or (text, CSS class)

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0 auto;
  max-width: 1060px; padding: 1.2em 1.5em 3em; }
h1 { font-size: 1.55em; margin: 0.2em 0; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
.meta, .note, figcaption, .small { color: #555; font-size: 0.9em; }
.summary { font-size: 1.05em; padding: 0.6em 0.9em; background: #f5f7fa; border-left: 4px solid #4e79a7; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e6e6e6; text-align: left; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.improved, .pass { color: #1b7a2e; font-weight: 600; } .regressed, .fail { color: #b3261e; font-weight: 600; }
.inconclusive { color: #8a6d00; } .same { color: #444; }
td.improved, td.regressed, td.inconclusive, td.same, td.pass, td.fail { white-space: nowrap; }
.grade { font-weight: 700; }
code { font-size: 0.92em; background: #f3f3f3; padding: 0 0.25em; }
figure { margin: 1.4em 0; } figcaption { max-width: 820px; margin-top: 0.3em; }
svg.plot { display: block; width: 100%; max-width: 760px; height: auto; }
@media print { nav { display: none; } figure { break-inside: avoid; } }
"""

# Only checks the page: lab.report.browser reads these attributes from the DOM headless Chromium dumps.
CHECK_SCRIPT = """
(function () {
  var body = document.body;
  function record(message) {
    var before = body.getAttribute("data-errors");
    body.setAttribute("data-errors", before ? before + "\\n" + message : message);
  }
  window.onerror = function (message, source, line) {
    record(String(message) + (line ? " (line " + line + ")" : ""));
  };
  window.addEventListener("unhandledrejection", function (event) {
    record("unhandled rejection: " + String(event.reason));
  });
  var consoleError = console.error;
  console.error = function () {
    record("console.error: " + Array.prototype.join.call(arguments, " "));
    return consoleError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var plots = document.querySelectorAll("svg.plot");
    var rendered = 0;
    for (var i = 0; i < plots.length; i++) {
      var box = plots[i].getBBox();
      if (box.width > 0 && box.height > 0) {
        rendered++;
      }
    }
    body.setAttribute("data-plots", String(plots.length));
    body.setAttribute("data-plots-rendered", String(rendered));
  });
})();
"""


@dataclass(frozen=True)
class Figure:
    """One plot of the report: its SVG and what it shows."""

    name: str
    title: str
    caption: str
    svg: str


def render_html(run_dir: Path, analysis: Analysis) -> str:
    """The report of one run directory as a single self-contained HTML page."""
    config = read_json(run_dir / "config.json")
    status = read_json(run_dir / "status.json")
    figures = build_figures(run_dir, analysis)
    heading = (
        f"{analysis.experiment}: {', '.join(analysis.candidates) or analysis.baseline} against {analysis.baseline}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{text(heading)} ({text(run_dir.name)})</title>",
        f"<style>{STYLE}</style></head><body>",
        '<header id="top">',
        f"<h1>{text(heading)}</h1>",
        meta_line(run_dir, analysis, config, status),
        f'<p class="note">{text(config["description"])}</p>' if config.get("description") else "",
        summary_line(analysis),
        *(f'<p class="note">Note: {text(note)}</p>' for note in analysis.notes),
        '<nav><a href="#targets">Targets</a><a href="#headline">Headline comparison</a>'
        '<a href="#config">Configuration</a><a href="#plots">Plots</a><a href="#details">Details</a></nav>',
        "</header>",
        section("targets", "Targets", targets_table(analysis)),
        section("headline", "Headline comparison", headline_tables(analysis)),
        section("config", "Configuration differences", config_table(config, analysis)),
        section("plots", "Plots", "".join(figure_html(f) for f in figures) or "<p>Nothing to plot.</p>"),
        section("details", "Details", details(analysis)),
        f'<footer class="small"><p>ablab {text(config.get("lab_version", ""))}, run directory '
        f"<code>{text(run_dir.name)}</code>. Every figure comes from this run; the plots are drawn from "
        "its samples, <code>trials.parquet</code> and the analysis.</p></footer>",
        f"<script>{CHECK_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return document if isinstance(document, dict) else {}


# ---------------------------------------------------------------------------------------------
# header and tables


def meta_line(run_dir: Path, analysis: Analysis, config: dict[str, Any], status: dict[str, Any]) -> str:
    run = config.get("run") if isinstance(config.get("run"), dict) else {}
    host = config.get("host") if isinstance(config.get("host"), dict) else {}
    items = [f"run <code>{text(run_dir.name)}</code>", f"workload <code>{text(analysis.workload)}</code>"]
    if config.get("mode") == "aa":
        items.append(f"A/A run of {text(config.get('aa_of') or analysis.baseline)}")
    if run:
        duration, rate = run.get("duration_s"), run.get("rate_rps")
        shape = [f"{run.get('trials', '?')} trial(s) per variant"]
        if isinstance(duration, int | float):
            shape[0] += f" of {duration:g} s"
        if run.get("arrivals") == "closed":
            shape.append(f"closed loop with {run.get('concurrency', '?')} in flight")
        elif isinstance(rate, int | float):
            shape.append(f"{rate:g}/s {run.get('arrivals', '')}".rstrip())
        items.append(text(", ".join(shape) + (" (quick)" if config.get("quick") else "")))
    if host:
        items.append(f"host {text(host.get('cpus', '?'))} CPUs, {text(host.get('cpu_model', ''))}")
    if status.get("state"):
        items.append(f"status {text(status['state'])}")
    return f'<p class="meta">{" · ".join(items)}</p>'


def verdict_counts(analysis: Analysis, candidate: str) -> Counter[str]:
    return Counter(c.verdict for c in analysis.comparisons if c.candidate == candidate)


def summary_line(analysis: Analysis) -> str:
    """Per candidate: its grade and how many comparisons improved, regressed, or neither."""
    grades = analysis.grades()
    lines = []
    for candidate in analysis.candidates:
        g = grades.get(candidate, {})
        counts = verdict_counts(analysis, candidate)
        total = sum(counts.values())
        grade = (
            f'<span class="grade">grade {text(g["grade"])}</span> ({g["met"]}/{g["total"]} targets met)'
            if g.get("total")
            else "no targets"
        )
        lines.append(
            f"<strong>{text(candidate)}</strong>: {grade} · "
            f'<span class="improved">{counts["improved"]} improved</span> · '
            f'<span class="regressed">{counts["regressed"]} regressed</span> · '
            f"{counts['no significant change']} no significant change · "
            f"{counts['inconclusive']} inconclusive (of {total} comparisons)"
        )
    if not lines:
        lines.append(f"only {text(analysis.baseline)} was measured: nothing to compare")
    return '<p class="summary">' + "<br>".join(lines) + "</p>"


def cell_html(cell: Cell, tag: str = "td") -> str:
    content, css = cell if isinstance(cell, tuple) else (cell, "")
    return f'<{tag} class="{css}">{text(content)}</{tag}>' if css else f"<{tag}>{text(content)}</{tag}>"


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    head = "".join(cell_html(h, "th") for h in headers)
    body = "".join("<tr>" + "".join(cell_html(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section(anchor: str, heading: str, content: str) -> str:
    return f'<section id="{anchor}"><h2>{text(heading)}</h2>{content}</section>'


def num(value: str) -> tuple[str, str]:
    return value, "num"


def is_percent(analysis: Analysis, metric: str) -> bool:
    known = analysis.catalog.get(metric)
    return metric == COST_REDUCTION or (known is not None and known.unit == "share")


def bound_text(target: Target, percent: bool) -> str:
    def shown(x: float) -> str:
        return f"{100 * x:g} %" if percent else f"{x:g}"

    parts = []
    if target.above is not None:
        parts.append(f"> {shown(target.above)}")
    if target.below is not None:
        parts.append(f"< {shown(target.below)}")
    band = f" (expected up to {100 * target.expected_max:.0f} %)" if target.expected_max else ""
    return " and ".join(parts) + band


def targets_table(analysis: Analysis) -> str:
    if not analysis.targets:
        return "<p>No targets apply to this experiment.</p>"
    rows: list[list[Cell]] = []
    for t in analysis.targets:
        metric = analysis.catalog.get(t.metric)
        percent = is_percent(analysis, t.metric)
        measured = f"{100 * t.value:.1f} %" if percent and t.value == t.value else render.value(metric, t.value)
        name = "cost reduction" if t.metric == COST_REDUCTION else render.title(metric, t.metric)
        rows.append(
            [
                t.variant,
                name,
                bound_text(t.target, percent),
                num(measured),
                ("pass", "pass") if t.met else ("FAIL", "fail"),
                t.source,
            ]
        )
    grades = [
        f"{text(v)}: <span class='grade'>{text(g['grade'])}</span> ({g['met']}/{g['total']})"
        for v, g in analysis.grades().items()
        if g["total"]
    ]
    return (
        table(["variant", "metric", "target", "measured", "result", "source"], rows)
        + f'<p class="small">Grade (share of targets met): {"; ".join(grades)}.</p>'
    )


def comparison_rows(analysis: Analysis, comparisons: Sequence[Comparison], full: bool) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for c in comparisons:
        metric = analysis.catalog.get(c.metric)
        row: list[Cell] = [
            render.title(metric, c.metric) + (" *" if full and c.headline else ""),
            num(render.value(metric, c.baseline_value)),
            num(render.value(metric, c.candidate_value)),
            num(render.change(c, c.change, metric)),
            num(render.interval(c, metric)),
        ]
        if full:
            row.append(num(render.threshold(c, metric)))
        row.append((c.verdict, VERDICT_CLASS.get(c.verdict, "")))
        if full:
            notes = [c.note] if c.note else []
            if c.metric == "predictions_per_s" and c.change == c.change:
                notes.append(f"speedup x{1 + c.change:.2f}")
            row.append("; ".join(notes))
        rows.append(row)
    return rows


def comparison_tables(analysis: Analysis, full: bool) -> str:
    parts = []
    confidence = f"{100 * analysis.settings.confidence:g} %"
    for candidate in analysis.candidates:
        chosen = [c for c in analysis.comparisons if c.candidate == candidate and (full or c.headline)]
        if not chosen:
            continue
        headers = ["metric", analysis.baseline, candidate, "change", f"{confidence} interval"]
        headers += ["threshold", "verdict", "note"] if full else ["verdict"]
        parts.append(f"<h3>{text(candidate)} against {text(analysis.baseline)}</h3>")
        parts.append(table(headers, comparison_rows(analysis, chosen, full)))
    if not parts:
        return "<p>No comparison: the run has one variant.</p>"
    parts.append(
        f'<p class="small">Intervals are simultaneous over all {len(analysis.comparisons)} comparisons '
        f"({confidence} family-wise); thresholds from {text(analysis.threshold_source)}."
        + (" * headline metric." if full else "")
        + "</p>"
    )
    return "".join(parts)


def headline_tables(analysis: Analysis) -> str:
    return comparison_tables(analysis, full=False)


def config_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def config_table(config: dict[str, Any], analysis: Analysis) -> str:
    """config.json's `diff`: every key whose value differs between the variants."""
    diff = config.get("diff")
    if not isinstance(diff, list) or not diff:
        return "<p>The variants' effective configurations do not differ (or the run did not record a diff).</p>"
    names = list(analysis.variants)
    for entry in diff:
        values = entry.get("values", {}) if isinstance(entry, dict) else {}
        names += [v for v in values if v not in names]
    rows: list[list[Cell]] = []
    for entry in diff:
        if not isinstance(entry, dict):
            continue
        values = entry.get("values", {})
        rows.append(
            [(str(entry.get("key", "")), "key"), *(config_value(values[v]) if v in values else "-" for v in names)]
        )
    return table(["key", *names], rows)


def details(analysis: Analysis) -> str:
    return "".join(
        [
            "<h3>All comparisons</h3>" if analysis.candidates else "",
            comparison_tables(analysis, full=True) if analysis.candidates else "",
            "<h3>Per variant</h3>",
            summary_table(analysis),
            "<h3>Projected cost</h3>",
            cost_section(analysis),
            "<h3>Method</h3>",
            f'<p class="small">{text(METHOD)}</p>',
        ]
    )


def summary_table(analysis: Analysis) -> str:
    """Each measured metric per variant with its own interval; flagged values are marked."""
    confidence = analysis.settings.confidence
    names = [n for n in analysis.catalog.metrics if any(n in e for e in analysis.estimates.values())]
    flags: list[str] = []
    rows: list[list[Cell]] = []
    for name in names:
        metric = analysis.catalog.metrics[name]
        row: list[Cell] = [render.title(metric, name)]
        for variant in analysis.variants:
            e = analysis.estimates[variant].get(name)
            if e is None:
                row.append(num("-"))
                continue
            low, high = e.interval(metric.scale, confidence)
            band = f" [{render.value(metric, low)}, {render.value(metric, high)}]" if low == low else ""
            if e.flag:
                flags.append(f"{variant}: {e.flag}")
            row.append(num(render.value(metric, e.value) + band + (" †" if e.flag else "")))
        rows.append(row)
    notes = "".join(f"<li>{text(flag)}</li>" for flag in dict.fromkeys(flags))
    return (
        table(["metric", *analysis.variants], rows)
        + f'<p class="small">{100 * confidence:g} % intervals of each variant on its own.</p>'
        + (f'<p class="small">† cannot be judged:</p><ul class="small">{notes}</ul>' if notes else "")
    )


def cost_section(analysis: Analysis) -> str:
    currency = analysis.prices.currency
    priced = [v for v in analysis.variants if "cost_per_day" in analysis.cost.get(v, {})]
    if not priced:
        return "<p>No cost: the run measured no requests to price.</p>"
    rows: list[list[Cell]] = []
    for variant in priced:
        c = analysis.cost[variant]
        rows.append(
            [
                variant,
                *(
                    num(f"{c.get(key, math.nan):,.2f}")
                    for key in (
                        "cost_per_day",
                        "cost_per_30_days",
                        "cost_cpu_per_day",
                        "cost_memory_per_day",
                        "cost_upstream_per_day",
                        "cost_tokens_per_day",
                    )
                ),
            ]
        )
    headers = ["variant", "per day", "per 30 days", "CPU / day", "memory / day", "upstream / day", "tokens / day"]
    savings = []
    for variant in analysis.savings:
        savings.append(f"<li>{text(render.savings_line(analysis, variant))}</li>")
    listed = "".join(f"<li>{text(line)}</li>" for line in assumptions(analysis.prices))
    return (
        f'<p class="small">In {text(currency)}.</p>'
        + table(headers, rows)
        + (f"<ul>{''.join(savings)}</ul>" if savings else "")
        + f'<p class="small">Assumptions:</p><ul class="small">{listed}</ul>'
    )


# ---------------------------------------------------------------------------------------------
# plots


def figure_html(figure: Figure) -> str:
    return (
        f'<figure id="plot-{text(figure.name)}">{figure.svg}'
        f"<figcaption><strong>{text(figure.title)}.</strong> {text(figure.caption)}</figcaption></figure>"
    )


def variant_colors(analysis: Analysis, *frames: pl.DataFrame) -> dict[str, str]:
    """One colour per variant, the same in every plot: the analysis' order, then any other variant."""
    names = list(analysis.variants)
    for frame in frames:
        if "variant" in frame.columns:
            names += [v for v in frame["variant"].unique(maintain_order=True).to_list() if v not in names]
    return {name: svg.color(i) for i, name in enumerate(names)}


def build_figures(run_dir: Path, analysis: Analysis) -> list[Figure]:
    """Every plot the run has data for, in reading order."""
    samples = series.samples(run_dir)
    trials = series.trial_metrics(run_dir)
    cdf = series.latency_cdf(samples)
    times = series.timeline(samples, series.measured_seconds(trials))
    faults = series.fault_windows(run_dir, samples)
    shares = series.label_shares(samples)
    pool = series.trial_metric(trials, "pool_wait_ms")
    used = series.resources(trials)
    cpu = series.container_cpu(run_dir)
    sweep = series.sweep_points(run_dir, analysis, trials)
    cost = series.cost_breakdown(analysis)
    colors = variant_colors(analysis, cdf, times, trials)
    figures = [
        latency_figure(cdf, colors, analysis),
        *timeline_figures(times, colors, faults),
        share_figure(shares, colors, analysis),
        pool_figure(pool, colors),
        cpu_figure(cpu),
        *resource_figures(used),
        sweep_figure(sweep, colors, analysis),
        cost_figure(cost, colors, analysis),
    ]
    return [f for f in figures if f is not None]


def ordered(names: Sequence[str], colors: dict[str, str]) -> list[str]:
    return sorted(dict.fromkeys(names), key=lambda v: list(colors).index(v) if v in colors else len(colors))


def latency_figure(cdf: pl.DataFrame, colors: dict[str, str], analysis: Analysis) -> Figure | None:
    if cdf.height == 0:
        return None
    lines = []
    for variant in ordered(cdf["variant"].to_list(), colors):
        part = cdf.filter(pl.col("variant") == variant)
        lines.append(Series(variant, part["latency_ms"].to_list(), part["cumulative"].to_list(), colors[variant]))
    counts = [
        f"{v}: {e['latency_p50_ms'].samples:,} requests in {e['latency_p50_ms'].trials} trial(s)"
        for v, e in analysis.estimates.items()
        if "latency_p50_ms" in e and e["latency_p50_ms"].samples
    ]
    chart = svg.line_chart(
        "latency-cdf",
        "Latency distribution per variant",
        lines,
        x_label_text="latency from intended send time (ms, log scale)",
        y_label_text="requests at or below",
        log_x=True,
        y_format="percent",
    )
    caption = (
        "Share of completed requests at or below each latency, measured from the intended send time "
        "(end - intended, so waiting to be sent counts), pooled over each variant's trials; "
        f"at most {series.MAX_CDF_POINTS} quantiles per curve. " + "; ".join(counts) + "."
    )
    return Figure("latency-cdf", "Latency CDF", caption, chart)


def trial_series(times: pl.DataFrame, colors: dict[str, str], column: str) -> list[Series]:
    """One line per trial in its variant's colour; beyond LEGEND_TRIALS trials the legend names variants only."""
    seen: Counter[str] = Counter()
    each = times["trial"].n_unique() <= LEGEND_TRIALS
    result = []
    for (trial, variant), part in times.group_by("trial", "variant", maintain_order=True):
        name = str(variant)
        dash = DASHES[seen[name] % len(DASHES)] if each else ""
        seen[name] += 1
        result.append(
            Series(
                f"trial {int(trial):02d} {name}" if each else name,
                (part["second"] + series.BIN_S / 2).to_list(),  # each bin at its middle
                part[column].to_list(),
                colors.get(name, svg.color(0)),
                dash=dash,
            )
        )
    return result


def timeline_figures(times: pl.DataFrame, colors: dict[str, str], faults: pl.DataFrame | None = None) -> list[Figure]:
    if times.height == 0:
        return []
    times = times.sort("trial", "second")
    markers = times.group_by("trial").len()["len"].max() or 0
    dots = isinstance(markers, int) and markers <= MARKER_BINS
    x_label = f"seconds since the trial's first intended send ({series.BIN_S:g} s bins)"
    x_range = (0.0, float(times.select(pl.max("second")).item()) + series.BIN_S)
    windows = [
        svg.Window(start, end, f"{label} (trial {trial:02d})")
        for trial, label, start, end in (faults.iter_rows() if faults is not None else [])
    ]
    throughput = svg.line_chart(
        "throughput",
        "Throughput per trial over time",
        trial_series(times, colors, "ok_per_s"),
        x_label_text=x_label,
        y_label_text="ok completions per second",
        markers=dots,
        x_range=x_range,
        windows=windows,
    )
    in_flight = svg.line_chart(
        "in-flight",
        "Requests in flight per trial over time",
        trial_series(times, colors, "in_flight"),
        x_label_text=x_label,
        y_label_text="requests in flight (mean)",
        markers=dots,
        x_range=x_range,
        windows=windows,
    )
    where = (
        "Each trial's measured phase from its first intended send time, whole bins only; trials of one "
        "variant share its colour. The samples hold the measured phase only, so the first bin misses the "
        "warm-up's requests still in flight and can start low when latency is a good part of a second."
    )
    return [
        Figure(
            "throughput", "Throughput over time", f"Successful completions per second, by end time. {where}", throughput
        ),
        Figure(
            "in-flight",
            "Requests in flight over time",
            "Mean number of requests sent and not yet answered during each bin (from each request's start and "
            f"end time; a request never answered stays in flight). Rising while throughput stays flat means a "
            f"queue is building. {where}",
            in_flight,
        ),
    ]


def share_figure(shares: pl.DataFrame, colors: dict[str, str], analysis: Analysis) -> Figure | None:
    if shares.height == 0:
        return None
    variants = ordered(shares["variant"].to_list(), colors)
    tiers = analysis.workload == "cache"
    known = list(TIERS) if tiers else []  # a tier keeps its colour whichever tiers a run saw
    labels = [*(t for t in known if t in shares["label"].to_list()), *sorted(set(shares["label"]) - set(known))]
    bars = []
    for label in labels:
        by_variant = dict(shares.filter(pl.col("label") == label).select("variant", "share").iter_rows())
        name = TIERS.get(label, label) if tiers else label
        index = known.index(label) if label in known else len(known) + labels.index(label)
        bars.append(Bars(name, [float(by_variant.get(v, 0.0)) for v in variants], svg.color(OTHER_COLORS + index)))
    what = "tier" if tiers else "label"
    chart = svg.bar_chart(
        "label-share",
        f"Share of requests per {what} and variant",
        variants,
        bars,
        y_label_text="share of completed requests",
        stacked=True,
        y_format="percent",
        segment_labels=True,
    )
    if tiers:
        caption = (
            "Which tier answered each completed lookup: L1 is the hit rate of the in-process cache, "
            "L1 + L2 the cache's overall hit rate, L3 the lookups that reached Postgres. From every sample, "
            "pooled over each variant's trials."
        )
        return Figure("label-share", "Hit rate per tier", caption, chart)
    caption = (
        "Share of completed requests per sample label"
        + (" (the query kind)" if analysis.workload == "database" else "")
        + ", pooled over each variant's trials."
    )
    return Figure("label-share", f"Requests per {what}", caption, chart)


def trial_ticks(frame: pl.DataFrame) -> list[tuple[float, str]]:
    return [(float(t), f"{t:02d}") for t in sorted(frame["trial"].unique().to_list())]


def pool_figure(pool: pl.DataFrame, colors: dict[str, str]) -> Figure | None:
    if pool.height == 0:
        return None
    lines = []
    for variant in ordered(pool["variant"].to_list(), colors):
        part = pool.filter(pl.col("variant") == variant)
        lines.append(
            Series(variant, part["trial"].cast(pl.Float64).to_list(), part["value"].to_list(), colors[variant])
        )
    chart = svg.line_chart(
        "pool-wait",
        "Mean pool wait per trial",
        lines,
        x_label_text="trial (in the order run)",
        y_label_text="mean pool wait (ms)",
        markers=True,
        x_ticks=trial_ticks(pool),
    )
    caption = (
        "Mean time a query waited for a pooled connection in each trial (pool_wait_ms from trials.parquet), "
        "in the order the trials ran: a drift across trials shows here."
    )
    return Figure("pool-wait", "Pool wait per trial", caption, chart)


def cpu_figure(cpu: pl.DataFrame) -> Figure | None:
    """CPU cores per container over each trial, from the collector's time series."""
    if cpu.height == 0:
        return None
    lines = []
    services = sorted(cpu["service"].unique().to_list())
    for (trial, variant, service), part in cpu.sort("trial", "service", "time_s").group_by(
        "trial", "variant", "service", maintain_order=True
    ):
        lines.append(
            Series(
                f"trial {int(trial):02d} {variant} {service}",
                part["time_s"].to_list(),
                part["cores"].to_list(),
                svg.color(OTHER_COLORS + services.index(str(service))),
                dash=DASHES[int(trial) % len(DASHES)],
            )
        )
    chart = svg.line_chart(
        "cpu-timeline",
        "CPU per container over time",
        lines,
        x_label_text="seconds since the trial's load started (collector readings, 1 s apart by default)",
        y_label_text="CPU cores used",
    )
    caption = (
        "CPU cores each container used between two readings of the collector (cgroup counters, warm-up "
        "included), one line per trial and service: a colour per service, a dash pattern per trial."
    )
    return Figure("cpu-timeline", "CPU per container over time", caption, chart)


def resource_figures(used: pl.DataFrame) -> list[Figure]:
    if used.height == 0:
        return []
    order = used.select("trial", "variant").unique().sort("trial")
    categories = [f"{t:02d} {v}" for t, v in order.iter_rows()]
    services = sorted(used["service"].unique().to_list())
    figures = []
    for column, name, heading, unit, caption in (
        (
            "cpu_s",
            "cpu",
            "CPU per trial and service",
            "CPU-seconds",
            "CPU-seconds each service's container used during the trial (Docker's cgroup counter, read before and "
            "after; warm-up included).",
        ),
        (
            "memory_mb",
            "memory",
            "Memory per trial and service",
            "memory (MB)",
            "Memory each service's container held at the end of the trial.",
        ),
    ):
        bars = []
        for i, service in enumerate(services):
            values = {
                (t, v): x
                for t, v, x in used.filter(pl.col("service") == service).select("trial", "variant", column).iter_rows()
            }
            bars.append(
                Bars(service, [float(values.get(key) or 0.0) for key in order.iter_rows()], svg.color(OTHER_COLORS + i))
            )
        chart = svg.bar_chart(
            name,
            heading,
            categories,
            bars,
            y_label_text=unit,
            x_label_text="trial (in the order run) and variant",
            stacked=True,
            totals=True,
        )
        figures.append(
            Figure(
                name,
                heading,
                caption + " Per trial, in the order run; the sum is what the cost projection uses.",
                chart,
            )
        )
    return figures


def sweep_figure(sweep: pl.DataFrame, colors: dict[str, str], analysis: Analysis) -> Figure | None:
    if sweep.height == 0:
        return None
    lines = []
    measured = sweep["concurrency"].null_count() < sweep.height
    for variant in ordered(sweep["variant"].to_list(), colors):
        part = sweep.filter(pl.col("variant") == variant)
        for i, ((concurrency,), cell) in enumerate(part.group_by("concurrency", maintain_order=True)):
            name = f"{variant}, {concurrency} in flight" if concurrency is not None else variant
            labels = [f"batch {b}" if b is not None else "" for b in cell["batch"].to_list()]
            lines.append(
                Series(
                    name,
                    cell["predictions_per_s"].to_list(),
                    cell["p95_ms"].to_list(),
                    colors.get(variant, svg.color(0)),
                    dash=DASHES[i % len(DASHES)],
                    labels=labels,
                )
            )
    target = next(
        (t.target.below for t in analysis.targets if t.metric == "latency_p95_ms" and t.target.below is not None), None
    )
    highest = float(sweep.select(pl.max("p95_ms")).item() or 0.0)
    references = [Reference(target, f"target p95 < {target:g} ms")] if target and target <= 1.5 * highest else []
    chart = svg.line_chart(
        "sweep",
        "Latency p95 against predictions per second",
        lines,
        x_label_text="predictions per second",
        y_label_text="latency p95 (ms)",
        markers=True,
        references=references,
    )
    if measured:
        caption = (
            "Every cell of the run's batch-size sweep (sweep.parquet, from lab sweep): one line per variant and "
            "concurrency, one point per batch size."
        )
    else:
        caption = (
            "One point per variant at its batch size, from this run's analysis (lab sweep measures the "
            "whole batch-size curve)."
        )
    if target and not references:
        caption += f" The target p95 < {target:g} ms is far above every point."
    return Figure("sweep", "Batch size: latency against throughput", caption, chart)


def cost_figure(cost: pl.DataFrame, colors: dict[str, str], analysis: Analysis) -> Figure | None:
    if cost.height == 0:
        return None
    variants = ordered(cost["variant"].to_list(), colors)
    components = cost["component"].unique(maintain_order=True).to_list()
    bars = []
    for i, component in enumerate(components):
        values = dict(cost.filter(pl.col("component") == component).select("variant", "per_day").iter_rows())
        bars.append(Bars(component, [float(values.get(v, 0.0)) for v in variants], svg.color(OTHER_COLORS + i)))
    currency = analysis.prices.currency
    chart = svg.bar_chart(
        "cost",
        "Projected cost per day by component",
        variants,
        bars,
        y_label_text=f"{currency} per day",
        stacked=True,
        totals=True,
    )
    caption = (
        f"Projected cost per day ({currency}) from the measured CPU-seconds per request, memory and counted "
        "upstream calls, priced with the experiment's price sheet (assumptions under Details)."
    )
    return Figure("cost", "Cost breakdown", caption, chart)
