"""`manifest.json`: what a run was made of and the SHA-256 of every file it wrote.

The manifest protects itself too: it is written with a placeholder in `manifest_sha256`, the
SHA-256 of those exact bytes is computed and put in place of the placeholder. To check it, put
the placeholder back and hash again: any changed byte of the manifest - or of any file it lists
- shows.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from lab import __version__
from lab.files import read_json, sha256_file, write_atomic

MANIFEST = "manifest.json"
PLACEHOLDER = "0" * 64
REPO = Path(__file__).resolve().parents[2]


def file_table(run: Path) -> dict[str, dict[str, Any]]:
    """Every file below the run directory but the manifest: relative path -> sha256 and size."""
    table = {}
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        relative = path.relative_to(run).as_posix()
        if relative == MANIFEST or path.name.startswith("."):
            continue  # the manifest itself; half-written temporaries (".name.xxxx")
        table[relative] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return table


def git_facts(repo: Path = REPO) -> dict[str, Any]:
    """The commit of the project the lab runs from (the project under test), if it is a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def host_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def build_manifest(run: Path, facts: dict[str, Any]) -> dict[str, Any]:
    """The manifest document: `facts` (times, images, engine, seeds, ...) plus what is on disk."""
    config = read_json(run / "config.json")
    experiment = run / "experiment.toml"
    trial_seeds = {}
    for trial in sorted((run / "trials").glob("*/trial.json")):
        document = read_json(trial)
        if "seed" in document:
            trial_seeds[trial.parent.name] = document["seed"]
    return {
        "manifest_version": 1,
        "manifest_sha256": PLACEHOLDER,
        "lab_version": __version__,
        "run_id": run.name,
        "status": read_json(run / "status.json"),
        "project": git_facts(),
        "experiment": {
            "name": config.get("experiment"),
            "workload": config.get("workload"),
            "file": "experiment.toml",
            "sha256": sha256_file(experiment) if experiment.exists() else None,
        },
        "mode": config.get("mode"),
        "seeds": {"run": (config.get("run") or {}).get("seed"), "trials": trial_seeds},
        "effective_config": {"run": config.get("run"), "variants": config.get("variants"), "diff": config.get("diff")},
        "host": {
            **(config.get("host") or {}),
            "memory_bytes": host_memory_bytes(),
            "python": platform.python_version(),
        },
        **facts,
        "files": file_table(run),
    }


def write_manifest(run: Path, facts: dict[str, Any] | None = None) -> Path:
    """Write (or refresh) `manifest.json`; facts from an earlier manifest are kept."""
    previous = read_json(run / MANIFEST)
    kept: dict[str, Any] = {k: previous[k] for k in ("started", "ended", "images", "engine") if k in previous}
    document = build_manifest(run, {**kept, **(facts or {})})
    data = (json.dumps(document, indent=2, sort_keys=False) + "\n").encode()
    digest = hashlib.sha256(data).hexdigest()
    data = data.replace(PLACEHOLDER.encode(), digest.encode(), 1)
    write_atomic(run / MANIFEST, data)
    return run / MANIFEST


def manifest_intact(data: bytes) -> bool:
    """Whether the manifest's bytes hash to the SHA-256 it carries."""
    try:
        claimed = json.loads(data)["manifest_sha256"]
    except (ValueError, KeyError, TypeError):
        return False
    if not isinstance(claimed, str) or len(claimed) != 64 or data.count(claimed.encode()) != 1:
        return False
    return hashlib.sha256(data.replace(claimed.encode(), PLACEHOLDER.encode(), 1)).hexdigest() == claimed


def check_files(run: Path) -> list[str]:
    """What differs between a run directory and its manifest, one line per file (empty: all match)."""
    path = run / MANIFEST
    if not path.exists():
        return [f"{MANIFEST}: missing"]
    data = path.read_bytes()
    if not manifest_intact(data):
        return [f"{MANIFEST}: changed (its bytes do not match the SHA-256 it carries)"]
    listed: dict[str, dict[str, Any]] = json.loads(data)["files"]
    present = file_table(run)
    problems = []
    for name, entry in listed.items():
        if name not in present:
            problems.append(f"{name}: missing")
        elif present[name]["sha256"] != entry["sha256"]:
            problems.append(
                f"{name}: changed (sha256 {present[name]['sha256'][:12]}..., manifest {entry['sha256'][:12]}...)"
            )
    problems.extend(f"{name}: not in the manifest" for name in present if name not in listed)
    return problems


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
