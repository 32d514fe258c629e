"""The checkpoint contract: one typed, versioned schema for a trained model or an ensemble.

Every reader (training stage 2, evaluation, ensembling, prediction, previews, the run summary)
goes through :class:`Checkpoint` / :class:`EnsembleCheckpoint`, never through raw dict keys.
On disk a checkpoint is a plain dict of primitives and tensors (``to_dict``), so it loads with
``torch.load(weights_only=True)``; ``load_checkpoint`` reads the current schema and every older
one, and refuses a newer one with a message saying what to do. No torch import here: the
weights are whatever the state dict holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from plankton_kedro.engine.errors import CheckpointError

# 1: a flat dict ("format": 1, or no marker); 2: nested sections, "schema": 2.
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Preprocessing:
    """What turns a raw image into the network's input: the cache's padding and size as
    ingestion applied them, the crop fed to the network and the network's normalisation."""

    cache_size: int
    image_size: int
    fill: str | int | tuple[int, ...]  # "auto": each image's border median
    mean: tuple[float, ...]
    std: tuple[float, ...]
    colour_mode: str = "rgb"  # grey | rgb, as resolved for the training collection
    border: int = 2  # width of the ring "auto" reads the background from
    bit_depth: int | None = None  # of high-bit-depth images (None: 16)
    invert: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.image_size <= self.cache_size:
            raise CheckpointError(
                f"image_size {self.image_size} and cache_size {self.cache_size} cannot be: the "
                "crop fed to the network must fit in the cached image (0 < image_size <= "
                "cache_size)"
            )


@dataclass(frozen=True)
class Identity:
    """Which run of which route made the model, from which data."""

    route: str | None
    run: str | None
    stage: str | None
    dataset: str | None
    manifest_version: str | None
    seed: int | None


@dataclass(frozen=True)
class History:
    """How the model got here: its initial weights, the epochs, the selected epoch and the
    settings it was trained with."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    selection_metric: str | None = None
    best_score: float | None = None
    best_epoch: int | None = None
    stopped_early: bool = False
    resumed_from_epoch: int | None = None
    updates_per_epoch: int | None = None
    initial_weights: str | None = None
    pretrained_weights: str | None = None  # the outside weights it descends from
    settings: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)  # device, precision, processes, threads


@dataclass
class Checkpoint:
    """A trained network with everything needed to use it again."""

    kind: ClassVar[str] = "checkpoint"

    model_name: str
    class_names: list[str]
    state_dict: dict[str, Any]
    preprocessing: Preprocessing
    identity: Identity
    history: History
    bottleneck_dim: int = 512
    version: str | None = None  # the catalog version it was loaded from (not saved)

    def to_dict(self) -> dict[str, Any]:
        """The on-disk form: primitives and tensors only."""
        return {
            "schema": SCHEMA_VERSION,
            "kind": self.kind,
            "model_name": self.model_name,
            "bottleneck_dim": self.bottleneck_dim,
            "class_names": list(self.class_names),
            "state_dict": self.state_dict,
            "preprocessing": _plain(asdict(self.preprocessing)),
            "identity": asdict(self.identity),
            "history": asdict(self.history),
        }

    @property
    def label(self) -> str:
        """How logs and reports name it: its run (or route), else its model name."""
        return self.identity.run or self.identity.route or self.model_name


@dataclass
class EnsembleCheckpoint:
    """Selected member checkpoints, combined with weights after temperature scaling."""

    kind: ClassVar[str] = "ensemble"

    members: list[Checkpoint]
    member_names: list[str]
    weights: list[float]
    temperatures: list[float]
    mode: str
    selection: dict[str, Any]
    rejection_threshold: float | None = None
    # per-class thresholds and abundance statistics, as a route's calibration file holds them
    calibration: dict[str, Any] = field(default_factory=dict)
    version: str | None = None

    def __post_init__(self) -> None:
        counts = {len(self.members), len(self.member_names), len(self.weights)}
        if not self.members or len(counts | {len(self.temperatures)}) != 1:
            raise CheckpointError(
                "an ensemble needs one name, weight and temperature per member (and a member)"
            )
        first = self.members[0]
        for name, member in zip(self.member_names, self.members, strict=True):
            if member.class_names != first.class_names:
                raise CheckpointError(f"ensemble member {name} was trained on other classes")
            shared = ("cache_size", "image_size", "fill", "colour_mode", "border", "bit_depth")
            shared += ("invert",)
            differs = [
                key
                for key in shared
                if getattr(member.preprocessing, key) != getattr(first.preprocessing, key)
            ]
            if differs:
                raise CheckpointError(
                    f"ensemble member {name} preprocesses images differently "
                    f"({', '.join(differs)}): members must share one image cache"
                )

    @classmethod
    def from_selection(
        cls,
        members: Mapping[str, Checkpoint],
        selection: dict[str, Any],
        temperatures: Mapping[str, float],
        rejection_threshold: float | None = None,
        calibration: dict[str, Any] | None = None,
    ) -> EnsembleCheckpoint:
        """The members a greedy selection chose (in name order) with their weights."""
        chosen = [name for name in sorted(members) if name in selection["weights"]]
        return cls(
            members=[members[name] for name in chosen],
            member_names=chosen,
            weights=[float(selection["weights"][name]) for name in chosen],
            temperatures=[float(temperatures.get(name, 1.0)) for name in chosen],
            mode=selection["mode"],
            selection=selection,
            rejection_threshold=rejection_threshold,
            calibration=dict(calibration or {}),
        )

    @property
    def class_names(self) -> list[str]:
        return self.members[0].class_names

    @property
    def preprocessing(self) -> Preprocessing:
        """The shared cache geometry and fill (normalisation is each member's own)."""
        return self.members[0].preprocessing

    @property
    def label(self) -> str:
        return "ensemble"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "kind": self.kind,
            "member_names": list(self.member_names),
            "weights": list(self.weights),
            "temperatures": list(self.temperatures),
            "mode": self.mode,
            "selection": self.selection,
            "rejection_threshold": self.rejection_threshold,
            "calibration": self.calibration,
            "members": [member.to_dict() for member in self.members],
            "member_versions": [member.version for member in self.members],
        }


AnyCheckpoint = Checkpoint | EnsembleCheckpoint


def load_checkpoint(data: Any, *, source: str = "checkpoint") -> AnyCheckpoint:
    """A checkpoint from its on-disk dict, any schema up to the current one; ``source`` names
    the file in error messages."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{source} is not a plankton-kedro checkpoint (not a dict)")
    schema = data.get("schema", 1)
    if not isinstance(schema, int) or schema < 1:
        raise CheckpointError(f"{source} has an invalid checkpoint schema {schema!r}")
    if schema > SCHEMA_VERSION:
        raise CheckpointError(
            f"{source} was written with checkpoint schema {schema}, newer than this version of "
            f"plankton-kedro reads (up to {SCHEMA_VERSION}): update plankton-kedro to use it"
        )
    reader = _read_ensemble if data.get("kind") == "ensemble" else _read_model
    try:
        return reader(data, schema, source)
    except CheckpointError as exc:  # a field's value that cannot be (image_size > cache_size)
        raise CheckpointError(f"{source}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        missing = f"no {exc.args[0]}" if isinstance(exc, KeyError) else str(exc)
        raise CheckpointError(f"{source} is not a plankton-kedro checkpoint ({missing})") from None


def _read_model(data: dict[str, Any], schema: int, source: str) -> Checkpoint:
    if schema == 1:
        return _read_flat_model(data)
    preprocessing = dict(data["preprocessing"])
    for key in ("mean", "std"):
        preprocessing[key] = tuple(preprocessing[key])
    if isinstance(preprocessing["fill"], list):
        preprocessing["fill"] = tuple(preprocessing["fill"])
    history = data.get("history") or {}
    return Checkpoint(
        model_name=data["model_name"],
        class_names=list(data["class_names"]),
        state_dict=data["state_dict"],
        preprocessing=Preprocessing(**preprocessing),
        identity=Identity(**data["identity"]),
        history=History(**history),
        bottleneck_dim=int(data.get("bottleneck_dim", 512)),
    )


def _read_flat_model(data: dict[str, Any]) -> Checkpoint:
    """Schema 1: every field at the top level; ``fill`` was the parameter at training time,
    16-bit images were scaled by their own peak (now by 16 bits unless declared)."""
    flat = {key: data.get(key) for key in _FLAT_HISTORY}
    return Checkpoint(
        model_name=data["model_name"],
        class_names=list(data["class_names"]),
        state_dict=data["state_dict"],
        preprocessing=Preprocessing(
            cache_size=int(data["cache_size"]),
            image_size=int(data["image_size"]),
            fill=int(data["fill"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
        ),
        identity=Identity(
            route=data.get("route"),
            run=data.get("run", data.get("route")),
            stage=data.get("stage"),
            dataset=data.get("dataset"),
            manifest_version=data.get("manifest_version"),
            seed=data.get("seed"),
        ),
        history=History(
            epochs=list(data.get("history") or []),
            stopped_early=bool(data.get("stopped_early", False)),
            settings=dict(data.get("params") or {}),
            **flat,
        ),
        bottleneck_dim=int(data.get("bottleneck_dim", 512)),
    )


_FLAT_HISTORY = (
    "selection_metric",
    "best_score",
    "best_epoch",
    "resumed_from_epoch",
    "updates_per_epoch",
    "initial_weights",
    "pretrained_weights",
)


def _read_ensemble(data: dict[str, Any], schema: int, source: str) -> EnsembleCheckpoint:
    versions = data.get("member_versions") or [None] * len(data["members"])
    members = []
    for number, (member, version) in enumerate(zip(data["members"], versions, strict=True)):
        checkpoint = _read_model(member, member.get("schema", schema), f"{source} member {number}")
        checkpoint.version = version
        members.append(checkpoint)
    return EnsembleCheckpoint(
        members=members,
        member_names=list(data["member_names"]),
        weights=[float(w) for w in data["weights"]],
        temperatures=[float(t) for t in data["temperatures"]],
        mode=data["mode"],
        selection=data.get("selection") or {},
        rejection_threshold=data.get("rejection_threshold"),
        calibration=data.get("calibration") or {},
    )


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Tuples as lists, so the saved dict holds only JSON-like containers."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
