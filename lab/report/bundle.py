"""Bundles: one `.tar.gz` holding a run directory whole (samples, trials, analysis, reports,
manifest) - everything needed to re-analyse it months later - and their verification.

`create_bundle` refreshes the manifest first, so the archive's manifest lists exactly the files
in it. `verify_bundle` unpacks into a temporary folder (refusing members that would land outside
it, links and devices) and checks every file against the manifest and the manifest against
itself; any changed byte is named.
"""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.errors import BundleInvalid, ConfigError
from lab.report.manifest import MANIFEST, check_files, write_manifest

SUFFIX = ".tar.gz"


def is_bundle(path: Path) -> bool:
    return path.is_file() and path.name.endswith(SUFFIX)


def create_bundle(run: Path, out: Path | None = None) -> Path:
    """Write `<run-id>.tar.gz` beside the run directory (or at `out`); never overwrite one."""
    if not (run / "config.json").exists():
        raise ConfigError(f"{run}: not a run directory (no config.json)")
    write_manifest(run)
    target = out or run.parent / f"{run.name}{SUFFIX}"
    if target.exists():
        raise ConfigError(f"{target} exists already; bundles are never overwritten", hint="--out names another file")
    partial = target.with_name(f".{target.name}.partial")
    try:
        with tarfile.open(partial, "w:gz") as archive:
            for path in sorted(run.rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    archive.add(path, arcname=f"{run.name}/{path.relative_to(run).as_posix()}", recursive=False)
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _safe_members(archive: tarfile.TarFile, where: Path) -> list[tarfile.TarInfo]:
    members = archive.getmembers()
    for member in members:
        if not (member.isfile() or member.isdir()):
            raise BundleInvalid(f"{member.name}: not a regular file (links and devices are refused)")
        destination = (where / member.name).resolve()
        if not destination.is_relative_to(where.resolve()):
            raise BundleInvalid(f"{member.name}: would be written outside the bundle's folder")
    return members


@contextmanager
def opened_bundle(bundle: Path) -> Iterator[Path]:
    """The bundle unpacked in a temporary folder, as a run directory (removed afterwards)."""
    if not bundle.exists():
        raise ConfigError(f"{bundle}: no such bundle")
    with tempfile.TemporaryDirectory(prefix="ablab-bundle-") as folder:
        where = Path(folder)
        try:
            with tarfile.open(bundle, "r:gz") as archive:
                archive.extractall(where, members=_safe_members(archive, where), filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BundleInvalid(f"{bundle}: not a readable bundle ({exc})") from None
        runs = [p for p in where.iterdir() if p.is_dir()]
        if len(runs) != 1 or not (runs[0] / MANIFEST).exists():
            raise BundleInvalid(f"{bundle}: expected one run directory with a {MANIFEST} inside")
        yield runs[0]


@contextmanager
def verified_bundle(bundle: Path) -> Iterator[Path]:
    """The bundle unpacked once and checked against its manifest: BundleInvalid names the first
    differing file; otherwise the unpacked run directory (removed afterwards)."""
    with opened_bundle(bundle) as run:
        problems = check_files(run)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise BundleInvalid(f"{bundle}: {problems[0]}{more}")
        yield run


def verify_bundle(bundle: Path) -> tuple[str, int]:
    """Raise BundleInvalid naming the first differing file; else return (run id, files checked)."""
    with verified_bundle(bundle) as run:
        return run.name, sum(1 for p in run.rglob("*") if p.is_file())


@contextmanager
def as_run_directory(path: Path) -> Iterator[Path]:
    """A run directory, or a bundle verified and unpacked as one (for `lab compare` and `lab analyze`)."""
    if is_bundle(path):
        with verified_bundle(path) as run:
            yield run
    else:
        yield path
