"""Check a GPU machine before real runs: CUDA AMP, DDP over NCCL on every visible GPU, and
training throughput of the project's network, in a couple of minutes.

    .venv/bin/python scripts/gpu_check.py                      # resnet50 at 224 px, all GPUs
    .venv/bin/python scripts/gpu_check.py --model vit_base_patch16_224 --batch 32

Prints one line per check and exits non-zero when a check fails. ``--device cpu`` runs the
same checks on the CPU with gloo (to test the script itself; the figures mean nothing).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
from torch import nn

from plankton_kedro.engine.modelling import distributed
from plankton_kedro.engine.modelling.model import build_model
from plankton_kedro.engine.modelling.runtime import autocast


def throughput(model_name: str, size: int, batch: int, steps: int, device: str, precision: str):
    """Training images/s of PlanktonNet on random data, and whether the loss stayed finite."""
    net, _ = build_model(model_name, num_classes=100)
    net.to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, 100, (batch,), device=device)
    finite = True

    def step() -> None:
        nonlocal finite
        with autocast(torch.device(device), precision):
            loss = nn.functional.cross_entropy(net(images)[2].float(), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        finite = finite and bool(torch.isfinite(loss))

    for _ in range(3):
        step()
    _synchronise(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronise(device)
    return batch * steps / (time.perf_counter() - start), finite


def ddp_worker(model_name: str, size: int, batch: int, steps: int, use_cuda: bool) -> dict:
    """One rank: an all-reduce, then DDP training steps; returns what rank 0 measured."""
    rank, world = dist.get_rank(), dist.get_world_size()
    device = f"cuda:{rank}" if use_cuda else "cpu"
    value = torch.ones(1, device=device) * (rank + 1)
    dist.all_reduce(value)
    expected = world * (world + 1) / 2
    net, _ = build_model(model_name, num_classes=100)
    net.to(device)
    if use_cuda:
        nn.SyncBatchNorm.convert_sync_batchnorm(net)
    model = nn.parallel.DistributedDataParallel(net, device_ids=[rank] if use_cuda else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, 100, (batch,), device=device)
    precision = "fp16" if use_cuda else "fp32"
    scaler = torch.amp.GradScaler("cuda", enabled=use_cuda)
    start = 0.0
    for i in range(steps + 3):
        if i == 3:
            _synchronise(device)
            dist.barrier()
            start = time.perf_counter()
        with autocast(torch.device(device), precision):
            loss = nn.functional.cross_entropy(model(images)[2].float(), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    _synchronise(device)
    seconds = time.perf_counter() - start
    return {
        "world": world,
        "backend": dist.get_backend(),
        "all_reduce_ok": float(value.item()) == expected,
        "images_per_second": batch * steps * world / seconds,
    }


def _synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64, help="per GPU")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--processes", type=int, default=0, help="DDP ranks (0: every GPU)")
    args = parser.parse_args(argv)

    use_cuda = args.device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        print("FAIL no CUDA device visible to torch", torch.__version__)
        return 1
    print(
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"{torch.cuda.device_count()} GPU(s): "
        + ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    )
    failures = 0
    device = "cuda:0" if use_cuda else "cpu"
    fp32, _ = throughput(args.model, args.size, args.batch, args.steps, device, "fp32")
    amp_precision = "fp16" if use_cuda else "bf16"
    amp, finite = throughput(args.model, args.size, args.batch, args.steps, device, amp_precision)
    ok = finite
    failures += not ok
    print(
        f"{'OK  ' if ok else 'FAIL'} {amp_precision} autocast: {amp:.0f} img/s vs fp32 "
        f"{fp32:.0f} img/s ({amp / fp32:.2f}x), {args.model} at {args.size} px, batch {args.batch}"
    )
    processes = args.processes or (torch.cuda.device_count() if use_cuda else 2)
    result = distributed.launch_local(
        processes, ddp_worker, args.model, args.size, args.batch, args.steps, use_cuda
    )
    ok = result["all_reduce_ok"]
    failures += not ok
    print(
        f"{'OK  ' if ok else 'FAIL'} DDP over {result['backend']} on {result['world']} "
        f"process(es): {result['images_per_second']:.0f} img/s in total "
        f"({result['images_per_second'] / amp:.2f}x one GPU with {amp_precision})"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    sys.exit(main())
