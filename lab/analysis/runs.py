"""Run directories as analysis inputs: one run's variants, or the same variant in two runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from lab.analysis.analyze import Analysis, analyze
from lab.analysis.blocks import load_blocks
from lab.config.experiment import Experiment, load_experiment
from lab.errors import ConfigError


@dataclass
class RunRecord:
    """What a run directory holds that the analysis needs."""

    path: Path
    config: dict[str, Any]
    status: dict[str, Any]
    trials: pl.DataFrame
    experiment: Experiment

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def workload(self) -> str:
        return str(self.config.get("workload", self.experiment.meta.workload))

    @property
    def mode(self) -> str:
        return str(self.config.get("mode", "ab"))

    def rows(self, variant: str) -> list[dict[str, float]]:
        """One dict of metrics per trial of `variant`, in trial order."""
        frame = self.trials.filter(pl.col("variant") == variant)
        rows: dict[int, dict[str, float]] = {}
        for trial, metric, value in frame.select("trial", "metric", "value").iter_rows():
            rows.setdefault(trial, {})[metric] = value
        return [rows[t] for t in sorted(rows)]

    def variants(self) -> list[str]:
        """The variants with trials, in the experiment's order (baseline first as configured)."""
        measured = self.trials["variant"].unique(maintain_order=True).to_list()
        configured = [v for v in self.config.get("variants", {}) if v in measured]
        return configured + [v for v in measured if v not in configured]

    def measured_s(self) -> dict[int, float]:
        frame = self.trials.filter(pl.col("metric") == "measured_s")
        return {int(t): float(v) for t, v in frame.select("trial", "value").iter_rows()}

    def batch_sizes(self) -> dict[str, float]:
        frame = self.trials.filter(pl.col("metric") == "batch_size")
        return {str(v): float(x) for v, x in frame.select("variant", "value").iter_rows()}


def load_run(path: Path) -> RunRecord:
    """Read a run directory; a path that is not one is the user's mistake (exit 2)."""
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run directory")
    try:
        config = json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not a run directory (no config.json)", hint="see results/") from None
    status = json.loads((path / "status.json").read_text()) if (path / "status.json").exists() else {}
    if not (path / "trials.parquet").exists():
        raise ConfigError(f"{path}: the run has no finished trial (no trials.parquet)")
    trials = pl.read_parquet(path / "trials.parquet")
    experiment = load_experiment(path / "experiment.toml")
    return RunRecord(path, config, status, trials, experiment)


def read_noise(path: Path) -> tuple[dict[str, float], str]:
    """The per-metric noise floor an A/A run (`lab aa`) measured, to use as thresholds."""
    record = load_run(path)
    if record.mode != "aa":
        raise ConfigError(f"{path}: not an A/A run; --threshold-from takes a run made by `lab aa`")
    document = path / "analysis" / "analysis.json"
    if not document.exists():
        raise ConfigError(f"{path}: the A/A run has no analysis (analysis/analysis.json)", hint="lab analyze it first")
    floor = json.loads(document.read_text()).get("noise_floor") or {}
    return {k: float(v) for k, v in floor.items() if v is not None}, f"A/A run {path.name}"


def analyze_run(path: Path, threshold_from: Path | None = None) -> Analysis:
    """The analysis of one run directory: its baseline against each other variant."""
    record = load_run(path)
    noise, source = read_noise(threshold_from) if threshold_from else ({}, "")
    experiment = record.experiment
    samples = load_blocks(
        path, experiment.analysis.blocks, measured_s=record.measured_s(), batch_size=record.batch_sizes()
    )
    variants = record.variants()
    baseline = record.config.get("baseline")
    return analyze(
        experiment=experiment.name,
        workload=record.workload,
        samples=samples,
        trials={v: record.rows(v) for v in variants},
        settings=experiment.analysis,
        targets=experiment.targets,
        prices=experiment.cost,
        baseline=baseline if isinstance(baseline, str) else None,
        noise=noise,
        noise_source=source,
    )


def compare_runs(
    path_a: Path,
    path_b: Path,
    variants: tuple[str, ...] = (),
    force: bool = False,
    threshold_from: Path | None = None,
    pairs: list[tuple[str, str]] | None = None,
) -> tuple[list[Analysis], list[str]]:
    """Each variant both runs measured: run A's against run B's (or the given (a, b) variant
    pairs, e.g. a baseline run's "baseline" against a validation run's "optimized").
    Returns the analyses and the warnings."""
    a, b = load_run(path_a), load_run(path_b)
    warnings: list[str] = []
    for what, left, right in (
        ("experiment", a.experiment.name, b.experiment.name),
        ("workload", a.workload, b.workload),
    ):
        if left != right:
            message = f"{path_b}: a run of {what} {right!r}, {path_a} is of {left!r}"
            if not force:
                raise ConfigError(message + "; refusing to compare", hint="--force compares them anyway")
            warnings.append(message + " (compared anyway: --force)")
    host_a, host_b = a.config.get("host", {}), b.config.get("host", {})
    differing = [k for k in sorted(set(host_a) | set(host_b)) if host_a.get(k) != host_b.get(k)]
    if differing:
        warnings.append(
            "the runs were made on different hosts (" + ", ".join(differing) + "): differences may be the machine's"
        )
    if a.config.get("run") != b.config.get("run"):
        warnings.append("the runs used different [run] settings (load, trials or durations)")
    if pairs is None:
        common = [v for v in a.variants() if v in b.variants()]
        for name in variants:
            if name not in common:
                raise ConfigError(f"variant {name!r} is not in both runs", hint=f"common variants: {', '.join(common)}")
        pairs = [(name, name) for name in (list(variants) or common)]
        if not pairs and len(a.variants()) == 1 and not variants:
            # a `lab baseline` run (one variant) against a `lab validate` run (the others)
            pairs = [(a.variants()[0], name) for name in b.variants()]
        if not pairs:
            raise ConfigError(f"{path_a} and {path_b} have no variant in common", hint="--variant names one")
    noise, source = read_noise(threshold_from) if threshold_from else ({}, "")
    analyses = []
    experiment = b.experiment
    for name_a, name_b in pairs:
        left, right = f"a/{name_a}", f"b/{name_b}"
        samples = {}
        for record, name, label in ((a, name_a, left), (b, name_b, right)):
            loaded = load_blocks(
                record.path,
                experiment.analysis.blocks,
                measured_s=record.measured_s(),
                batch_size=record.batch_sizes(),
                variant_names={name: label},
                only=(name,),
            )
            samples.update(loaded)
        analyses.append(
            analyze(
                experiment=experiment.name,
                workload=b.workload,
                samples=samples,
                trials={left: a.rows(name_a), right: b.rows(name_b)},
                settings=experiment.analysis,
                targets=experiment.targets,
                prices=experiment.cost,
                baseline=left,
                noise=noise,
                noise_source=source,
            )
        )
    return analyses, warnings
