"""The paper's network: timm backbone -> 512-d bottleneck -> weight-normalised classifier."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from plankton_kedro.engine.checkpoint import Checkpoint
from plankton_kedro.engine.config import unknown_timm_model
from plankton_kedro.engine.errors import CheckpointError, ModelConfigError

from .weights import imagenet_backbone, load_backbone_weights


class PlanktonNet(nn.Module):
    """Backbone features -> bottleneck (Linear, BN or LN, ReLU or GELU) -> classifier.

    The normalisation and activation of the bottleneck follow the backbone's family:
    BatchNorm1d + ReLU for convolutional nets with BatchNorm2d and ReLU, LayerNorm + GELU
    otherwise (ViTs, ConvNeXt), as in the paper's code.

    ``feature_dim`` is the width of the backbone's pooled output; ``None`` measures it with
    one forward pass at the backbone's default input size (see :func:`backbone_output_dim`).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        bottleneck_dim: int = 512,
        *,
        feature_dim: int | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        if feature_dim is None:
            feature_dim = backbone_output_dim(backbone, _model_label(backbone))
        modules = list(backbone.modules())
        has_batchnorm = any(isinstance(m, nn.BatchNorm2d) for m in modules)
        uses_relu = any(isinstance(m, nn.ReLU | nn.ReLU6) for m in modules)
        self.bottleneck = nn.Sequential(
            nn.Linear(feature_dim, bottleneck_dim),
            nn.BatchNorm1d(bottleneck_dim) if has_batchnorm else nn.LayerNorm(bottleneck_dim),
            nn.ReLU(inplace=True) if uses_relu else nn.GELU(),
        )
        self.classifier = weight_norm(nn.Linear(bottleneck_dim, num_classes))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return backbone features, bottleneck features and class logits."""
        features = self.backbone(images)
        embedding = self.bottleneck(features)
        return features, embedding, self.classifier(embedding)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier for another class set (stage 2 of a transfer route)."""
        dim = self.classifier.in_features
        self.classifier = weight_norm(nn.Linear(dim, num_classes))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by part, for per-part learning rates."""
        return {
            "backbone": list(self.backbone.parameters()),
            "bottleneck": list(self.bottleneck.parameters()),
            "classifier": list(self.classifier.parameters()),
        }


def build_model(
    name: str,
    num_classes: int,
    *,
    pretrained: str = "none",
    bottleneck_dim: int = 512,
    image_size: int | None = None,
    seed: int | None = None,
) -> tuple[PlanktonNet, str | None]:
    """Build ``PlanktonNet`` on timm backbone ``name``; return it and the weights' identity.

    ``pretrained`` is ``none`` (random init), ``imagenet`` (the packaged weights for
    ``tf_efficientnet_lite0/1/2``, else timm's default pretrained tag, downloaded from the hub)
    or the path of a local timm weights file. The identity is the packaged weights' origin
    (package, version, SHA-256), the exact timm tag (e.g. ``convnext_base.fb_in22k``) or the
    file path, ``None`` for random.
    ``image_size`` is the crop side the network will see (``data.image_size``; default: the
    model's own input size): the bottleneck is sized by a forward pass at that size, so a
    model that rejects it (a ViT or Swin at another size) fails here with a
    :class:`ModelConfigError`, not in the first training step. ``seed``: draw the random
    weights from this seed without touching the global random state (default: the global one).
    """
    check_model_name(name)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return _build_model(name, num_classes, pretrained, bottleneck_dim, image_size)


def _build_model(
    name: str, num_classes: int, pretrained: str, bottleneck_dim: int, image_size: int | None
) -> tuple[PlanktonNet, str | None]:
    if pretrained == "none":
        backbone = timm.create_model(name, pretrained=False, num_classes=0)
        source = None
    elif pretrained == "imagenet":
        backbone, source = imagenet_backbone(name)
    else:
        backbone = timm.create_model(name, pretrained=False, num_classes=0)
        load_backbone_weights(backbone, Path(pretrained), name)
        source = str(pretrained)
    feature_dim = backbone_output_dim(backbone, name, image_size)
    return PlanktonNet(backbone, num_classes, bottleneck_dim, feature_dim=feature_dim), source


def model_from_checkpoint(checkpoint: Checkpoint, *, image_size: int | None = None) -> PlanktonNet:
    """Rebuild the network stored in ``checkpoint`` (no download: random init, then load).

    ``image_size``: the crop side it will be used at (default: the checkpoint's own).
    """
    unknown = unknown_timm_model(checkpoint.model_name)
    if unknown:  # a file made with a newer timm, or edited
        raise CheckpointError(f"checkpoint {checkpoint.label}: {unknown}")
    net, _ = build_model(
        checkpoint.model_name,
        len(checkpoint.class_names),
        bottleneck_dim=checkpoint.bottleneck_dim,
        image_size=image_size or checkpoint.preprocessing.image_size,
    )
    try:
        net.load_state_dict(checkpoint.state_dict)
    except RuntimeError as exc:  # weights of another network, class count or bottleneck
        raise CheckpointError(
            f"checkpoint {checkpoint.label}: its weights do not fit the network it names "
            f"({checkpoint.model_name}, {len(checkpoint.class_names)} classes, bottleneck "
            f"{checkpoint.bottleneck_dim}): {_first_mismatch(str(exc))}"
        ) from None
    return net


def _first_mismatch(message: str) -> str:
    """The first concrete line of torch's ``load_state_dict`` error (a size mismatch or the
    missing / unexpected keys), without its advice."""
    lines = [line.strip() for line in message.splitlines()[1:] if line.strip()]
    first = lines[0] if lines else message.strip()
    return first[:300] + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")


def check_model_name(name: str) -> None:
    """Fail with the closest timm names when ``name`` (model.name) is not a timm model."""
    unknown = unknown_timm_model(name)
    if unknown:
        raise ModelConfigError(f"model.name: {unknown}")


def check_image_size(name: str, image_size: int) -> None:
    """Fail now, with :class:`ModelConfigError`, if timm model ``name`` rejects ``image_size``
    (a randomly initialised backbone, one forward pass): for a caller that builds the real
    network elsewhere, e.g. in DDP worker processes whose errors come back as tracebacks."""
    check_model_name(name)
    backbone_output_dim(timm.create_model(name, pretrained=False, num_classes=0), name, image_size)


def backbone_output_dim(backbone: nn.Module, name: str, image_size: int | None = None) -> int:
    """Width of ``backbone``'s pooled output, measured by one forward pass at ``image_size``.

    ``num_features`` is not it for every timm model: MobileNetV3/V4, GhostNet, HGNetV2 (and
    others) have a conv/linear head stage after pooling, e.g. 576 -> 1024. The pass runs in
    eval mode without gradients on two images (so BatchNorm statistics do not move), and
    the train/eval mode is restored afterwards. A model that rejects the size (ViT and Swin
    have a fixed input size, windowed models need sizes their windows divide) raises
    :class:`ModelConfigError` with the model's default size and the setting to change.
    """
    default = _default_input_size(backbone)
    height, width = (image_size, image_size) if image_size else default
    try:
        reference = next(backbone.parameters())
    except StopIteration:  # a parameter-free backbone: plain float32 on the CPU
        reference = torch.empty(0)
    probe = torch.zeros(2, 3, height, width, dtype=reference.dtype, device=reference.device)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            output = backbone(probe)
    except Exception as exc:  # timm's assertion or shape error: say what to change
        said = str(exc).splitlines()[0] if str(exc) else ""
        fix = (
            "choose another model.name"
            if (height, width) == default
            else f"set data.image_size={default[0]} or choose a model that accepts this size "
            "(convolutional nets such as resnet or efficientnet take most sizes)"
        )
        raise ModelConfigError(
            f"timm model '{name}' does not accept {height}x{width} px images (its default input "
            f"size is {default[0]}x{default[1]} px; timm said: {type(exc).__name__}: {said}): "
            f"{fix}"
        ) from exc
    finally:
        backbone.train(was_training)
    if output.ndim != 2 or output.shape[0] != 2:
        raise ModelConfigError(
            f"timm model '{name}' gives {tuple(output.shape)} features per batch of 2 at "
            f"{height}x{width} px, not one pooled vector per image: it cannot be used as a "
            "PlanktonNet backbone"
        )
    return int(output.shape[1])


def _default_input_size(backbone: nn.Module) -> tuple[int, int]:
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    size = cfg.get("input_size") or (3, 224, 224)
    return int(size[-2]), int(size[-1])


def _model_label(backbone: nn.Module) -> str:
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(backbone).__name__)


def model_normalisation(net: PlanktonNet) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """timm's mean and std for the backbone."""
    config = timm.data.resolve_model_data_config(net.backbone)
    return tuple(float(v) for v in config["mean"]), tuple(float(v) for v in config["std"])
