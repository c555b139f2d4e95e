"""INT8 twins of FP32 ONNX models, and how closely the twin agrees - measured, never assumed.

`quantize_dynamic` stores MatMul weights as int8 and quantizes activations on the fly, so
no calibration data is needed. Agreement is computed by running BOTH models in onnxruntime
on the same inputs: the lab's own held-out leads, or for a user's model, inputs generated
from its signature (every input: dtype from the model's element type, symbolic first
dimension -> a batch of rows, other symbolic dimensions -> 1).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from onnx import TensorProto
from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

from lab.errors import ModelFileError
from lab.files import atomic_output

CLASS_THRESHOLD = 0.5
SAMPLE_ROWS = 256

ClassRule = Literal["threshold 0.5", "argmax", "exact"]
Inputs = Mapping[str, npt.NDArray[Any]]

FLOAT_TYPES = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64, TensorProto.FLOAT16: np.float16}
INT_TYPES = {
    TensorProto.INT8: np.int8,
    TensorProto.INT16: np.int16,
    TensorProto.INT32: np.int32,
    TensorProto.INT64: np.int64,
    TensorProto.UINT8: np.uint8,
    TensorProto.UINT16: np.uint16,
    TensorProto.UINT32: np.uint32,
    TensorProto.UINT64: np.uint64,
}


@dataclass(frozen=True)
class OutputAgreement:
    """FP32 vs INT8 on one output: absolute differences and the share of rows of the same class.

    A row's class is score >= 0.5 when the output has one value per row, the argmax when it has
    several, and the exact values for integer or boolean outputs.
    """

    output: str
    rows: int
    max_abs_diff: float
    mean_abs_diff: float
    class_agreement: float
    class_rule: ClassRule


@dataclass(frozen=True)
class QuantizeReport:
    """What `lab model quantize` did: both files, the inputs it generated, agreement per output."""

    fp32_path: Path
    int8_path: Path
    fp32_size_bytes: int
    int8_size_bytes: int
    input_shapes: dict[str, tuple[str, tuple[int, ...]]]
    outputs: tuple[OutputAgreement, ...]
    skipped_outputs: dict[str, str]


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """Write the dynamic-INT8 twin of `fp32_path` to `int8_path`, atomically."""
    with atomic_output(int8_path) as temporary, _without_preprocessing_hint():
        quantize_dynamic(fp32_path, temporary, weight_type=QuantType.QInt8)


def open_session(path: Path) -> Any:
    """An onnxruntime CPU session for the model at `path`, quiet below errors."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_model(session: Any, inputs: Inputs) -> dict[str, Any]:
    """Every output of one run, by name (tensors as numpy arrays; sequences and maps as ORT gives them)."""
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(inputs)), strict=True))


def compare_models(fp32_path: Path, int8_path: Path, inputs: Inputs) -> tuple[list[OutputAgreement], dict[str, str]]:
    """Run both models on `inputs` and compare every output; also returns outputs it could not compare."""
    fp32_outputs = run_model(open_session(fp32_path), inputs)
    int8_outputs = run_model(open_session(int8_path), inputs)
    return compare_outputs(fp32_outputs, int8_outputs)


def compare_outputs(
    fp32_outputs: Mapping[str, Any], int8_outputs: Mapping[str, Any]
) -> tuple[list[OutputAgreement], dict[str, str]]:
    """Agreement of each output present in both runs, and why the others were skipped."""
    agreements: list[OutputAgreement] = []
    skipped: dict[str, str] = {}
    for name, expected in fp32_outputs.items():
        actual = int8_outputs.get(name)
        if not isinstance(expected, np.ndarray) or not isinstance(actual, np.ndarray):
            skipped[name] = "not a tensor in both models"
        elif expected.shape != actual.shape:
            skipped[name] = f"shapes differ: {expected.shape} vs {actual.shape}"
        elif expected.size == 0:
            skipped[name] = "empty"
        else:
            agreements.append(_agreement(name, expected, actual))
    return agreements, skipped


def _agreement(name: str, expected: npt.NDArray[Any], actual: npt.NDArray[Any]) -> OutputAgreement:
    rows = expected.shape[0] if expected.ndim else 1
    by_row_expected = expected.reshape(rows, -1)
    by_row_actual = actual.reshape(rows, -1)
    diff = np.abs(by_row_expected.astype(np.float64) - by_row_actual.astype(np.float64))
    rule: ClassRule
    if not np.issubdtype(expected.dtype, np.floating):
        rule = "exact"
        same = np.all(by_row_expected == by_row_actual, axis=1)
    elif by_row_expected.shape[1] == 1:
        rule = "threshold 0.5"
        same = (by_row_expected[:, 0] >= CLASS_THRESHOLD) == (by_row_actual[:, 0] >= CLASS_THRESHOLD)
    else:
        rule = "argmax"
        same = by_row_expected.argmax(axis=1) == by_row_actual.argmax(axis=1)
    return OutputAgreement(
        output=name,
        rows=rows,
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        class_agreement=float(same.mean()),
        class_rule=rule,
    )


def load_onnx_model(path: Path) -> onnx.ModelProto:
    """The model at `path`, checked; any reason it is not a valid ONNX model is a ModelFileError."""
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ModelFileError(f"{path}: not an ONNX model ({_first_line(exc)})") from None
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: not a valid ONNX model ({_first_line(exc)})") from None
    if not model.graph.output:
        raise ModelFileError(f"{path}: the model has no outputs")
    return model


def sample_inputs(model: onnx.ModelProto, rows: int = SAMPLE_ROWS, seed: int = 0) -> dict[str, npt.NDArray[Any]]:
    """Random inputs matching the model's signature: floats ~ N(0, 1), ints in [0, 10), bools."""
    rng = np.random.default_rng(seed)
    weights = {initializer.name for initializer in model.graph.initializer}
    inputs: dict[str, npt.NDArray[Any]] = {}
    for value in model.graph.input:
        if value.name in weights:  # before IR 4, weights were listed as inputs too
            continue
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            raise ModelFileError(f"input {value.name!r} is a {kind}, not a tensor: cannot generate data for it")
        tensor = value.type.tensor_type
        shape = _concrete_shape(tensor, rows)
        if tensor.elem_type in FLOAT_TYPES:
            inputs[value.name] = rng.standard_normal(shape).astype(FLOAT_TYPES[tensor.elem_type])
        elif tensor.elem_type in INT_TYPES:
            inputs[value.name] = rng.integers(0, 10, size=shape).astype(INT_TYPES[tensor.elem_type])
        elif tensor.elem_type == TensorProto.BOOL:
            inputs[value.name] = rng.random(shape) < 0.5
        else:
            type_name = TensorProto.DataType.Name(tensor.elem_type)
            raise ModelFileError(f"input {value.name!r} has element type {type_name}: cannot generate data for it")
    return inputs


def _concrete_shape(tensor: onnx.TypeProto.Tensor, rows: int) -> tuple[int, ...]:
    """Fixed dimensions as given; a symbolic or unknown first one is `rows`, any later one 1."""
    if not tensor.HasField("shape"):
        return (rows,)  # rank unknown: a batch of scalars is the likeliest reading
    shape = []
    for index, dim in enumerate(tensor.shape.dim):
        if dim.WhichOneof("value") == "dim_value":
            shape.append(dim.dim_value)
        else:
            shape.append(rows if index == 0 else 1)
    return tuple(shape)


def default_int8_path(fp32_path: Path) -> Path:
    """`<stem>-int8.onnx` beside the FP32 model."""
    return fp32_path.with_name(f"{fp32_path.stem}-int8.onnx")


def quantize_user_model(path: Path, out: Path | None = None, rows: int = SAMPLE_ROWS, seed: int = 0) -> QuantizeReport:
    """Quantize a user's FP32 model to INT8 and measure agreement on inputs generated from its signature."""
    model = load_onnx_model(path)
    try:
        inputs = sample_inputs(model, rows=rows, seed=seed)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    del model  # the weights are loaded again by onnxruntime; do not hold two copies
    int8_path = out if out is not None else default_int8_path(path)
    if int8_path.resolve() == path.resolve():
        raise ModelFileError(f"{path}: the INT8 output would overwrite the input", hint="pass another output path")
    try:
        fp32_outputs = run_model(open_session(path), inputs)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no base class but Exception
        raise ModelFileError(f"{path}: onnxruntime cannot run it ({_first_line(exc)})") from None
    try:
        quantize_int8(path, int8_path)
    except OSError as exc:
        raise ModelFileError(f"{int8_path}: cannot write: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 - quantize_dynamic raises whatever its graph passes raise
        raise ModelFileError(f"{path}: onnxruntime cannot quantize it ({_first_line(exc)})") from None
    try:
        int8_outputs = run_model(open_session(int8_path), inputs)
    except Exception as exc:  # noqa: BLE001 - as above
        raise ModelFileError(f"{int8_path}: onnxruntime cannot run the INT8 model ({_first_line(exc)})") from None
    agreements, skipped = compare_outputs(fp32_outputs, int8_outputs)
    return QuantizeReport(
        fp32_path=path,
        int8_path=int8_path,
        fp32_size_bytes=path.stat().st_size,
        int8_size_bytes=int8_path.stat().st_size,
        input_shapes={name: (str(array.dtype), tuple(array.shape)) for name, array in inputs.items()},
        outputs=tuple(agreements),
        skipped_outputs=skipped,
    )


@contextmanager
def _without_preprocessing_hint() -> Iterator[None]:
    """Drop the root-logger advice quantize_dynamic prints on every call; keep any other warning.

    The advice (run quant_pre_process first) is about shape inference and graph fusions that
    do not change plain MatMul layers.
    """

    def not_the_hint(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")

    root = logging.getLogger()
    root.addFilter(not_the_hint)
    try:
        yield
    finally:
        root.removeFilter(not_the_hint)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.splitlines()[0].split())[:200]
