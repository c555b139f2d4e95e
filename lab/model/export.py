"""The trained MLP as an ONNX graph, built node by node with onnx.helper.

One input "features" (float32, ["batch", 64]) and one output "score" (float32, ["batch", 1]).
Each layer is MatMul + Add, hidden layers end in Relu and the last one in Sigmoid: plain
MatMuls are what `quantize_dynamic` turns into integer kernels, and the symbolic batch
dimension lets the inference server send any batch size to the same model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import onnx
from onnx import TensorProto, helper, numpy_helper

from lab.files import write_atomic
from lab.model.train import MLP

INPUT_NAME = "features"
OUTPUT_NAME = "score"
BATCH_DIM = "batch"
OPSET = 17
# IR 8 (ONNX 1.10) is understood by every onnxruntime the lab supports (1.18 and later).
IR_VERSION = 8


def mlp_to_onnx(mlp: MLP, doc: str = "", metadata: Mapping[str, str] | None = None) -> onnx.ModelProto:
    """A checked ONNX model computing exactly `mlp.scores`."""
    layer_count = len(mlp.weights)
    initializers = []
    nodes = []
    current = INPUT_NAME
    for layer, (weight, bias) in enumerate(zip(mlp.weights, mlp.biases, strict=True)):
        weight_name, bias_name = f"layer{layer}.weight", f"layer{layer}.bias"
        initializers += [numpy_helper.from_array(weight, weight_name), numpy_helper.from_array(bias, bias_name)]
        product, summed = f"layer{layer}.matmul", f"layer{layer}.add"
        nodes.append(helper.make_node("MatMul", [current, weight_name], [product], name=product))
        nodes.append(helper.make_node("Add", [product, bias_name], [summed], name=summed))
        last = layer == layer_count - 1
        activated = OUTPUT_NAME if last else f"layer{layer}.relu"
        nodes.append(helper.make_node("Sigmoid" if last else "Relu", [summed], [activated], name=activated))
        current = activated
    graph = helper.make_graph(
        nodes,
        "lead_scoring_mlp",
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, mlp.layer_sizes[0]])],
        outputs=[helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, 1])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="ablab",
        doc_string=doc,
    )
    helper.set_model_props(model, dict(metadata or {}))
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(model: onnx.ModelProto, path: Path) -> None:
    """Write the model as one self-contained file, atomically."""
    write_atomic(path, model.SerializeToString())
