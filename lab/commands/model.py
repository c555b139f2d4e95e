"""`lab model build|quantize`: the lead-scoring model, and INT8 twins of any FP32 ONNX model."""

from __future__ import annotations

from pathlib import Path

import click

from lab.model.build import FP32_FILE, INT8_FILE, build_model, default_model_dir
from lab.model.card import ModelCard
from lab.model.quantize import QuantizeReport, quantize_user_model


def run_model_build(out_dir: Path | None, seed: int, force: bool) -> None:
    """Build (or confirm) the lead-scoring model and print its card in a few lines."""
    out_dir = out_dir if out_dir is not None else default_model_dir()
    card = build_model(out_dir, seed=seed, force=force, log=click.echo)
    for line in format_card(card, out_dir):
        click.echo(line)


def run_model_quantize(path: Path, out: Path | None) -> None:
    """Quantize a user's FP32 model to INT8 (`<stem>-int8.onnx` beside it unless `out`) and print agreement."""
    report = quantize_user_model(path, out)
    for line in format_quantize_report(report):
        click.echo(line)


def format_card(card: ModelCard, out_dir: Path) -> list[str]:
    """The card as the lines a person wants after a build."""
    architecture = "-".join(str(size) for size in card.layer_sizes)
    agreement = card.agreement
    return [
        f"{card.name} (seed {card.seed}, build {card.build_hash[:12]}) in {out_dir}",
        f"  architecture  {architecture}, {card.parameter_count:,} parameters; "
        f"trained on {card.train_rows:,} leads in {card.training_s:.1f} s",
        f"  fp32          {FP32_FILE:<16} {card.fp32.size_bytes:>11,} bytes   "
        f"accuracy {card.fp32_heldout.accuracy:.3f}   AUC {card.fp32_heldout.auc:.3f}",
        f"  int8          {INT8_FILE:<16} {card.int8.size_bytes:>11,} bytes   "
        f"accuracy {card.int8_heldout.accuracy:.3f}   AUC {card.int8_heldout.auc:.3f}",
        f"  agreement     same class on {agreement.class_agreement:.2%} of {agreement.rows:,} held-out leads; "
        f"|fp32 - int8| max {agreement.max_abs_diff:.4f}, mean {agreement.mean_abs_diff:.4f}",
        f"  card          {out_dir / 'card.json'}",
    ]


def format_quantize_report(report: QuantizeReport) -> list[str]:
    """Sizes, the inputs that were generated, and agreement per output."""
    ratio = report.int8_size_bytes / report.fp32_size_bytes if report.fp32_size_bytes else 0.0
    generated = "; ".join(
        f"{name} {dtype}[{', '.join(map(str, shape))}]" for name, (dtype, shape) in report.input_shapes.items()
    )
    lines = [
        f"fp32  {report.fp32_path}  {report.fp32_size_bytes:,} bytes",
        f"int8  {report.int8_path}  {report.int8_size_bytes:,} bytes ({ratio:.0%} of fp32)",
        f"inputs generated from the model's signature: {generated or 'none'}",
    ]
    for output in report.outputs:
        lines.append(
            f"output {output.output}: same class on {output.class_agreement:.2%} of {output.rows:,} rows "
            f"({output.class_rule}); |fp32 - int8| max {output.max_abs_diff:.4g}, mean {output.mean_abs_diff:.4g}"
        )
    for name, reason in report.skipped_outputs.items():
        lines.append(f"output {name}: not compared ({reason})")
    return lines
