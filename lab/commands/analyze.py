"""`lab analyze RUN` and `lab compare RUN_A RUN_B`: the analysis of stored runs, written beside them.

A run's analysis lives in `RUN/analysis/`: `analysis.json` (everything, including targets, grade,
cost and the noise floor), `summary.parquet` (per variant and metric: value, interval, samples,
flag), `comparison.parquet` (per compared metric: change, simultaneous interval, verdict),
`trials.parquet` (every per-trial metric: mean, sd, min, max) and `report.txt` (what is printed).
Re-analyzing a run replaces its analysis (the measurements are never touched).
`lab compare` writes into a new directory `results/compare-<time>-<a>-vs-<b>/`.
"""

from __future__ import annotations

import os
import platform
import secrets
import time
from pathlib import Path
from typing import Any

import click

from lab.analysis.analyze import Analysis
from lab.analysis.render import report_lines
from lab.analysis.runs import analyze_run, compare_runs
from lab.errors import ConfigError, LabError
from lab.files import read_json
from lab.report.bundle import as_run_directory, is_bundle
from lab.report.junit import render_junit
from lab.report.markdown import render_markdown
from lab.report.rundir import RunDirectory, results_root


def host_facts() -> dict[str, Any]:
    """What a comparison across runs must know about the machine a run was made on."""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count() or 0,
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "machine": platform.machine(),
    }


def write_analysis(rundir: RunDirectory, analysis: Analysis, prefix: str = "analysis") -> None:
    rundir.write_json(f"{prefix}/analysis.json", analysis.to_document())
    rundir.write_frame(f"{prefix}/summary.parquet", analysis.summary_frame())
    rundir.write_frame(f"{prefix}/comparison.parquet", analysis.comparison_frame())
    rundir.write_frame(f"{prefix}/trials.parquet", analysis.trial_summary)
    rundir.write_text(f"{prefix}/report.txt", "\n".join(report_lines(analysis)) + "\n")


def analyze_and_write(run: Path, threshold_from: Path | None, echo: bool = True) -> Analysis:
    """Analyze a run directory and rewrite its analysis, reports and manifest."""
    from lab.commands.report import write_reports

    analysis = analyze_run(run, threshold_from)
    rundir = RunDirectory(run, run.name)
    write_analysis(rundir, analysis)
    write_reports(rundir, analysis)
    if echo:
        for line in report_lines(analysis):
            click.echo(line)
        click.echo(f"written to {run / 'analysis'}, {run / 'report.md'}, {run / 'report.html'}")
    return analysis


def analyze_command(run: Path, threshold_from: Path | None) -> Analysis:
    """`lab analyze`: exit 1 when the run's answer is "no", judged as its mode is (A/B, A/A, ...)."""
    from lab.commands.report import judge

    if is_bundle(run):
        raise ConfigError(f"{run}: a bundle is read-only", hint="`lab compare` reads bundles; unpack it to re-analyze")
    analysis = analyze_and_write(run, threshold_from)
    mode = str(read_json(run / "config.json").get("mode", "ab"))
    judge([(mode, run.name, analysis)])
    return analysis


def compare_command(
    run_a: Path,
    run_b: Path,
    variants: tuple[str, ...],
    force: bool,
    threshold_from: Path | None,
    pairs: list[tuple[str, str]] | None = None,
) -> list[Analysis]:
    """`lab compare`: run directories or bundles; writes a compare directory; exit 1 on a
    regression or a missed target of run B."""
    from lab.commands.report import fail_unless_passed

    with as_run_directory(run_a) as dir_a, as_run_directory(run_b) as dir_b:
        analyses, warnings = compare_runs(dir_a, dir_b, variants, force, threshold_from, pairs)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"a = {run_a}\nb = {run_b}")
    name = time.strftime("compare-%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{secrets.token_hex(3)}"
    path = results_root() / name
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise LabError(f"cannot create {path}: {exc.strerror}", hint="set LAB_RESULTS_DIR") from None
    rundir = RunDirectory(path, name)
    rundir.write_json("compare.json", {"a": str(run_a.resolve()), "b": str(run_b.resolve()), "warnings": warnings})
    sections = [f"Comparing `{run_a}` (a) with `{run_b}` (b).", *(f"> warning: {w}" for w in warnings), ""]
    for analysis in analyses:
        variant = analysis.candidates[0].split("/", 1)[1] if analysis.candidates else analysis.baseline
        write_analysis(rundir, analysis, prefix=f"analysis-{variant}")
        sections.append(render_markdown(path, analysis))
        for line in report_lines(analysis):
            click.echo(line)
    rundir.write_text("report.md", "\n".join(sections))
    rundir.write_text("junit.xml", render_junit(analyses, name))
    click.echo(f"written to {path}")
    fail_unless_passed(analyses)
    return analyses
