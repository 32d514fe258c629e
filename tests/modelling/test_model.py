"""The paper's network: head shapes, bottleneck choice, parameter groups, weights files."""

import pytest
import torch
from safetensors.torch import save_file

from plankton_kedro.engine.checkpoint import Checkpoint, History, Identity, Preprocessing
from plankton_kedro.engine.errors import WeightsUnavailableError
from plankton_kedro.engine.modelling.model import PlanktonNet, build_model, model_from_checkpoint


@pytest.mark.parametrize(
    ("name", "norm", "act"),
    [
        ("test_resnet", torch.nn.BatchNorm1d, torch.nn.ReLU),
        ("test_convnext", torch.nn.LayerNorm, torch.nn.GELU),
        ("test_vit", torch.nn.LayerNorm, torch.nn.GELU),
    ],
)
def test_forward_returns_features_bottleneck_and_logits(name, norm, act):
    net, source = build_model(name, num_classes=7)
    assert source is None
    assert isinstance(net.bottleneck[1], norm)
    assert isinstance(net.bottleneck[2], act)
    net.eval()
    size = 32 if name != "test_vit" else net.backbone.default_cfg["input_size"][-1]
    features, embedding, logits = net(torch.rand(2, 3, size, size))
    assert features.shape == (2, net.backbone.num_features)
    assert embedding.shape == (2, 512)
    assert logits.shape == (2, 7)


def test_classifier_is_weight_normalised_and_can_be_reset():
    net, _ = build_model("test_resnet", num_classes=4, bottleneck_dim=64)
    assert hasattr(net.classifier, "parametrizations")
    net.reset_classifier(9)
    assert net.classifier.out_features == 9
    assert hasattr(net.classifier, "parametrizations")


def test_parameter_groups_cover_every_parameter_once():
    net, _ = build_model("test_resnet", num_classes=3)
    groups = net.parameter_groups()
    assert set(groups) == {"backbone", "bottleneck", "classifier"}
    grouped = [id(p) for params in groups.values() for p in params]
    assert sorted(grouped) == sorted(id(p) for p in net.parameters())


def test_local_weights_file_is_loaded(tmp_path):
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
    other, _ = build_model("test_convnext", num_classes=3)
    path = tmp_path / "convnext.pth"
    torch.save(other.backbone.state_dict(), path)
    with pytest.raises(WeightsUnavailableError, match=r"convnext\.pth.*'test_resnet'"):
        build_model("test_resnet", num_classes=3, pretrained=str(path))


def test_imagenet_offline_fails_with_local_file_hint(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "https://127.0.0.1:9")
    with pytest.raises(WeightsUnavailableError, match="model.pretrained=/path/to/weights"):
        build_model("test_resnet", num_classes=3, pretrained="imagenet")


def test_checkpoint_round_trip_rebuilds_the_same_network():
    net, _ = build_model("test_resnet", num_classes=3, bottleneck_dim=32)
    checkpoint = Checkpoint(
        model_name="test_resnet",
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
