"""Mixed precision on CUDA, for real: which dtype the trainer's layers compute in, whether a
gradient scaler is used and what loss scale it ends with, single trials against the same
trials trained as one population.

Three modes, each: 4 configs trained one by one (loop.train) and as one population
(population.train_population), 3 epochs of the default experiment's cnn on digits:
  bf16   amp on, as the GPU does it (an H200 supports bf16: autocast bf16, no scaler)
  fp16   amp on with bf16 support hidden (torch.cuda.is_bf16_supported -> False): autocast fp16,
         torch.amp.GradScaler for single trials, per-member MemberScaler for the population;
         config 3 has lr 8.0 so that its loss overflows/diverges alone
  fp32   amp off
"""

from __future__ import annotations

import collections
import os
import sys
import time
from typing import Any

import torch

from hypersearch.objectives.trainer import loop, population
from hypersearch.objectives.trainer.data import load_dataset
from hypersearch.objectives.trainer.settings import TrainerSpec
from hypersearch.objectives.trainer.stacked_optim import MemberScaler

DEVICE = os.environ.get("AMP_CHECK_DEVICE", "cuda")  # cpu: only to test this script's logic
SEEN: collections.Counter[str] = collections.Counter()
SCALERS: list[Any] = []


def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
    """Count the dtypes that convolutions, linear layers and BatchNorm output."""
    name = type(module).__name__
    if isinstance(output, torch.Tensor) and any(k in name for k in ("Conv", "Linear", "Norm")):
        SEEN[f"{name}->{str(output.dtype).replace('torch.', '')}"] += 1


class RecordingScaler(MemberScaler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        SCALERS.append(self)


def recording_autocast(original: Any) -> Any:
    def wrapped(device: torch.device, enabled: bool) -> Any:
        autocast, scaler = original(device, enabled)
        if scaler is not None:
            SCALERS.append(scaler)
        dtype = autocast.fast_dtype if getattr(autocast, "_enabled", False) else "off"
        SEEN[f"autocast={dtype} scaler={type(scaler).__name__ if scaler else None}"] += 1
        return autocast, scaler

    return wrapped


def configs(base: TrainerSpec, mode: str) -> list[TrainerSpec]:
    rates = [0.02, 0.05, 0.1, 8.0 if mode == "fp16" else 0.2]
    return [
        base.model_copy(update={"lr": lr, "momentum": m, "weight_decay": wd})
        for lr, m, wd in zip(rates, [0.9, 0.8, 0.5, 0.0], [5e-4, 1e-4, 1e-5, 0.0], strict=True)
    ]


def describe(outcome: Any) -> str:
    if isinstance(outcome, dict):
        return f"val_loss {outcome['val_loss']:.5f} acc {outcome['val_accuracy']:.4f}"
    return f"FAIL {getattr(outcome, 'reason', type(outcome).__name__)}: {str(outcome)[:90]}"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def verdict(mode: str, single_scales: list[float], member: list[Any]) -> bool:
    """What each mode must show: the convolutions' output dtype and the scalers in use."""
    convs = {k.split("->")[1] for k in SEEN if "Conv" in k and "->" in k}
    want = {"bf16": {"bfloat16"}, "fp16": {"float16"}, "fp32": {"float32"}}[mode]
    ok = convs == want
    if mode == "fp16":
        ok = ok and bool(single_scales) and bool(member)
    else:
        ok = ok and not single_scales and not member
    print(f"CHECK amp {mode}: {'ok' if ok else 'FAILED'} (conv outputs {sorted(convs)})")
    return ok


def run_mode(mode: str, base: TrainerSpec, data: Any) -> bool:
    SEEN.clear()
    SCALERS.clear()
    members = configs(base.model_copy(update={"amp": mode != "fp32"}), mode)
    started = time.perf_counter()
    singles: list[Any] = []
    for i, settings in enumerate(members):
        try:
            singles.append(loop.train(settings, data, seed=i, device=DEVICE))
        except Exception as exc:  # TrialFailure (diverged) is an outcome here
            singles.append(exc)
    t_single = time.perf_counter() - started
    single_scales = [s.get_scale() for s in SCALERS if isinstance(s, torch.amp.GradScaler)]
    SCALERS.clear()
    started = time.perf_counter()
    pop = population.train_population(members, data, seeds=list(range(len(members))), device=DEVICE)
    sync()
    t_pop = time.perf_counter() - started
    print(f"== {mode}: single {t_single:.2f} s, population {t_pop:.2f} s")
    print(f"   seen: {dict(SEEN)}")
    print(f"   single-trial GradScaler final scales: {single_scales or None}")
    member = [s.factor.tolist() for s in SCALERS if isinstance(s, RecordingScaler)]
    print(f"   population MemberScaler final per-member scales: {member or None}")
    for i, (a, b) in enumerate(zip(singles, pop, strict=True)):
        diff = ""
        if isinstance(a, dict) and isinstance(b, dict):
            diff = f" |diff| {abs(a['val_loss'] - b['val_loss']):.2e}"
        print(f"   config {i} lr {members[i].lr:g}: single {describe(a)} | pop {describe(b)}{diff}")
    peaks = [o.get("peak_memory_mb") for o in singles if isinstance(o, dict)]
    print(f"   peak_memory_mb (single): {peaks}")
    return verdict(mode, single_scales, member)


def main() -> None:
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("amp_check: no CUDA on this machine: nothing to check")
        sys.exit(3)
    if DEVICE == "cuda":
        name, bf16 = torch.cuda.get_device_name(), torch.cuda.is_bf16_supported()
        print(f"device {name}, bf16 supported {bf16}")
    torch.nn.modules.module.register_module_forward_hook(hook)
    loop._autocast = recording_autocast(loop._autocast)  # train() looks it up at call time
    population._autocast = recording_autocast(population._autocast)
    population.MemberScaler = RecordingScaler
    base = TrainerSpec(dataset="digits", model="cnn", width=32, depth=2, epochs=3)
    data = load_dataset("digits")
    loop.train(base.model_copy(update={"epochs": 1}), data, seed=0, device=DEVICE)  # warm-up
    modes = sys.argv[1:] or ["bf16", "fp16", "fp32"]
    real = torch.cuda.is_bf16_supported
    failed = 0
    for mode in modes:
        torch.cuda.is_bf16_supported = (lambda *a, **k: False) if mode == "fp16" else real
        try:
            failed += not run_mode(mode, base, data)
        except Exception as exc:  # report and go on to the next mode
            print(f"== {mode}: ERROR {type(exc).__name__}: {exc}")
            print(f"CHECK amp {mode}: FAILED")
            failed += 1
        finally:
            torch.cuda.is_bf16_supported = real
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
