"""Run one training node of the project as a rank of a ``torchrun`` job (multi-node DDP).

``kedro run`` is never wrapped in ``torchrun``. For a job spanning several machines, run the
other stages with ``kedro run`` as usual and start the training node itself on every
machine with ``torchrun``; every process loads the node's inputs (latest versions) from the
project catalog, trains as one DDP rank, and rank 0 saves the result as a new version of
the node's output::

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m plankton_kedro.train_node two_stage.train_on_source \\
        --params model.pretrained=imagenet

The project folder (with ``data/``) must be on storage all machines share.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.pipeline import Node
from omegaconf import OmegaConf

from plankton_kedro.engine.modelling import distributed
from plankton_kedro.pipelines.routes import TRAINING_TAG

logger = logging.getLogger("plankton_kedro.train_node")


def parse_params(text: str) -> dict:
    """``a.b=1,c=x`` (the syntax of ``kedro run --params``) as a nested dict."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    return OmegaConf.to_container(OmegaConf.from_dotlist(items)) if items else {}


def find_training_node(name: str) -> Node:
    """The training node called ``name`` in any registered pipeline."""
    nodes = {n.name: n for p in pipelines.values() for n in p.nodes if TRAINING_TAG in n.tags}
    if name not in nodes:
        raise SystemExit(
            f"no training node named '{name}'; training nodes: {', '.join(sorted(nodes))}"
        )
    return nodes[name]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("node", help="training node name, e.g. two_stage.train_on_source")
    parser.add_argument("--env", default=None, help="Kedro configuration environment")
    parser.add_argument(
        "--params", default="", help="as for kedro run, e.g. training.max_epochs=60"
    )
    parser.add_argument("--project", default=".", help="project folder (default: current)")
    args = parser.parse_args(argv)

    layout = distributed.init_from_environment()
    project = Path(args.project).resolve()
    bootstrap_project(project)
    with KedroSession.create(
        project_path=project, env=args.env, runtime_params=parse_params(args.params)
    ) as session:
        catalog = session.load_context().catalog
        node = find_training_node(args.node)
        logger.info("rank %d/%d: running %s", layout.rank, layout.world_size, node.name)
        outputs = node.run({name: catalog.load(name) for name in node.inputs})
        if layout.is_main:
            for name, value in outputs.items():
                catalog.save(name, value)
                logger.info("saved %s", name)
    distributed.barrier()


if __name__ == "__main__":
    main()
