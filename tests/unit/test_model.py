"""The lead-scoring model: data, training, ONNX export, INT8 twin, card, build, `lab model quantize`.

Every model here is tiny (tens to hundreds of hidden units, a few thousand leads) so the whole
file runs in seconds; the default 1M-parameter build is measured by hand, not by a test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lab.commands.model import format_card, run_model_quantize
from lab.errors import LabError
from lab.files import sha256_file
from lab.model.build import FP32_FILE, INT8_FILE, build_model
from lab.model.card import CARD_FILE, ModelCard, accuracy, load_card, roc_auc
from lab.model.data import CONTINUOUS_FEATURES, FEATURE_COUNT, FEATURE_NAMES, generate_leads, split_leads
from lab.model.export import IR_VERSION, OPSET, mlp_to_onnx, save_onnx
from lab.model.quantize import (
    ModelFileError,
    compare_models,
    open_session,
    quantize_int8,
    quantize_user_model,
    run_model,
    sample_inputs,
)
from lab.model.train import MLP, TrainSettings, count_parameters, train_mlp

TINY = TrainSettings(hidden_sizes=(32, 16), epochs=4, batch_rows=64, learning_rate=3e-3, seed=7)


@pytest.fixture(scope="module")
def tiny_mlp() -> MLP:
    return train_mlp(split_leads(3000, 2000, seed=7).train, TINY).mlp


# --- data -----------------------------------------------------------------------------


def test_leads_are_identical_for_a_seed_and_differ_across_seeds() -> None:
    first, again, other = split_leads(500, 200, seed=3), split_leads(500, 200, seed=3), split_leads(500, 200, seed=4)
    assert first.train.features.shape == (500, FEATURE_COUNT) and first.train.features.dtype == np.float32
    assert first.heldout.features.shape == (200, FEATURE_COUNT)
    assert np.array_equal(first.train.features, again.train.features)
    assert np.array_equal(first.heldout.converted, again.heldout.converted)
    assert not np.array_equal(first.train.features, other.train.features)


def test_leads_look_like_leads() -> None:
    leads = generate_leads(20_000, seed=11)
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == FEATURE_COUNT
    # about one lead in four converts
    assert 0.15 < leads.conversion_rate < 0.40
    # continuous columns standardized against fixed reference moments; flags and one-hots 0/1
    continuous = leads.features[:, : len(CONTINUOUS_FEATURES)]
    assert np.all(np.abs(continuous.mean(axis=0)) < 0.05)
    assert np.all(np.abs(continuous.std(axis=0) - 1) < 0.05)
    categorical = leads.features[:, len(CONTINUOUS_FEATURES) :]
    assert set(np.unique(categorical)) == {0.0, 1.0}
    sources = leads.features[:, [FEATURE_NAMES.index(n) for n in FEATURE_NAMES if n.startswith("source_")]]
    assert np.all(sources.sum(axis=1) == 1)


def test_held_out_leads_do_not_depend_on_the_training_size() -> None:
    small, large = split_leads(100, 300, seed=5), split_leads(900, 300, seed=5)
    assert np.array_equal(small.heldout.features, large.heldout.features)


# --- training -------------------------------------------------------------------------


def test_default_architecture_has_over_a_million_parameters() -> None:
    assert count_parameters((64, 1024, 768, 256, 1)) == 1_050_881
    assert count_parameters((64, *TrainSettings().hidden_sizes, 1)) >= 1_000_000


def test_tiny_mlp_learns_the_ground_truth(tiny_mlp: MLP) -> None:
    heldout = split_leads(3000, 2000, seed=7).heldout
    scores = tiny_mlp.scores(heldout.features)
    assert tiny_mlp.layer_sizes == (64, 32, 16, 1)
    assert tiny_mlp.parameter_count == count_parameters((64, 32, 16, 1)) == 2625
    assert roc_auc(heldout.converted, scores) > 0.75
    # and beats always predicting "not converted"
    assert accuracy(heldout.converted, scores) > 1 - heldout.conversion_rate


def test_training_is_deterministic(tiny_mlp: MLP) -> None:
    again = train_mlp(split_leads(3000, 2000, seed=7).train, TINY)
    assert all(np.array_equal(a, b) for a, b in zip(tiny_mlp.weights, again.mlp.weights, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(tiny_mlp.biases, again.mlp.biases, strict=True))
    assert again.epoch_losses[-1] < again.epoch_losses[0]


# --- export ---------------------------------------------------------------------------


def test_onnx_export_has_the_specified_signature(tiny_mlp: MLP) -> None:
    model = mlp_to_onnx(tiny_mlp)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)] == [("", 17)]
    (features,) = model.graph.input
    (score,) = model.graph.output
    assert (features.name, features.type.tensor_type.elem_type) == ("features", TensorProto.FLOAT)
    assert (score.name, score.type.tensor_type.elem_type) == ("score", TensorProto.FLOAT)
    assert [(d.dim_param, d.dim_value) for d in features.type.tensor_type.shape.dim] == [("batch", 0), ("", 64)]
    assert [(d.dim_param, d.dim_value) for d in score.type.tensor_type.shape.dim] == [("batch", 0), ("", 1)]
    assert {node.op_type for node in model.graph.node} == {"MatMul", "Add", "Relu", "Sigmoid"}


@pytest.mark.parametrize("rows", [1, 7, 300])
def test_onnx_export_matches_the_numpy_forward_pass(tmp_path: Path, tiny_mlp: MLP, rows: int) -> None:
    path = tmp_path / "m.onnx"
    save_onnx(mlp_to_onnx(tiny_mlp), path)
    features = generate_leads(rows, seed=rows).features
    outputs = run_model(open_session(path), {"features": features})
    assert outputs["score"].shape == (rows, 1)
    assert np.abs(outputs["score"] - tiny_mlp.scores(features)).max() < 1e-5


# --- quantization ---------------------------------------------------------------------


def test_int8_twin_is_smaller_and_agreement_is_measured(tmp_path: Path) -> None:
    split = split_leads(2000, 1000, seed=3)
    mlp = train_mlp(split.train, TrainSettings(hidden_sizes=(256, 128), epochs=1, seed=3)).mlp
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    save_onnx(mlp_to_onnx(mlp), fp32)
    quantize_int8(fp32, int8)
    assert int8.stat().st_size < 0.4 * fp32.stat().st_size
    assert {n.op_type for n in onnx.load(str(int8)).graph.node} >= {"MatMulInteger", "DynamicQuantizeLinear"}
    [agreement], skipped = compare_models(fp32, int8, {"features": split.heldout.features})
    assert skipped == {}
    assert (agreement.output, agreement.rows, agreement.class_rule) == ("score", 1000, "threshold 0.5")
    # really run: INT8 is close to FP32 but not identical
    assert 0 < agreement.mean_abs_diff < agreement.max_abs_diff < 0.1
    assert agreement.class_agreement > 0.95


def test_auc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.3
    scores = rng.integers(0, 20, 300) + labels * rng.integers(0, 5, 300)  # informative, with many ties
    positives, negatives = scores[labels], scores[~labels]
    wins = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    assert roc_auc(labels, scores) == pytest.approx(wins / (positives.size * negatives.size), abs=1e-12)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="positive and one negative"):
        roc_auc([1, 1], [0.2, 0.3])


# --- build and card -------------------------------------------------------------------


FILES = (FP32_FILE, INT8_FILE, CARD_FILE)


def build_tiny(
    out_dir: Path, force: bool = False, epochs: int = 3, log: Callable[[str], None] | None = None
) -> ModelCard:
    """A model of 1,185 parameters built from 1,000 leads: the whole pipeline in a tenth of a second."""
    return build_model(
        out_dir,
        seed=3,
        force=force,
        hidden_sizes=(16, 8),
        train_rows=1000,
        heldout_rows=500,
        epochs=epochs,
        batch_rows=64,
        learning_rate=3e-3,
        log=log,
    )


def _stats(out_dir: Path) -> dict[str, tuple[int, int]]:
    return {name: ((out_dir / name).stat().st_ino, (out_dir / name).stat().st_mtime_ns) for name in FILES}


def test_build_writes_files_and_a_truthful_card(tmp_path: Path) -> None:
    card = build_tiny(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)  # no temporary files left
    assert load_card(tmp_path) == card
    assert card.layer_sizes == [64, 16, 8, 1] and card.parameter_count == count_parameters((64, 16, 8, 1))
    assert (card.train_rows, card.heldout_rows, card.seed) == (1000, 500, 3)
    for record, name in ((card.fp32, FP32_FILE), (card.int8, INT8_FILE)):
        assert record.file == name
        assert record.size_bytes == (tmp_path / name).stat().st_size
        assert record.sha256 == sha256_file(tmp_path / name)
    assert 0.7 < card.fp32_heldout.auc < 1.0 and 0.7 < card.int8_heldout.auc < 1.0
    # the card's quality figures are those of the files themselves on the held-out leads
    heldout = split_leads(1000, 500, seed=3).heldout
    for record, quality in ((card.fp32, card.fp32_heldout), (card.int8, card.int8_heldout)):
        scores = run_model(open_session(tmp_path / record.file), {"features": heldout.features})["score"]
        assert (quality.auc, quality.accuracy) == (
            roc_auc(heldout.converted, scores),
            accuracy(heldout.converted, scores),
        )
    assert card.export_max_abs_diff < 1e-5
    assert card.agreement.rows == 500 and card.agreement.class_agreement > 0.9
    assert {"onnx", "onnxruntime"} <= set(card.versions)
    text = "\n".join(format_card(card, tmp_path))
    assert "64-16-8-1" in text and f"{card.parameter_count:,} parameters" in text and "AUC" in text


def test_build_is_idempotent_and_rebuilds_when_asked_or_changed(tmp_path: Path) -> None:
    first = build_tiny(tmp_path)
    before = _stats(tmp_path)
    messages: list[str] = []
    again = build_tiny(tmp_path, log=messages.append)
    assert again == first and _stats(tmp_path) == before
    assert messages == [f"model up to date in {tmp_path} (build {first.build_hash[:12]})"]

    forced = build_tiny(tmp_path, force=True)
    after_force = _stats(tmp_path)
    assert all(after_force[name] != before[name] for name in FILES)  # atomic replace: new files
    # same recipe, same bytes: training and export are deterministic
    assert (forced.fp32.sha256, forced.build_hash) == (first.fp32.sha256, first.build_hash)

    changed = build_tiny(tmp_path, epochs=4)
    assert changed.build_hash != first.build_hash and changed.build_params["epochs"] == 4
    assert _stats(tmp_path)[CARD_FILE] != after_force[CARD_FILE]


def test_build_rebuilds_when_a_file_no_longer_matches_the_card(tmp_path: Path) -> None:
    first = build_tiny(tmp_path)
    (tmp_path / INT8_FILE).write_bytes(b"tampered")
    rebuilt = build_tiny(tmp_path)
    assert rebuilt.int8.sha256 == sha256_file(tmp_path / INT8_FILE) != sha256_file(tmp_path / FP32_FILE)
    assert rebuilt.build_hash == first.build_hash


def test_build_refuses_impossible_parameters(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="seed must be 0 or more"):
        build_model(tmp_path, seed=-1)
    with pytest.raises(LabError, match="hidden sizes must be positive"):
        build_model(tmp_path, hidden_sizes=())
    assert not any(tmp_path.iterdir())


# --- `lab model quantize` on someone else's model --------------------------------------


def _two_input_model(path: Path) -> None:
    """x: float[N, 16] and ids: int64[N, seq] -> probs: float[N, 3] (softmax), id_sum: int64[N]."""
    rng = np.random.default_rng(1)
    weights = [
        numpy_helper.from_array(rng.standard_normal((16, 128)).astype(np.float32) * 0.3, "w1"),
        numpy_helper.from_array(np.zeros(128, np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((128, 3)).astype(np.float32) * 0.3, "w2"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["hr"]),
        helper.make_node("MatMul", ["hr", "w2"], ["logits"]),
        helper.make_node("ReduceSum", ["ids", "axis1"], ["id_sum"], keepdims=0),
        helper.make_node("Cast", ["id_sum"], ["id_sum_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["id_sum_f", "axis1"], ["id_col"]),
        helper.make_node("Add", ["logits", "id_col"], ["shifted"]),
        helper.make_node("Softmax", ["shifted"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "user_model",
        inputs=[
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "seq"]),
        ],
        outputs=[
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("id_sum", TensorProto.INT64, ["N"]),
        ],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_quantize_a_user_model_with_two_inputs(tmp_path: Path) -> None:
    path = tmp_path / "user.onnx"
    _two_input_model(path)
    report = quantize_user_model(path)
    assert report.int8_path == tmp_path / "user-int8.onnx" and report.int8_path.is_file()
    assert report.int8_size_bytes < report.fp32_size_bytes == path.stat().st_size
    # symbolic first dim -> a batch of 256, later symbolic dims -> 1, dtypes from the model
    assert report.input_shapes == {"x": ("float32", (256, 16)), "ids": ("int64", (256, 1))}
    by_name = {output.output: output for output in report.outputs}
    assert set(by_name) == {"probs", "id_sum"} and report.skipped_outputs == {}
    probs, id_sum = by_name["probs"], by_name["id_sum"]
    assert (probs.rows, probs.class_rule) == (256, "argmax")
    assert 0 < probs.max_abs_diff < 0.1 and probs.class_agreement > 0.9
    assert (id_sum.class_rule, id_sum.max_abs_diff, id_sum.class_agreement) == ("exact", 0.0, 1.0)


def test_quantize_command_prints_per_output_agreement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "user.onnx"
    _two_input_model(path)
    out = tmp_path / "elsewhere" / "small.onnx"
    run_model_quantize(path, out)
    printed = capsys.readouterr().out
    assert out.is_file() and not (tmp_path / "user-int8.onnx").exists()
    assert "x float32[256, 16]; ids int64[256, 1]" in printed
    assert "output probs: same class on" in printed and "(argmax)" in printed
    assert "output id_sum: same class on 100.00% of 256 rows (exact)" in printed


def test_sample_inputs_follow_each_element_type_and_shape() -> None:
    inputs = [
        helper.make_tensor_value_info("half", TensorProto.FLOAT16, ["B", 3]),
        helper.make_tensor_value_info("mask", TensorProto.BOOL, [2, "T"]),
        helper.make_tensor_value_info("bytes", TensorProto.UINT8, None),
    ]
    nodes = [helper.make_node("Identity", [i.name], [f"{i.name}_out"]) for i in inputs]
    outputs = [helper.make_tensor_value_info(f"{i.name}_out", i.type.tensor_type.elem_type, None) for i in inputs]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs))
    arrays = sample_inputs(model, rows=50, seed=0)
    assert {name: (a.dtype, a.shape) for name, a in arrays.items()} == {
        "half": (np.float16, (50, 3)),
        "mask": (np.bool_, (2, 1)),
        "bytes": (np.uint8, (50,)),
    }
    assert arrays["bytes"].max() < 10  # unsigned: at least 0 by type


@pytest.mark.parametrize("content", [b"this is not a model\n", b"", bytes(range(256)) * 8])
def test_a_file_that_is_not_onnx_is_a_one_line_lab_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as caught:
        run_model_quantize(path, None)
    assert isinstance(caught.value, LabError)
    assert str(caught.value).startswith(f"{path}: not ")
    assert "\n" not in caught.value.one_line()
    assert not (tmp_path / "garbage-int8.onnx").exists()


def test_a_missing_file_is_a_lab_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such file"):
        quantize_user_model(tmp_path / "absent.onnx")
