"""Measure, on this GPU, what the OOM-ladder experiment's trainer needs at each batch size, and
print how much memory to leave free (ballast.py) so that large batches run out of memory for
real and small ones fit.

    python ladder_calibrate.py WIDTH   -> last line: "LEAVE_MIB <n>"

For each batch size b (one training step on b rows of digits, then the evaluation, exactly as
hypersearch's train() does it): peak allocated and peak reserved memory; plus this process's
memory outside torch's allocator (CUDA context, cuBLAS/cuDNN handles), which a trial's worker
pays too. The memory left free is that overhead plus the mean of what batches 256 and 512
reserve: 1024 and 512 should run out of memory, 256 and below fit.
"""

from __future__ import annotations

import sys
import time

import torch

from hypersearch.errors import TrialFailure
from hypersearch.objectives.trainer.data import load_dataset
from hypersearch.objectives.trainer.loop import train
from hypersearch.objectives.trainer.settings import TrainerSpec

MIB = 2**20


def main() -> None:
    width = int(sys.argv[1])
    base = TrainerSpec(
        dataset="digits", model="cnn", width=width, depth=1, epochs=1, schedule="constant", lr=0.01
    )
    reserved: dict[int, float] = {}
    for b in (16, 64, 256, 512, 1024):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        settings = base.model_copy(update={"batch_size": b})
        sub = load_dataset(
            "digits", valid_fraction=base.valid_fraction, split_seed=base.split_seed, max_train=b
        )
        try:
            train(settings, sub, seed=0, device="cuda")
        except TrialFailure as failure:  # a diverged step used its memory all the same
            print(f"batch {b:5d}: {failure}")
        reserved[b] = torch.cuda.max_memory_reserved() / MIB
        allocated = torch.cuda.max_memory_allocated() / MIB
        print(
            f"batch {b:5d}: peak allocated {allocated:9.1f} MiB, "
            f"peak reserved {reserved[b]:9.1f} MiB ({time.perf_counter() - started:.2f} s)"
        )
    torch.cuda.empty_cache()
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    outside = (total - free) / MIB - torch.cuda.memory_reserved() / MIB
    print(f"memory outside torch's allocator (context, handles): {outside:.0f} MiB")
    leave = outside + (reserved[256] + reserved[512]) / 2
    print(f"LEAVE_MIB {leave:.0f}")


if __name__ == "__main__":
    main()
