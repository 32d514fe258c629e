"""A versioned ONNX model file."""

from __future__ import annotations

from kedro.io import DatasetError

from ._previews import JSONPreview
from ._versioned import VersionedFileDataset


class OnnxModelDataset(VersionedFileDataset):
    """The serialised ONNX model (``bytes``), written atomically; loads back as bytes, which
    ``onnxruntime.InferenceSession`` accepts as they are."""

    def load(self) -> bytes:
        with self._fs.open(self._load_path(), mode="rb") as stream:
            return stream.read()

    def save(self, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray):
            raise DatasetError(f"an ONNX model to save must be bytes, not {type(data).__name__}")
        self._write_atomically(lambda stream: stream.write(data))

    def preview(self) -> JSONPreview:
        """kedro-viz: the graph's inputs, outputs and opset of the latest version."""
        import json

        import onnx

        graph = onnx.load_from_string(self.load())
        return JSONPreview(
            json.dumps(
                {
                    "inputs": [i.name for i in graph.graph.input],
                    "outputs": [o.name for o in graph.graph.output],
                    "opset": [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")],
                }
            )
        )
