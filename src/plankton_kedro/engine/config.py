"""Validated settings for the engine and the pipelines (the project's parameter contract).

Kedro instantiates these Pydantic models from ``conf/*/parameters*.yml`` plus ``--params``
before a run starts, so a bad value fails early with a readable message. Stage sections
(``pretraining``, ``fine_tuning``) hold partial overrides of ``training`` that win over
the global values.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

PRETRAINED_CHOICES = ("none", "imagenet")


CHECK_TIMM_NAMES = "check_timm_names"  # validation context key: False skips importing timm


def unknown_timm_model(name: str) -> str | None:
    """Why ``name`` is not a timm model name, with the closest ones; None when it is one."""
    import timm

    if timm.is_model(name):
        return None
    close = difflib.get_close_matches(name, timm.list_models(), n=5)
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    return f"'{name}' is not a timm {timm.__version__} model name{hint}"


def _timm_name(name: str, info: ValidationInfo) -> str:
    """A field validator's check of a timm model name, unless the validation context says
    to skip it (config loading: keeps timm out; the name is checked when the network is
    built)."""
    if (info.context or {}).get(CHECK_TIMM_NAMES, True):
        problem = unknown_timm_model(name)
        if problem:
            raise ValueError(problem)
    return name


class _Strict(BaseModel):
    """Base: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelParams(_Strict):
    """Which network to build and how to initialise it."""

    name: str = "resnet18"
    pretrained: str = "none"
    bottleneck_dim: PositiveInt = 512

    @field_validator("name")
    @classmethod
    def _known_timm_model(cls, name: str, info: ValidationInfo) -> str:
        return _timm_name(name, info)

    @field_validator("pretrained")
    @classmethod
    def _known_init(cls, value: str) -> str:
        value = str(value).strip()
        if value.lower() in PRETRAINED_CHOICES:
            return value.lower()
        if not Path(value).expanduser().is_file():
            raise ValueError(
                f"model.pretrained must be 'imagenet', 'none' or the path of a local weights file "
                f"(.safetensors, .pth, .pt); '{value}' is none of these (no such file)."
            )
        return value

    @property
    def uses_pretrained_weights(self) -> bool:
        """True when the backbone starts from trained weights rather than random ones."""
        return self.pretrained != "none"


class DataParams(_Strict):
    """Input geometry shared by ingestion (the cache) and every training stage."""

    image_size: int = Field(224, ge=16, le=1024)
    resize_ratio: float = Field(0.875, gt=0.5, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _fill_moved(cls, values: Any) -> Any:
        if isinstance(values, dict) and "fill" in values:
            raise ValueError(
                "data.fill is now set per collection: preprocessing.source.fill and "
                "preprocessing.target.fill (default auto: each image's own background)"
            )
        return values

    @property
    def cache_size(self) -> int:
        """Side of the cached images: the crop size divided by the resize ratio."""
        return round(self.image_size / self.resize_ratio)


class PreprocessingParams(_Strict):
    """How one collection's images become its cache (``preprocessing.source`` / ``.target``).

    ``fill``: ``auto`` pads each image with its own background (the median of its outer
    ``border`` pixels: white for ZooScan/NDSB, black for UVP6, grey for IFCB), or a grey level
    0-255, or an RGB colour ``[r, g, b]``. ``colour``: ``auto`` keeps images as they are,
    ``grey`` drops colour, ``rgb`` keeps colour. ``bit_depth``: the instrument's bit depth for
    images of more than 8 bits (e.g. 12); every image is scaled by it (unset: 16).
    ``invert``: 255 - value before padding.
    """

    fill: Literal["auto"] | int | list[int] = "auto"
    border: PositiveInt = 2
    colour: Literal["auto", "grey", "rgb"] = "auto"
    bit_depth: int | None = Field(None, ge=8, le=16)
    invert: bool = False

    @field_validator("fill")
    @classmethod
    def _valid_fill(cls, fill: str | int | list[int]) -> str | int | list[int]:
        values = [fill] if isinstance(fill, int) else fill if isinstance(fill, list) else []
        if isinstance(fill, list) and len(fill) != 3 or any(not 0 <= v <= 255 for v in values):
            raise ValueError(f"fill must be auto, a grey level 0-255 or [r, g, b]; got {fill}")
        return fill


class LearningRates(_Strict):
    """Per-part learning rates; a part at 0 is frozen."""

    backbone: float = Field(1e-3, ge=0)
    backbone_from_scratch: float = Field(1e-2, ge=0)
    bottleneck: float = Field(1e-2, ge=0)
    classifier: float = Field(1e-2, ge=0)


class SchedulerParams(_Strict):
    """The learning-rate multiplier, stepped per optimiser update over ``num_steps``.

    ``inverse_decay`` (the paper's, for fine-tuning pretrained backbones):
    ``(1 + gamma * i / num_steps) ** -power``, which still is 1/6 of lr0 at the end.
    ``one_cycle`` (torch's OneCycleLR shape): cosine warm-up from lr0/25 over
    ``warmup_fraction`` of the updates, then cosine down to lr0/25e4; 9.5 points of accuracy
    better than the inverse decay for training from scratch (docs/results.md). Under it, early
    stopping counts only from 80 % of ``max_epochs`` on (before that the lr is high and the
    validation scores say little), or from ``min_epochs`` if that is later.
    ``auto``: ``one_cycle`` when the backbone starts from random weights, ``inverse_decay``
    when it starts from pretrained ones (ImageNet or a stage-1 model).
    """

    kind: Literal["auto", "inverse_decay", "one_cycle"] = "auto"
    gamma: float = Field(10.0, ge=0)
    power: float = Field(0.75, ge=0)
    warmup_fraction: float = Field(0.3, gt=0, lt=1)


class WarmupParams(_Strict):
    """Optional two-step warm-up before the main phase (epochs; 0 skips a step).

    Step 1: backbone frozen, bottleneck and classifier at their learning rates.
    Step 2: backbone at ``backbone_lr``. Selection and early stopping start after warm-up.
    """

    frozen_epochs: int = Field(0, ge=0)
    low_lr_epochs: int = Field(0, ge=0)
    backbone_lr: float = Field(1e-5, ge=0)


class TrainingParams(_Strict):
    """The training recipe of one stage."""

    seed: int = 42
    device: str = "auto"
    devices: PositiveInt | Literal["auto"] = 1
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    channels_last: bool = False
    compile: bool = False
    augment_on_device: bool = False
    resume: bool = True
    state_dir: str = "data/06_models/in_progress"
    max_epochs: PositiveInt = 30
    min_epochs: int = Field(0, ge=0)  # early stopping only after this many (capped at max)
    patience: PositiveInt = 50
    batch_size: PositiveInt = 8
    accumulation_steps: PositiveInt = 1
    max_updates_per_epoch: PositiveInt | None = 100  # None: every epoch is a full pass
    max_val_images: PositiveInt = 8000
    eval_every: PositiveInt = 1
    eval_batch_size: PositiveInt = 128
    selection_metric: Literal["accuracy", "f1_macro"] = "accuracy"
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(1e-2, ge=0)
    lr: LearningRates = LearningRates()
    scheduler: SchedulerParams = SchedulerParams()
    warmup: WarmupParams = WarmupParams()
    num_workers: int = Field(0, ge=0)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value != "auto" and value != "cpu" and not value.startswith("cuda"):
            raise ValueError(f"training.device must be 'auto', 'cpu' or 'cuda[:N]', not '{value}'")
        return value

    @property
    def warmup_epochs(self) -> int:
        """Epochs of warm-up before the main phase."""
        return self.warmup.frozen_epochs + self.warmup.low_lr_epochs

    def overridden(self, overrides: dict[str, Any]) -> TrainingParams:
        """These settings with a stage's partial ``overrides`` applied (nested dicts merge)."""
        return TrainingParams.model_validate(deep_merge(self.model_dump(), overrides))


class StageParams(_Strict):
    """A stage's own settings: partial ``training`` values that win over the global ones."""

    training: dict[str, Any] = Field(default_factory=dict)

    @field_validator("training")
    @classmethod
    def _valid_overrides(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        TrainingParams().overridden(overrides)  # raises a readable error for bad keys or values
        return overrides


PROBE_FEATURES = ("pretrained", "fine_tuned_bottleneck", "fine_tuned_backbone")


class FeatureClassifierParams(_Strict):
    """Logistic regression and RBF SVC on frozen features (the paper's probe).

    ``features``: ``pretrained`` is the paper's probe, the backbone a route fine-tunes from
    (its stage-1 model, or ``model.pretrained`` without stage 1), frozen, before any target
    training; ``fine_tuned_bottleneck`` / ``fine_tuned_backbone`` are features of the
    fine-tuned model itself (they have seen the training images: not the paper's measure).
    ``max_train_images``: stratified subsample of the train split; ``null`` uses all of it.
    """

    enabled: bool = True
    features: list[Literal[PROBE_FEATURES]] = Field(
        default_factory=lambda: ["pretrained"], min_length=1
    )
    c_grid: list[float] = Field(
        default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3], min_length=1
    )
    cv_folds: int = Field(5, ge=2)
    max_train_images: PositiveInt | None = 5000
    seed: int = 42

    @model_validator(mode="before")
    @classmethod
    def _backbone_features_moved(cls, values: Any) -> Any:
        if isinstance(values, dict) and "backbone_features" in values:
            raise ValueError(
                "evaluation.feature_classifiers.backbone_features is now a choice in "
                "evaluation.feature_classifiers.features: any of " + ", ".join(PROBE_FEATURES)
            )
        return values


class EvaluationParams(_Strict):
    """How a fine-tuned model is evaluated, calibrated and given an "unknown" threshold."""

    target_precision: float = Field(0.95, gt=0, le=1)
    # a class predicted for fewer held-out images than this keeps the global threshold
    class_threshold_min_images: PositiveInt = 20
    shift_check_mixes: int = Field(20, ge=0)  # class mixes of the simulated-shift check
    calibration_bins: int = Field(15, ge=2)
    top_k: list[PositiveInt] = Field(default_factory=lambda: [3, 5])
    batch_size: PositiveInt = 128
    feature_classifiers: FeatureClassifierParams = FeatureClassifierParams()


class EnsembleMember(_Strict):
    """One fine-tuned model of an ensemble: which network, by which route, from which weights."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    model: str
    route: Literal["in_domain", "out_of_domain", "two_stage"] = "two_stage"
    pretrained: str | None = None  # None: the global model.pretrained
    seed: int | None = None  # None: the global training.seed

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str, info: ValidationInfo) -> str:
        return _timm_name(name, info)


class RunParams(_Strict):
    """One run of a route template (namespace ``name``) and what it changes in the global
    settings: the route's own runs change nothing; ``compare`` runs set a seed, ensemble
    members a seed, network and weights."""

    name: str
    route: Literal["in_domain", "out_of_domain", "two_stage"]
    seed: int | None = None  # None: training.seed
    model: str | None = None  # None: model.name
    pretrained: str | None = None  # None: model.pretrained
    labels_per_class: PositiveInt | None = None  # None: every labelled target train image

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str | None, info: ValidationInfo) -> str | None:
        return None if name is None else _timm_name(name, info)

    def model_params(self, base: ModelParams) -> ModelParams:
        """The global model settings with this run's network and weights."""
        update = {"name": self.model, "pretrained": self.pretrained}
        update = {key: value for key, value in update.items() if value is not None}
        return ModelParams.model_validate({**base.model_dump(), **update}) if update else base

    def training_params(self, base: TrainingParams, stage: StageParams) -> TrainingParams:
        """Global training settings, then the stage's overrides, then this run's seed."""
        settings = base.overridden(stage.training)
        return settings if self.seed is None else settings.model_copy(update={"seed": self.seed})


class CompareParams(_Strict):
    """The route comparison: seeds, label budgets, and whether the routes are ensembled.

    ``labels_per_class``: each route is fine-tuned once per budget and seed on at most that
    many labelled target train images per class (nested, seeded subsets; validation and test
    fixed); ``None`` is every train image. Stage 1 is trained once per route and seed, shared
    by the budgets. ``ensemble``: per seed and budget, the routes' fine-tuned models are
    ensembled, members chosen on validation (``ensembling``'s mode, metric and calibration).
    """

    seeds: list[int] = Field(default_factory=lambda: [42], min_length=1)
    labels_per_class: list[PositiveInt | None] = Field(default_factory=lambda: [None], min_length=1)
    ensemble: bool = False

    @field_validator("seeds", "labels_per_class")
    @classmethod
    def _distinct(cls, values: list) -> list:
        if len(set(values)) != len(values):
            raise ValueError(f"values must be distinct; got {values}")
        return values


class EnsemblingParams(_Strict):
    """Members (fine-tuned by namespaced copies of the routes) and how they are combined."""

    members: list[EnsembleMember] = Field(min_length=1)
    mode: Literal["probabilities", "logits"] = "probabilities"
    metric: Literal["accuracy", "f1_macro"] = "accuracy"
    max_members: PositiveInt | None = None
    allow_repeats: bool = False
    calibrate_members: bool = True  # temperature-scale each member on validation first


class AbundanceParams(_Strict):
    """Per-sample abundance estimates corrected for the classifier's errors."""

    bootstrap: int = Field(200, ge=0)  # replicates of the intervals; 0: no intervals
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0


class EcoTaxaParams(_Strict):
    """The EcoTaxa import file written beside the predictions."""

    taxonomy: str | None = None  # CSV of our label -> EcoTaxa taxon name

    @field_validator("taxonomy")
    @classmethod
    def _readable_taxonomy(cls, path: str | None) -> str | None:
        """Read now, so that a bad table stops the run before any image is classified."""
        if path is not None:
            from plankton_kedro.engine.ecotaxa import read_taxonomy

            read_taxonomy(path)  # an EcoTaxaExportError (a ValueError) names file and line
        return path


class PredictParams(_Strict):
    """Batch prediction of new images."""

    batch_size: PositiveInt = 256
    top_k: int = Field(3, ge=1, le=10)  # the catalog reads top1_label..top10_label as text
    workers: PositiveInt = 2
    embeddings: bool = False  # also write the 512-d embeddings (for clustering / search)
    rejection: Literal["per_class", "global"] = "per_class"
    samples: Literal["folders", "one"] = "folders"
    abundance: AbundanceParams = AbundanceParams()
    ecotaxa: EcoTaxaParams = EcoTaxaParams()


class ExportParams(_Strict):
    """ONNX export: the parity check run on every export."""

    parity_images: PositiveInt = 16  # random images classified by torch and ONNX Runtime
    tolerance: float = Field(1e-4, gt=0)  # largest difference of a probability accepted


class DownloadSpec(_Strict):
    """One public data set file: where it lives and the SHA-256 it must have."""

    url: str = Field(pattern=r"^(https?|ftp)://")
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    destination: str


class DownloadParams(_Strict):
    """Files the ``download`` pipeline fetches (nothing by default: the demo is bundled)."""

    datasets: dict[str, DownloadSpec] = Field(default_factory=dict)
    timeout_seconds: float = Field(30.0, gt=0)


class SplitParams(_Strict):
    """Stratified, seeded train/val/test fractions, and the optional calibration share."""

    train: float = Field(0.7, gt=0, le=1)
    val: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)
    # share of each class's validation images moved to a separate calibration split, where
    # temperature and the "unknown" threshold are then fitted (0: fitted on validation)
    calibration: float = Field(0.0, ge=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitParams:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must add up to 1, they add up to {total:g}")
        return self


class HygieneParams(_Strict):
    """What happens to byte-identical files that would mislead training or evaluation.

    ``conflicting_labels``: copies of one file filed under different classes are ``drop``ped
    (all copies), kept, or an ``error``. ``source_overlap``: target images identical to a
    source image are dropped from the target's test split (``drop_from_test``: a model
    pre-trained on the source has seen them), kept, or an ``error``.
    """

    conflicting_labels: Literal["drop", "keep", "error"] = "drop"
    source_overlap: Literal["drop_from_test", "keep", "error"] = "drop_from_test"


class IngestionParams(_Strict):
    """How raw collections are validated, split and cached."""

    split: SplitParams = SplitParams()
    hygiene: HygieneParams = HygieneParams()
    workers: int = Field(2, ge=1)
    spool_dir: str | None = "data/05_model_input"  # decoded pixels spooled here, not in RAM
    reuse: bool = True  # an earlier ingestion with the same fingerprint is reused


class RetentionParams(_Strict):
    """What ``kedro prune`` keeps."""

    keep_versions: int = Field(3, ge=1)  # of each cache, table, checkpoint and ONNX model


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied: nested dicts merge, other values replace."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
