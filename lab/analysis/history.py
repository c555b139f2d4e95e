"""The history of every run in a results folder: one row per (run, variant, metric), in time order.

Read from each run directory's `config.json`, `status.json` and `analysis/analysis.json` - or
the same three files inside a bundle (`*.tar.gz`, read without unpacking it). A run without
an analysis (failed before its first trial, or made before analyses existed) is skipped; A/A
runs are left out (they measure noise, not the system). The config hash is the SHA-256 of the
variant's effective configuration, so a reader sees when the thing measured changed.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from lab.files import read_json

SCHEMA: dict[str, Any] = {
    "time": pl.Datetime("us", "UTC"),
    "run": pl.String,
    "experiment": pl.String,
    "workload": pl.String,
    "mode": pl.String,
    "variant": pl.String,
    "host": pl.String,
    "config_hash": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
}


def run_time(run_id: str) -> datetime | None:
    """The start time encoded in a run id (`20261204T231117Z-api-28c964`)."""
    try:
        return datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def config_hash(variant_config: Any) -> str:
    return hashlib.sha256(json.dumps(variant_config, sort_keys=True).encode()).hexdigest()[:12]


def _from_bundle(bundle: Path) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]] | None:
    try:
        with tarfile.open(bundle, "r:gz") as archive:
            documents: dict[str, dict[str, Any]] = {}
            run_id = ""
            for member in archive.getmembers():
                parts = member.name.split("/", 1)
                if len(parts) == 2 and parts[1] in ("config.json", "status.json", "analysis/analysis.json"):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        run_id = parts[0]
                        documents[parts[1]] = json.loads(handle.read())
    except (tarfile.TarError, OSError, ValueError):
        return None
    if "analysis/analysis.json" not in documents:
        return None
    return (
        run_id,
        documents.get("config.json", {}),
        documents.get("status.json", {}),
        documents["analysis/analysis.json"],
    )


def _sources(root: Path) -> Iterator[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]]:
    seen: set[str] = set()
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.is_dir() and (path / "analysis" / "analysis.json").exists():
            seen.add(path.name)
            yield (
                path.name,
                read_json(path / "config.json"),
                read_json(path / "status.json"),
                read_json(path / "analysis" / "analysis.json"),
            )
    for bundle in sorted(root.glob("*.tar.gz")) if root.is_dir() else []:
        found = _from_bundle(bundle)
        if found is not None and found[0] not in seen:  # a run and its own bundle count once
            seen.add(found[0])
            yield found


def history(root: Path, experiment: str | None = None, variant: str | None = None) -> pl.DataFrame:
    """Every analysed run's per-variant summary values, oldest first."""
    rows = []
    for run_id, config, status, analysis in _sources(root):
        when = run_time(run_id)
        mode = str(config.get("mode", "ab"))
        if when is None or mode == "aa" or status.get("state") not in ("complete", None):
            continue
        name = str(config.get("experiment") or analysis.get("experiment") or "")
        if experiment is not None and name != experiment:
            continue
        host = str((config.get("host") or {}).get("hostname", ""))
        variants = config.get("variants") or {}
        for entry in analysis.get("summary") or []:
            if variant is not None and entry.get("variant") != variant:
                continue
            value = entry.get("value")
            rows.append(
                {
                    "time": when,
                    "run": run_id,
                    "experiment": name,
                    "workload": str(config.get("workload") or analysis.get("workload") or ""),
                    "mode": mode,
                    "variant": entry.get("variant"),
                    "host": host,
                    "config_hash": config_hash(variants.get(entry.get("variant"))),
                    "metric": entry.get("metric"),
                    "value": float(value) if value is not None else None,
                }
            )
    return pl.DataFrame(rows, schema=SCHEMA).sort("time", "run", "variant", "metric")


def wide(frame: pl.DataFrame, metrics: list[str]) -> pl.DataFrame:
    """One row per (run, variant), one column per metric."""
    chosen = frame.filter(pl.col("metric").is_in(metrics))
    if chosen.height == 0:
        return chosen.select("time", "run", "experiment", "variant")
    return chosen.pivot(
        on="metric", index=["time", "run", "experiment", "mode", "variant", "host", "config_hash"], values="value"
    ).sort("time", "run", "variant")
