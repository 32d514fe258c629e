"""The paper's network: timm backbone -> 512-d bottleneck -> weight-normalised classifier."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from plankton_kedro.engine.checkpoint import Checkpoint

from .weights import imagenet_backbone, load_backbone_weights, pretrained_tag


class PlanktonNet(nn.Module):
    """Backbone features -> bottleneck (Linear, BN or LN, ReLU or GELU) -> classifier.

    The normalisation and activation of the bottleneck follow the backbone's family:
    BatchNorm1d + ReLU for convolutional nets with BatchNorm2d and ReLU, LayerNorm + GELU
    otherwise (ViTs, ConvNeXt), as in the paper's code.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, bottleneck_dim: int = 512):
        super().__init__()
        self.backbone = backbone
        modules = list(backbone.modules())
        has_batchnorm = any(isinstance(m, nn.BatchNorm2d) for m in modules)
        uses_relu = any(isinstance(m, nn.ReLU | nn.ReLU6) for m in modules)
        self.bottleneck = nn.Sequential(
            nn.Linear(backbone.num_features, bottleneck_dim),
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
    name: str, num_classes: int, *, pretrained: str = "none", bottleneck_dim: int = 512
) -> tuple[PlanktonNet, str | None]:
    """Build ``PlanktonNet`` on timm backbone ``name``; return it and the weights' identity.

    ``pretrained`` is ``none`` (random init), ``imagenet`` (timm's default pretrained tag,
    downloaded from the hub) or the path of a local timm weights file. The identity is the
    exact timm tag (e.g. ``convnext_base.fb_in22k``) or the file path, ``None`` for random.
    """
    if pretrained == "none":
        backbone = timm.create_model(name, pretrained=False, num_classes=0)
        source = None
    elif pretrained == "imagenet":
        backbone = imagenet_backbone(name)
        source = pretrained_tag(backbone, name)
    else:
        backbone = timm.create_model(name, pretrained=False, num_classes=0)
        load_backbone_weights(backbone, Path(pretrained), name)
        source = str(pretrained)
    return PlanktonNet(backbone, num_classes, bottleneck_dim), source


def model_from_checkpoint(checkpoint: Checkpoint) -> PlanktonNet:
    """Rebuild the network stored in ``checkpoint`` (no download: random init, then load)."""
    net, _ = build_model(
        checkpoint.model_name,
        len(checkpoint.class_names),
        bottleneck_dim=checkpoint.bottleneck_dim,
    )
    net.load_state_dict(checkpoint.state_dict)
    return net


def model_normalisation(net: PlanktonNet) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """timm's mean and std for the backbone."""
    config = timm.data.resolve_model_data_config(net.backbone)
    return tuple(float(v) for v in config["mean"]), tuple(float(v) for v in config["std"])
