"""Applying "unknown" thresholds: one global, or one per predicted class (numpy only, so that
the ONNX runtime path can use it without torch or matplotlib)."""

from __future__ import annotations

import numpy as np

__all__ = ["UNKNOWN", "accepted", "class_thresholds_array"]

#: The label of an image below its threshold.
UNKNOWN = "unknown"


def class_thresholds_array(
    class_names: list[str], thresholds: dict[str, float] | None, fallback: float | None
) -> np.ndarray | None:
    """Per-class thresholds in class order (``fallback`` for a class without one); None when
    there is nothing to reject with."""
    if not thresholds and fallback is None:
        return None
    default = -np.inf if fallback is None else fallback
    return np.array([(thresholds or {}).get(name, default) for name in class_names], float)


def accepted(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Whether each image's top probability reaches its predicted class's threshold."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    return probabilities.max(axis=1) >= thresholds[predicted]
