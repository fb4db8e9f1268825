"""Hold GPU memory so that only LEAVE_MIB stay free, until STOP_FILE appears or LIMIT_S pass.

    python ballast.py LEAVE_MIB READY_FILE STOP_FILE LIMIT_S

Writes READY_FILE ("free_mib total_mib held_mib") once the memory is held. Plain cudaMalloc
through torch's allocator (no managed memory). Other processes then see a GPU with LEAVE_MIB
free: their allocations beyond that fail with a real CUDA out-of-memory error.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

MIB = 2**20


def main() -> None:
    leave = int(float(sys.argv[1]) * MIB)
    ready, stop, limit = Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
    torch.cuda.init()
    free, total = torch.cuda.mem_get_info()
    held: list[torch.Tensor] = []
    want = free - leave
    while want >= 2**30:  # 1 GiB blocks, then one block for the rest (2 MiB granularity)
        held.append(torch.empty(2**30, dtype=torch.uint8, device="cuda"))
        want -= 2**30
    free, _ = torch.cuda.mem_get_info()
    rest = (free - leave) // (2 * MIB) * (2 * MIB)
    if rest >= 12 * MIB:  # above the allocator's 10 MiB: a segment of exactly this size
        held.append(torch.empty(rest, dtype=torch.uint8, device="cuda"))
    free, total = torch.cuda.mem_get_info()
    size = sum(t.numel() for t in held)
    ready.write_text(f"{free // MIB} {total // MIB} {size // MIB}\n")
    print(f"ballast: holding {size / 2**30:.2f} GiB, free now {free / MIB:.0f} MiB", flush=True)
    started = time.monotonic()
    while not stop.exists() and time.monotonic() - started < limit:
        time.sleep(0.2)
    print("ballast: released", flush=True)


if __name__ == "__main__":
    main()
