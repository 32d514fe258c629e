"""Export: the model ``predict`` would use, as a versioned ONNX file and its JSON sidecar."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
