"""Which model `predict` uses: a run's newest or pinned checkpoint with the calibration fitted
for that very checkpoint, found where the catalog keeps the runs' files."""

from __future__ import annotations

import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DatasetError, Version
from kedro_datasets.json import JSONDataset

from plankton_kedro.datasets import CheckpointDataset, PredictionModelDataset
from tests.conftest import PROJECT_ROOT, small_checkpoint


@pytest.fixture
def models(tmp_path):
    """Two versions of run `two_stage_seed1`, the calibration of the older one only."""
    for version, value in (("2026-01-01", 1.0), ("2026-01-02", 2.0)):
        path = str(tmp_path / "two_stage_seed1" / "target_model.pt")
        CheckpointDataset(filepath=path, version=Version(None, version)).save(
            small_checkpoint(value)
        )
    JSONDataset(
        filepath=str(tmp_path / "two_stage_seed1" / "calibration.json"),
        version=Version(None, "2026-01-01"),
    ).save({"checkpoint_version": "2026-01-01", "temperature": 1.5, "rejection_threshold": 0.4})
    return tmp_path


def _dataset(folder, model: str) -> PredictionModelDataset:
    return PredictionModelDataset(
        model=model,
        target_model=f"{folder}/{{route}}/target_model.pt",
        calibration=f"{folder}/{{route}}/calibration.json",
        ensemble_model=f"{folder}/ensemble/ensemble_model.pt",
    )


def test_a_pinned_version_comes_with_the_calibration_fitted_for_it(models):
    loaded = _dataset(models, "two_stage_seed1@2026-01-01").load()
    assert loaded["model"].version == "2026-01-01" and loaded["model"].state_dict["w"][0, 0] == 1
    assert loaded["calibration"]["temperature"] == 1.5


def test_the_newest_version_is_used_without_a_calibration_fitted_for_another(models, caplog):
    loaded = _dataset(models, "two_stage_seed1").load()
    assert loaded["model"].version == "2026-01-02"
    assert loaded["calibration"] is None
    assert "no calibration was fitted for two_stage_seed1 checkpoint 2026-01-02" in caplog.text


def test_an_unknown_run_is_an_error_listing_the_trained_ones(models):
    with pytest.raises(
        DatasetError, match="no trained model at .*nope.* Trained models: two_stage_seed1\\."
    ):
        _dataset(models, "nope").load()


def test_a_file_template_without_a_run_placeholder_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="one placeholder"):
        PredictionModelDataset(
            model="two_stage",
            target_model=str(tmp_path / "target_model.pt"),
            calibration=str(tmp_path / "{route}/calibration.json"),
            ensemble_model=str(tmp_path / "ensemble.pt"),
        )


def test_the_catalog_gives_predict_model_the_paths_of_the_run_entries():
    catalog = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base"
    )["catalog"]
    predict_model = catalog["predict_model"]
    assert predict_model["target_model"] == catalog["{route}.target_model"]["filepath"]
    assert predict_model["calibration"] == catalog["{route}.calibration"]["filepath"]
    assert predict_model["ensemble_model"] == catalog["ensemble_model"]["filepath"]
