"""The paper's network: head shapes, bottleneck choice, parameter groups, weights files,
and the timm families it is built on (random weights, small images: no download)."""

import pytest
import torch
from safetensors.torch import save_file

from plankton_kedro.engine.checkpoint import Checkpoint, History, Identity, Preprocessing
from plankton_kedro.engine.config import DataParams, ModelParams, TrainingParams
from plankton_kedro.engine.errors import (
    ModelConfigError,
    PlanktonUserError,
    WeightsUnavailableError,
)
from plankton_kedro.engine.modelling.model import (
    PlanktonNet,
    build_model,
    check_image_size,
    model_from_checkpoint,
)
from plankton_kedro.engine.modelling.stages import train_stage

# (timm model, image size): one per family, the smallest model of each, at a size it accepts.
TIMM_FAMILIES = [
    ("resnet18", 32),
    ("resnet10t", 32),  # the demo's model
    ("efficientnet_b0", 32),
    ("mobilenetv3_small_100", 32),  # num_features 576, pooled output 1024 (conv head)
    ("mobilenetv4_conv_small", 32),  # 960 -> 1280
    ("ghostnet_100", 32),  # 960 -> 1280
    ("hgnetv2_b0", 32),  # 1024 -> 2048
    ("test_mambaout", 32),  # 64 -> 256 (MLP head after pooling)
    ("regnety_002", 32),
    ("test_convnext", 32),
    ("vit_tiny_patch16_224", 224),  # fixed input size
    ("deit_tiny_patch16_224", 224),
    ("swin_tiny_patch4_window7_224", 224),  # windowed, fixed input size (the slowest, ~3 s)
    ("test_maxvit", 160),  # windowed: the feature map must divide into its 5x5 windows
    # a fixed input size that is not 224 (160): the size check and the bottleneck's
    # forward pass must use the model's or the run's size, never an assumed 224
    ("test_vit_relpos", 160),
]


@pytest.mark.parametrize(("name", "size"), TIMM_FAMILIES)
def test_timm_family_trains_one_step(name, size):
    """Catches a bottleneck sized by ``num_features`` instead of the pooled output (the first
    forward crashes for MobileNetV3/V4, GhostNet, HGNetV2, MambaOut) and any family whose
    build, forward, backward or optimiser step breaks at the size it is used at."""
    torch.manual_seed(0)
    net, _ = build_model(name, num_classes=5, bottleneck_dim=16, image_size=size)
    before = {k: p.detach().clone() for k, p in net.named_parameters()}
    optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    features, embedding, logits = net(torch.rand(2, 3, size, size))
    assert features.shape == (2, net.bottleneck[0].in_features)
    assert embedding.shape == (2, 16)
    assert logits.shape == (2, 5)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    optimiser.step()
    changed = {k for k, p in net.named_parameters() if not torch.equal(p, before[k])}
    assert any(k.startswith("backbone.") for k in changed)
    assert {"bottleneck.0.weight", "classifier.parametrizations.weight.original1"} <= changed


@pytest.mark.parametrize(
    ("name", "size", "default"),
    [
        ("vit_tiny_patch16_224", 48, 224),  # a ViT at the demo's 48 px
        ("test_vit_relpos", 224, 160),  # a fixed size that is not 224
        ("test_maxvit", 64, 160),  # windows that do not divide the feature map
    ],
)
def test_image_size_the_model_rejects_is_a_clear_user_error(name, size, default):
    """Catches timm's bare AssertionError (or a first training step that crashes) for a
    model/image-size combination it rejects: one line naming model, size and the fix."""
    for build in (
        lambda: build_model(name, num_classes=3, image_size=size),
        lambda: check_image_size(name, size),  # the check made before starting DDP ranks
    ):
        with pytest.raises(ModelConfigError) as raised:
            build()
        message = str(raised.value)
        assert isinstance(raised.value, PlanktonUserError)
        assert "\n" not in message
        assert f"'{name}'" in message
        assert f"{size}x{size} px" in message
        assert f"default input size is {default}x{default} px" in message
        assert f"data.image_size={default}" in message


@pytest.mark.parametrize("devices", [1, 2])
def test_training_stage_checks_the_model_at_data_image_size(tiny_cache, tmp_path, devices):
    """Catches a stage that builds the network without ``data.image_size`` (the check passes
    at the model's own size, then the first training step crashes), and, with 2 devices, a
    rejection that would only surface as a DDP worker's traceback."""
    images, manifest = tiny_cache
    with pytest.raises(ModelConfigError, match=r"'test_vit_relpos' does not accept 16x16 px"):
        train_stage(
            images,
            manifest,
            model=ModelParams(name="test_vit_relpos"),
            data=DataParams(image_size=16, resize_ratio=0.8),
            training=TrainingParams(state_dir=str(tmp_path), devices=devices),
            route="test",
            stage="pretraining",
            backbone_init="scratch",
        )


def test_unknown_timm_model_is_a_clear_user_error():
    """Catches timm's bare RuntimeError for a misspelt model name (engine used without the
    validated parameters): the message names it and the close timm names."""
    with pytest.raises(ModelConfigError, match=r"'resnet_18' is not a timm .*; did you.*resnet18"):
        build_model("resnet_18", num_classes=3)


def test_sizing_pass_leaves_mode_and_batchnorm_statistics_alone():
    """Catches a bottleneck-sizing forward pass that runs in train mode (moving BatchNorm
    running statistics before training starts) or leaves the network in eval mode."""
    net, _ = build_model("test_resnet", num_classes=3, image_size=32)
    assert net.training and net.backbone.training
    norms = [m for m in net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    for norm in norms:
        assert torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))
        assert int(norm.num_batches_tracked) == 0


@pytest.mark.parametrize(
    ("name", "norm", "act"),
    [
        ("test_resnet", torch.nn.BatchNorm1d, torch.nn.ReLU),
        ("test_convnext", torch.nn.LayerNorm, torch.nn.GELU),
        ("test_vit", torch.nn.LayerNorm, torch.nn.GELU),
    ],
)
def test_forward_returns_features_bottleneck_and_logits(name, norm, act):
    """Catches a wrong bottleneck norm/activation for the family or wrong output shapes."""
    net, source = build_model(name, num_classes=7)
    assert source is None
    assert isinstance(net.bottleneck[1], norm)
    assert isinstance(net.bottleneck[2], act)
    net.eval()
    size = 32 if name != "test_vit" else net.backbone.default_cfg["input_size"][-1]
    features, embedding, logits = net(torch.rand(2, 3, size, size))
    assert features.shape == (2, net.bottleneck[0].in_features)
    assert embedding.shape == (2, 512)
    assert logits.shape == (2, 7)


def test_classifier_is_weight_normalised_and_can_be_reset():
    """Catches a classifier without weight norm, or a reset that drops it."""
    net, _ = build_model("test_resnet", num_classes=4, bottleneck_dim=64)
    assert hasattr(net.classifier, "parametrizations")
    net.reset_classifier(9)
    assert net.classifier.out_features == 9
    assert hasattr(net.classifier, "parametrizations")


def test_parameter_groups_cover_every_parameter_once():
    """Catches a parameter missing from (or doubled in) the per-part learning rates."""
    net, _ = build_model("test_resnet", num_classes=3)
    groups = net.parameter_groups()
    assert set(groups) == {"backbone", "bottleneck", "classifier"}
    grouped = [id(p) for params in groups.values() for p in params]
    assert sorted(grouped) == sorted(id(p) for p in net.parameters())


def test_local_weights_file_is_loaded(tmp_path):
    """Catches a local weights file not loaded, or refused for its (ignored) head."""
    source, _ = build_model("test_resnet", num_classes=3)
    path = tmp_path / "backbone.safetensors"
    state = {k: v.contiguous() for k, v in source.backbone.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, source.backbone.num_features)  # a head is ignored
    save_file(state, str(path))
    net, identity = build_model("test_resnet", num_classes=5, pretrained=str(path))
    assert identity == str(path)
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(net.backbone.state_dict()[key], value)


def test_weights_of_another_architecture_fail_naming_file_and_model(tmp_path):
    """Catches a foreign weights file loaded silently or failing without naming it."""
    other, _ = build_model("test_convnext", num_classes=3)
    path = tmp_path / "convnext.pth"
    torch.save(other.backbone.state_dict(), path)
    with pytest.raises(WeightsUnavailableError, match=r"convnext\.pth.*'test_resnet'"):
        build_model("test_resnet", num_classes=3, pretrained=str(path))


def test_imagenet_offline_fails_with_local_file_hint(monkeypatch):
    """Catches an offline ImageNet download failing without the local-file option."""
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "https://127.0.0.1:9")
    with pytest.raises(WeightsUnavailableError, match="model.pretrained=/path/to/weights"):
        build_model("test_resnet", num_classes=3, pretrained="imagenet")


@pytest.mark.parametrize("name", ["test_resnet", "test_mambaout"])
def test_checkpoint_round_trip_rebuilds_the_same_network(name):
    """Catches a rebuilt network that differs from the saved one (for a backbone whose pooled
    output is wider than ``num_features`` too): load_state_dict fails or logits differ."""
    net, _ = build_model(name, num_classes=3, bottleneck_dim=32)
    checkpoint = Checkpoint(
        model_name=name,
        class_names=["a", "b", "c"],
        bottleneck_dim=32,
        state_dict=net.state_dict(),
        preprocessing=Preprocessing(40, 32, 255, (0.5,) * 3, (0.5,) * 3),
        identity=Identity("in_domain", "in_domain", "fine_tuning", "d", None, 42),
        history=History(),
    )
    rebuilt = model_from_checkpoint(checkpoint)
    assert isinstance(rebuilt, PlanktonNet)
    x = torch.rand(2, 3, 32, 32)
    net.eval(), rebuilt.eval()
    assert torch.allclose(net(x)[2], rebuilt(x)[2])


def test_a_seeded_random_backbone_is_the_same_on_every_run_and_leaves_the_global_rng():
    """Catches the out_of_domain probe on `pretrained: none` drawing new random features on
    every run (its scores changed between two identical runs) or reseeding the caller's RNG."""
    torch.manual_seed(0)
    untouched = torch.rand(1)
    torch.manual_seed(0)
    first, _ = build_model("test_resnet", 2, seed=3, image_size=32)
    assert torch.equal(torch.rand(1), untouched)  # the global stream did not move
    again, _ = build_model("test_resnet", 2, seed=3, image_size=32)
    other, _ = build_model("test_resnet", 2, seed=4, image_size=32)
    weights = [list(net.backbone.parameters()) for net in (first, again, other)]
    assert all(torch.equal(a, b) for a, b in zip(weights[0], weights[1], strict=True))
    assert not all(torch.equal(a, c) for a, c in zip(weights[0], weights[2], strict=True))
