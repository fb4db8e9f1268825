"""Which device each worker gets: GPUs found without touching CUDA in the driver, else the CPU.

The driver never imports CUDA state: GPUs are read from ``CUDA_VISIBLE_DEVICES`` when it is set,
else from ``nvidia-smi``. Each worker is pinned to one GPU through ``CUDA_VISIBLE_DEVICES`` in its
environment (set before its interpreter starts, so before torch loads); ``trials_per_gpu``
workers share a GPU. Without GPUs, workers run on the CPU and split its cores between them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from hypersearch.errors import UserInputError


@dataclass(frozen=True)
class Slot:
    """One worker's device (``cuda:<id>`` or ``cpu``) and the environment that pins it."""

    device: str
    env: dict[str, str] = field(default_factory=dict)


def discover_gpus() -> list[str]:
    """GPU ids this process may use, without initializing CUDA."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = []
        for item in (v.strip() for v in visible.split(",")):
            if not item or item.startswith("-"):
                break  # CUDA hides everything after an invalid entry
            ids.append(item)
        return ids
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def parse_gpus(text: str) -> list[str]:
    """``--gpus 0,2`` → ["0", "2"]; ``--gpus none`` → [] (CPU only)."""
    if text.strip().lower() in ("none", "cpu", ""):
        return []
    ids = [v.strip() for v in text.split(",")]
    if not all(v.isdigit() or v.startswith(("GPU-", "MIG-")) for v in ids):
        raise UserInputError(f"--gpus: expected GPU indices such as 0,2 or 'none' (got {text!r})")
    if len(set(ids)) != len(ids):
        raise UserInputError(f"--gpus: each GPU once (got {text!r})")
    return ids


def plan_slots(
    gpus: list[str],
    trials_per_gpu: int = 1,
    parallel: int | None = None,
    cpu_count: int | None = None,
) -> list[Slot]:
    """The workers to start. With GPUs: ``trials_per_gpu`` per GPU, spread across GPUs first, at
    most ``parallel`` if given. Without: ``parallel`` (default 1) CPU workers."""
    cores = cpu_count or os.cpu_count() or 1
    if trials_per_gpu < 1:
        raise UserInputError(f"--trials-per-gpu: must be >= 1 (got {trials_per_gpu})")
    if not gpus:
        workers = parallel or 1
        return [
            Slot("cpu", _threads(cores, workers) | {"CUDA_VISIBLE_DEVICES": ""})
            for _ in range(workers)
        ]
    devices = [gpu for _ in range(trials_per_gpu) for gpu in gpus]  # 0,1,0,1: spread first
    devices = devices[:parallel] if parallel is not None else devices
    return [
        Slot(f"cuda:{gpu}", _threads(cores, len(devices)) | {"CUDA_VISIBLE_DEVICES": gpu})
        for gpu in devices
    ]


def _threads(cores: int, workers: int) -> dict[str, str]:
    """Split the cores between workers (torch would otherwise start one thread per core in each
    worker and oversubscribe the machine); a value the user exported wins."""
    share = str(max(1, cores // workers))
    return {name: os.environ.get(name, share) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
