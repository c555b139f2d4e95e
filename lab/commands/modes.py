"""The original framework's three modes: `lab baseline`, `lab validate`, `lab compare` (no
arguments) - what `run_comprehensive_validation.sh baseline|validation|compare` did, measured.

`lab baseline` runs each experiment's baseline variant and records the run as the reference
(`results/reference.json`, experiment -> run id); `lab validate` runs the other variants;
`lab compare` with no arguments compares, per experiment, the latest validation run with the
reference (the latest baseline run when none is recorded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import click

from lab.commands.run import Display, RunOptions, check_outcomes, run_command
from lab.errors import CheckFailed, ConfigError
from lab.files import read_json, write_atomic
from lab.report.rundir import results_root

REFERENCE = "reference.json"


def run_mode(
    experiment: Path,
    mode: str,
    quick: bool,
    trials: int | None,
    duration: float | None,
    progress: str,
    threshold_from: Path | None,
) -> None:
    options = RunOptions(
        quick,
        trials,
        duration,
        (),
        cast(Display, progress),
        mode="baseline" if mode == "baseline" else "validate",
        threshold_from=threshold_from,
    )
    outcomes = run_command(experiment, options)
    for outcome in outcomes:
        click.echo(f"run directory: {outcome.rundir.path}")
    if mode == "baseline":
        path = results_root() / REFERENCE
        reference = read_json(path)
        for outcome in outcomes:
            reference[outcome.analysis.experiment] = outcome.rundir.run_id
        write_atomic(path, (json.dumps(reference, indent=2, sort_keys=True) + "\n").encode())
        click.echo(f"reference runs recorded in {path}")
    check_outcomes(outcomes)


def latest_runs(root: Path) -> dict[str, dict[str, Path]]:
    """Per experiment, the latest complete run of each mode (run ids sort by start time)."""
    latest: dict[str, dict[str, Path]] = {}
    for config_path in sorted(root.glob("*/config.json")):
        config = read_json(config_path)
        status = read_json(config_path.parent / "status.json")
        if status.get("state") != "complete" or not isinstance(config.get("experiment"), str):
            continue
        latest.setdefault(config["experiment"], {})[str(config.get("mode", "ab"))] = config_path.parent
    return latest


def compare_latest(threshold_from: Path | None) -> None:
    from lab.commands.analyze import compare_command

    root = results_root()
    runs = latest_runs(root)
    reference = read_json(root / REFERENCE)
    pairs = []
    for experiment, modes in sorted(runs.items()):
        recorded = reference.get(experiment)
        base = root / recorded if isinstance(recorded, str) and (root / recorded).is_dir() else modes.get("baseline")
        if base is not None and "validate" in modes:
            pairs.append((base, modes["validate"]))
    if not pairs:
        raise ConfigError(
            f"{root}: no experiment has both a baseline and a validation run",
            hint="run `lab baseline` and `lab validate` first",
        )
    failures: list[CheckFailed] = []
    for base, candidate in pairs:
        base_variants = list(read_json(base / "config.json").get("variants") or {})
        candidate_variants = list(read_json(candidate / "config.json").get("variants") or {})
        variant_pairs = [(base_variants[0], v) for v in candidate_variants]
        try:
            compare_command(base, candidate, (), False, threshold_from, pairs=variant_pairs)
        except CheckFailed as exc:  # one experiment's "no" must not hide the others' answers
            failures.append(exc)
    if failures:
        more = f" (and {len(failures) - 1} more experiments)" if len(failures) > 1 else ""
        raise CheckFailed(f"{failures[0]}{more}", hint="see each compare directory's report.md")
