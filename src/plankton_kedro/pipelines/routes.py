"""The route table: the paper's three transfer routes and how each starts stage 1.

A plain table (no pipelines imported), read by the stage templates, the training nodes and
:mod:`.assembly`, which builds a route's pipeline from the stage templates.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    """A transfer route: how stage 1 starts, or ``None`` when there is no stage 1."""

    name: str
    stage1_init: str | None
    summary: str


ROUTES = {
    "in_domain": Route("in_domain", "scratch", "random init -> source plankton set -> target set"),
    "out_of_domain": Route("out_of_domain", None, "model.pretrained (ImageNet) -> target set"),
    "two_stage": Route(
        "two_stage", "pretrained", "model.pretrained (ImageNet) -> source set -> target set"
    ),
}

TRAINING_TAG = "training"
PRETRAINED_WEIGHTS_TAG = "uses_pretrained_weights"
