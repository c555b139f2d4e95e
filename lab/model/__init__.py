"""The lead-scoring model the inference experiments serve, built here from synthetic data.

data      seeded synthetic leads (64 features, "converted" label), train / held-out split
train     numpy MLP: manual backward pass, Adam, minibatches
export    the MLP as an ONNX graph ("features" [batch, 64] -> "score" [batch, 1])
quantize  dynamic INT8 twin and FP32-vs-INT8 agreement from real onnxruntime runs
card      card.json (metrics, sizes, hashes), AUC, atomic file writes
build     all of the above, idempotent: `build_model(out_dir)`
"""
