"""Where and how numbers are computed: seeds, device, precision."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from plankton_kedro.engine.errors import StageInputError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a CPU run is repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available (this rank's GPU), else CPU; otherwise as named."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"training.device is '{spec}' but CUDA is not available here")
    return torch.device(spec)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> fp16 on CUDA; bf16 on CPUs with AMX (where it pays off), else fp32."""
    if precision == "auto":
        if device.type == "cuda":
            return "fp16"
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        return "bf16" if amx else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise StageInputError(
            "training.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU"
        )
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)
