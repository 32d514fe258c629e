"""The project's config loader: conf/local under any environment, --params keys that exist,
and the run parameters of every route copy."""

from __future__ import annotations

import shutil

import click
import pytest
import yaml

from plankton_kedro.config_loader import ConfigurationError, PlanktonConfigLoader
from tests.conftest import PROJECT_ROOT

ARGS = {"base_env": "base", "default_run_env": "local"}


@pytest.fixture
def conf(tmp_path):
    """The project's conf/ with a user's conf/local: their own data and a setting."""
    folder = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", folder, ignore=shutil.ignore_patterns("local"))
    (folder / "local").mkdir()
    entry = {"type": "plankton_kedro.datasets.ImageSourceDataset", "path": "/data/uvp6.zip"}
    (folder / "local" / "catalog.yml").write_text(yaml.safe_dump({"target_images": entry}))
    (folder / "local" / "parameters.yml").write_text(yaml.safe_dump({"compare": {"seeds": [7]}}))
    return folder


def test_conf_local_applies_under_the_paper_environment_too(conf):
    """Kedro's --env paper alone replaces conf/local: the user's entries would vanish and the
    run would train on the bundled demo data."""
    loader = PlanktonConfigLoader(str(conf), env="paper", **ARGS)
    assert loader["catalog"]["target_images"]["path"] == "/data/uvp6.zip"
    parameters = loader["parameters"]
    assert parameters["compare"]["seeds"] == [7]  # conf/local
    assert parameters["model"]["pretrained"] == "imagenet"  # conf/paper
    assert parameters["data"]["image_size"] == 224


def test_command_line_parameters_win_over_every_file(conf):
    runtime = {"compare": {"seeds": [1, 2]}, "training": {"max_epochs": 3}}
    parameters = PlanktonConfigLoader(str(conf), env="paper", runtime_params=runtime, **ARGS)[
        "parameters"
    ]
    assert parameters["compare"]["seeds"] == [1, 2]
    assert parameters["training"]["max_epochs"] == 3
    assert parameters["training"]["batch_size"] == 8  # the rest of the paper's section stays


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        ({"trainng": {"max_epochs": 1}}, "--params trainng: .*did you mean training\\?"),
        ({"preprocessing": {"targt": {"fill": 0}}}, "did you mean preprocessing.target\\?"),
        ({"training": {"max_epoch": 1}}, "--params training.max_epoch: .*max_epochs"),
    ],
)
def test_a_misspelled_parameter_is_an_error_naming_the_closest(conf, runtime, message):
    loader = PlanktonConfigLoader(str(conf), runtime_params=runtime, **ARGS)
    with pytest.raises(ConfigurationError, match=message) as caught:
        loader["parameters"]
    assert isinstance(caught.value, click.ClickException)  # `kedro run` shows one line


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        (
            {"data": {"resize_ratio": 1.5}},
            r"--params data.resize_ratio: .*less than or equal to 1 \(got 1.5\)",
        ),
        (
            {"training": {"batch_size": 0}},
            r"--params training.batch_size: .*greater than 0 \(got 0\)",
        ),
        (
            {"preprocessing": {"target": {"fill": "purple"}}},
            r"--params preprocessing.target.fill: .*'auto' \(got 'purple'\)",
        ),
        (
            {"pretraining": {"training": {"lr": {"classifier": -1}}}},
            r"--params pretraining.training.lr.classifier: .*greater than or equal to 0",
        ),
        (
            {"training": {"scheduler": {"kind": "cosine"}}},
            r"--params training.scheduler.kind: .*'one_cycle'",
        ),
    ],
    ids=["range", "positive", "union", "stage override", "choice"],
)
def test_a_refused_value_is_one_line_naming_the_key(conf, runtime, message):
    """Catches a value the parameter models refuse reaching Kedro's validation, which
    prints a traceback through the session (or, for a stage override, only at training)."""
    loader = PlanktonConfigLoader(str(conf), runtime_params=runtime, **ARGS)
    with pytest.raises(ConfigurationError, match=message):
        loader["parameters"]


def test_catalog_values_and_open_sections_are_accepted(conf):
    runtime = {
        "source_images": "/data/ndsb.zip",  # read by the catalog with ${runtime_params:...}
        "predict_model": "ensemble",
        "pretraining": {"training": {"max_epochs": 2}},
        "preprocessing": {"target": {"fill": 0}},
    }
    parameters = PlanktonConfigLoader(str(conf), runtime_params=runtime, **ARGS)["parameters"]
    assert parameters["preprocessing"]["target"]["fill"] == 0


def test_every_run_gets_its_parameters_from_the_configured_seeds_and_members(conf):
    runs = PlanktonConfigLoader(str(PROJECT_ROOT / "conf"), **ARGS)["parameters"]["runs"]
    assert runs["two_stage"] == {"name": "two_stage", "route": "two_stage"}
    assert runs["in_domain_seed2"]["seed"] == 2
    assert runs["ensemble_lite0_ood"]["route"] == "out_of_domain"


def test_a_local_setting_and_a_command_line_key_change_only_their_key(conf):
    """Catches Kedro's default merge: a section in conf/local (the documented
    ``training: {num_workers: 8}``) replaced the whole base section, and, because Kedro merges
    ``--params`` into each environment's files before merging them, any ``--params`` key of a
    section dropped the rest of that section whenever conf/local held a parameters file
    (``preprocessing.source.fill=0`` lost ``preprocessing.target``)."""
    (conf / "local" / "parameters.yml").write_text(yaml.safe_dump({"training": {"num_workers": 3}}))
    base = PlanktonConfigLoader(str(conf), **ARGS)["parameters"]
    runtime = {"preprocessing": {"source": {"fill": 0}}, "training": {"max_epochs": 2}}
    for env in (None, "paper"):
        plain = PlanktonConfigLoader(str(conf), env=env, **ARGS)["parameters"]
        parameters = PlanktonConfigLoader(str(conf), env=env, runtime_params=runtime, **ARGS)[
            "parameters"
        ]
        assert parameters["training"]["num_workers"] == 3
        assert parameters["training"]["max_epochs"] == 2
        assert parameters["training"]["batch_size"] == plain["training"]["batch_size"]
        assert parameters["preprocessing"]["source"]["fill"] == 0
        assert parameters["preprocessing"]["target"] == plain["preprocessing"]["target"]
    assert base["training"]["batch_size"] == 32  # conf/base's, kept beside the local key
