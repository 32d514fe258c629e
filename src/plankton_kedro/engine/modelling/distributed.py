"""torch.distributed plumbing: who am I, launching local workers, gathering results.

One training stage = one Kedro node. With ``training.devices > 1`` the node starts that many
worker processes on this machine with torch's elastic launcher (NCCL on GPUs, gloo on CPU);
under ``torchrun`` (several machines) every process is already a rank and runs the same
engine code. Rank 0 writes; the others only compute.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def current() -> Distributed:
    """The running job's layout, from an initialised process group or torchrun's variables."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return Distributed(dist.get_rank(), dist.get_world_size(), local)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        return Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    return Distributed()


def init_from_environment() -> Distributed:
    """Join the process group torchrun or the elastic launcher described in the environment."""
    layout = current()
    if layout.enabled and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(layout.local_rank)
        else:  # share this machine's cores between its ranks instead of oversubscribing them
            local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_ranks))
        dist.init_process_group(backend=backend)
    return current()


def resolve_devices(devices: int | str) -> int:
    """``auto`` -> every visible GPU (at least 1); an integer as given."""
    if devices == "auto":
        return max(1, torch.cuda.device_count())
    return int(devices)


def launch_local(processes: int, worker: Callable[..., Any], *args: Any) -> Any:
    """Run ``worker(*args)`` in ``processes`` local ranks; return rank 0's result.

    Uses torch's elastic launcher (what ``torchrun`` uses) with a private rendezvous on
    localhost, so it works inside a Kedro node without wrapping ``kedro run``.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=f"plankton-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{_free_port()}",
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
    )
    results = elastic_launch(config, _run_as_rank)(worker, *args)
    return results[0]


def _run_as_rank(worker: Callable[..., Any], *args: Any) -> Any:
    """Join the process group, run the worker, leave the group (a picklable entry point)."""
    init_from_environment()
    try:
        return worker(*args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value`` (a one-element list when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def mean_over_ranks(value: float) -> float:
    """The mean of a scalar over all ranks."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    return sum(all_gather_objects(value)) / dist.get_world_size()


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
