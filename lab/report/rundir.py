"""A run directory: `results/<run-id>/`, written file by file, atomically, never overwritten.

Every file is written to a temporary name in the same folder and renamed into place, so a
reader (or a crash) never sees half a file. `status.json` says whether the run is `running`,
`complete`, `failed` or `interrupted`; every finished trial stays on disk whatever happens
later, so a failed run keeps what it measured.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from lab.errors import LabError, WriteError
from lab.files import atomic_output, read_json, write_atomic
from lab.stack.ownership import Owner

RunState = Literal["running", "complete", "failed", "interrupted"]
REPO_RESULTS = Path(__file__).resolve().parents[2] / "results"


def mark_abandoned(root: Path) -> list[Path]:
    """Run directories still saying `running` whose process is gone (killed): mark them
    `interrupted`, keeping what they recorded. Returns the ones marked."""
    marked = []
    for path in sorted(root.glob("*/status.json")) if root.is_dir() else []:
        status = read_json(path)
        owner = status.get("owner")
        if status.get("state") != "running" or not isinstance(owner, dict):
            continue
        try:
            alive = Owner(**owner).is_alive()
        except TypeError:
            continue
        if not alive:
            kept = {k: v for k, v in status.items() if k not in ("state", "updated", "owner")}
            RunDirectory(path.parent, path.parent.name).set_status(
                "interrupted", **kept, reason="the lab process ended without finishing (killed)"
            )
            marked.append(path.parent)
    return marked


def results_root() -> Path:
    """Where run directories go: LAB_RESULTS_DIR, else the repository's results/."""
    return Path(os.environ.get("LAB_RESULTS_DIR") or REPO_RESULTS)


@dataclass
class RunDirectory:
    """One run's folder and the writes the lab makes into it."""

    path: Path
    run_id: str

    @classmethod
    def create(cls, experiment: str, root: Path | None = None) -> RunDirectory:
        root = root or results_root()
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{experiment}-{secrets.token_hex(3)}"
        path = root / run_id
        try:
            root.mkdir(parents=True, exist_ok=True)
            path.mkdir(exist_ok=False)  # a run directory is never reused or overwritten
        except FileExistsError:
            raise LabError(f"{path} exists already; run directories are never overwritten") from None
        except OSError as exc:
            raise LabError(
                f"cannot create a run directory in {root}: {exc.strerror}", hint="set LAB_RESULTS_DIR"
            ) from None
        return cls(path, run_id)

    def write_json(self, relative: str, document: Any) -> Path:
        target = self.path / relative
        write_atomic(target, (json.dumps(document, indent=2, sort_keys=False, default=str) + "\n").encode())
        return target

    def write_text(self, relative: str, text: str) -> Path:
        target = self.path / relative
        write_atomic(target, text.encode())
        return target

    def write_frame(self, relative: str, frame: pl.DataFrame) -> Path:
        target = self.path / relative
        try:
            with atomic_output(target) as temporary:
                frame.write_parquet(temporary)
        except OSError as exc:
            raise WriteError(f"cannot write {target}: {exc.strerror or exc}", hint="free some space") from None
        return target

    def copy_in(self, source: Path, relative: str) -> Path:
        target = self.path / relative
        write_atomic(target, source.read_bytes())
        shutil.copystat(source, target)
        return target

    def set_status(self, state: RunState, **details: Any) -> None:
        """Write `status.json`; a running run names its process, so that a run whose process was
        killed can be told apart later (`lab gc` marks it interrupted)."""
        if state == "running":
            details = {**details, "owner": asdict(Owner.current())}
        self.write_json(
            "status.json", {"state": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **details}
        )

    def trial_dir(self, index: int, variant: str) -> Path:
        return self.path / "trials" / f"{index:02d}-{variant}"
