"""Typed, user-facing errors.

Every error raised at a boundary (CLI argument, file, artifact, device) is a
SegedgeError whose message names what was expected and what was received, so
a CLI can print it as one line and exit non-zero without a traceback.
"""

from __future__ import annotations


class SegedgeError(Exception):
    """Base of all user-facing errors; `str(err)` is a complete one-line message."""

    exit_code = 2


class InputError(SegedgeError):
    """A value given by the user does not fit."""

    def __init__(self, what: str, expected: str, received: object) -> None:
        self.what, self.expected, self.received = what, expected, received
        super().__init__(f"{what}: expected {expected}, got {received}")


class ArtifactError(SegedgeError):
    """An ONNX/plan file is missing, unreadable or not a segmentation model."""


class SourceError(SegedgeError):
    """A frame source (camera, file, stream) cannot be opened or read."""


class BackendUnavailableError(SegedgeError):
    """The requested backend/provider/device is not available on this machine."""


class ShapeError(SegedgeError):
    """A frame or tensor shape is outside what the artifact accepts."""


class ExportError(SegedgeError):
    """Exporting to ONNX failed (both exporters, or a post-processing step)."""


class VerificationError(SegedgeError):
    """The exported artifact does not match PyTorch within the gate."""

    exit_code = 3


class CheckpointError(SegedgeError):
    """A checkpoint or pretrained weight file is missing or does not fit the model."""


class BackendClosedError(SegedgeError):
    """``infer`` on a backend that is closed, or was closed while the call waited for an
    execution slot (a backend running several calls at once)."""


class DegradedRunError(SegedgeError):
    """The run finished, but not as asked: source lost, no frame readable, outputs incomplete."""

    exit_code = 4
