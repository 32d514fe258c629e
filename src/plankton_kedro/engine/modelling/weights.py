"""Pretrained backbone weights: timm's ImageNet weights from the local hub cache or the hub,
or a local weights file, with errors that say how to work offline."""

from __future__ import annotations

import contextlib
import logging
import socket
from pathlib import Path
from urllib.parse import urlparse

import huggingface_hub
import timm
from torch import nn

from plankton_kedro.engine.errors import WeightsUnavailableError

logger = logging.getLogger(__name__)


def check_imagenet_weights(name: str) -> str:
    """Fetch (or find cached) ImageNet weights for ``name``; return their tag or fail clearly."""
    return pretrained_tag(imagenet_backbone(name), name)


def imagenet_backbone(name: str) -> nn.Module:
    """timm's pretrained backbone: from the local hub cache if there, else downloaded."""
    try:
        with _hub_offline():
            return timm.create_model(name, pretrained=True, num_classes=0)
    except Exception:  # not cached (or no such tag): try the hub below
        pass
    endpoint = urlparse(huggingface_hub.constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=5).close()
        return timm.create_model(name, pretrained=True, num_classes=0)
    except Exception as exc:  # network, hub and missing-tag errors all mean the same here
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise WeightsUnavailableError(
            f"Could not get ImageNet weights for timm model '{name}': they are not in the local "
            f"hub cache and {endpoint.hostname} could not be used ({reason}). "
            "Without internet access, download the weights on a computer that has it "
            f"(python -c \"import timm; timm.create_model('{name}', pretrained=True)\" fills "
            "the hub cache; or save the backbone's state_dict with safetensors) and run with "
            "--params model.pretrained=/path/to/weights.safetensors "
            "(or model.pretrained=none for random initialisation)."
        ) from exc


@contextlib.contextmanager
def _hub_offline():
    """Let huggingface_hub answer from its local cache only, without network requests."""
    previous = huggingface_hub.constants.HF_HUB_OFFLINE
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = previous


def pretrained_tag(backbone: nn.Module, name: str) -> str:
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    architecture = cfg.get("architecture", name.split(".")[0])
    tag = cfg.get("tag")
    return f"{architecture}.{tag}" if tag else architecture


def load_backbone_weights(backbone: nn.Module, path: Path, name: str) -> None:
    """Load a local timm weights file (safetensors or torch) into ``backbone``.

    Classifier weights in the file are ignored (the backbone has no head); any missing
    backbone weight or shape mismatch is an error naming the file and the model.
    """
    path = path.expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"Weights file {path} does not exist.")
    try:
        state = timm.models.load_state_dict(str(path), weights_only=True)
    except Exception as exc:
        raise WeightsUnavailableError(
            f"Could not read weights file {path}: {type(exc).__name__}: {exc}"
        ) from exc
    own = backbone.state_dict()
    head_prefixes = _head_prefixes(backbone)
    state = {k: v for k, v in state.items() if k in own or not k.startswith(head_prefixes)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        details = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''} ({len(keys)})"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", mismatched),
            )
            if keys
        )
        raise WeightsUnavailableError(
            f"Weights file {path} does not fit timm model '{name}' ({details}). "
            "Check that model.name is the architecture the file was saved from."
        )
    backbone.load_state_dict(state)
    logger.info("Loaded backbone weights for %s from %s", name, path)


def _head_prefixes(backbone: nn.Module) -> tuple[str, ...]:
    classifier = (getattr(backbone, "pretrained_cfg", None) or {}).get("classifier", "fc")
    names = classifier if isinstance(classifier, list | tuple) else [classifier]
    return (*(f"{n}." for n in names), "fc.", "classifier.", "head.")
