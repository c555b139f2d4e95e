"""Build the lead-scoring model end to end: data, training, ONNX export, INT8 twin, model card.

`make setup` calls this on every run, so a build whose card still vouches for both files
(same build-parameter hash, same sha256) returns at once. The card is written last: a build
interrupted halfway leaves files the old card does not match, and the next call rebuilds.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]

import lab
from lab.errors import ModelBuildError
from lab.model.card import (
    Agreement,
    ModelCard,
    Quality,
    TensorSpec,
    accuracy,
    build_hash,
    card_matches_files,
    file_record,
    load_card,
    roc_auc,
    save_card,
)
from lab.model.data import FEATURE_COUNT, FEATURE_NAMES, split_leads
from lab.model.export import BATCH_DIM, INPUT_NAME, OUTPUT_NAME, mlp_to_onnx, save_onnx
from lab.model.quantize import compare_outputs, open_session, quantize_int8, run_model
from lab.model.train import DEFAULT_HIDDEN_SIZES, TrainSettings, count_parameters, train_mlp

MODEL_NAME = "lead-scoring"
FP32_FILE = "model-fp32.onnx"
INT8_FILE = "model-int8.onnx"
# Bump whenever the data generator, training or export changes what the same parameters build.
RECIPE_VERSION = 1
# 32,000 leads x 2 epochs: about 6 s of training on 2 cores, and more epochs only overfit.
DEFAULT_TRAIN_ROWS = 32_000
DEFAULT_HELDOUT_ROWS = 8_000
DEFAULT_EPOCHS = 2
# The ONNX export must reproduce the numpy forward pass to float32 rounding.
EXPORT_TOLERANCE = 1e-5


def default_model_dir() -> Path:
    """`<repo>/models/lead-scoring`, where `make setup` keeps the model the lab serves."""
    return Path(lab.__file__).resolve().parents[1] / "models" / MODEL_NAME


def build_model(
    out_dir: Path | None = None,
    seed: int = 7,
    force: bool = False,
    *,
    hidden_sizes: tuple[int, ...] = DEFAULT_HIDDEN_SIZES,
    train_rows: int = DEFAULT_TRAIN_ROWS,
    heldout_rows: int = DEFAULT_HELDOUT_ROWS,
    epochs: int = DEFAULT_EPOCHS,
    batch_rows: int = 256,
    learning_rate: float = 1e-3,
    log: Callable[[str], None] | None = None,
) -> ModelCard:
    """Write model-fp32.onnx, model-int8.onnx and card.json to `out_dir`, unless they are current.

    Current means: card.json exists, was built from the same parameters (hash), and both model
    files still have the sha256 it records. `force` rebuilds regardless.
    """
    began = time.perf_counter()
    out_dir = out_dir if out_dir is not None else default_model_dir()
    say = log or (lambda _message: None)
    if seed < 0:
        raise ModelBuildError(f"seed must be 0 or more, got {seed}")
    if min(train_rows, heldout_rows) < 2:
        raise ModelBuildError(f"need at least 2 training and 2 held-out leads, got {train_rows} and {heldout_rows}")
    try:
        settings = TrainSettings(
            hidden_sizes=tuple(hidden_sizes),
            epochs=epochs,
            batch_rows=batch_rows,
            learning_rate=learning_rate,
            seed=seed,
        )
    except ValueError as exc:
        raise ModelBuildError(str(exc)) from None
    params: dict[str, Any] = {
        "recipe": RECIPE_VERSION,
        "seed": seed,
        "hidden_sizes": list(settings.hidden_sizes),
        "train_rows": train_rows,
        "heldout_rows": heldout_rows,
        "epochs": settings.epochs,
        "batch_rows": settings.batch_rows,
        "learning_rate": settings.learning_rate,
        "weight_decay": settings.weight_decay,
    }
    digest = build_hash(params)
    if not force:
        existing = load_card(out_dir)
        if existing is not None and existing.build_hash == digest and card_matches_files(existing, out_dir):
            say(f"model up to date in {out_dir} (build {digest[:12]})")
            return existing

    layer_sizes = (FEATURE_COUNT, *settings.hidden_sizes, 1)
    say(
        f"training {'-'.join(map(str, layer_sizes))} ({count_parameters(layer_sizes):,} parameters) "
        f"on {train_rows:,} synthetic leads, {settings.epochs} epoch(s)"
    )
    split = split_leads(train_rows, heldout_rows, seed)
    trained = train_mlp(split.train, settings)

    say(f"exporting ONNX and quantizing to INT8 in {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32_path, int8_path = out_dir / FP32_FILE, out_dir / INT8_FILE
    model = mlp_to_onnx(
        trained.mlp,
        doc="Probability that a real-estate lead converts; features are standardized (see card.json).",
        metadata={"name": MODEL_NAME, "seed": str(seed), "build_hash": digest, "features": ",".join(FEATURE_NAMES)},
    )
    save_onnx(model, fp32_path)
    quantize_int8(fp32_path, int8_path)

    # Quality and agreement come from real onnxruntime runs of both files on the held-out leads.
    inputs = {INPUT_NAME: split.heldout.features}
    fp32_outputs = run_model(open_session(fp32_path), inputs)
    int8_outputs = run_model(open_session(int8_path), inputs)
    fp32_scores, int8_scores = fp32_outputs[OUTPUT_NAME], int8_outputs[OUTPUT_NAME]
    export_diff = float(np.abs(fp32_scores - trained.mlp.scores(split.heldout.features)).max())
    if export_diff > EXPORT_TOLERANCE:
        raise RuntimeError(f"ONNX export differs from the numpy model by {export_diff:.2e} (bug)")
    [score_agreement], _ = compare_outputs({OUTPUT_NAME: fp32_scores}, {OUTPUT_NAME: int8_scores})
    labels = split.heldout.converted
    card = ModelCard(
        name=MODEL_NAME,
        built_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        seed=seed,
        build_hash=digest,
        build_params=params,
        input=TensorSpec(name=INPUT_NAME, dtype="float32", shape=[BATCH_DIM, FEATURE_COUNT]),
        output=TensorSpec(name=OUTPUT_NAME, dtype="float32", shape=[BATCH_DIM, 1]),
        feature_names=list(FEATURE_NAMES),
        layer_sizes=list(trained.mlp.layer_sizes),
        parameter_count=trained.mlp.parameter_count,
        train_rows=split.train.rows,
        heldout_rows=split.heldout.rows,
        heldout_conversion_rate=split.heldout.conversion_rate,
        training_s=round(trained.training_s, 3),
        build_s=round(time.perf_counter() - began, 3),
        export_max_abs_diff=export_diff,
        fp32=file_record(fp32_path),
        int8=file_record(int8_path),
        fp32_heldout=Quality(accuracy=accuracy(labels, fp32_scores), auc=roc_auc(labels, fp32_scores)),
        int8_heldout=Quality(accuracy=accuracy(labels, int8_scores), auc=roc_auc(labels, int8_scores)),
        agreement=Agreement(
            rows=score_agreement.rows,
            max_abs_diff=score_agreement.max_abs_diff,
            mean_abs_diff=score_agreement.mean_abs_diff,
            class_agreement=score_agreement.class_agreement,
        ),
        versions={
            "ablab": lab.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    )
    save_card(card, out_dir)
    return card
