"""The `lab` command: parse arguments, call one function per command, map errors to exits.

This is the only place where errors become exit codes: 0 success, 1 a target missed or a
check failed, 2 a user error (LabError), 3 an infrastructure failure, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from lab import __version__
from lab.errors import LabError

DEFAULT_EXPERIMENT = Path(__file__).resolve().parent.parent / "experiments" / "smoke.toml"
EXPERIMENT_HELP = "experiment file (default: experiments/smoke.toml)"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lab")
@click.option("--debug", is_flag=True, help="show tracebacks")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """ablab: a containerized A/B benchmark lab."""
    ctx.obj = {"debug": debug}


@cli.command()
def doctor() -> None:
    """Check the engine, images, host resources and Ryuk; exit 2 if something is missing."""
    from lab.commands.doctor import run_doctor

    sys.exit(run_doctor())


@cli.command()
@click.option("--experiment", "-e", type=click.Path(path_type=Path), default=DEFAULT_EXPERIMENT, help=EXPERIMENT_HELP)
@click.option("--variant", "-v", default=None, help="variant to bring up (default: the first)")
def up(experiment: Path, variant: str | None) -> None:
    """Bring one variant's stack up, print its endpoints, keep it until Ctrl-C."""
    from lab.commands.up import run_up

    run_up(experiment, variant)


def run_options(function: Any) -> Any:
    """The options `lab run` and `lab aa` share."""
    options = [
        click.argument("experiment", type=click.Path(path_type=Path)),
        click.option("--quick", is_flag=True, help="short trials for a laptop preview (what `make run` uses)"),
        click.option("--trials", type=click.IntRange(1, 100), default=None, help="trials per variant"),
        click.option("--duration", type=click.FloatRange(0.5, 3600), default=None, help="seconds per trial"),
        click.option("--progress", type=click.Choice(["auto", "rich", "plain", "none"]), default="auto"),
        click.option(
            "--threshold-from",
            type=click.Path(path_type=Path),
            default=None,
            help="take per-metric noise thresholds from this A/A run (`lab aa`)",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@cli.command()
@run_options
@click.option("--variant", "-v", "variants", multiple=True, help="run only this variant (repeatable)")
def run(
    experiment: Path,
    quick: bool,
    trials: int | None,
    duration: float | None,
    variants: tuple[str, ...],
    progress: str,
    threshold_from: Path | None,
) -> None:
    """Run an experiment (or a suite file) A/B: one stack per variant, interleaved trials, then
    the analysis: comparisons with intervals and verdicts, targets and grade, projected cost."""
    from lab.commands.run import RunOptions, check_outcomes, display_mode, run_command

    options = RunOptions(quick, trials, duration, variants, display_mode(progress), threshold_from=threshold_from)
    outcomes = run_command(experiment, options)
    for outcome in outcomes:
        click.echo(f"run directory: {outcome.rundir.path}")
    check_outcomes(outcomes)


@cli.command()
@run_options
@click.option("--variant", "-v", "variant", default=None, help="whose configuration runs twice (default: baseline)")
def aa(
    experiment: Path,
    quick: bool,
    trials: int | None,
    duration: float | None,
    variant: str | None,
    progress: str,
    threshold_from: Path | None,
) -> None:
    """A/A: one variant's configuration as both sides, to measure the noise floor per metric.

    Its run directory can then be given to `lab run/analyze/compare --threshold-from`."""
    from lab.commands.run import RunOptions, check_outcomes, display_mode, run_command

    chosen = (variant,) if variant else ()
    options = RunOptions(
        quick, trials, duration, chosen, display_mode(progress), mode="aa", threshold_from=threshold_from
    )
    outcomes = run_command(experiment, options)
    for outcome in outcomes:
        click.echo(f"run directory: {outcome.rundir.path} (use it with --threshold-from)")
    check_outcomes(outcomes)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--threshold-from", type=click.Path(path_type=Path), default=None, help="an A/A run (`lab aa`)")
def analyze(run_dir: Path, threshold_from: Path | None) -> None:
    """(Re-)analyze a run directory: summaries, comparisons, targets, cost -> RUN/analysis/."""
    from lab.commands.analyze import analyze_command

    analyze_command(run_dir, threshold_from)


@cli.command()
@click.argument("run_a", type=click.Path(path_type=Path), required=False)
@click.argument("run_b", type=click.Path(path_type=Path), required=False)
@click.option("--variant", "-v", "variants", multiple=True, help="compare only this variant (repeatable)")
@click.option("--force", is_flag=True, help="compare runs of different experiments or workloads")
@click.option("--threshold-from", type=click.Path(path_type=Path), default=None, help="an A/A run (`lab aa`)")
def compare(
    run_a: Path | None, run_b: Path | None, variants: tuple[str, ...], force: bool, threshold_from: Path | None
) -> None:
    """Compare two runs or bundles (e.g. main's against a pull request's), variant by variant.

    With no arguments: for every experiment, the latest `lab validate` run against the latest
    `lab baseline` run. Exit 1 on a regression or a missed target."""
    from lab.commands.analyze import compare_command
    from lab.commands.modes import compare_latest

    if run_a is None:
        compare_latest(threshold_from)
        return
    if run_b is None:
        raise click.UsageError("give two runs (or bundles), or none to compare the latest baseline and validation")
    compare_command(run_a, run_b, variants, force, threshold_from)


@cli.command()
@run_options
def baseline(
    experiment: Path,
    quick: bool,
    trials: int | None,
    duration: float | None,
    progress: str,
    threshold_from: Path | None,
) -> None:
    """Run the baseline variant of each experiment (a suite file: all of them) and keep the
    runs as the reference `lab compare` (no arguments) measures `lab validate` runs against."""
    from lab.commands.modes import run_mode

    run_mode(experiment, "baseline", quick, trials, duration, progress, threshold_from)


@cli.command()
@run_options
def validate(
    experiment: Path,
    quick: bool,
    trials: int | None,
    duration: float | None,
    progress: str,
    threshold_from: Path | None,
) -> None:
    """Run the optimized variants of each experiment (all but the baseline); exit 1 when one
    misses a target. `lab compare` with no arguments then compares them with the reference."""
    from lab.commands.modes import run_mode

    run_mode(experiment, "validate", quick, trials, duration, progress, threshold_from)


@cli.command()
@click.option("--experiment", "-e", default=None, help="only this experiment")
@click.option("--variant", "-v", default=None, help="only this variant")
@click.option("--metric", "-m", "metrics", multiple=True, help="metric columns (default: the headline ones)")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="also write the table (.parquet or .csv)")
def history(experiment: str | None, variant: str | None, metrics: tuple[str, ...], out: Path | None) -> None:
    """Every analysed run (and bundle) in the results folder, oldest first: headline metrics,
    host and config hash per variant."""
    from lab.commands.trend import history_command

    history_command(experiment, variant, metrics, out)


@cli.command()
@click.option("--experiment", "-e", default=None, help="only this experiment")
@click.option("--variant", "-v", default=None, help="only this variant")
@click.option("--metric", "-m", "metrics", multiple=True, help="metrics to follow (default: the headline ones)")
@click.option("--fail-on", type=click.Choice(["degrade"]), default=None, help="exit 1 on a degrading newest segment")
@click.option("--alert", type=click.Path(path_type=Path), default=None, help="where to write the markdown alert")
@click.option("--min-size", type=click.IntRange(2, 1000), default=5, help="runs per segment at least")
@click.option("--threshold", type=click.FloatRange(0, 10), default=0.05, help="smallest shift that counts (0.05 = 5 %)")
def trend(
    experiment: str | None,
    variant: str | None,
    metrics: tuple[str, ...],
    fail_on: str | None,
    alert: Path | None,
    min_size: int,
    threshold: float,
) -> None:
    """Per metric over the run history: improving, degrading or flat, and the change points
    (e-divisive means) with the run where each starts and the size of the shift."""
    from lab.commands.trend import trend_command

    trend_command(experiment, variant, metrics, fail_on, alert, min_size, threshold)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["openmetrics"]), default="openmetrics")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="file to write (default: stdout)")
def export(run_dir: Path, fmt: str, out: Path | None) -> None:
    """A run's final metrics as OpenMetrics (Prometheus) text."""
    from lab.commands.trend import export_command

    export_command(run_dir, fmt, out)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--threshold-from", type=click.Path(path_type=Path), default=None, help="an A/A run (`lab aa`)")
def report(run_dir: Path, threshold_from: Path | None) -> None:
    """Re-analyze a run and rewrite report.md, report.html, junit.xml and manifest.json."""
    from lab.commands.report import report_command

    report_command(run_dir, threshold_from)


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1, required=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="the archive to write")
def bundle(args: tuple[str, ...], out: Path | None) -> None:
    """`lab bundle RUN`: one .tar.gz with everything needed to re-analyse the run.
    `lab bundle verify BUNDLE`: check every file against the manifest (exit 1 naming a changed one)."""
    from lab.commands.report import bundle_command, verify_command

    if args[0] == "verify":
        if len(args) != 2:
            raise click.UsageError("usage: lab bundle verify BUNDLE")
        verify_command(Path(args[1]))
        return
    if len(args) != 1:
        raise click.UsageError("usage: lab bundle RUN [--out FILE] | lab bundle verify BUNDLE")
    bundle_command(Path(args[0]), out)


@cli.command()
@click.argument("experiment", type=click.Path(path_type=Path))
@click.option("--variant", "-v", "variants", multiple=True, help="sweep only this variant (repeatable)")
@click.option("--batches", default="1,8,16,32,64", show_default=True, help="batch sizes")
@click.option("--concurrency", default="1,4", show_default=True, help="requests in flight")
@click.option("--duration", type=click.FloatRange(0.5, 600), default=4.0, show_default=True, help="seconds per cell")
def sweep(experiment: Path, variants: tuple[str, ...], batches: str, concurrency: str, duration: float) -> None:
    """Sweep an inference experiment over batch sizes and concurrency."""
    from lab.commands.sweep import run_sweep_command

    try:
        batch_list = [int(b) for b in batches.split(",")]
        concurrency_list = [int(c) for c in concurrency.split(",")]
    except ValueError:
        raise click.BadParameter("expected comma-separated whole numbers, e.g. 1,8,32") from None
    if min(batch_list + concurrency_list) < 1:
        raise click.BadParameter("batch sizes and concurrency must be at least 1")
    rundir = run_sweep_command(experiment, variants, batch_list, concurrency_list, duration)
    click.echo(f"run directory: {rundir.path}")


@cli.command()
@click.argument("experiment", type=click.Path(path_type=Path))
@click.option("--quick", is_flag=True, help="show the --quick run settings")
def show(experiment: Path, quick: bool) -> None:
    """Print each variant's effective configuration and the diff between them."""
    from lab.commands.show import run_show

    run_show(experiment, quick)


@cli.command()
@click.option("--experiment", "-e", type=click.Path(path_type=Path), default=DEFAULT_EXPERIMENT, help=EXPERIMENT_HELP)
@click.option("--variant", "-v", "variants", multiple=True, help="variant(s) to check (default: all)")
def check(experiment: Path, variants: tuple[str, ...]) -> None:
    """Start each variant's stack, make one real call to every service, tear it down."""
    from lab.commands.check import run_check

    sys.exit(run_check(experiment, list(variants) or None))


@cli.command()
@click.option("--all", "everything", is_flag=True, help="remove every lab container, even of live runs")
def gc(everything: bool) -> None:
    """Remove lab containers whose owning process is dead."""
    from lab.commands.gc import run_gc

    run_gc(everything)


@cli.group()
def images() -> None:
    """Build and list the lab's images."""


@images.command("build")
@click.argument("names", nargs=-1)
def images_build(names: tuple[str, ...]) -> None:
    """Build the lab's images whose build context changed (all, or NAMES)."""
    from lab.commands.images import run_images_build

    run_images_build(list(names) or None)


@images.command("list")
def images_list() -> None:
    """Show each lab image's wanted tag and whether it is built."""
    from lab.commands.images import run_images_list

    run_images_list()


@cli.group()
def model() -> None:
    """Build the lead-scoring model (FP32 + INT8) or quantize your own ONNX model."""


@model.command("build")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="folder (default: models/lead-scoring)")
@click.option("--seed", type=int, default=7, show_default=True, help="seed of the data and the training")
@click.option("--force", is_flag=True, help="rebuild even when the files match their card")
def model_build(out: Path | None, seed: int, force: bool) -> None:
    """Train the lead-scoring model on synthetic data, export FP32 ONNX and its INT8 twin."""
    from lab.commands.model import run_model_build

    run_model_build(out, seed, force)


@model.command("quantize")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="default: <stem>-int8.onnx beside PATH")
def model_quantize(path: Path, out: Path | None) -> None:
    """Make the INT8 twin of your FP32 ONNX model and report how well they agree."""
    from lab.commands.model import run_model_quantize

    run_model_quantize(path, out)


@cli.command()
@click.argument("url")
@click.option("--rate", type=float, default=100.0, show_default=True, help="requests/s (open loop)")
@click.option("--duration", type=float, default=10.0, show_default=True, help="seconds, warm-up included")
@click.option("--warmup", type=float, default=0.0, show_default=True, help="seconds excluded from results")
@click.option(
    "--arrivals",
    type=click.Choice(["constant", "poisson", "closed"]),
    default="constant",
    show_default=True,
    help="open loop (constant or Poisson) or closed loop",
)
@click.option("--concurrency", type=int, default=10, show_default=True, help="closed loop: requests in flight")
@click.option("--workers", type=int, default=1, show_default=True, help="worker processes")
@click.option("--max-in-flight", type=int, default=1000, show_default=True, help="open loop: above it, drop")
@click.option("--connections", type=int, default=64, show_default=True, help="per worker")
@click.option("--method", default="GET", show_default=True)
@click.option("--body", default="", help="request body")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="folder for samples (default: results/)")
@click.option("--progress", type=click.Choice(["auto", "rich", "plain", "none"]), default="auto")
def load(**options: Any) -> None:
    """Send HTTP load to URL (127.0.0.1 or the lab's containers) and report what was measured."""
    from lab.commands.load import run_http_load

    run_http_load(**options)


@cli.command(hidden=True)
@click.argument("spec", type=click.Path(path_type=Path, exists=True))
def worker(spec: Path) -> None:
    """Run one load worker (started by the load runner, not by hand)."""
    from lab.loadgen.worker import main_from_spec

    main_from_spec(spec)


@cli.group()
def engine() -> None:
    """The Docker engine the lab uses."""


@engine.command("ensure")
def engine_ensure() -> None:
    """Make sure an engine answers: start dockerd (root on Debian) when none does."""
    from lab.stack.engine import ensure_engine

    info = ensure_engine()
    click.echo(f"Docker {info.server_version} (API {info.api_version}) answers at {info.address}")


def main() -> None:
    """Entry point: run the CLI, turning every error a user can cause into one line."""
    debug = "--debug" in sys.argv[1:] or os.environ.get("LAB_DEBUG") == "1"
    try:
        cli.main(standalone_mode=False)
    except LabError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"lab: error: {exc.one_line()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("lab: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code == 2 else exc.exit_code)
    except KeyboardInterrupt as exc:
        reason = str(exc) or "SIGINT"
        click.echo(f"lab: interrupted ({reason}); cleaned up", err=True)
        sys.exit(130)
