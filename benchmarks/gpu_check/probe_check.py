"""The population memory probe (objectives/trainer/__init__.py: _members_that_fit) on this GPU:
what it measures per member, how many members it lets into one population, and whether a
population of that size really fits (trained for one epoch, its real peak compared).

    python probe_check.py LABEL [CAP]

CAP (default 1024) bounds the population actually trained for the check. Run it once on the
whole GPU and once with ballast.py holding most of it: the decision must follow free memory.
"""

from __future__ import annotations

import sys
import time

import torch

from hypersearch.objectives.trainer import _data, _members_that_fit
from hypersearch.objectives.trainer.population import train_population
from hypersearch.objectives.trainer.settings import TrainerSpec

MIB = 2**20
WANTED = 1_000_000  # ask for far more than can fit: the probe's answer is the bound


def measure_like_the_probe(settings: TrainerSpec) -> float:
    """The probe's per-member figure, measured the same way (for the log)."""
    batch = settings.batch_size * settings.grad_accum
    probe = settings.model_copy(update={"epochs": 1, "max_train": batch})
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    train_population([probe], _data(probe), seeds=[0], device="cuda")
    return max(torch.cuda.max_memory_allocated() - before, 1)


def check(label: str, settings: TrainerSpec, cap: int) -> bool:
    """The probe's decision, then a population of that size (at most ``cap``) trained for one
    epoch: whether it fit."""
    free0, total = torch.cuda.mem_get_info()
    per_member = measure_like_the_probe(settings)
    torch.cuda.empty_cache()
    started = time.perf_counter()
    n = _members_that_fit(settings, WANTED)
    t_probe = time.perf_counter() - started
    free1, _ = torch.cuda.mem_get_info()
    print(
        f"[{label}] {settings.model} width {settings.width} depth {settings.depth} batch "
        f"{settings.batch_size}: free {free0 / MIB:.0f} of {total / MIB:.0f} MiB; probe per member "
        f"{per_member / MIB:.2f} MiB; free after probe {free1 / MIB:.0f} MiB -> members that fit: "
        f"{n} (probe {t_probe:.2f} s)"
    )
    k = min(n, cap)
    members = [settings.model_copy(update={"epochs": 1, "lr": 0.01 + 0.001 * i}) for i in range(k)]
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        outcomes = train_population(members, _data(members[0]), seeds=list(range(k)), device="cuda")
        torch.cuda.synchronize()
    except torch.cuda.OutOfMemoryError as exc:
        print(f"[{label}]   population of {k}: OUT OF MEMORY ({str(exc)[:160]})")
        print(f"CHECK probe-fits [{label}] {settings.model}: FAILED")
        return False
    peak = torch.cuda.max_memory_allocated() - before
    ok = sum(isinstance(o, dict) for o in outcomes)
    print(
        f"[{label}]   population of {k} trained 1 epoch in {time.perf_counter() - started:.2f} s: "
        f"{ok}/{k} members finished; real peak {peak / MIB:.0f} MiB = {peak / k / MIB:.2f} MiB per "
        f"member (probe said {per_member / MIB:.2f}); reserved now "
        f"{torch.cuda.memory_reserved() / MIB:.0f} MiB"
    )
    print(f"CHECK probe-fits [{label}] {settings.model}: ok")
    return True


def main() -> None:
    if not torch.cuda.is_available():
        print("probe_check: no CUDA on this machine: the probe only runs on CUDA")
        sys.exit(3)
    label = sys.argv[1] if len(sys.argv) > 1 else "gpu"
    cap = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    default = TrainerSpec(dataset="digits", model="cnn", width=32, depth=2, epochs=8)
    failed = 0
    for settings in (default, default.model_copy(update={"model": "mlp", "width": 64})):
        try:
            failed += not check(label, settings, cap)
        except Exception as exc:  # report and go on
            print(f"[{label}] ERROR {type(exc).__name__}: {str(exc)[:300]}")
            failed += 1
        torch.cuda.empty_cache()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
