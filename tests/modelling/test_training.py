"""Training loop pieces: schedule, optimiser groups, sampler, errors, determinism; the
evaluation report's calibration."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import log_softmax

from plankton_kedro.engine.analysis.report import evaluation_report
from plankton_kedro.engine.collection.preprocessing import CachePreprocessing, record_preprocessing
from plankton_kedro.engine.config import DataParams, ModelParams, TrainingParams
from plankton_kedro.engine.errors import StageInputError
from plankton_kedro.engine.modelling.data import CachedImages, EpochSampler, fixed_subset
from plankton_kedro.engine.modelling.inference import predict_splits
from plankton_kedro.engine.modelling.model import build_model
from plankton_kedro.engine.modelling.schedule import (
    build_optimizer,
    lr_multiplier,
    schedule_multiplier,
    updates_per_epoch,
)
from plankton_kedro.engine.modelling.stages import train_stage
from tests.conftest import TINY_MODEL, small_checkpoint


@pytest.mark.parametrize(("t", "expected"), [(0.0, 1.0), (0.5, 0.261), (1.0, 0.166)])
def test_exponential_step_schedule_values(t, expected):
    assert lr_multiplier(int(t * 1000), 1000, gamma=10, power=0.75) == pytest.approx(
        expected, abs=1e-3
    )


def test_one_cycle_schedule_follows_torchs_one_cycle_lr():
    """Catches a one_cycle shape that drifts from torch's OneCycleLR (warm-up length, cosine
    phases, final lr): checked against torch itself, step by step."""
    steps = 200
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=1.0, total_steps=steps, pct_start=0.3, cycle_momentum=False
    )
    one_cycle = TrainingParams(scheduler={"kind": "one_cycle"}).scheduler
    for step in range(steps):
        expected = optimizer.param_groups[0]["lr"]
        got = schedule_multiplier("one_cycle", one_cycle, step, steps)
        assert got == pytest.approx(expected, abs=1e-6)
        optimizer.step()
        reference.step()
    paper = TrainingParams().scheduler
    final = schedule_multiplier("inverse_decay", paper, steps, steps)
    assert final == pytest.approx(0.166, abs=1e-3)


# the lr of the last update (19 of 20): (1 + 10 * 19/20) ** -0.75 = 0.1714; one_cycle ends near 0
@pytest.mark.parametrize(
    ("kind", "pretrained", "last"),
    [
        ("one_cycle", True, 0.0),
        ("inverse_decay", False, 0.1714),
        ("auto", False, 0.0),  # from random weights: OneCycle
        ("auto", True, 0.1714),  # fine-tuning pretrained weights: the paper's inverse decay
    ],
)
def test_the_optimiser_follows_the_configured_schedule(kind, pretrained, last):
    """Catches ``training.scheduler.kind`` ignored by the training loop's optimiser, and
    ``auto`` resolved the wrong way round (OneCycle for fine-tuning, or never)."""
    from plankton_kedro.engine.modelling.schedule import RecipeSchedule

    net, _ = build_model("test_resnet", num_classes=3)
    training = TrainingParams(max_epochs=2, lr={"classifier": 0.1}, scheduler={"kind": kind})
    schedule = RecipeSchedule(net, training, backbone_pretrained=pretrained, updates_per_epoch=10)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for _ in range(20):
        schedule.step(scaler)
    assert schedule.learning_rate("classifier") / 0.1 == pytest.approx(last, abs=2e-3)


def test_part_with_zero_learning_rate_is_frozen():
    net, _ = build_model("test_resnet", num_classes=3)
    training = TrainingParams(lr={"backbone": 0.0, "bottleneck": 0.1, "classifier": 0.2})
    optimizer = build_optimizer(net, training, backbone_pretrained=True)
    assert [g["name"] for g in optimizer.param_groups] == ["bottleneck", "classifier"]
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.2]
    assert not any(p.requires_grad for p in net.backbone.parameters())
    assert optimizer.defaults["nesterov"] is True


def test_backbone_from_scratch_uses_its_own_learning_rate():
    net, _ = build_model("test_resnet", num_classes=3)
    training = TrainingParams(lr={"backbone": 0.001, "backbone_from_scratch": 0.03})
    optimizer = build_optimizer(net, training, backbone_pretrained=False)
    assert optimizer.param_groups[0]["name"] == "backbone"
    assert optimizer.param_groups[0]["lr"] == 0.03


def test_train_split_too_small_for_one_update_is_a_clear_error():
    with pytest.raises(StageInputError, match="fewer than one optimiser update"):
        updates_per_epoch(15, TrainingParams(batch_size=8, accumulation_steps=2))
    assert updates_per_epoch(16, TrainingParams(batch_size=8, accumulation_steps=2)) == 1
    assert updates_per_epoch(10_000, TrainingParams(batch_size=8)) == 100


def test_epoch_sampler_is_seeded_and_walks_the_whole_set_before_repeating():
    first = list(EpochSampler(10, 25, seed=1, epoch=3))
    assert first == list(EpochSampler(10, 25, seed=1, epoch=3))
    assert first != list(EpochSampler(10, 25, seed=1, epoch=4))
    positions = [p for p, _ in first]
    assert sorted(positions[:10]) == list(range(10))
    assert sorted(positions[10:20]) == list(range(10))


def test_augmentation_differs_per_sample_and_is_reproducible():
    images = np.arange(4 * 10 * 10 * 3, dtype=np.uint8).reshape(4, 10, 10, 3)
    data = CachedImages(images, np.zeros(4), [0, 1, 2, 3], 8, train=True)
    crops = [data[(0, seed)][0] for seed in range(20)]
    assert crops[0].shape == (3, 8, 8)
    assert len({c.numpy().tobytes() for c in crops}) > 1
    assert torch.equal(data[(0, 5)][0], data[(0, 5)][0])
    centre = CachedImages(images, np.zeros(4), [0], 8, train=False)[0][0]
    assert torch.equal(centre, torch.from_numpy(images[0, 1:9, 1:9]).permute(2, 0, 1))


def test_validation_subset_is_fixed():
    subset = fixed_subset(np.arange(100), 10, seed=3)
    assert np.array_equal(subset, fixed_subset(np.arange(100), 10, seed=3))
    assert len(subset) == 10
    assert np.array_equal(fixed_subset(np.arange(5), 10, seed=3), np.arange(5))


def _train(tiny_cache, state_dir, **training):
    images, manifest = tiny_cache
    settings = {
        "max_epochs": 3,
        "batch_size": 8,
        "max_updates_per_epoch": 4,
        "patience": 5,
        "state_dir": str(state_dir),
        "lr": {"backbone_from_scratch": 0.05, "bottleneck": 0.05, "classifier": 0.05},
    }
    return train_stage(
        images,
        manifest,
        model=ModelParams(name=TINY_MODEL, bottleneck_dim=32),
        data=DataParams(image_size=16, resize_ratio=0.8),
        training=TrainingParams(**{**settings, **training}),
        route="test",
        stage="pretraining",
        backbone_init="scratch",
    )


def test_same_seed_gives_identical_weights_and_history(tiny_cache, tmp_path):
    a, b = _train(tiny_cache, tmp_path / "a"), _train(tiny_cache, tmp_path / "b")
    for key in a.state_dict:
        assert torch.equal(a.state_dict[key], b.state_dict[key]), key
    strip = [
        {k: v for k, v in h.items() if k not in ("seconds", "images_per_second")}
        for h in a.history.epochs
    ]
    assert strip == [
        {k: v for k, v in h.items() if k not in ("seconds", "images_per_second")}
        for h in b.history.epochs
    ]
    assert a.class_names == ["bar", "gradient", "square"]
    assert len(a.history.epochs) == 3


def test_training_learns_and_evaluation_reports_metrics(tiny_cache, tmp_path):
    checkpoint = _train(tiny_cache, tmp_path, max_epochs=6)
    assert checkpoint.history.best_score >= 0.9
    predictions = predict_splits(checkpoint, *tiny_cache)
    metrics, calibration, figure, reliability = evaluation_report(
        checkpoint, tiny_cache[1], predictions, target_precision=0.9
    )
    assert metrics["accuracy"] >= 0.9
    assert metrics["n_test"] == 12
    assert set(metrics["per_class"]) == {"bar", "gradient", "square"}
    assert {"f1_macro", "f1_micro", "f1_weighted", "balanced_accuracy"} <= set(metrics)
    assert metrics["manifest_version"] == "2026-01-01T00.00.00.000Z"
    assert figure.axes and len(reliability.axes) == 2
    assert calibration["temperature"] == metrics["calibration"]["temperature"]
    assert calibration["rejection_threshold"] == metrics["open_set"]["chosen_on"]["threshold"]
    assert (
        metrics["open_set"]["test"]["n_accepted"] + metrics["open_set"]["test"]["n_rejected"] == 12
    )
    assert predictions["train"]["embeddings"].shape == (48, 32)


CLASSES = ["a", "b", "c", "d", "e"]


def _split(seed: int, scale: float, n: int = 600) -> dict[str, np.ndarray]:
    """Logits ``scale`` times those of a model calibrated at T = 1 (labels drawn from its own
    softmax), so the temperature that fits them is about ``scale``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, len(CLASSES)))
    cumulative = np.cumsum(np.exp(log_softmax(logits, axis=1)), axis=1)
    labels = np.minimum((rng.random((n, 1)) > cumulative).sum(axis=1), len(CLASSES) - 1)
    return {"labels": labels, "logits": scale * logits}


def _calibration(val: dict, test: dict) -> tuple[dict, dict]:
    checkpoint = small_checkpoint(class_names=CLASSES)
    manifest = pd.DataFrame({"split": ["train", "val", "test"], "label": CLASSES[:1] * 3})
    manifest.attrs.update(dataset="tiny", version="v1")
    metrics, calibration, *figures = evaluation_report(
        checkpoint, manifest, {"val": val, "test": test}, target_precision=0.9
    )
    for figure in figures:
        plt.close(figure)
    return metrics, calibration


def _nll(split: dict, temperature: float) -> float:
    """Mean negative log-likelihood, computed here with scipy rather than the project's."""
    log_p = log_softmax(split["logits"] / temperature, axis=1)
    return float(-log_p[np.arange(len(split["labels"])), split["labels"]].mean())


def test_temperature_and_unknown_threshold_are_fitted_on_validation_only():
    """Catches a temperature or "unknown" threshold fitted on the test split instead of val."""
    val, test = _split(0, scale=4.0), _split(1, scale=0.5)  # val wants T ~ 4, test T ~ 0.5
    metrics, calibration = _calibration(val, test)
    temperature = calibration["temperature"]
    assert _nll(val, temperature) <= min(
        _nll(val, temperature * 1.02), _nll(val, temperature / 1.02)
    )
    assert 3.0 < temperature < 5.0
    # the threshold keeps the target precision on the validation images it accepts
    probabilities = np.exp(log_softmax(val["logits"] / temperature, axis=1))
    accepted = probabilities.max(axis=1) >= calibration["rejection_threshold"] - 1e-12
    correct = probabilities.argmax(axis=1) == val["labels"]
    assert correct[accepted].mean() >= 0.9
    chosen = metrics["open_set"]["chosen_on"]
    assert chosen["val_coverage"] == pytest.approx(accepted.mean())

    # other test logits and labels: the test metrics move, what was chosen does not
    other_metrics, same = _calibration(val, _split(2, scale=2.0))
    assert other_metrics["accuracy"] != metrics["accuracy"]
    assert same["temperature"] == temperature
    assert same["rejection_threshold"] == calibration["rejection_threshold"]
    assert same == calibration  # per-class thresholds, abundance statistics and method too
    choice = metrics["quantification"]["method_choice"]
    assert other_metrics["quantification"]["method_choice"] == choice  # scored on val only

    # other validation logits: both are chosen again
    _, refitted = _calibration(_split(0, scale=8.0), test)
    assert refitted["temperature"] == pytest.approx(2 * temperature, rel=0.05)
    assert refitted["rejection_threshold"] != calibration["rejection_threshold"]


# patience counts from min_epochs (2); under OneCycle not before 80 % of max_epochs (24 of 30)
@pytest.mark.parametrize(("kind", "counts_from"), [("inverse_decay", 2), ("one_cycle", 24)])
def test_early_stopping_counts_patience_after_min_epochs(tiny_cache, tmp_path, kind, counts_from):
    """Catches patience counted before min_epochs, and OneCycle runs stopped during their
    high-lr phase (a run stopped at epoch 11 of 18 lost 37 points, docs/results.md)."""
    frozen = {"classifier": 0.0, "bottleneck": 0.0, "backbone_from_scratch": 1e-12}
    checkpoint = _train(
        tiny_cache,
        tmp_path,
        max_epochs=30,
        min_epochs=2,
        patience=1,
        lr=frozen,
        scheduler={"kind": kind},
    )
    assert checkpoint.history.stopped_early
    # no real learning: the best epoch is early, then one epoch past counts_from without gain
    best = checkpoint.history.best_epoch
    assert len(checkpoint.history.epochs) == max(counts_from + 1, best + 1)


def test_checkpoint_records_where_and_how_it_was_trained(tiny_cache, tmp_path):
    """Catches the runtime record (device, precision, threads, resolved schedule) missing from
    the checkpoint, or ``auto`` not resolved to OneCycle for a backbone from random weights."""
    runtime = _train(tiny_cache, tmp_path, precision="fp32").history.runtime
    assert runtime["device"] == "cpu" and runtime["precision"] == "fp32"
    assert (runtime["world_size"], runtime["torch_threads"]) == (1, 1)  # conftest: 1 thread
    # max_epochs 3: early stopping from ceil(0.8 * 3) = 3 under OneCycle
    assert (runtime["lr_schedule"], runtime["early_stopping_from_epoch"]) == ("one_cycle", 3)


def test_cache_of_another_size_is_refused(tiny_cache, tmp_path):
    images, manifest = tiny_cache
    with pytest.raises(StageInputError, match="data.image_size=32 needs 40 px"):
        train_stage(
            images,
            manifest,
            model=ModelParams(name=TINY_MODEL),
            data=DataParams(image_size=32, resize_ratio=0.8),
            training=TrainingParams(),
            route="test",
            stage="pretraining",
            backbone_init="scratch",
        )


def test_stage_two_refuses_a_checkpoint_of_another_architecture(tiny_cache, tmp_path):
    checkpoint = _train(tiny_cache, tmp_path, max_epochs=1)
    images, manifest = tiny_cache
    with pytest.raises(
        StageInputError, match="'test_efficientnet' but model.name is 'test_resnet'"
    ):
        train_stage(
            images,
            manifest,
            model=ModelParams(name="test_resnet"),
            data=DataParams(image_size=16, resize_ratio=0.8),
            training=TrainingParams(),
            route="test",
            stage="fine_tuning",
            backbone_init="checkpoint",
            init_checkpoint=checkpoint,
        )


def test_report_has_top_k_and_most_confused_pairs():
    from plankton_kedro.engine.analysis.metrics import classification_report

    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    y_pred = np.array([0, 1, 1, 1, 1, 2, 0, 3])
    scores = np.eye(4)[y_pred] + 0.5 * np.eye(4)[y_true]
    report = classification_report(y_true, y_pred, ["a", "b", "c", "d"], scores=scores)
    assert report["accuracy"] == 5 / 8
    assert report["top3_accuracy"] == 1.0
    assert report["most_confused"][0] == {
        "true": "a",
        "predicted": "b",
        "count": 2,
        "fraction_of_true": 2 / 3,
    }
    assert report["most_confused"][1]["true"] == "c"
    assert len(report["most_confused"]) == 2
    assert report["confusion_matrix"][0] == [1, 2, 0, 0]


def _recorded(tiny_cache, **settings):
    images, manifest = tiny_cache
    manifest = manifest.copy()
    record_preprocessing(manifest, CachePreprocessing(cache_size=images.shape[1], **settings))
    return images, manifest


def test_the_checkpoint_records_how_the_cache_was_made(tiny_cache, tmp_path):
    """The model must preprocess new images as its cache was made, whatever the settings of
    the day: the checkpoint takes fill, colour and bit depth from the cache's record."""
    recorded = _recorded(tiny_cache, fill=0, colour="grey", bit_depth=12)
    checkpoint = _train(recorded, tmp_path, max_epochs=1)
    preprocessing = checkpoint.preprocessing
    assert (preprocessing.fill, preprocessing.colour_mode, preprocessing.bit_depth) == (
        0,
        "grey",
        12,
    )
    assert preprocessing.cache_size == tiny_cache[0].shape[1]


def test_a_cache_made_otherwise_than_the_settings_say_is_a_clear_error(tiny_cache, tmp_path):
    images, manifest = _recorded(tiny_cache, fill=0, colour="grey")
    with pytest.raises(
        StageInputError,
        match=r"tiny cache was made with fill=0, colour=grey but the settings now say "
        r"fill=auto \(border 2\), colour=auto \(fill differ\): run the ingestion",
    ):
        train_stage(
            images,
            manifest,
            model=ModelParams(name=TINY_MODEL, bottleneck_dim=32),
            data=DataParams(image_size=16, resize_ratio=0.8),
            training=TrainingParams(max_epochs=1, state_dir=str(tmp_path)),
            route="test",
            stage="pretraining",
            backbone_init="scratch",
            preprocessing=CachePreprocessing(cache_size=images.shape[1]),
        )


def test_a_manifest_from_before_the_record_is_taken_as_white_padded(tiny_cache, tmp_path, caplog):
    checkpoint = _train(tiny_cache, tmp_path, max_epochs=1)
    assert checkpoint.preprocessing.fill == 255
    assert "written before preprocessing was recorded" in caplog.text


def test_a_manifest_recording_another_cache_size_is_refused(tiny_cache, tmp_path):
    images, manifest = tiny_cache
    manifest = manifest.copy()
    record_preprocessing(manifest, CachePreprocessing(cache_size=99))
    with pytest.raises(StageInputError, match="records 99 px images but the image cache holds 20"):
        _train((images, manifest), tmp_path, max_epochs=1)
