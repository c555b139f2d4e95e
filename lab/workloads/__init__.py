"""The workloads: cache, database, api, inference - one driver module each.

base      the driver interface (prepare, reset, operation, trial_metrics)
cache     L1 LRU -> Redis -> Postgres, Zipf keys
database  lead schema, query mix through psycopg_pool, optional read pool and indexes
api       fan-out to the mock API's upstreams through per-upstream pools
inference requests of `batch_size` rows to the inference server; batch sweeps
"""

from __future__ import annotations

import importlib

from pydantic import ValidationError

from lab.config.experiment import Experiment
from lab.workloads.base import Knobs, WorkloadDriver

WORKLOAD_KINDS: tuple[str, ...] = ("cache", "database", "api", "inference")


def driver_class(kind: str) -> type[WorkloadDriver]:
    """The driver of a workload kind (modules are imported on demand)."""
    if kind not in WORKLOAD_KINDS:
        raise KeyError(kind)
    driver: type[WorkloadDriver] = importlib.import_module(f"lab.workloads.{kind}").DRIVER
    return driver


def bind_knobs(experiment: Experiment) -> dict[str, Knobs]:
    """Each variant's workload knobs, validated; mistakes are ConfigErrors naming file and line."""
    kind = experiment.meta.workload
    if kind == "none":
        if experiment.base_workload:
            experiment.fail(("workload",), "this experiment has no workload (set experiment.workload)")
        for name, variant in experiment.variants.items():
            if variant.workload:
                experiment.fail(
                    ("variants", name, "workload"), "this experiment has no workload (set experiment.workload)"
                )
        return {}
    driver = driver_class(kind)
    try:
        driver.knobs_model.model_validate(experiment.base_workload)
    except ValidationError as exc:
        experiment.invalid(exc, ("workload",))
    knobs: dict[str, Knobs] = {}
    for name, variant in experiment.variants.items():
        missing = [s for s in driver.required_services if s not in variant.service_configs()]
        if missing:
            experiment.fail(
                ("variants", name, "services"),
                f"the {kind} workload needs the services {', '.join(driver.required_services)}; "
                f"missing: {', '.join(missing)}",
            )
        try:
            knobs[name] = driver.knobs_model.model_validate(variant.workload)
        except ValidationError as exc:
            experiment.invalid(exc, ("variants", name, "workload"))
    return knobs
