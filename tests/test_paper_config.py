"""The real-run configuration (conf/paper) holds the paper's recipe and is valid against the
parameter models.

The expected values are the paper's numbers as written in the design notes (DESIGN.md, section
5, "The paper recipe (from the paper's code; our defaults for real runs)"); each assertion
cites its line. The ``pretraining`` section of conf/paper (a stage-1 recipe the paper does not
publish) is only checked for validity here.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from PIL import Image

from plankton_kedro.engine.collection.preprocessing import CachePreprocessing, prepare
from plankton_kedro.engine.config import (
    DataParams,
    IngestionParams,
    ModelParams,
    PreprocessingParams,
    RunParams,
    StageParams,
    TrainingParams,
)
from tests.conftest import PROJECT_ROOT

PAPER_FILES = sorted((PROJECT_ROOT / "conf" / "paper").glob("*.yml"))


@pytest.fixture(scope="module")
def params() -> dict:
    """Parameters as ``kedro run --env paper`` merges them: conf/base, then conf/paper."""
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="paper")
    return loader["parameters"]


@pytest.fixture(scope="module")
def fine_tuning(params) -> TrainingParams:
    """Stage 2's settings in a paper run: the global ``training``, then ``fine_tuning``'s."""
    run = RunParams(name="two_stage", route="two_stage")
    return run.training_params(
        TrainingParams(**params["training"]), StageParams(**params["fine_tuning"])
    )


def test_paper_environment_is_valid_against_the_parameter_models(params):
    """Catches a paper setting the parameter models refuse (typo, wrong type, unknown key)."""
    model = ModelParams(**params["model"])
    # conf/paper's own header: the paper's ImageNet-22k ViT-B/16 (timm tag), from ImageNet
    assert model.name == "vit_base_patch16_224.augreg_in21k" and model.pretrained == "imagenet"
    IngestionParams(**params["ingestion"])
    StageParams(**params["pretraining"]), StageParams(**params["fine_tuning"])
    for collection in ("source", "target"):
        PreprocessingParams(**params["preprocessing"][collection])


def test_fine_tuning_uses_the_papers_optimisation_recipe(fine_tuning):
    """Catches a paper value lost or changed, in conf/paper or by a stage override in conf/base."""
    t = fine_tuning
    # DESIGN 5, "Loss: cross-entropy with label smoothing 0.1."
    assert t.label_smoothing == 0.1
    # DESIGN 5, "Optimiser: SGD, momentum 0.9, Nesterov, weight decay 1e-2"
    assert (t.momentum, t.nesterov, t.weight_decay) == (0.9, True, 1e-2)
    # DESIGN 5, "learning rates per part: backbone 1e-3, bottleneck 1e-2, classifier 1e-2"
    assert (t.lr.backbone, t.lr.bottleneck, t.lr.classifier) == (1e-3, 1e-2, 1e-2)
    # DESIGN 5, "Scheduler per optimiser update: lr = lr0 * (1 + gamma * i / num_steps) ** -power,
    # gamma 10, power 0.75"
    assert (t.scheduler.kind, t.scheduler.gamma, t.scheduler.power) == ("inverse_decay", 10, 0.75)
    # DESIGN 5, "Optional two-step warm-up: ... (2) backbone 1e-5" (optional: off unless set)
    assert t.warmup.backbone_lr == 1e-5
    # DESIGN 5, "Batch 8 per GPU x gradient accumulation 2; mixed precision"
    assert (t.batch_size, t.accumulation_steps) == (8, 2)
    assert t.precision == "auto" and t.devices == "auto"  # fp16 autocast on CUDA, every GPU


def test_fine_tuning_uses_the_papers_epochs_and_validation(fine_tuning):
    """Catches a changed training budget, early-stopping rule or validation subset size."""
    t = fine_tuning
    # DESIGN 5, '"Epoch" = at most 100 optimiser updates'
    assert t.max_updates_per_epoch == 100
    # DESIGN 5, "30 to 120 epochs; stop after 50 evaluations without improvement (counted
    # after the 30th)"
    assert (t.min_epochs, t.max_epochs, t.patience) == (30, 120, 50)
    # DESIGN 5, "evaluate every epoch on <= 8,000 validation images"
    assert (t.eval_every, t.max_val_images) == (1, 8000)


def test_paper_input_size_and_model_head(params):
    """Catches a changed crop, resize ratio or bottleneck width."""
    data, model = DataParams(**params["data"]), ModelParams(**params["model"])
    # DESIGN 5, "resize to crop / 0.875, random crop ... centre crop for evaluation"
    assert (data.image_size, data.resize_ratio) == (224, 0.875)
    assert data.cache_size == 256  # 224 / 0.875
    # DESIGN 5, "bottleneck Linear(d, 512)"
    assert model.bottleneck_dim == 512


def _keys(tree) -> set[str]:
    if isinstance(tree, dict):
        return set(tree) | {key for value in tree.values() for key in _keys(value)}
    if isinstance(tree, list):
        return {key for value in tree for key in _keys(value)}
    return set()


@pytest.mark.parametrize("path", PAPER_FILES, ids=lambda path: Path(path).name)
def test_conf_paper_hard_codes_no_fill(path):
    """Catches conf/paper pinning a fill: white for everything would break dark-background sets."""
    # DESIGN 5, "Input: pad to square with white": the paper's sets have white backgrounds,
    # which fill auto finds; a fixed fill in conf/paper would pad UVP6-like sets white too.
    assert not {"fill", "preprocessing"} & _keys(yaml.safe_load(Path(path).read_text()))


def _wide(background: int, object_level: int) -> Image.Image:
    """A 40 x 20 image of ``background`` with a 10 x 10 square of ``object_level``."""
    pixels = np.full((20, 40), background, dtype=np.uint8)
    pixels[5:15, 15:25] = object_level
    return Image.fromarray(pixels).convert("RGB")


@pytest.mark.parametrize("collection", ["source", "target"])
def test_paper_runs_pad_white_sets_with_white_and_dark_sets_with_black(params, collection):
    """Catches a paper fill that pads every set one colour instead of with its background."""
    # DESIGN 5, "pad to square with white" (the paper's white-background sets)
    settings = CachePreprocessing.from_settings(
        DataParams(**params["data"]).cache_size,
        PreprocessingParams(**params["preprocessing"][collection]).model_dump(),
    )
    white, _, _ = prepare(_wide(background=255, object_level=30), settings)
    dark, _, _ = prepare(_wide(background=0, object_level=220), settings)
    # the 40 x 20 image fills the middle half of the 256 x 256 square: 64 padded rows above
    assert white.shape == dark.shape == (256, 256, 3)
    assert (white[:60] == 255).all() and (white[-60:] == 255).all()
    assert (dark[:60] == 0).all() and (dark[-60:] == 0).all()


def test_paper_stage_one_is_a_full_pass_recipe_for_training_from_scratch(params):
    """Catches in-domain pre-training left on the fine-tuning budget (120 x 100 updates of
    16 images: ~6 % of one pass over WHOI) or with fine-tuning's learning rates."""
    from plankton_kedro.engine.modelling.schedule import updates_per_epoch

    stage_one = TrainingParams(**params["training"]).overridden(
        StageParams(**params["pretraining"]).training
    )
    # an epoch is a full pass: every image of a 2.3 M-image train split, once
    assert updates_per_epoch(2_312_000, stage_one) == 2_312_000 // 32
    assert (stage_one.min_epochs, stage_one.max_epochs) == (30, 90)  # torchvision: 90 epochs
    assert stage_one.lr.backbone_from_scratch == 0.1  # torchvision: 0.1 for 256 per update
    assert stage_one.weight_decay == 1e-4  # torchvision's ResNet-50 reference
    # a schedule that anneals (torchvision: lr / 1000 at the end), not fine-tuning's decay
    assert stage_one.scheduler.kind == "one_cycle"
    fine_tuning = TrainingParams(**params["training"]).overridden(
        StageParams(**params["fine_tuning"]).training
    )
    assert updates_per_epoch(2_312_000, fine_tuning) == 100  # stage 2 keeps the paper's cap
    # the paper's code: 20 % test, then 15 % of the rest for validation
    split = params["ingestion"]["split"]
    assert (split["train"], split["val"], split["test"]) == (0.68, 0.12, 0.2)
