"""`lab report RUN`, `lab bundle RUN`, `lab bundle verify BUNDLE`, and the reports every run writes.

A run's reports: `report.md` (a pull-request comment), `report.html` (one self-contained page
with SVG plots), `junit.xml` (targets and regression checks as test cases) and `manifest.json`
(what the run was made of, SHA-256 of every file), all rewritten by `lab report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lab.analysis.analyze import Analysis
from lab.errors import CheckFailed
from lab.report.bundle import create_bundle, verify_bundle
from lab.report.html import render_html
from lab.report.junit import render_junit
from lab.report.manifest import write_manifest
from lab.report.markdown import outcome, render_markdown
from lab.report.rundir import RunDirectory

REPORTS = ("report.md", "report.html", "junit.xml")


def write_reports(rundir: RunDirectory, analysis: Analysis, facts: dict[str, Any] | None = None) -> None:
    """report.md, report.html and junit.xml from the analysis, then the manifest over everything."""
    rundir.write_text("report.md", render_markdown(rundir.path, analysis))
    rundir.write_text("report.html", render_html(rundir.path, analysis))
    rundir.write_text("junit.xml", render_junit([analysis], rundir.run_id))
    write_manifest(rundir.path, facts)


def fail_unless_passed(analyses: list[Analysis]) -> None:
    """Exit status 1 (CheckFailed) when a judged variant missed a target or a metric regressed."""
    reasons = [reason for analysis in analyses for reason in outcome(analysis)[1]]
    if reasons:
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        raise CheckFailed(f"{reasons[0]}{more}", hint="see report.md")


def judge(runs: list[tuple[str, str, Analysis]]) -> None:
    """Exit 1 (CheckFailed) when a run's answer is "no": for an A/B or validation run (or a
    comparison) a missed target or a regression; for an A/A run any metric that came out
    different. A baseline run is a reference: its targets are reported, not enforced."""
    fail_unless_passed([analysis for mode, _, analysis in runs if mode in ("ab", "validate", "compare")])
    for mode, run_id, analysis in runs:
        different = [c for c in analysis.comparisons if c.verdict in ("improved", "regressed")]
        if mode == "aa" and different:
            names = ", ".join(f"{c.metric} {c.verdict}" for c in different)
            raise CheckFailed(
                f"A/A run {run_id}: the same configuration came out different: {names}",
                hint="the machine is too noisy for these thresholds; use more trials or longer ones",
            )


def report_command(run: Path, threshold_from: Path | None) -> None:
    from lab.commands.analyze import analyze_and_write

    analyze_and_write(run, threshold_from, echo=False)
    for name in (*REPORTS, "manifest.json"):
        click.echo(f"written {run / name}")


def bundle_command(run: Path, out: Path | None) -> None:
    if not run.is_dir():
        from lab.errors import ConfigError

        raise ConfigError(f"{run}: no such run directory")
    path = create_bundle(run, out)
    click.echo(f"bundle: {path} ({path.stat().st_size / 2**20:.1f} MiB)")


def verify_command(bundle: Path) -> None:
    run_id, files = verify_bundle(bundle)
    click.echo(f"{bundle}: intact ({files} files of run {run_id} match the manifest)")
