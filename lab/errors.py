"""Errors a user can cause or fix, each printed as one line with a hint.

    LabError                      exit 2 unless a subclass says otherwise
    ├── ConfigError               bad experiment file: names file, key and what was expected
    ├── EngineUnavailable         no Docker engine answers, or it cannot be started here
    ├── ImageError                an image is missing or its build failed
    ├── ModelFileError            a file is not an ONNX model the lab can load, run or quantize
    ├── ModelBuildError           the lead-scoring model cannot be built with the parameters given
    ├── WriteError                a result cannot be written (full disk, read-only folder)
    ├── CheckFailed               exit 1: the run worked, and a target was missed or a metric regressed
    │   └── BundleInvalid         exit 1: a bundle's file differs from its manifest
    └── InfrastructureError       exit 3: a container failed to start or died under us
        └── ServiceStartError     a readiness wait failed; carries the tail of the container log

Anything else reaching `lab.cli.main` is a bug and is shown with a traceback only under
`--debug`.
"""

from __future__ import annotations


class LabError(Exception):
    """A failure the user can act on; `str(err)` is the one line shown, `hint` follows it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def one_line(self) -> str:
        text = " ".join(str(self).split())
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConfigError(LabError):
    """An experiment file is invalid."""


class EngineUnavailable(LabError):
    """No Docker engine answers and none can be started by us."""


class ImageError(LabError):
    """An image is missing and cannot be built, or its build failed."""


class ModelFileError(LabError):
    """A file is not an ONNX model the lab can load, run or quantize."""


class ModelBuildError(LabError):
    """The model cannot be built with the parameters given."""


class WriteError(LabError):
    """A result could not be written (full disk, unwritable folder); nothing half-written is left."""


class CheckFailed(LabError):
    """The lab did its job and the answer is "no": a target missed, a regression, a failed check."""

    exit_code = 1


class BundleInvalid(CheckFailed):
    """A bundle does not match its manifest (a changed, missing or extra file)."""


class InfrastructureError(LabError):
    """The engine or a container failed while the lab was using it."""

    exit_code = 3


class ServiceStartError(InfrastructureError):
    """A service did not become ready; the message keeps the tail of its log."""
