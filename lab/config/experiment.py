"""Experiment files: TOML -> frozen, validated objects, one per variant.

An experiment names its services (base configuration) and variants that overlay the base by
deep merge. Every mistake - unknown key, wrong type, impossible value, unknown service -
becomes one ConfigError naming the file, the key path, its line and what was expected,
before any container starts.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

from pydantic import BaseModel, Field, ValidationError

from lab.config.analysis import AnalysisConfig, CostConfig, Target, TargetsConfig
from lab.config.faults import FaultConfig
from lab.config.run import RunConfig
from lab.config.services import DEFAULT_IMAGES, SERVICE_KINDS, ServiceConfig, ServicesConfig, Strict
from lab.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
VARIANT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class VariantConfig(Strict):
    """The effective configuration of one variant: base merged with its overlay."""

    services: ServicesConfig
    # The workload's knobs, checked against the workload's own model by lab.workloads
    # (config sits above the workloads in the flow and does not know their models).
    workload: dict[str, Any] = Field(default_factory=dict, strict=False)

    def service_configs(self) -> dict[str, ServiceConfig]:
        """The variant's services by kind."""
        return self.services.started()


WorkloadKind = Literal["none", "cache", "database", "api", "inference"]


class ExperimentMeta(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    workload: WorkloadKind = "none"
    description: str = ""


class Experiment(Strict):
    """A validated experiment: metadata and each variant's effective configuration."""

    path: Path
    meta: ExperimentMeta
    run: RunConfig
    variants: dict[str, VariantConfig]
    base_workload: dict[str, Any] = Field(default_factory=dict, strict=False)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    targets: TargetsConfig = Field(default_factory=TargetsConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    faults: list[FaultConfig] = Field(default_factory=list)
    aa_of: str | None = None  # `lab aa`: the variant whose configuration both variants run
    source: str = ""  # the file's text, to point errors found later at their line

    def fail(self, key_path: tuple[str, ...], expected: str) -> NoReturn:
        """Raise the ConfigError for a mistake found after loading (e.g. a workload knob)."""
        _fail(self.path, self.source, key_path, expected)

    def invalid(self, exc: ValidationError, prefix: tuple[str, ...]) -> NoReturn:
        """Raise the ConfigError for a pydantic error of a table at `prefix`."""
        _raise_validation(exc, self.path, self.source, prefix)

    @property
    def name(self) -> str:
        return self.meta.name

    def variant(self, name: str | None) -> tuple[str, VariantConfig]:
        """The named variant, or the first one when `name` is None."""
        if name is None:
            name = next(iter(self.variants))
        if name not in self.variants:
            raise ConfigError(
                f"{self.path}: no variant {name!r}",
                hint=f"variants: {', '.join(self.variants)}",
            )
        return name, self.variants[name]


def load_experiment(path: Path | str) -> Experiment:
    """Read, merge and validate an experiment file; raise ConfigError on any mistake."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such experiment file", hint="see experiments/ for the shipped ones") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_experiment(raw, path, text)


def parse_experiment(raw: Mapping[str, Any], path: Path, text: str = "") -> Experiment:
    """Validate an already-parsed experiment document."""
    known = {"experiment", "run", "services", "workload", "variants", "analysis", "targets", "cost", "faults"}
    for key in raw:
        if key not in known:
            _fail(path, text, (key,), f"unknown key; expected one of: {', '.join(sorted(known))}")
    if "experiment" not in raw:
        _fail(path, text, ("experiment",), 'missing table [experiment] with name = "..."')
    meta = _validate(ExperimentMeta, raw["experiment"], path, text, ("experiment",))
    base = raw.get("services")
    if not isinstance(base, dict) or not base:
        _fail(path, text, ("services",), "expected a table of services, e.g. [services.postgres]")
    assert isinstance(base, dict)
    base = {name: _with_default_image(name, value) for name, value in base.items()}
    overlays = raw.get("variants", {"baseline": {}})
    if not isinstance(overlays, dict) or not overlays:
        _fail(path, text, ("variants",), "expected a table of variants, e.g. [variants.baseline]")
    run = _validate(RunConfig, raw.get("run", {}), path, text, ("run",))
    workload = raw.get("workload", {})
    if not isinstance(workload, dict):
        _fail(path, text, ("workload",), "expected a table of the workload's knobs")
    # The base alone first, so that its mistakes are reported where they are written.
    _validate(VariantConfig, {"services": base, "workload": workload}, path, text, ())
    variants: dict[str, VariantConfig] = {}
    for name, overlay in overlays.items():
        if not VARIANT_NAME.match(name):
            _fail(path, text, ("variants", name), "a variant name is lowercase letters, digits, '-' or '_'")
        if not isinstance(overlay, dict):
            _fail(path, text, ("variants", name), "expected a table")
        for key in overlay:
            if key not in ("services", "workload"):
                _fail(path, text, ("variants", name, key), "unknown key; a variant may overlay: services, workload")
        merged = deep_merge({"services": base, "workload": workload}, overlay)
        variants[name] = _validate(VariantConfig, merged, path, text, ("variants", name))
    analysis = _validate(AnalysisConfig, raw.get("analysis", {}), path, text, ("analysis",))
    if analysis.baseline is not None and analysis.baseline not in variants:
        _fail(path, text, ("analysis", "baseline"), f"unknown variant; expected one of: {', '.join(variants)}")
    targets = _targets(raw.get("targets", {}), path, text)
    cost = _validate(CostConfig, raw.get("cost", {}), path, text, ("cost",))
    faults = _faults(raw.get("faults", []), variants, path, text)
    return Experiment(
        path=path,
        meta=meta,
        run=run,
        variants=variants,
        base_workload=workload,
        analysis=analysis,
        targets=targets,
        cost=cost,
        faults=faults,
        source=text,
    )


def _faults(raw: Any, variants: dict[str, VariantConfig], path: Path, text: str) -> list[FaultConfig]:
    """`[[faults]]`: each validated, its service started by the variants it applies to."""
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        _fail(path, text, ("faults",), 'expected [[faults]] tables, e.g. kind = "kill", service = "redis"')
    faults = []
    for index, item in enumerate(raw):
        fault = _validate(FaultConfig, item, path, text, ("faults",))
        for name in fault.variants or list(variants):
            if name not in variants:
                _fail(path, text, ("faults", "variants"), f"fault {index + 1}: unknown variant {name!r}")
            if fault.service not in variants[name].service_configs():
                _fail(path, text, ("faults", "service"), f"fault {index + 1}: {name} has no {fault.service} service")
        faults.append(fault)
    return faults


def _targets(raw: Any, path: Path, text: str) -> TargetsConfig:
    """`[targets]`: `defaults = true|false` and one `metric = { below = x, above = y }` per goal."""
    if not isinstance(raw, dict):
        _fail(path, text, ("targets",), "expected a table of targets, e.g. latency_p95_ms = { below = 200 }")
    defaults = raw.get("defaults", True)
    if not isinstance(defaults, bool):
        _fail(path, text, ("targets", "defaults"), f"expected true or false (got {defaults!r})")
    metrics: dict[str, Target] = {}
    for name, value in raw.items():
        if name == "defaults":
            continue
        if not isinstance(value, dict):
            _fail(path, text, ("targets", name), "expected a table like { below = 200 } or { above = 0.95 }")
        metrics[name] = _validate(Target, value, path, text, ("targets", name))
    return TargetsConfig(defaults=defaults, metrics=metrics)


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: `overlay` on top of `base`, merging tables key by key."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _with_default_image(name: str, value: Any) -> Any:
    if isinstance(value, dict) and "image" not in value and name in DEFAULT_IMAGES:
        return {"image": DEFAULT_IMAGES[name], **value}
    return value


def _validate(model: type[M], data: Any, path: Path, text: str, prefix: tuple[str, ...]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        _raise_validation(exc, path, text, prefix)


def _raise_validation(exc: ValidationError, path: Path, text: str, prefix: tuple[str, ...]) -> NoReturn:
    error = exc.errors()[0]
    # pydantic marks a bad dict key with "[key]" after the key itself
    location = tuple(str(part) for part in error["loc"] if part != "[key]")
    _fail(path, text, prefix + location, _expected(error, location))


def _expected(error: Any, location: tuple[str, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden" and len(location) == 2 and location[0] == "services":
        return f"unknown service; expected one of: {', '.join(SERVICE_KINDS)}"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "literal_error":
        return f"unknown value; expected {error['ctx']['expected']}"
    if kind == "missing":
        return "missing key"
    message: str = error["msg"]
    return f"{message[0].lower()}{message[1:]} (got {error.get('input')!r})"


def _fail(path: Path, text: str, key_path: tuple[str, ...], expected: str) -> NoReturn:
    line = find_key_line(text, key_path)
    where = f"{path}:{line}" if line else str(path)
    raise ConfigError(f"{where}: {'.'.join(key_path)}: {expected}")


def find_key_line(text: str, key_path: tuple[str, ...]) -> int | None:
    """Best-effort line number of a dotted key in TOML text (table header or assignment)."""
    if not text or not key_path:
        return None
    lines = text.splitlines()
    # The deepest table header that is a prefix of the key path, then the key below it.
    best_header, best_len = 0, 0
    for number, line in enumerate(lines, start=1):
        header = re.match(r"^\s*\[+\s*([^\]]+?)\s*\]+", line)
        if header:
            parts = tuple(p.strip().strip('"') for p in header.group(1).split("."))
            if key_path[: len(parts)] == parts and len(parts) > best_len:
                best_header, best_len = number, len(parts)
    rest = key_path[best_len:]
    if not rest:
        return best_header or None
    dotted = r"\s*\.\s*".join(re.escape(p) for p in rest)
    first = re.escape(rest[0])
    for number in range(best_header + 1, len(lines) + 1):
        line = lines[number - 1]
        if best_header and re.match(r"^\s*\[", line):
            break
        if re.match(rf"^\s*(\"?){dotted}\1\s*=", line) or re.match(rf"^\s*{first}\s*[.=]", line):
            return number
    return best_header or None
