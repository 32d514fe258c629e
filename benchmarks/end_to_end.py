"""A whole ``kedro run --pipelines=two_stage`` on the demo against a bare script doing the same
work in one process, alternating, in the same run.

``kedro``  the command a user types, in a fresh copy of the project each repeat (nothing to
           reuse), as a subprocess: CLI and session start, catalog loads and saves (versioned
           files), hooks, MLflow tracking, the run summary.
``bare``   the same node functions in the same order in this process, with the same
           parameters (validated into the same models), the same decoding, epochs, updates and
           evaluation, passing every output in memory: no Kedro, no files but the training
           state, no tracking.

Prints each repeat, the median ratio bare / kedro (target >= 0.8) and where the difference
goes: start (process start to the first node), ingestion, stage 1, stage 2, evaluation (node
by node, a node's loads and saves included on the kedro side) and the end of the run (run
summary, MLflow). Then the same command again in the last project copy (everything reused)
against its first run (target: under 20 %).

    python benchmarks/end_to_end.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
GROUPS = (
    ("ingestion", ("scan_collection", "split_records", "build_report")),
    ("stage 1", ("train_on_source",)),
    ("stage 2", ("fine_tune",)),
)
LOGGING = """version: 1
disable_existing_loggers: False
formatters:
  timed: {format: "%(created).3f %(message)s"}
handlers:
  console: {class: logging.StreamHandler, formatter: timed, stream: ext://sys.stdout}
loggers:
  kedro: {level: INFO}
  plankton_kedro: {level: INFO}
root: {handlers: [console]}
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    return parser.parse_args(argv)


def group_of(node: str) -> str:
    short = node.split(".")[-1]
    return next((g for g, names in GROUPS if any(short.startswith(n) for n in names)), "evaluation")


def kedro_run(project: Path, threads: int) -> tuple[float, dict[str, float]]:
    """Wall time of the command and its parts, from the millisecond timestamps of its log."""
    logging_config = project / "timed_logging.yml"
    logging_config.write_text(LOGGING)
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "KEDRO_LOGGING_CONFIG": str(logging_config),
        "OMP_NUM_THREADS": str(threads),
    }
    kedro = Path(sys.executable).with_name("kedro")
    started = time.time()
    result = subprocess.run(
        [str(kedro), "run", "--pipelines=two_stage"],
        cwd=project, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    ended = time.time()
    if result.returncode:
        raise SystemExit(f"kedro run failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    lines = [
        line.split(" ", 1) for line in result.stdout.splitlines() if re.match(r"^\d+\.\d+ ", line)
    ]
    events = [(float(t), message) for t, message in lines]
    first = next(t for t, m in events if m.startswith(("Loading data", "Running node")))
    parts = {"start": first - started}
    previous = first
    for t, message in events:
        if message.startswith("Completed node: "):
            group = group_of(message.removeprefix("Completed node: ").strip())
            parts[group] = parts.get(group, 0.0) + t - previous
            previous = t
    parts["end of run"] = ended - previous
    return ended - started, parts


def bare_run(threads: int) -> tuple[float, dict[str, float]]:
    """The two_stage nodes called in order with in-memory data (imports included)."""
    started = time.perf_counter()
    import torch
    from kedro.validation import ParameterValidator

    from plankton_kedro.config_loader import PlanktonConfigLoader
    from plankton_kedro.datasets import ImageSourceDataset
    from plankton_kedro.engine.collection.earlier import NO_EARLIER_INGESTIONS
    from plankton_kedro.pipelines.assembly import build_route

    torch.set_num_threads(threads)
    state = Path(tempfile.mkdtemp(prefix="bare-state-"))
    pipeline = build_route("two_stage")
    raw = PlanktonConfigLoader(
        str(PROJECT / "conf"), base_env="base", default_run_env="local",
        runtime_params={"training": {"state_dir": str(state)}},
    )["parameters"]  # fmt: skip
    params = ParameterValidator({"two_stage": pipeline}).validate_raw_params(raw)
    store: dict[str, object] = {
        "source_images": ImageSourceDataset(
            path=str(PROJECT / "data/01_raw/demo_source.zip")
        ).load(),
        "target_images": ImageSourceDataset(
            path=str(PROJECT / "data/01_raw/demo_target.zip")
        ).load(),
        "source.earlier_ingestions": NO_EARLIER_INGESTIONS,
        "target.earlier_ingestions": NO_EARLIER_INGESTIONS,
    }
    parts = {"start": time.perf_counter() - started}
    for node in pipeline.nodes:
        inputs = {name: _value(name, store, params) for name in node.inputs}
        begun = time.perf_counter()
        store.update(node.run(inputs))
        group = group_of(node.name)
        parts[group] = parts.get(group, 0.0) + time.perf_counter() - begun
    shutil.rmtree(state, ignore_errors=True)
    return time.perf_counter() - started, parts


def _value(name: str, store: dict, params: dict):
    if not name.startswith("params:"):
        return store[name]
    value = params
    for key in name.removeprefix("params:").split("."):
        value = value[key]
    return value


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(PROJECT))  # the project copy the tests make (not in the bare process)
    from tests.conftest import copy_project

    args = parse_args(argv)
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    ratios, kedro_parts, bare_parts = [], [], []
    work = Path(tempfile.mkdtemp(prefix="end-to-end-"))
    project = None
    for repeat in range(1, args.repeats + 1):
        project = copy_project(work / f"project{repeat}")
        kedro_s, kedro_part = kedro_run(project, args.threads)
        bare = subprocess.run(  # a fresh interpreter, as the command gets
            [sys.executable, __file__, "--bare-only", "--threads", str(args.threads)],
            capture_output=True, text=True, check=True, cwd=PROJECT,
        )  # fmt: skip
        bare_s, bare_part = eval(bare.stdout.strip().splitlines()[-1])  # noqa: S307 - our own output
        ratios.append(bare_s / kedro_s)
        kedro_parts.append(kedro_part)
        bare_parts.append(bare_part)
        print(
            f"repeat {repeat}: kedro run {kedro_s:.1f} s, bare {bare_s:.1f} s, "
            f"bare/kedro {ratios[-1]:.2f}"
        )
    print(
        f"bare / kedro run: median {statistics.median(ratios):.2f} "
        f"({', '.join(f'{r:.2f}' for r in ratios)}); target >= 0.8"
    )
    print("| part | kedro run (s) | bare (s) | difference (s) |")
    print("|---|---|---|---|")
    for part in ("start", "ingestion", "stage 1", "stage 2", "evaluation", "end of run"):
        k = statistics.median(p.get(part, 0.0) for p in kedro_parts)
        b = statistics.median(p.get(part, 0.0) for p in bare_parts)
        print(f"| {part} | {k:.1f} | {b:.1f} | {k - b:+.1f} |")
    again_s, again = kedro_run(project, args.threads)
    first_s = sum(kedro_parts[-1].values())
    print(
        f"the same command again in the last copy (everything reused): {again_s:.1f} s, "
        f"{again_s / first_s:.0%} of its first run ({first_s:.1f} s); target < 20 %; parts: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in again.items())
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if "--bare-only" in sys.argv:
        threads = int(sys.argv[sys.argv.index("--threads") + 1])
        print(repr(bare_run(threads)))
    else:
        main()
