"""`lab history`, `lab trend` and `lab export`: the runs in the results folder over time.

`lab trend` takes each (experiment, variant, headline metric) series in time order, finds its
change points (e-divisive means, `lab.analysis.changepoint`) and says whether it is improving,
degrading or flat, with the evidence; `--fail-on degrade` exits 1 when the newest segment of a
series began with a degrading shift, and the alert is written as markdown (and appended to
`$GITHUB_STEP_SUMMARY` when that is set, as in a GitHub Actions job).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import click
import polars as pl

from lab.analysis.catalog import catalog
from lab.analysis.changepoint import Trend, trend
from lab.analysis.history import history, wide
from lab.errors import CheckFailed, ConfigError
from lab.files import write_atomic
from lab.report.rundir import results_root


def history_command(experiment: str | None, variant: str | None, metrics: tuple[str, ...], out: Path | None) -> None:
    frame = history(results_root(), experiment, variant)
    if frame.height == 0:
        raise ConfigError(f"{results_root()}: no analysed run" + (f" of {experiment}" if experiment else ""))
    chosen = list(metrics) or headline_metrics(frame)
    table = wide(frame, chosen)
    if out is not None:
        if out.suffix == ".parquet":
            table.write_parquet(out)
        else:
            table.write_csv(out)
        click.echo(f"written {out}")
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=40):
        click.echo(str(table))


def headline_metrics(frame: pl.DataFrame) -> list[str]:
    names: list[str] = []
    for workload in frame["workload"].unique(maintain_order=True).to_list():
        names += [m for m in catalog(str(workload)).headline if m not in names]
    return names


@dataclass(frozen=True)
class SeriesTrend:
    experiment: str
    variant: str
    metric: str
    runs: list[str]
    trend: Trend
    threshold: float

    def alerting(self) -> bool:
        """A degrading shift began the newest segment."""
        newest = self.trend.change_points[-1] if self.trend.change_points else None
        return (
            self.trend.direction == "degrading"
            and newest is not None
            and newest.index == self.trend.newest_segment_start
            and not abs(newest.relative) < self.threshold  # the step itself, not a drift after it
        )


def trends(frame: pl.DataFrame, metrics: tuple[str, ...], min_size: int, threshold: float) -> list[SeriesTrend]:
    found = []
    keys = frame.select("experiment", "workload", "variant").unique(maintain_order=True)
    for experiment, workload, variant in keys.iter_rows():
        cat = catalog(workload)
        for name in metrics or cat.headline:
            metric = cat.metrics.get(name)
            series = frame.filter(
                (pl.col("experiment") == experiment) & (pl.col("variant") == variant) & (pl.col("metric") == name)
            ).sort("time", "run")
            if metric is None or series.height < 2:
                continue
            values = [v if v is not None else math.nan for v in series["value"].to_list()]
            result = trend(values, metric.better, min_size=min_size, threshold=threshold)
            found.append(SeriesTrend(experiment, variant, name, series["run"].to_list(), result, threshold))
    return found


def alert_markdown(alerts: list[SeriesTrend]) -> str:
    lines = ["### ❌ ablab trend: degradation", "", "| experiment | variant | metric | from run | shift | evidence |"]
    lines.append("|---|---|---|---|--:|---|")
    for a in alerts:
        point = a.trend.change_points[-1]
        lines.append(
            f"| {a.experiment} | {a.variant} | `{a.metric}` | `{a.runs[point.index]}` | "
            f"{100 * point.relative:+.1f} % | {a.trend.evidence} |"
        )
    return "\n".join(lines) + "\n"


def trend_command(
    experiment: str | None,
    variant: str | None,
    metrics: tuple[str, ...],
    fail_on: str | None,
    alert: Path | None,
    min_size: int,
    threshold: float,
) -> None:
    frame = history(results_root(), experiment, variant)
    if frame.height == 0:
        raise ConfigError(f"{results_root()}: no analysed run" + (f" of {experiment}" if experiment else ""))
    found = trends(frame, metrics, min_size, threshold)
    for t in found:
        head = f"{t.experiment}/{t.variant} {t.metric}: {t.trend.direction} over {len(t.runs)} runs"
        click.echo(f"{head}; {t.trend.evidence}")
        for point in t.trend.change_points:
            click.echo(
                f"    change point at run {t.runs[point.index]} (#{point.index}): {point.before:.4g} -> "
                f"{point.after:.4g} ({100 * point.relative:+.1f} %, p = {point.p_value:.3f})"
            )
    alerts = [t for t in found if t.alerting()]
    if not alerts:
        click.echo("no degrading change point in any series' newest segment")
        return
    text = alert_markdown(alerts)
    path = alert or results_root() / time.strftime("trend-alert-%Y%m%dT%H%M%SZ.md", time.gmtime())
    write_atomic(path, text.encode())
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text)
    click.echo(f"alert written to {path}")
    if fail_on == "degrade":
        first = alerts[0]
        raise CheckFailed(
            f"{first.experiment}/{first.variant} {first.metric} degraded: {first.trend.evidence}"
            + (f" (and {len(alerts) - 1} more)" if len(alerts) > 1 else ""),
            hint=f"see {path}",
        )


def export_command(run: Path, fmt: str, out: Path | None) -> None:
    from lab.files import read_json
    from lab.report.openmetrics import render_openmetrics

    analysis = read_json(run / "analysis" / "analysis.json")
    if not analysis:
        raise ConfigError(f"{run}: no analysis (analysis/analysis.json)", hint=f"lab analyze {run}")
    text = render_openmetrics(run.name, analysis)
    if out is None:
        click.echo(text, nl=False)
    else:
        write_atomic(out, text.encode())
        click.echo(f"written {out}")
    del fmt  # one format so far
