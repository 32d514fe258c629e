"""A short Markdown model card of one evaluated model, written for the ecologists who use it.

Everything on the card comes from its inputs (the checkpoint, the evaluated manifest, the
evaluation's metrics and calibration), so the same inputs always give the same text: no
clock, no paths of this machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from plankton_kedro.engine.checkpoint import Checkpoint, Preprocessing

#: Classes with fewer test images than this get their metrics flagged as uncertain.
FEW_TEST_IMAGES = 10
#: Most-confused pairs shown.
CONFUSED_PAIRS = 5
SPLIT_ORDER = ("train", "val", "calibration", "test")


def model_card(
    checkpoint: Checkpoint,
    manifest: pd.DataFrame,
    metrics: Mapping[str, Any],
    calibration: Mapping[str, Any],
) -> str:
    """The model card (Markdown) of ``checkpoint`` as evaluated on ``manifest``.

    ``metrics`` and ``calibration``: the first two results of
    :func:`plankton_kedro.engine.analysis.report.evaluation_report`; ``calibration`` may also
    hold ``class_thresholds`` and ``quantification``.
    """
    sections = [
        _title(checkpoint),
        _data(checkpoint, manifest, metrics),
        _classes(checkpoint.class_names, manifest),
        _recipe(checkpoint),
        _test_metrics(metrics),
        _confusions(metrics),
        _calibration(metrics, calibration),
        _intended_use(checkpoint, metrics, calibration),
        _known_limits(checkpoint, metrics, calibration),
    ]
    return "\n\n".join(section.strip() for section in sections if section) + "\n"


# ---------------------------------------------------------------- sections


def _title(checkpoint: Checkpoint) -> str:
    identity = checkpoint.identity
    facts = [
        f"route `{identity.route}`" if identity.route else None,
        f"stage `{identity.stage}`" if identity.stage else None,
        f"seed {identity.seed}" if identity.seed is not None else None,
        f"checkpoint version `{checkpoint.version}`" if checkpoint.version else None,
    ]
    return (
        f"# Model card: {_text(checkpoint.label)} · {_text(checkpoint.model_name)}\n\n"
        f"{len(checkpoint.class_names)} classes; " + ", ".join(f for f in facts if f) + "."
    )


def _data(checkpoint: Checkpoint, manifest: pd.DataFrame, metrics: Mapping[str, Any]) -> str:
    identity, history = checkpoint.identity, checkpoint.history
    evaluated = metrics.get("dataset") or manifest.attrs.get("dataset")
    evaluated_version = metrics.get("manifest_version") or manifest.attrs.get("version")
    rows = [
        ("Trained on", _dataset(identity.dataset, identity.manifest_version)),
        ("Evaluated on", f"{_dataset(evaluated, evaluated_version)}, test split"),
        ("Started from", _code(history.initial_weights) or "random weights"),
        ("Pretrained weights", _code(history.pretrained_weights) or "none (trained from scratch)"),
    ]
    text = "## Data and versions\n\n" + _table(("", ""), rows)
    if identity.manifest_version and evaluated_version != identity.manifest_version:
        text += (
            f"\n\nThe counts below are those of the evaluated manifest (`{evaluated_version}`), "
            f"not of the one the model was trained on (`{identity.manifest_version}`)."
        )
    return text


def _classes(class_names: Sequence[str], manifest: pd.DataFrame) -> str:
    splits = [s for s in SPLIT_ORDER if s in set(manifest["split"])]
    splits += sorted(set(manifest["split"]) - set(SPLIT_ORDER))
    counts = pd.crosstab(manifest["label"], manifest["split"])
    rows = []
    for name in class_names:
        row = counts.loc[name] if name in counts.index else None
        rows.append([_text(name)] + [str(int(row[s])) if row is not None else "0" for s in splits])
    totals = [str(int(counts[s].sum())) for s in splits]
    rows.append(["**all**", *(f"**{t}**" for t in totals)])
    return "## Classes (images per split)\n\n" + _table(("class", *splits), rows)


def _recipe(checkpoint: Checkpoint) -> str:
    history, pre = checkpoint.history, checkpoint.preprocessing
    settings = history.settings or {}
    model = settings.get("model") or {}
    training = settings.get("training") or {}
    lr = training.get("lr") or {}
    rows: list[tuple[str, str]] = []
    if model.get("bottleneck_dim"):
        rows.append(("Network", f"`{checkpoint.model_name}`, bottleneck {model['bottleneck_dim']}"))
    epochs = f"{len(history.epochs)} run"
    if training.get("max_epochs"):
        epochs += f" of at most {training['max_epochs']}"
    if history.best_epoch is not None:
        epochs += f"; best epoch {history.best_epoch}"
    if history.stopped_early:
        epochs += f"; stopped early (patience {training.get('patience', '?')})"
    rows.append(("Epochs", epochs))
    if history.selection_metric:
        chosen = f"validation {history.selection_metric}"
        if history.best_score is not None:
            chosen += f" = {history.best_score:.3f}"
        rows.append(("Selected on", chosen))
    if "momentum" in training:
        optimiser = f"SGD, momentum {training['momentum']:g}"
        optimiser += ", Nesterov" if training.get("nesterov") else ""
        if "weight_decay" in training:
            optimiser += f", weight decay {training['weight_decay']:g}"
        if training.get("label_smoothing"):
            optimiser += f", label smoothing {training['label_smoothing']:g}"
        rows.append(("Optimiser", optimiser))
    if lr:
        from_scratch = history.initial_weights is None
        backbone = lr.get("backbone_from_scratch" if from_scratch else "backbone")
        rates = [
            f"backbone {backbone:g}" + (" (from scratch)" if from_scratch else "")
            if backbone is not None
            else None,
            f"bottleneck {lr['bottleneck']:g}" if "bottleneck" in lr else None,
            f"classifier {lr['classifier']:g}" if "classifier" in lr else None,
        ]
        rows.append(("Learning rates", ", ".join(r for r in rates if r)))
    scheduler = training.get("scheduler") or {}
    if scheduler.get("kind"):
        rows.append(("Schedule", str(scheduler["kind"])))
    warmup = training.get("warmup") or {}
    if warmup.get("frozen_epochs") or warmup.get("low_lr_epochs"):
        rows.append(
            (
                "Warm-up",
                f"{warmup.get('frozen_epochs', 0)} epoch(s) backbone frozen, "
                f"{warmup.get('low_lr_epochs', 0)} at backbone lr {warmup.get('backbone_lr', 0):g}",
            )
        )
    if training.get("batch_size"):
        batch = f"{training['batch_size']}"
        steps = training.get("accumulation_steps") or 1
        if steps > 1:
            batch += f" × {steps} accumulation steps = {training['batch_size'] * steps} per update"
        if training.get("max_updates_per_epoch"):
            batch += f"; at most {training['max_updates_per_epoch']} updates per epoch"
        rows.append(("Batch size", batch))
    rows.append(("Image size", f"{pre.image_size} px crops of the {pre.cache_size} px cache"))
    rows.append(("Augmentation", "random crops, random horizontal and vertical flips"))
    runtime = history.runtime or {}
    if runtime.get("device"):
        rows.append(("Hardware", f"{runtime['device']}, {runtime.get('precision', '?')}"))
    return "## Training recipe\n\n" + _table(("setting", "value"), rows)


def _test_metrics(metrics: Mapping[str, Any]) -> str:
    headline = [
        ("Accuracy", metrics.get("accuracy")),
        ("Macro F1", metrics.get("f1_macro")),
        ("Balanced accuracy", metrics.get("balanced_accuracy")),
    ]
    top_k = sorted(
        (int(key[3:].removesuffix("_accuracy")), value)
        for key, value in metrics.items()
        if key.startswith("top") and key.endswith("_accuracy")
    )
    headline += [(f"Top-{k} accuracy", value) for k, value in top_k]
    rows = [(name, _number(value)) for name, value in headline if value is not None]
    text = f"## Test metrics (n = {metrics.get('n_test', '?')})\n\n"
    text += _table(("metric", "value"), rows)
    per_class = metrics.get("per_class") or {}
    ordered = sorted(per_class.items(), key=lambda item: (item[1]["f1"], item[0]))
    class_rows = [
        (
            _text(name),
            _number(values["precision"]),
            _number(values["recall"]),
            _number(values["f1"]),
            str(values["support"]),
        )
        for name, values in ordered
    ]
    text += "\n\nPer class, weakest F1 first:\n\n"
    text += _table(("class", "precision", "recall", "F1", "test images"), class_rows)
    return text


def _confusions(metrics: Mapping[str, Any]) -> str:
    pairs = list(metrics.get("most_confused") or [])[:CONFUSED_PAIRS]
    if not pairs:
        return "## Most confused classes\n\nNo test image was misclassified."
    rows = [
        (
            _text(pair["true"]),
            _text(pair["predicted"]),
            str(pair["count"]),
            _percent(pair.get("fraction_of_true")),
        )
        for pair in pairs
    ]
    return "## Most confused classes\n\n" + _table(
        ("true class", "taken for", "test images", "share of true class"), rows
    )


def _calibration(metrics: Mapping[str, Any], calibration: Mapping[str, Any]) -> str:
    measured = metrics.get("calibration") or {}
    temperature = calibration.get("temperature", measured.get("temperature"))
    fitted_on = calibration.get("fitted_on", measured.get("fitted_on", "val"))
    rows = [
        ("ECE (test)", measured.get("ece_before"), measured.get("ece_after")),
        ("NLL (test)", measured.get("test_nll_before"), measured.get("test_nll_after")),
        (
            f"NLL ({fitted_on})",
            measured.get("fitted_split_nll_before"),
            measured.get("fitted_split_nll_after"),
        ),
    ]
    text = "## Calibration and the “unknown” threshold\n\n"
    text += f"Temperature T = {_number(temperature, 2)}, fitted on the {fitted_on} split.\n\n"
    text += _table(
        ("", "before (T = 1)", "after"),
        [(name, _number(b), _number(a)) for name, b, a in rows if b is not None or a is not None],
    )
    threshold = calibration.get("rejection_threshold")
    open_set = metrics.get("open_set") or {}
    if threshold is not None:
        target = calibration.get("target_precision")
        text += (
            f"\n\nAn image whose highest calibrated probability is below **{_number(threshold)}** "
            "is labelled “unknown”"
            + (f" (chosen for {_percent(target)} accuracy on accepted images)" if target else "")
            + (
                "; `predict` applies each class's own threshold (below) unless told "
                "`predict.rejection=global`"
                if calibration.get("class_thresholds")
                else ""
            )
            + ".\n\n"
        )
        chosen, test = open_set.get("chosen_on") or {}, open_set.get("test") or {}
        split_rows = []
        if chosen:
            split_rows.append(
                (
                    chosen.get("split", fitted_on),
                    _percent(chosen.get("val_coverage")),
                    _percent(chosen.get("val_accuracy_on_accepted")),
                )
            )
        if test:
            split_rows.append(
                ("test", _percent(test.get("coverage")), _percent(test.get("accuracy_on_accepted")))
            )
        if split_rows:
            text += _table(("split", "coverage", "accuracy on accepted"), split_rows)
        if chosen and chosen.get("met") is False:
            text += "\n\nThe target accuracy was not reached at any threshold on that split."
    class_thresholds = calibration.get("class_thresholds") or {}
    if class_thresholds:
        text += "\n\n" + _class_thresholds(class_thresholds, open_set.get("per_class") or {})
    return text


def _class_thresholds(
    class_thresholds: Mapping[str, Any], per_class_open_set: Mapping[str, Any]
) -> str:
    """Per-class thresholds (as stored: class -> threshold), with how each was chosen and what
    it keeps on test from the metrics' ``open_set.per_class``, if there."""
    chosen = per_class_open_set.get("classes") or {}
    test = (per_class_open_set.get("test") or {}).get("per_class") or {}
    rows = []
    for name, threshold in class_thresholds.items():
        details = chosen.get(name) or {}
        on_test = test.get(name) or {}
        rows.append(
            (
                _text(name),
                _number(threshold),
                str(details.get("from", "–")),
                _percent(details.get("val_coverage", details.get("coverage"))),
                _percent(on_test.get("coverage")),
                _percent(on_test.get("accuracy_on_accepted")),
            )
        )
    header = ("class", "threshold", "from", "coverage (fitted)", "coverage (test)")
    header += ("precision on accepted (test)",)
    text = "Per predicted class (“global”: too few images to fit the class's own threshold):\n\n"
    text += _table(header, rows)
    overall = per_class_open_set.get("test") or {}
    if overall.get("coverage") is not None:
        text += (
            f"\n\nWith these thresholds, {_percent(overall['coverage'])} of the test images are "
            f"kept, at {_percent(overall.get('accuracy_on_accepted'))} accuracy."
        )
    return text


def _intended_use(
    checkpoint: Checkpoint, metrics: Mapping[str, Any], calibration: Mapping[str, Any]
) -> str:
    dataset = checkpoint.identity.dataset or metrics.get("dataset") or "its training collection"
    return (
        "## Intended use\n\n"
        f"- Sorting images of the {len(checkpoint.class_names)} classes above, taken by the "
        f"same instrument and processed like `{_text(dataset)}`, to speed up annotation.\n"
        "- Predictions at or above the “unknown” threshold can be taken as labels at the "
        "accuracy measured above; images below it, and images of the weakest classes, "
        "are meant for a person to check.\n"
        "- Abundances of a sample from the corrected abundance estimates, not from raw "
        "counts of predicted labels (see Known limits)."
    )


def _known_limits(
    checkpoint: Checkpoint, metrics: Mapping[str, Any], calibration: Mapping[str, Any]
) -> str:
    threshold = calibration.get("rejection_threshold")
    unknown = (
        "go to “unknown” at best (highest probability below their predicted class's threshold)"
        if calibration.get("class_thresholds")
        else f"go to “unknown” at best (highest probability below {_number(threshold)})"
        if threshold is not None
        else "go to “unknown” at best"
    )
    few = sorted(
        (values["support"], name)
        for name, values in (metrics.get("per_class") or {}).items()
        if values["support"] < FEW_TEST_IMAGES
    )
    if few:
        small = (
            f"- Metrics of classes with fewer than {FEW_TEST_IMAGES} test images are "
            "uncertain (one image more or less moves them by 10 points or more): "
            + ", ".join(f"{_text(name)} ({n})" for n, name in few)
            + "."
        )
    else:
        small = (
            f"- Every class has at least {FEW_TEST_IMAGES} test images; the metrics of classes "
            "with few images are still uncertain by several points."
        )
    fitted = calibration.get("quantification") or {}
    shift = (metrics.get("quantification") or {}).get("simulated_shift_on_test")
    if fitted.get("recommended") and shift:
        errors = shift["mean_absolute_error"]
        best = fitted["recommended"]
        abundance = (
            f"under simulated class-mix shift of the test split, the mean absolute error of the "
            f"class fractions was {_number(errors['classify_and_count'])} for raw counts and "
            f"{_number(errors[best])} for `{best}`, the estimate to read in "
            "`abundance_estimates.csv`"
        )
    elif fitted:
        abundance = (
            "this model's calibration stores the statistics for corrected abundance "
            "estimates (adjusted count, probabilistic adjusted count, EM): use those"
        )
    else:
        abundance = (
            "no correction statistics are stored with this model, so only raw counts are "
            "available: treat them as indicative and use corrected abundance estimates "
            "(adjusted count, EM) where the prediction pipeline provides them"
        )
    return (
        "## Known limits\n\n"
        "- Taxa absent from the training classes (new species, detritus types, artefacts not "
        f"listed) {unknown}; otherwise they are silently assigned to a known class, most "
        "often a similar-looking one.\n"
        f"- Performance holds for the instrument and preprocessing it was trained on: "
        f"{_preprocessing(checkpoint.preprocessing)}. Images from another instrument, "
        "magnification or processing need a new evaluation first.\n"
        "- Counts from classify-and-count are biased whenever a sample's class mix differs "
        f"from the training mix (rare classes absorb errors of common ones); {abundance}.\n"
        f"{small}\n"
        "- The test split comes from the same collection as the training images; new "
        "cruises, seasons or sites will usually score lower."
    )


# ---------------------------------------------------------------- formatting


def _preprocessing(pre: Preprocessing) -> str:
    if pre.fill == "auto":
        fill = f"padded with each image's border median ({pre.border} px ring)"
    elif isinstance(pre.fill, Iterable) and not isinstance(pre.fill, str):
        fill = f"padded with colour {tuple(pre.fill)}"
    else:
        fill = f"padded with grey level {pre.fill}"
    parts = [
        "greyscale" if pre.colour_mode == "grey" else "colour (RGB)",
        f"{pre.bit_depth}-bit source images" if pre.bit_depth else None,
        "inverted" if pre.invert else None,
        fill,
        f"squared to {pre.cache_size} px, {pre.image_size} px fed to the network",
    ]
    return ", ".join(p for p in parts if p)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{float(value):.{digits}f}"


def _percent(value: Any) -> str:
    if value is None:
        return "–"
    return f"{100 * float(value):.1f} %"


def _text(value: Any) -> str:
    """A name safe in a Markdown table cell."""
    return str(value).replace("|", "\\|")


def _code(value: str | None) -> str | None:
    return f"`{value}`" if value else None


def _dataset(name: str | None, version: str | None) -> str:
    text = f"`{_text(name)}`" if name else "unknown data set"
    return text + (f", manifest version `{version}`" if version else "")
