"""The layout's promises: each engine sub-package keeps to its dependency family, no import
loops, and every ``kedro`` command starts without importing torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "src" / "plankton_kedro"
HEAVY = (
    "torch",
    "torchvision",
    "timm",
    "sklearn",
    "scipy.signal",
    "matplotlib.pyplot",
    "mlflow",
    "onnx",
    "onnxruntime",
)
BLOCK_HEAVY = (
    "import sys\n"
    "class BlockHeavy:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'torchvision', 'timm', 'mlflow', 'onnxruntime'):\n"
    "            raise ImportError(f'{name} is blocked')\n"
    "sys.meta_path.insert(0, BlockHeavy())\n"
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """Modules a file imports when it is imported (not those imported inside functions)."""
    tree = ast.parse(path.read_text())
    names = set()
    for statement in tree.body:
        if isinstance(statement, ast.Import):
            names |= {alias.name for alias in statement.names}
        elif isinstance(statement, ast.ImportFrom):
            if statement.level:
                base = _module_name(path).split(".")
                base = base if path.name == "__init__.py" else base[:-1]
                base = base[: len(base) - statement.level + 1]
                prefix = ".".join(base + ([statement.module] if statement.module else []))
            else:
                prefix = statement.module
            names.add(prefix)
            names |= {f"{prefix}.{alias.name}" for alias in statement.names}
    return names


def _project_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: {m for m in _top_level_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_no_import_loops_between_the_project_modules():
    graph = _project_graph()
    visiting, done, loops = [], set(), []

    def visit(module: str) -> None:
        if module in done:
            return
        if module in visiting:
            loops.append(visiting[visiting.index(module) :] + [module])
            return
        visiting.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    assert loops == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("plankton_kedro.engine", ("kedro", "plankton_kedro.pipelines", "plankton_kedro.datasets")),
        ("plankton_kedro.engine.collection", ("plankton_kedro.engine.modelling",)),
        ("plankton_kedro.engine.collection", ("plankton_kedro.engine.analysis",)),
        ("plankton_kedro.engine.analysis", ("plankton_kedro.engine.modelling",)),
        ("plankton_kedro.engine.analysis", ("plankton_kedro.engine.collection",)),
        # classifying new images needs the network, not the training stack
        (
            "plankton_kedro.engine.modelling.classify",
            tuple(
                f"plankton_kedro.engine.modelling.{m}"
                for m in ("fit", "loop", "schedule", "stages", "resume", "distributed")
            ),
        ),
    ],
)
def test_each_engine_package_depends_only_on_what_its_layer_allows(package, forbidden):
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        if name == package or name.startswith(f"{package}."):
            bad = {m for m in _top_level_imports(path) if m.startswith(forbidden)}
            if bad:
                offenders[name] = sorted(bad)
    assert offenders == {}


def _imports_in_a_fresh_interpreter(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return set(result.stdout.split())


def test_collection_and_analysis_import_with_torch_blocked():
    """Every module of both packages imports in an interpreter where torch cannot be found."""
    modules = sorted(
        _module_name(p)
        for package in ("collection", "analysis")
        for p in (PACKAGE / "engine" / package).glob("*.py")
    )
    code = BLOCK_HEAVY + "".join(f"import {name}\n" for name in modules)
    loaded = _imports_in_a_fresh_interpreter(code)
    assert set(modules) <= loaded


def test_kedro_commands_start_without_torch_timm_or_scikit_learn():
    """What `kedro --help`, `kedro registry list` and `kedro run` import before a node runs:
    the settings (hooks, config loader), every pipeline and node module, and the run
    parameters of every route copy."""
    code = (
        "from kedro.framework.startup import bootstrap_project\n"
        "bootstrap_project('.')\n"
        "from kedro.framework.project import pipelines, settings\n"
        "assert len(pipelines) > 10\n"
        "loader = settings.CONFIG_LOADER_CLASS('conf', **settings.CONFIG_LOADER_ARGS)\n"
        "assert 'two_stage_seed1' in loader['parameters']['runs']\n"
    )
    loaded = _imports_in_a_fresh_interpreter(code)
    assert sorted(m for m in HEAVY if m in loaded) == []


def test_the_settings_every_kedro_command_imports_load_fast_without_heavy_libraries():
    """Catches a hook or the config loader importing torch, timm, MLflow or ONNX Runtime at
    module level (each of them blocked here): ``kedro --help`` would take seconds again
    (~20 s before the project kept them out). The time bound is generous (about 0.5 s on a
    2-core machine) so that only such an import, not a busy machine, fails it."""
    code = BLOCK_HEAVY + (
        "import time\n"
        "started = time.perf_counter()\n"
        "import plankton_kedro.settings\n"
        "print(f'SECONDS {time.perf_counter() - started:.3f}')\n"
    )
    loaded = _imports_in_a_fresh_interpreter(code)
    seconds = float(next(x for x in loaded if x[:1].isdigit() and "." in x))
    assert "plankton_kedro.settings" in loaded
    assert seconds < 3.0


def test_the_project_sends_no_telemetry_even_without_the_environment_variable(monkeypatch):
    """Catches the project's opt-out file lost: then a user running ``.venv/bin/kedro``
    directly (without the Makefile's KEDRO_DISABLE_TELEMETRY) sends usage data, with a 10 s
    timeout on each command offline."""
    from kedro_telemetry.plugin import _check_for_telemetry_consent

    for variable in ("KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK", "GITHUB_REPOSITORY_OWNER"):
        monkeypatch.delenv(variable, raising=False)
    assert _check_for_telemetry_consent(PROJECT_ROOT) is False
