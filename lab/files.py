"""Files written whole or not at all, and their checksums: shared by run directories, reports
and the model build."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lab.errors import WriteError


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary path in `path`'s directory that replaces `path` only if the block succeeds.

    Same directory, so that os.replace is a rename on one file system: a reader sees the old
    file or the new one, never half of one. The temporary name keeps the suffix because some
    writers (onnx.save) pick the format from it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    temp_path = Path(temporary)
    # mkstemp makes the file private (0600); model files are read by containers as other users.
    temp_path.chmod(0o644)
    try:
        yield temp_path
        os.replace(temp_path, path)
    finally:
        temp_path.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a synced temporary file in the same folder and a rename; a full
    disk or an unwritable folder is one WriteError naming the file, and leaves no partial file."""
    try:
        with atomic_output(path) as temporary, temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise WriteError(
            f"cannot write {path}: {exc.strerror or exc}", hint="free some space, or set LAB_RESULTS_DIR elsewhere"
        ) from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or {} when it is missing, unreadable or not an object."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}
