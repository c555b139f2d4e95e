"""The model card: what was built, from what, how well it scores, and the files' fingerprints.

`card.json` sits beside the two ONNX files and is written last, so a build that died halfway
leaves no card that vouches for it. The same module holds the held-out metrics (accuracy,
rank-based AUC in numpy) and the atomic file writing every model file goes through.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, ValidationError

from lab.files import sha256_file, write_atomic

CARD_FILE = "card.json"


class Frozen(BaseModel):
    """Frozen, and unknown keys are errors: a card from another schema is simply not ours."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(Frozen):
    name: str
    dtype: str
    shape: list[str | int]


class FileRecord(Frozen):
    """A file beside the card, by name (so the directory can move), with its fingerprint."""

    file: str
    size_bytes: int
    sha256: str


class Quality(Frozen):
    """Held-out quality: accuracy at threshold 0.5 and ROC AUC."""

    accuracy: float
    auc: float


class Agreement(Frozen):
    """How far INT8 scores are from FP32 scores on the same rows, measured by running both."""

    rows: int
    max_abs_diff: float
    mean_abs_diff: float
    class_agreement: float


class ModelCard(Frozen):
    schema_version: Literal[1] = 1
    name: str
    built_at: str
    seed: int
    build_hash: str
    build_params: dict[str, Any]
    input: TensorSpec
    output: TensorSpec
    feature_names: list[str]
    layer_sizes: list[int]
    parameter_count: int
    train_rows: int
    heldout_rows: int
    heldout_conversion_rate: float
    training_s: float
    build_s: float
    export_max_abs_diff: float
    fp32: FileRecord
    int8: FileRecord
    fp32_heldout: Quality
    int8_heldout: Quality
    agreement: Agreement
    versions: dict[str, str]


def build_hash(params: Mapping[str, Any]) -> str:
    """sha256 of the build parameters in canonical JSON: equal hashes, equal recipes."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def file_record(path: Path) -> FileRecord:
    return FileRecord(file=path.name, size_bytes=path.stat().st_size, sha256=sha256_file(path))


def save_card(card: ModelCard, out_dir: Path) -> Path:
    path = out_dir / CARD_FILE
    write_atomic(path, (card.model_dump_json(indent=2) + "\n").encode())
    return path


def load_card(out_dir: Path) -> ModelCard | None:
    """The card in `out_dir`, or None when there is none or it is unreadable or of another schema."""
    try:
        return ModelCard.model_validate_json((out_dir / CARD_FILE).read_bytes())
    except (OSError, ValidationError):
        return None


def card_matches_files(card: ModelCard, out_dir: Path) -> bool:
    """True when both model files exist and are byte for byte the ones the card describes."""
    for record in (card.fp32, card.int8):
        path = out_dir / record.file
        if not path.is_file() or path.stat().st_size != record.size_bytes or sha256_file(path) != record.sha256:
            return False
    return True


def roc_auc(converted: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """ROC AUC as the Mann-Whitney U statistic: the chance a positive outranks a negative, ties half.

    Ranks are averaged over ties, so it equals the pairwise definition exactly, in O(n log n).
    """
    labels = np.asarray(converted, dtype=bool).ravel()
    values = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != values.shape:
        raise ValueError(f"{labels.size} labels but {values.size} scores")
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs at least one positive and one negative row")
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    # Runs of equal scores share the mean of the 1-based ranks they span.
    run_starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    run_ends = np.r_[run_starts[1:], ordered.size]
    mean_rank = (run_starts + 1 + run_ends) / 2.0
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(mean_rank, run_ends - run_starts)
    rank_sum = float(ranks[labels].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def accuracy(converted: npt.ArrayLike, scores: npt.ArrayLike, threshold: float = 0.5) -> float:
    """Share of rows whose predicted class (score >= threshold) is the true one."""
    labels = np.asarray(converted, dtype=bool).ravel()
    predicted = np.asarray(scores).ravel() >= threshold
    return float((predicted == labels).mean())
