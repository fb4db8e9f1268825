"""A python objective for `hypersearch run` that runs out of CUDA memory for real.

Even trial numbers allocate 200 GiB on the GPU (more than an H200's ~140 GiB: cudaMalloc fails,
torch raises torch.cuda.OutOfMemoryError), odd ones 1 GiB (fits). The executor must record the
even ones FAIL with reason "oom", recycle the worker, and the run must go on.
"""

from __future__ import annotations

import os
from typing import Any

import torch


def f(config: dict[str, Any], ctx: Any) -> dict[str, float]:
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"no CUDA in this worker (device {ctx.device}, "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
        )
    gib = 200 if ctx.number % 2 == 0 else 1
    x = torch.empty(gib * 2**30, dtype=torch.uint8, device="cuda")
    x.fill_(1)
    checksum = float(x[: 2**20].sum())  # the memory is really there and written
    total = torch.cuda.get_device_properties(0).total_memory
    return {
        "loss": float(config["x"]) ** 2,
        "allocated_gib": float(gib),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "total_gib": total / 2**30,
        "checksum_mib": checksum / 2**20,
    }
