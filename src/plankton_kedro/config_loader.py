"""The project's configuration loader: Kedro's ``OmegaConfigLoader`` and three rules.

1. The parameters gain the ``runs`` section: each copy of a route template's route, seed and
   network (:mod:`plankton_kedro.pipelines.runs`).
2. ``conf/local`` (this machine's catalog entries, credentials and parameters) applies on top
   of any ``--env``: Kedro's ``--env paper`` alone would replace it, and a run with the paper's
   recipe would silently train on the bundled demo data instead of the user's. Parameters
   merge key by key (Kedro's ``soft`` strategy): a ``training: {num_workers: 8}`` in
   conf/local changes that key only; with Kedro's default a section in conf/local replaces the
   base section, and since Kedro merges ``--params`` into each environment's files first,
   ``--params preprocessing.source.fill=0`` with any conf/local parameters file would drop
   ``preprocessing.target``.
3. A ``--params`` key that names no parameter (``trainng.max_epochs=3``) is an error that
   suggests the closest key, instead of a run with the defaults; a value the section's
   parameter model refuses (``data.resize_ratio=1.5``) is a one-line error naming the key,
   not Kedro's validation traceback.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import click
import yaml
from kedro.config import MissingConfigException, OmegaConfigLoader
from kedro.framework.context import KedroContext
from kedro.validation import ParameterValidationError
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ValidationError

from plankton_kedro.engine import config as models
from plankton_kedro.engine.config import deep_merge
from plankton_kedro.engine.errors import PlanktonUserError, one_line
from plankton_kedro.pipelines.build_parameters import use_run_environment
from plankton_kedro.pipelines.runs import RUNS_KEY, all_runs

ALWAYS_LOCAL = ("catalog", "parameters", "credentials")
# The parameter model of each section (what the nodes receive); ``preprocessing`` holds one per
# collection.
SECTION_MODELS: dict[str, type[BaseModel]] = {
    "model": models.ModelParams,
    "data": models.DataParams,
    "training": models.TrainingParams,
    "pretraining": models.StageParams,
    "fine_tuning": models.StageParams,
    "ingestion": models.IngestionParams,
    "evaluation": models.EvaluationParams,
    "ensembling": models.EnsemblingParams,
    "compare": models.CompareParams,
    "predict": models.PredictParams,
    "export": models.ExportParams,
    "download": models.DownloadParams,
    "retention": models.RetentionParams,
}
_RUNTIME_PARAM_IN_CONFIG = re.compile(r"\$\{runtime_params:\s*([\w.]+)")


class ConfigurationError(PlanktonUserError, click.ClickException):
    """A setting given on the command line that cannot be used; ``kedro`` shows it as one
    ``Error:`` line."""


class PlanktonConfigLoader(OmegaConfigLoader):
    """See the module: runs parameters, conf/local on top of any environment, known keys."""

    def __init__(self, conf_source: str, *args: Any, **kwargs: Any) -> None:
        merge = {"parameters": "soft", **(kwargs.pop("merge_strategy", None) or {})}
        super().__init__(conf_source, *args, merge_strategy=merge, **kwargs)
        use_run_environment(self.env)  # the pipelines, built next, read the same environment

    def __getitem__(self, key: str) -> Any:
        try:
            config = super().__getitem__(key)
            if key in ALWAYS_LOCAL and self._env_replaces_local():
                if key == "parameters":  # what --params sets wins over conf/local too
                    config = deep_merge(
                        deep_merge(config, self._local(key)), self.runtime_params or {}
                    )
                else:
                    config = {**config, **self._local(key)}
        except (yaml.YAMLError, OmegaConfBaseException, ValueError) as exc:
            raise ConfigurationError(self._unreadable(exc)) from None
        if key == "parameters":
            if self.runtime_params:
                self._check_runtime_keys(self._written_parameters())
            _check_values(config, set(self.runtime_params or {}))
            config = {**config, RUNS_KEY: all_runs()}
        return config

    def _unreadable(self, exc: Exception) -> str:
        """One line for a configuration file that cannot be read, naming the file even where
        the YAML error does not (a duplicate key)."""
        text = one_line(exc)
        if "<file>" in text or "<unicode string>" in text:
            for path in sorted(Path(self.conf_source).rglob("*.yml")):
                try:
                    OmegaConf.load(path)
                except yaml.MarkedYAMLError as error:
                    line = error.problem_mark.line + 1 if error.problem_mark else "?"
                    return f"configuration: {path}, line {line}: {error.problem}"
                except (yaml.YAMLError, OmegaConfBaseException) as error:
                    return f"configuration: {path}: {one_line(error)}"
        return f"configuration: {text}"

    def _env_replaces_local(self) -> bool:
        return self.env not in (None, "", self.default_run_env, self.base_env)

    def _local(self, key: str) -> dict[str, Any]:
        """conf/local's own ``key`` configuration (parameters without the runtime ones)."""
        runtime = None if key == "parameters" else self.runtime_params
        return self._plain(self.default_run_env, self.default_run_env, runtime, key)

    def _written_parameters(self) -> dict[str, Any]:
        """The parameters the configuration files give, without ``--params``."""
        written = self._plain(self.base_env, self.env or self.default_run_env, None, "parameters")
        if self._env_replaces_local():
            written = deep_merge(written, self._local("parameters"))
        return written

    def _plain(
        self, base_env: str, env: str, runtime: dict[str, Any] | None, key: str
    ) -> dict[str, Any]:
        loader = OmegaConfigLoader(
            conf_source=self.conf_source,
            env=env,
            runtime_params=runtime,
            config_patterns=self.config_patterns,
            merge_strategy=self.merge_strategy,
            base_env=base_env,
            default_run_env=env,
        )
        try:
            return loader[key]
        except MissingConfigException:
            return {}

    def _check_runtime_keys(self, parameters: dict[str, Any]) -> None:
        """Every ``--params`` key must name a parameter (two levels deep) or a catalog value
        read with ``${runtime_params:...}`` (``source_images``, ``predict_model``, ...)."""
        catalog_names = self._runtime_names_in_files()
        for key, value in (self.runtime_params or {}).items():
            if key in catalog_names or key == RUNS_KEY:
                continue
            _known(key, parameters, "")
            if isinstance(value, dict) and isinstance(parameters.get(key), dict):
                section = parameters[key]
                if section:  # an empty section ({}) takes any key
                    for child in value:
                        _known(child, section, f"{key}.")

    def _runtime_names_in_files(self) -> set[str]:
        names = set()
        for path in Path(self.conf_source).rglob("*.yml"):
            text = path.read_text(encoding="utf-8", errors="replace")
            names |= {match.split(".")[0] for match in _RUNTIME_PARAM_IN_CONFIG.findall(text)}
        return names


def _known(key: str, section: dict[str, Any], prefix: str) -> None:
    if key in section:
        return
    close = difflib.get_close_matches(key, [str(k) for k in section], n=1)
    hint = f"; did you mean {prefix}{close[0]}?" if close else ""
    raise ConfigurationError(f"--params {prefix}{key}: there is no such parameter{hint}")


class PlanktonContext(KedroContext):
    """Kedro's context, whose validation of the nodes' parameters (it instantiates their
    models, looking model names up in timm) ends in one ``Error:`` line, not a traceback."""

    @property
    def params(self) -> dict[str, Any]:
        try:
            return super().params
        except ParameterValidationError as exc:
            raw = self.config_loader["parameters"]
            _check_values(raw, set(), check_timm_names=True)  # raises the one-line form
            first = next((line for line in str(exc).splitlines() if line.startswith("- ")), "")
            raise ConfigurationError(first.removeprefix("- ") or one_line(exc)) from None


def _check_values(
    parameters: dict[str, Any], from_command_line: set[str], *, check_timm_names: bool = False
) -> None:
    """Validate every section with its parameter model before any node runs, so that a
    refused value or an unknown key, in a file or given with ``--params``, is one line
    naming the key, not Kedro's validation traceback when a node receives it."""
    for section in parameters:
        origin = "--params" if section in from_command_line else "parameter"
        if section == "preprocessing":
            pairs = [
                (f"preprocessing.{name}.", models.PreprocessingParams, value)
                for name, value in (parameters.get(section) or {}).items()
            ]
        elif section in SECTION_MODELS:
            pairs = [(f"{section}.", SECTION_MODELS[section], parameters.get(section) or {})]
        else:
            continue
        for prefix, model, value in pairs:
            # a model name is looked up in timm (seconds to import) only when given on the
            # command line; one in a file is checked when the network is built
            context = {models.CHECK_TIMM_NAMES: check_timm_names or origin == "--params"}
            try:
                model.model_validate(value, context=context)
            except ValidationError as exc:
                raise ConfigurationError(_refusal(exc, f"{origin} {prefix}", model)) from None


def _refusal(exc: ValidationError, where: str, model: type[BaseModel]) -> str:
    """The first error of a parameter model as ``<where><key>: <problem>``; an unknown key
    gets the closest known one."""
    first = exc.errors()[0]
    names = []  # field names, not the union member tags pydantic appends
    for part in first["loc"]:
        if isinstance(part, str) and ("[" in part or "(" in part):
            break
        names.append(str(part))
    key = ".".join(names)
    if first["type"] == "extra_forbidden":
        fields = _fields_at(model, names[:-1])
        close = difflib.get_close_matches(names[-1], fields, n=1)
        parent = where.split(" ", 1)[1] + "".join(f"{name}." for name in names[:-1])
        hint = f"; did you mean {parent}{close[0]}?" if close else ""
        return f"{where}{key}: there is no such parameter{hint}"
    message = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    shown = f"got {given}" in message or (isinstance(given, str) and repr(given) in message)
    return f"{where}{key}: {message}{'' if shown else f' (got {given!r})'}"


def _fields_at(model: type[BaseModel], path: list[str]) -> list[str]:
    """The field names of the (nested) parameter model at ``path`` (empty if not a model)."""
    for name in path:
        field = model.model_fields.get(name)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
