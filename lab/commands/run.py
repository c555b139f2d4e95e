"""`lab run EXPERIMENT`: the lab's main job - an A/B of two variants under identical load.

1. Load and validate the experiment (and its workload knobs) before any container starts.
2. Start one stack per variant and prepare it (schema, seed data, indexes); every stack not
   under load is frozen with `docker pause`, so only one variant uses the CPU at a time.
3. Run the trials interleaved (A B B A ..., starting side seeded): per trial the variant's stack
   is unpaused, its state reset, the load applied, and the trial's samples, summary, workload
   metrics and container resource use written to `trials/<nn>-<variant>/` as soon as it ends.
4. `trials.parquet` (one tidy long frame: experiment, variant, trial, metric, value) is
   rewritten after each trial; `status.json` says running / complete / failed / interrupted.

A container that dies mid-run fails the trial: its log is kept, earlier trials stay on disk,
the run is marked failed and the command exits 3.
"""

from __future__ import annotations

import json
import random
import time
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NoReturn, cast

import click
import docker
import docker.errors
import polars as pl

from lab import __version__
from lab.analysis.analyze import Analysis, choose_baseline
from lab.analysis.catalog import check_names
from lab.analysis.render import report_lines
from lab.analysis.resilience import resilience_metrics
from lab.analysis.runs import analyze_run
from lab.collect.collector import Collector, container_reading
from lab.commands.analyze import host_facts, write_analysis
from lab.commands.report import judge, write_reports
from lab.config.experiment import Experiment, VariantConfig, find_key_line, load_experiment
from lab.config.run import RunConfig
from lab.errors import ConfigError, InfrastructureError, LabError
from lab.loadgen.runner import LoadResult, run_load
from lab.loadgen.schedule import Schedule
from lab.loadgen.worker import LoadPlan
from lab.report.manifest import utc_now, write_manifest
from lab.report.rundir import RunDirectory, RunState
from lab.stack.engine import probe_engine
from lab.stack.faults import FaultRunner
from lab.stack.stack import Stack, running_stack, signals_deferred
from lab.workloads import bind_knobs, driver_class
from lab.workloads.base import Knobs, WorkloadDriver

Display = Literal["auto", "rich", "plain", "none"]


@dataclass(frozen=True)
class RunOptions:
    quick: bool = False
    trials: int | None = None
    duration_s: float | None = None
    variants: tuple[str, ...] = ()
    progress: Display = "auto"
    results: Path | None = None
    mode: Literal["ab", "aa", "baseline", "validate"] = "ab"
    threshold_from: Path | None = None


def run_command(path: Path, options: RunOptions) -> list[RunOutcome]:
    """`lab run`: an experiment file, or a suite file listing experiment files."""
    experiments = [load_experiment(p) for p in experiment_paths(path)]
    for experiment in experiments:
        bind_knobs(experiment)  # every file's mistakes surface before anything starts
        check_names(experiment)
        if experiment.meta.workload == "none":
            raise ConfigError(
                f'{experiment.path}: experiment.workload is "none": there is nothing to run',
                hint="`lab check` starts and checks its services",
            )
        for name in options.variants:
            experiment.variant(name)
    if options.mode == "aa":
        experiments = [same_config_twice(e, options.variants[0] if options.variants else None) for e in experiments]
        options = replace(options, variants=())
    probe_engine()
    return [run_experiment(experiment, options) for experiment in experiments]


def mode_variants(experiment: Experiment, mode: str) -> list[str]:
    """The variants a mode runs: all (A/B, A/A), the baseline only, or all but the baseline."""
    names = list(experiment.variants)
    baseline = choose_baseline(names, experiment.analysis.baseline)
    if mode == "baseline":
        return [baseline]
    if mode == "validate":
        return [n for n in names if n != baseline] or names
    return names


def check_outcomes(outcomes: list[RunOutcome]) -> None:
    """Exit 1 (CheckFailed) when a run's answer is "no" (see `lab.commands.report.judge`)."""
    judge([(o.mode, o.rundir.run_id, o.analysis) for o in outcomes])


AA_VARIANTS = ("a1", "a2")


def same_config_twice(experiment: Experiment, variant: str | None) -> Experiment:
    """An A/A experiment: one variant's configuration (the baseline by default) as both variants."""
    if variant is None:
        names = list(experiment.variants)
        variant = experiment.analysis.baseline or ("baseline" if "baseline" in names else names[0])
    _, config = experiment.variant(variant)
    return experiment.model_copy(update={"variants": dict.fromkeys(AA_VARIANTS, config), "aa_of": variant})


def experiment_paths(path: Path) -> list[Path]:
    """The experiment files a path stands for: itself, or the `[suite] experiments` it lists."""
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such experiment file", hint="see experiments/ for the shipped ones") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if "suite" not in document:
        return [path]
    suite = document["suite"]
    names = suite.get("experiments") if isinstance(suite, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{path}: suite.experiments: expected a list of experiment file names")
    unknown = [key for key in suite if key not in ("name", "description", "experiments")]
    if unknown or set(document) != {"suite"}:
        raise ConfigError(f"{path}: a suite file has only [suite] with name, description, experiments")
    paths = [path.parent / name for name in names]
    for name, candidate in zip(names, paths, strict=True):
        if not candidate.is_file():
            line = find_key_line(path.read_text(), ("suite", "experiments"))
            where = f"{path}:{line}" if line else str(path)
            raise ConfigError(f"{where}: suite.experiments: {name}: no such experiment file")
    return paths


@dataclass(frozen=True)
class RunOutcome:
    rundir: RunDirectory
    analysis: Analysis
    mode: str


def run_experiment(experiment: Experiment, options: RunOptions) -> RunOutcome:
    """Run every trial of one experiment, analyze it, write its reports and manifest.

    A run that fails or is interrupted keeps what it measured, marked in `status.json`, and
    still gets its manifest (the SHA-256 of every file written so far)."""
    knobs = bind_knobs(experiment)
    settings = experiment.run.effective(options.quick, options.trials, options.duration_s)
    names = list(options.variants) or mode_variants(experiment, options.mode)
    rundir = RunDirectory.create(experiment.name, options.results)
    rundir.copy_in(experiment.path, "experiment.toml")
    rundir.write_json("config.json", effective_config(experiment, names, knobs, settings, options))
    rundir.set_status("running", trials_done=0)
    order = trial_order(names, settings.trials, settings.seed, settings.order)
    click.echo(f"{experiment.name}: {len(order)} trials ({' '.join(order)}), results in {rundir.path}")
    rows: list[dict[str, Any]] = []
    done = 0
    facts: dict[str, Any] = {"started": utc_now(), "images": {}, "engine": engine_facts()}
    try:
        with ExitStack() as stacks:
            stacks_by_variant: dict[str, Stack] = {}
            drivers: dict[str, WorkloadDriver | None] = {}
            for name in names:
                stack = stacks.enter_context(running_stack(experiment.variants[name], name, run_id=rundir.run_id))
                stacks_by_variant[name] = stack
                facts["images"][name] = image_facts(stack)
                drivers[name] = make_driver(experiment, knobs.get(name), stack, settings.seed)
                driver = drivers[name]
                if driver is not None:
                    began = time.perf_counter()
                    driver.prepare()
                    prepared_s = time.perf_counter() - began
                    click.echo(f"  {name}: stack up in {stack.startup_s:.1f} s, prepared in {prepared_s:.1f} s")
                set_paused(stack, True)
            for index, variant in enumerate(order):
                stack = stacks_by_variant[variant]
                with unpaused(stack):
                    record = run_trial(experiment, settings, rundir, index, variant, stack, drivers[variant], options)
                metrics = record["metrics"]
                with signals_deferred():  # a finished trial is on disk everywhere or nowhere
                    rundir.write_json(f"trials/{rundir.trial_dir(index, variant).name}/trial.json", record)
                    rows.extend(
                        {
                            "experiment": experiment.name,
                            "variant": variant,
                            "trial": index,
                            "metric": key,
                            "value": value,
                        }
                        for key, value in metrics.items()
                    )
                    rundir.write_frame("trials.parquet", pl.DataFrame(rows, schema=TIDY_SCHEMA))
                    done += 1
                    rundir.set_status("running", trials_done=done, trials_total=len(order))
                click.echo(f"  trial {index:02d} {variant:<12} " + headline(metrics))
    except KeyboardInterrupt:
        mark_ended(rundir, facts, "interrupted", trials_done=done, trials_total=len(order))
        raise
    except LabError as exc:
        mark_ended(rundir, facts, "failed", trials_done=done, trials_total=len(order), reason=exc.one_line())
        raise
    except Exception as exc:
        mark_ended(rundir, facts, "failed", trials_done=done, trials_total=len(order), reason=repr(exc))
        raise
    rundir.set_status("complete", trials_done=done, trials_total=len(order))
    facts["ended"] = utc_now()
    analysis = analyze_run(rundir.path, options.threshold_from)
    write_analysis(rundir, analysis)
    write_reports(rundir, analysis, facts)
    click.echo("")
    for line in report_lines(analysis):
        click.echo(line)
    click.echo(f"reports: {rundir.path / 'report.md'}, {rundir.path / 'report.html'}, {rundir.path / 'junit.xml'}")
    return RunOutcome(rundir, analysis, options.mode)


def mark_ended(rundir: RunDirectory, facts: dict[str, Any], state: RunState, **details: Any) -> None:
    """Mark a run that did not complete (and write its manifest) - unless the disk refuses, in
    which case the original error is the one to report, and what is on disk stays as it is."""
    with suppress(LabError):
        rundir.set_status(state, **details)
        write_manifest(rundir.path, facts | {"ended": utc_now()})


TIDY_SCHEMA = {
    "experiment": pl.String,
    "variant": pl.String,
    "trial": pl.Int64,
    "metric": pl.String,
    "value": pl.Float64,
}


def make_driver(experiment: Experiment, knobs: Knobs | None, stack: Stack, seed: int) -> WorkloadDriver | None:
    if experiment.meta.workload == "none" or knobs is None:
        return None
    return driver_class(experiment.meta.workload)(knobs, stack.endpoints, seed)


def run_trial(
    experiment: Experiment,
    settings: RunConfig,
    rundir: RunDirectory,
    index: int,
    variant: str,
    stack: Stack,
    driver: WorkloadDriver | None,
    options: RunOptions,
) -> dict[str, Any]:
    """One trial: reset, load, check the containers survived, write its samples and series;
    returns its record (`trial.json`, metrics included), which the caller commits."""
    trial_dir = rundir.trial_dir(index, variant)
    assert driver is not None, "run_command refuses experiments without a workload"
    trial_seed = settings.seed * 1000 + index
    try:
        driver.reset()
        plan = LoadPlan(
            schedule=schedule_for(settings, trial_seed),
            operation=driver.operation(trial_seed),
            warmup_s=settings.warmup_s,
            max_in_flight=settings.max_in_flight,
            workers=settings.workers,
        )
        before = container_usage(stack)
        began = time.time()
        label = f"{experiment.name}/{variant} trial {index}"
        faults = [f for f in experiment.faults if f.applies_to(variant)]
        runner = FaultRunner(faults, stack.endpoints, plan.schedule) if faults else None
        try:
            with collecting(stack, settings.collect_interval_s) as collector:
                on_start = runner.load_started if runner else None
                result = run_load(plan, trial_dir, display=options.progress, label=label, on_start=on_start)
        finally:
            fault_records = runner.finish() if runner else []
        if fault_records:
            rundir.write_json(f"{trial_dir.relative_to(rundir.path)}/faults.json", fault_records)
        after = container_usage(stack)
        if collector is not None:
            rundir.write_frame(f"{trial_dir.relative_to(rundir.path)}/timeseries.parquet", collector.frame())
        fail_trial_if_a_container_died(rundir, trial_dir, index, variant, stack)
        metrics = load_metrics(result)
        metrics.update(driver.trial_metrics(result))
        metrics.update(resource_metrics(before, after))
        if fault_records:
            metrics.update(resilience_metrics(result.samples(), fault_records, metrics.get("fallbacks")))
    except Exception as exc:  # noqa: BLE001 - every failure of a trial becomes one line, exit 3
        fail_trial(rundir, trial_dir, index, variant, stack, exc)
    return {
        "state": "complete",
        "index": index,
        "variant": variant,
        "seed": trial_seed,
        "started": began,
        "mode": result.mode,
        "plan": redact(plan.to_dict(), stack),
        "metrics": metrics,
        "operation_stats": result.operation_stats,
        "resources": {"before": before, "after": after},
        "collector": collector.summary() if collector is not None else None,
    }


@contextmanager
def collecting(stack: Stack, interval_s: float) -> Iterator[Collector | None]:
    """The stack's time series while the block runs (nothing when the interval is 0)."""
    if interval_s <= 0:
        yield None
        return
    with Collector(stack.endpoints, interval_s) as collector:
        yield collector


def redact(document: dict[str, Any], stack: Stack) -> dict[str, Any]:
    """The document with every secret of the stack's endpoints (passwords) masked."""
    text = json.dumps(document)
    for endpoint in stack.endpoints.values():
        for secret in endpoint.secrets:
            text = text.replace(secret, "***")
    result: dict[str, Any] = json.loads(text)
    return result


def fail_trial_if_a_container_died(
    rundir: RunDirectory, trial_dir: Path, index: int, variant: str, stack: Stack
) -> None:
    """A trial whose containers did not all survive is failed, whatever the load saw."""
    dead = dead_containers(stack)
    if not dead:
        return
    for name, log in dead.items():
        rundir.write_text(f"logs/{name}.log", log)
    rundir.write_json(f"{trial_dir.relative_to(rundir.path)}/trial.json", {"state": "failed", "dead": list(dead)})
    raise InfrastructureError(
        f"trial {index} ({variant}) failed: container {', '.join(dead)} stopped during the trial; "
        f"earlier trials are kept in {rundir.path}",
        hint=f"see {rundir.path / 'logs'}",
    )


def fail_trial(
    rundir: RunDirectory, trial_dir: Path, index: int, variant: str, stack: Stack, exc: Exception
) -> NoReturn:
    """Turn a trial's failure into one InfrastructureError, naming a dead container if there is one."""
    fail_trial_if_a_container_died(rundir, trial_dir, index, variant, stack)
    reason = exc.one_line() if isinstance(exc, LabError) else " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    rundir.write_json(f"{trial_dir.relative_to(rundir.path)}/trial.json", {"state": "failed", "reason": reason})
    raise InfrastructureError(f"trial {index} ({variant}) failed: {reason}; earlier trials are kept in {rundir.path}")


def schedule_for(settings: RunConfig, seed: int) -> Schedule:
    if settings.arrivals == "closed":
        return Schedule.closed(settings.concurrency, settings.duration_s)
    if settings.arrivals == "constant":
        return Schedule.constant(settings.rate_rps, settings.duration_s)
    return Schedule.poisson(settings.rate_rps, settings.duration_s, seed=seed)


def trial_order(variants: list[str], trials: int, seed: int, order: str) -> list[str]:
    """Interleaved A B B A A B ... (which side starts is seeded), or blocked A A ... B B ..."""
    if order == "blocked" or len(variants) == 1:
        return [v for v in variants for _ in range(trials)]
    first = list(variants)
    random.Random(seed).shuffle(first)
    sequence: list[str] = []
    for round_index in range(trials):
        sequence.extend(first if round_index % 2 == 0 else list(reversed(first)))
    return sequence


def load_metrics(result: LoadResult) -> dict[str, float]:
    """The generator's own figures for a trial (latency from the intended send time)."""
    c = result.counters
    measured = max(c["sent"] - c["warmup"], 0)
    completed = sum(n for outcome, n in result.outcomes.items() if outcome not in ("dropped", "unfinished"))
    errors = sum(n for outcome, n in result.outcomes.items() if outcome not in ("ok", "dropped", "unfinished"))
    metrics = {
        "throughput_rps": (completed - errors) / result.measured_s,
        "achieved_rps": result.achieved_rps,
        "requests": float(measured),
        "errors": float(errors),
        "error_rate": errors / completed if completed else 0.0,
        "dropped": float(c["dropped"]),
        "late": float(c["late"]),
        "latency_mean_ms": result.latency.mean_ms,
        "latency_max_ms": result.latency.max_ms,
        "latency_samples": float(result.latency.count),
        "measured_s": result.measured_s,
        # every request of the trial, warm-up included: the denominator of per-request resource
        # and upstream-call figures, whose counters also cover the whole trial
        "trial_requests": float(c["sent"] - c["dropped"]),
    }
    for name, value in result.latency.percentiles_ms.items():
        metrics[f"latency_{name.replace('.', '_')}_ms"] = value
    return metrics


def image_facts(stack: Stack) -> dict[str, dict[str, str]]:
    """Per service of a stack: the image it runs (name and ID)."""
    client = docker.from_env()
    facts: dict[str, dict[str, str]] = {}
    try:
        for service, endpoint in stack.endpoints.items():
            with suppress(docker.errors.NotFound):
                attrs = client.api.inspect_container(endpoint.container_id)
                facts[service] = {"image": attrs["Config"]["Image"], "id": attrs["Image"]}
    finally:
        client.close()
    return facts


def engine_facts() -> dict[str, str]:
    client = docker.from_env()
    try:
        version = client.version()
    finally:
        client.close()
    return {"version": str(version.get("Version")), "api": str(version.get("ApiVersion")), "os": str(version.get("Os"))}


def container_usage(stack: Stack) -> dict[str, dict[str, float]]:
    """CPU time used so far and memory in use now (the working set: usage less the inactive
    page cache, as `docker stats` shows it), per service."""
    client = docker.from_env()
    usage: dict[str, dict[str, float]] = {}
    try:
        for service, endpoint in stack.endpoints.items():
            reading = container_reading(client, endpoint.container_id)
            usage[service] = {"cpu_s": reading["cpu_s"], "memory_bytes": reading["memory_mb"] * 2**20}
    finally:
        client.close()
    return usage


def resource_metrics(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for service, end in after.items():
        start = before.get(service, {"cpu_s": 0.0})
        metrics[f"{service}_cpu_s"] = max(end["cpu_s"] - start["cpu_s"], 0.0)
        metrics[f"{service}_memory_mb"] = end["memory_bytes"] / 2**20
    return metrics


def dead_containers(stack: Stack) -> dict[str, str]:
    """Containers of the stack that are no longer running, with the tail of their logs."""
    client = docker.from_env()
    dead: dict[str, str] = {}
    try:
        for endpoint in stack.endpoints.values():
            try:
                container = client.containers.get(endpoint.container_id)
                if container.status in ("running", "paused"):
                    continue
                dead[endpoint.container_name] = container.logs(tail=200).decode(errors="replace")
            except docker.errors.NotFound:
                dead[endpoint.container_name] = "(container removed)"
    finally:
        client.close()
    return dead


def set_paused(stack: Stack, paused: bool) -> None:
    """Freeze (or thaw) every container of a stack, so an idle variant takes no CPU."""
    client = docker.from_env()
    try:
        for endpoint in stack.endpoints.values():
            # A container that is gone is skipped (the others still change state); the trial's
            # liveness check reports it.
            with suppress(docker.errors.NotFound):
                container = client.containers.get(endpoint.container_id)
                if paused and container.status == "running":
                    container.pause()
                elif not paused and container.status == "paused":
                    container.unpause()
    finally:
        client.close()


@contextmanager
def unpaused(stack: Stack) -> Iterator[None]:
    set_paused(stack, False)
    try:
        yield
    finally:
        set_paused(stack, True)


def effective_config(
    experiment: Experiment, names: list[str], knobs: dict[str, Knobs], settings: RunConfig, options: RunOptions
) -> dict[str, Any]:
    variants = {name: variant_document(experiment.variants[name], knobs.get(name)) for name in names}
    return {
        "lab_version": __version__,
        "mode": options.mode,
        "aa_of": experiment.aa_of,
        "baseline": choose_baseline(names, experiment.analysis.baseline),
        "host": host_facts(),
        "experiment": experiment.name,
        "workload": experiment.meta.workload,
        "description": experiment.meta.description,
        "run": settings.model_dump(mode="json"),
        "quick": options.quick,
        "variants": variants,
        "diff": config_diff(variants),
    }


def variant_document(variant: VariantConfig, knobs: Knobs | None) -> dict[str, Any]:
    services = {kind: config.model_dump(mode="json") for kind, config in variant.service_configs().items()}
    return {"services": services, "workload": knobs.model_dump(mode="json") if knobs else {}}


def config_diff(variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every key path whose value differs between the variants, with each variant's value."""
    flat = {name: dict(flatten(document)) for name, document in variants.items()}
    keys = sorted(set().union(*(f.keys() for f in flat.values()))) if flat else []
    diff = []
    for key in keys:
        values = {name: f.get(key) for name, f in flat.items()}
        if len({repr(v) for v in values.values()}) > 1:
            diff.append({"key": key, "values": values})
    return diff


def flatten(document: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(document, dict):
        for key, value in document.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, document


HEADLINE = (
    ("latency_p50_ms", "p50 {:.2f} ms"),
    ("latency_p95_ms", "p95 {:.2f} ms"),
    ("latency_p99_ms", "p99 {:.2f} ms"),
    ("throughput_rps", "{:,.0f} ok/s"),
    ("error_rate", "errors {:.2%}"),
)


def headline(metrics: dict[str, float]) -> str:
    return ", ".join(template.format(metrics[key]) for key, template in HEADLINE if key in metrics)


def display_mode(value: str) -> Display:
    return cast(Display, value)
