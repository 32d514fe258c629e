"""Resume, warm-up, mixed precision and DDP of the training engine (tiny models, few updates)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plankton_kedro.engine.config import DataParams, ModelParams, TrainingParams
from plankton_kedro.engine.errors import ResumeMismatchError, StageInputError
from plankton_kedro.engine.modelling import fit as fit_module
from plankton_kedro.engine.modelling.data import EpochSampler
from plankton_kedro.engine.modelling.schedule import phase_of
from plankton_kedro.engine.modelling.stages import train_stage
from tests.conftest import TINY_MODEL

SETTINGS = {
    "max_epochs": 4,
    "batch_size": 8,
    "max_updates_per_epoch": 3,
    "patience": 10,
    "lr": {"backbone_from_scratch": 0.05, "bottleneck": 0.05, "classifier": 0.05},
}


def _train(tiny_cache, state_dir, model_name=TINY_MODEL, **training):
    images, manifest = tiny_cache
    return train_stage(
        images,
        manifest,
        model=ModelParams(name=model_name, bottleneck_dim=32),
        data=DataParams(image_size=16, resize_ratio=0.8),
        training=TrainingParams(**{**SETTINGS, "state_dir": str(state_dir), **training}),
        route="test",
        stage="pretraining",
        backbone_init="scratch",
    )


class Crash(Exception):
    """Stands in for a kill right after an epoch's state was written."""


@pytest.fixture
def crash_after_epoch(monkeypatch):
    """Make training die after the state of the given epoch has been saved."""

    def arm(epoch: int) -> None:
        save = fit_module._save_state

        def save_then_crash(store, model, schedule, scaler, progress, complete, layout):
            save(store, model, schedule, scaler, progress, complete, layout)
            if progress.epoch == epoch:
                raise Crash

        monkeypatch.setattr(fit_module, "_save_state", save_then_crash)

    return arm


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _strip_timing(history: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in h.items() if k not in ("seconds", "images_per_second")} for h in history
    ]


def test_interrupted_then_resumed_equals_uninterrupted(
    tiny_cache, tmp_path, crash_after_epoch, monkeypatch
):
    reference = _train(tiny_cache, tmp_path / "reference")
    crash_after_epoch(2)
    with pytest.raises(Crash):
        _train(tiny_cache, tmp_path / "run")
    monkeypatch.undo()
    resumed = _train(tiny_cache, tmp_path / "run")
    assert resumed.history.resumed_from_epoch == 2
    assert _same_weights(resumed.state_dict, reference.state_dict)
    assert _strip_timing(resumed.history.epochs) == _strip_timing(reference.history.epochs)
    assert [h["epoch"] for h in resumed.history.epochs] == [1, 2, 3, 4]
    # a completed run with the same data and settings is reused, not trained again
    again = _train(tiny_cache, tmp_path / "run")
    assert again.history.resumed_from_epoch is None
    assert _same_weights(again.state_dict, reference.state_dict)
    assert again.history.epochs == resumed.history.epochs  # timings too: nothing was re-run


def test_a_finished_stage_keeps_only_what_reusing_it_needs(tiny_cache, tmp_path):
    """Catches a finished stage's state folder keeping the last weights and the optimiser's
    momentum (twice the model again, per stage, for ever), and a reuse that needs them."""
    first = _train(tiny_cache, tmp_path)
    state_file = next(tmp_path.rglob("state.pt"))
    state = torch.load(state_file, weights_only=True)
    assert state["complete"] and not {"model", "optimizer", "scaler"} & set(state)
    reused = _train(tiny_cache, tmp_path)
    assert _same_weights(reused.state_dict, first.state_dict)
    assert reused.history.epochs == first.history.epochs  # reused, not trained again


def test_a_completed_run_with_other_settings_is_replaced_not_refused(tiny_cache, tmp_path):
    first = _train(tiny_cache, tmp_path, max_epochs=2)
    second = _train(tiny_cache, tmp_path, max_epochs=3)
    assert len(first.history.epochs) == 2 and len(second.history.epochs) == 3
    forced = _train(tiny_cache, tmp_path, max_epochs=3, resume=False)
    assert forced.history.epochs != second.history.epochs  # trained again (other timings)
    assert _same_weights(forced.state_dict, second.state_dict)


def test_resume_with_other_settings_or_data_refuses_and_names_the_difference(
    tiny_cache, tmp_path, crash_after_epoch, monkeypatch
):
    crash_after_epoch(1)
    with pytest.raises(Crash):
        _train(tiny_cache, tmp_path)
    monkeypatch.undo()
    with pytest.raises(
        ResumeMismatchError, match=r"training\.lr\.classifier \(0\.05 then, 0\.1 now\)"
    ):
        _train(tiny_cache, tmp_path, lr={**SETTINGS["lr"], "classifier": 0.1})
    images, manifest = tiny_cache
    other = manifest.copy()
    other.loc[0, "label"] = "gradient"
    with pytest.raises(ResumeMismatchError, match="train and val images"):
        _train((images, other), tmp_path)
    with pytest.raises(ResumeMismatchError, match="model.name"):
        _train(tiny_cache, tmp_path, model_name="test_resnet")  # test_convnext rejects 16 px
    fresh = _train(tiny_cache, tmp_path, resume=False, lr={**SETTINGS["lr"], "classifier": 0.1})
    assert fresh.history.resumed_from_epoch is None


def test_warm_up_step_one_leaves_the_backbone_unchanged(tiny_cache, tmp_path, crash_after_epoch):
    torch.manual_seed(SETTINGS.get("seed", 42))
    crash_after_epoch(1)
    with pytest.raises(Crash):
        _train(tiny_cache, tmp_path, warmup={"frozen_epochs": 1, "low_lr_epochs": 1})
    state = torch.load(tmp_path / "test_pretraining" / "state.pt", weights_only=True)
    from plankton_kedro.engine.modelling.model import build_model
    from plankton_kedro.engine.modelling.runtime import seed_everything

    seed_everything(42)
    initial, _ = build_model(TINY_MODEL, 3, bottleneck_dim=32)
    parameters = dict(initial.named_parameters())
    backbone = [k for k in parameters if k.startswith("backbone.")]
    head = [k for k in parameters if not k.startswith("backbone.")]
    assert all(torch.equal(state["model"][k], parameters[k].detach()) for k in backbone)
    assert not all(torch.equal(state["model"][k], parameters[k].detach()) for k in head)
    assert state["history"][0]["phase"] == "frozen"
    assert state["history"][0]["lr_backbone"] == 0.0


def test_warm_up_phases_then_main_phase_with_selection(tiny_cache, tmp_path):
    checkpoint = _train(tiny_cache, tmp_path, warmup={"frozen_epochs": 1, "low_lr_epochs": 2})
    phases = [h["phase"] for h in checkpoint.history.epochs]
    assert phases == ["frozen", "low_lr", "low_lr", "main", "main", "main", "main"]
    assert checkpoint.history.epochs[1]["lr_backbone"] == 1e-5
    assert all("val_accuracy" not in h for h in checkpoint.history.epochs[:3])
    assert checkpoint.history.best_epoch >= 4


def test_phase_of_epochs():
    warmup = TrainingParams(warmup={"frozen_epochs": 2, "low_lr_epochs": 1}).warmup
    assert [phase_of(e, warmup) for e in range(1, 6)] == [
        "frozen",
        "frozen",
        "low_lr",
        "main",
        "main",
    ]


def test_evaluation_every_k_epochs_and_always_at_the_end(tiny_cache, tmp_path):
    checkpoint = _train(tiny_cache, tmp_path, max_epochs=5, eval_every=2)
    evaluated = [h["epoch"] for h in checkpoint.history.epochs if "val_accuracy" in h]
    assert evaluated == [2, 4, 5]


def test_bf16_autocast_on_cpu(tiny_cache, tmp_path):
    checkpoint = _train(tiny_cache, tmp_path, precision="bf16", max_epochs=2)
    assert all(np.isfinite(h["train_loss"]) for h in checkpoint.history.epochs)
    assert checkpoint.state_dict["classifier.bias"].dtype == torch.float32


def test_fp16_on_cpu_is_a_clear_error(tiny_cache, tmp_path):
    with pytest.raises(StageInputError, match="fp16 needs a CUDA device"):
        _train(tiny_cache, tmp_path, precision="fp16")


def test_channels_last_gives_the_same_result(tiny_cache, tmp_path):
    plain = _train(tiny_cache, tmp_path / "a", max_epochs=1)
    channels_last = _train(tiny_cache, tmp_path / "b", max_epochs=1, channels_last=True)
    for key, value in plain.state_dict.items():
        # summation order differs: equal up to float32 rounding, relative to the value
        assert torch.allclose(value, channels_last.state_dict[key], rtol=1e-4, atol=1e-4), key


def test_ranks_split_each_global_batch():
    single = list(EpochSampler(50, 32, seed=3, epoch=1, batch_size=8))
    ranks = [
        list(EpochSampler(50, 32, seed=3, epoch=1, batch_size=4, rank=r, world_size=2))
        for r in (0, 1)
    ]
    rebuilt = [
        pair for start in range(0, 16, 4) for rank in ranks for pair in rank[start : start + 4]
    ]
    assert rebuilt == single


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tiny_cache, tmp_path):
    # GroupNorm model: without BatchNorm the two runs compute the same global-batch gradients
    one = _train(tiny_cache, tmp_path / "one", "test_efficientnet_gn", batch_size=8, max_epochs=2)
    two = _train(
        tiny_cache, tmp_path / "two", "test_efficientnet_gn", batch_size=4, max_epochs=2, devices=2
    )
    assert [h.get("val_accuracy") for h in two.history.epochs] == [
        h.get("val_accuracy") for h in one.history.epochs
    ]
    for key, value in one.state_dict.items():
        assert torch.allclose(value, two.state_dict[key], atol=1e-4), key


def test_augmentation_on_the_device_equals_the_dataloader_path(tiny_cache, tmp_path):
    on_loader = _train(tiny_cache, tmp_path / "a", max_epochs=2)
    on_device = _train(tiny_cache, tmp_path / "b", max_epochs=2, augment_on_device=True)
    assert _same_weights(on_loader.state_dict, on_device.state_dict)


def test_local_weights_are_recorded_through_both_stages(tiny_cache, tmp_path):
    from safetensors.torch import save_file

    from plankton_kedro.engine.modelling.model import build_model

    donor, _ = build_model(TINY_MODEL, 3)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in donor.backbone.state_dict().items()}, str(path))
    images, manifest = tiny_cache
    common = {
        "data": DataParams(image_size=16, resize_ratio=0.8),
        "training": TrainingParams(**{**SETTINGS, "max_epochs": 1, "state_dir": str(tmp_path)}),
        "route": "two_stage",
    }
    model = ModelParams(name=TINY_MODEL, pretrained=str(path), bottleneck_dim=32)
    stage1 = train_stage(
        images, manifest, model=model, stage="pretraining", backbone_init="pretrained", **common
    )
    stage2 = train_stage(
        images,
        manifest,
        model=model,
        stage="fine_tuning",
        backbone_init="checkpoint",
        init_checkpoint=stage1,
        **common,
    )
    assert stage1.history.initial_weights == stage1.history.pretrained_weights == str(path)
    assert stage2.history.pretrained_weights == str(path)
    assert stage2.history.initial_weights.startswith("two_stage/pretraining checkpoint")


def test_imagenet_tag_is_the_exact_timm_tag():
    import timm

    from plankton_kedro.engine.modelling.weights import pretrained_tag

    assert pretrained_tag(timm.create_model("resnet18", num_classes=0), "resnet18") == (
        "resnet18.a1_in1k"
    )
    tagged = timm.create_model("convnext_atto.d2_in1k", num_classes=0)
    assert pretrained_tag(tagged, "convnext_atto.d2_in1k") == "convnext_atto.d2_in1k"
