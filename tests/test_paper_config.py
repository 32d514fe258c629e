"""The real-run configuration (conf/paper) is valid against the parameter models."""

from kedro.config import OmegaConfigLoader

from plankton_kedro.engine.config import (
    DataParams,
    IngestionParams,
    ModelParams,
    StageParams,
    TrainingParams,
)
from tests.conftest import PROJECT_ROOT


def test_paper_environment_holds_the_paper_recipe():
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="paper")
    params = loader["parameters"]
    model = ModelParams(**params["model"])
    training = TrainingParams(**params["training"])
    assert model.name == "vit_base_patch16_224.augreg_in21k" and model.pretrained == "imagenet"
    assert DataParams(**params["data"]).cache_size == 256
    assert (training.batch_size, training.accumulation_steps) == (8, 2)
    assert (training.min_epochs, training.patience, training.max_updates_per_epoch) == (30, 50, 100)
    assert (training.lr.backbone, training.lr.classifier, training.weight_decay) == (
        1e-3,
        1e-2,
        1e-2,
    )
    assert training.devices == "auto" and training.precision == "auto"
    IngestionParams(**params["ingestion"])
    StageParams(**params["pretraining"]), StageParams(**params["fine_tuning"])
