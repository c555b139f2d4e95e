"""A multilayer perceptron trained with numpy alone: manual backward pass, Adam, minibatches.

The lab needs a model that is heavy on matrix multiplies (so that INT8 and batching make a
measurable difference in the inference server) and that anyone can rebuild offline in
seconds, byte for byte. ReLU hidden layers, one sigmoid output, binary cross-entropy.
Everything is float32 and every random draw comes from one seeded Generator, so the same
seed and sizes give the same weights, bit for bit, on the same machine. Not across machines:
OpenBLAS picks its float32 GEMM kernel and blocking by CPU and thread count, which changes
the last bits of every product (OPENBLAS_NUM_THREADS=1 vs 2 already does); build
idempotency therefore trusts the sha256 recorded in the card, never a fixed expected hash.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lab.model.data import FEATURE_COUNT, FloatArray, Leads

# 64 -> 1024 -> 768 -> 256 -> 1: 1,050,881 parameters, 99.7 % of them in three MatMuls.
DEFAULT_HIDDEN_SIZES: tuple[int, ...] = (1024, 768, 256)


@dataclass(frozen=True)
class TrainSettings:
    """How to train: architecture, passes over the data, optimiser."""

    hidden_sizes: tuple[int, ...] = DEFAULT_HIDDEN_SIZES
    epochs: int = 4
    batch_rows: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 7

    def __post_init__(self) -> None:
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ValueError(f"hidden sizes must be positive, got {self.hidden_sizes}")
        if self.epochs < 1 or self.batch_rows < 1 or self.learning_rate <= 0:
            raise ValueError(f"epochs, batch rows and learning rate must be positive: {self}")


@dataclass(frozen=True)
class MLP:
    """Weights and biases of a ReLU network with one sigmoid output; layer i is x @ W[i] + b[i]."""

    weights: tuple[FloatArray, ...]
    biases: tuple[FloatArray, ...]

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (int(self.weights[0].shape[0]), *(int(w.shape[1]) for w in self.weights))

    @property
    def parameter_count(self) -> int:
        return sum(int(w.size) + int(b.size) for w, b in zip(self.weights, self.biases, strict=True))

    def logits(self, features: FloatArray) -> FloatArray:
        """Pre-sigmoid outputs, shape (rows, 1)."""
        hidden = features
        for weight, bias in zip(self.weights[:-1], self.biases[:-1], strict=True):
            hidden = np.maximum(hidden @ weight + bias, np.float32(0))
        return hidden @ self.weights[-1] + self.biases[-1]

    def scores(self, features: FloatArray) -> FloatArray:
        """Conversion probabilities, shape (rows, 1): the reference the ONNX export must match."""
        return _sigmoid(self.logits(features))


@dataclass(frozen=True)
class TrainedMLP:
    """The network, how long training took and the mean training loss of each epoch."""

    mlp: MLP
    training_s: float
    epoch_losses: tuple[float, ...]


def count_parameters(layer_sizes: tuple[int, ...]) -> int:
    """Weights plus biases of a dense network with these layer widths (input first)."""
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in itertools.pairwise(layer_sizes))


def train_mlp(train: Leads, settings: TrainSettings) -> TrainedMLP:
    """Fit an MLP to the leads with Adam on minibatch binary cross-entropy."""
    began = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    sizes = (FEATURE_COUNT, *settings.hidden_sizes, 1)
    mlp = _initial_mlp(sizes, rng, base_rate=train.conversion_rate)
    params = [p for pair in zip(mlp.weights, mlp.biases, strict=True) for p in pair]
    adam = _Adam(params, settings.learning_rate, settings.weight_decay)
    features = train.features
    labels = train.converted.astype(np.float32).reshape(-1, 1)
    epoch_losses = []
    for _ in range(settings.epochs):
        order = rng.permutation(train.rows)
        loss_sum = 0.0
        for start in range(0, train.rows, settings.batch_rows):
            batch = order[start : start + settings.batch_rows]
            loss, grads = _loss_and_gradients(mlp, features[batch], labels[batch])
            adam.step(grads)
            loss_sum += loss * len(batch)
        epoch_losses.append(loss_sum / max(train.rows, 1))
    return TrainedMLP(mlp=mlp, training_s=time.perf_counter() - began, epoch_losses=tuple(epoch_losses))


def _initial_mlp(sizes: tuple[int, ...], rng: np.random.Generator, base_rate: float) -> MLP:
    """He-normal weights for ReLU layers; the output bias starts at the base rate's log-odds."""
    weights = []
    biases = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        scale = np.sqrt(2.0 / fan_in)
        weights.append((rng.standard_normal((fan_in, fan_out)) * scale).astype(np.float32))
        biases.append(np.zeros(fan_out, dtype=np.float32))
    # Starting at the base rate saves the first epoch from just learning the class balance.
    rate = min(max(base_rate, 1e-3), 1 - 1e-3)
    biases[-1][:] = np.log(rate / (1 - rate))
    weights[-1] *= np.float32(0.1)
    return MLP(weights=tuple(weights), biases=tuple(biases))


def _loss_and_gradients(mlp: MLP, features: FloatArray, labels: FloatArray) -> tuple[float, list[FloatArray]]:
    """Mean binary cross-entropy of the batch and its gradient for every parameter, in order W0, b0, W1, ..."""
    activations = [features]
    for weight, bias in zip(mlp.weights[:-1], mlp.biases[:-1], strict=True):
        activations.append(np.maximum(activations[-1] @ weight + bias, np.float32(0)))
    logits = activations[-1] @ mlp.weights[-1] + mlp.biases[-1]
    # BCE from logits: max(z, 0) - z*y + log(1 + exp(-|z|)) never overflows.
    loss = np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))
    # d(mean BCE)/d(logit) = (sigmoid(z) - y) / rows
    delta = (_sigmoid(logits) - labels) / np.float32(len(labels))
    grads: list[FloatArray] = []
    for layer in range(len(mlp.weights) - 1, -1, -1):
        grads.append(delta.sum(axis=0))
        grads.append(activations[layer].T @ delta)
        if layer:
            delta = (delta @ mlp.weights[layer].T) * (activations[layer] > 0)
    grads.reverse()
    return float(loss.mean()), grads


class _Adam:
    """Adam with decoupled weight decay (AdamW) on the weight matrices; updates in place."""

    def __init__(self, params: list[FloatArray], learning_rate: float, weight_decay: float) -> None:
        self.params = params
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.beta1, self.beta2, self.epsilon = 0.9, 0.999, 1e-8
        self.first = [np.zeros_like(p) for p in params]
        self.second = [np.zeros_like(p) for p in params]
        self.steps = 0

    def step(self, grads: list[FloatArray]) -> None:
        self.steps += 1
        # Bias corrections folded into the step size, as in the Adam paper's section 2.
        step_size = self.learning_rate * np.sqrt(1 - self.beta2**self.steps) / (1 - self.beta1**self.steps)
        for param, grad, first, second in zip(self.params, grads, self.first, self.second, strict=True):
            first *= np.float32(self.beta1)
            first += np.float32(1 - self.beta1) * grad
            second *= np.float32(self.beta2)
            second += np.float32(1 - self.beta2) * np.square(grad)
            if param.ndim == 2 and self.weight_decay:
                param *= np.float32(1 - self.learning_rate * self.weight_decay)
            param -= np.float32(step_size) * first / (np.sqrt(second) + np.float32(self.epsilon))


def _sigmoid(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    # exp of a large negative logit overflows to inf harmlessly (1 / inf == 0), but warns.
    with np.errstate(over="ignore"):
        return np.float32(1) / (np.float32(1) + np.exp(-x))
