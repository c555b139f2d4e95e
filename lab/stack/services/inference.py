"""The ONNX inference server; the model file is copied into the container at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testcontainers.core.container import DockerContainer

from lab.config.services import InferenceConfig
from lab.errors import LabError
from lab.stack.container import ReadyOrExited, host_port
from lab.stack.endpoint import Endpoint
from lab.stack.services.base import ServiceDefinition
from lab.stack.services.http import get_json, post_json

MODELS_DIR = Path(__file__).resolve().parents[3] / "models" / "lead-scoring"
MODEL_IN_CONTAINER = "/models/model.onnx"


def resolve_model(model: str) -> tuple[Path, str]:
    """The model file and its precision: "fp32"/"int8" are the built lead-scoring model."""
    if model in ("fp32", "int8"):
        path = MODELS_DIR / f"model-{model}.onnx"
        if not path.exists():
            raise LabError(f"model file {path} does not exist", hint="run `lab model build` (make setup does)")
        return path, model
    path = Path(model).expanduser()
    if not path.is_file():
        raise LabError(f"model file {path} does not exist", hint='use "fp32", "int8" or the path of an .onnx file')
    return path, "int8" if "int8" in path.name.lower() else "fp32"


class InferenceService(ServiceDefinition):
    kind = "inference"
    port = 8000

    def container(self, docker_kwargs: dict[str, Any]) -> DockerContainer:
        config = self.config
        assert isinstance(config, InferenceConfig)
        model_path, precision = resolve_model(config.model)
        self.model_path, self.precision = model_path, precision
        command = ["python", "-m", "lab.services.inference_server", "--host", "0.0.0.0", "--port", str(self.port)]
        command += ["--model", MODEL_IN_CONTAINER, "--precision", precision, "--threads", str(config.threads)]
        command += ["--max-rows", str(config.max_rows)]
        if config.batching:
            command += ["--batching", "--max-batch", str(config.max_batch), "--max-delay-ms", str(config.max_delay_ms)]
        container = DockerContainer(self.image, **docker_kwargs).with_command([*command, *config.command])
        container.with_copy_into_container(model_path, MODEL_IN_CONTAINER)
        container.waiting_for(
            ReadyOrExited(
                lambda: get_json(f"http://127.0.0.1:{host_port(container, self.port)}/health", 2),
                config.startup_timeout_s,
            )
        )
        return container

    def url(self, host_port: int) -> str:
        return f"http://127.0.0.1:{host_port}"

    def params(self) -> dict[str, str]:
        return {"model": str(self.model_path), "precision": self.precision}

    @staticmethod
    def check(endpoint: Endpoint) -> str:
        health = get_json(f"{endpoint.url}/health")
        answer = post_json(f"{endpoint.url}/predict", {"rows": [[0.0] * int(health["features"])]})
        return (
            f"POST /predict -> score {answer['scores'][0]:.4f} ({health['precision']}, {health['features']} features)"
        )
