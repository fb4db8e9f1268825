"""Throughput benchmark: trials per minute of the built-in trainer, three ways.

For k configurations (lr, momentum, weight decay drawn at random; the same k for every way):

- ``sequential``: one ``train()`` after another in this process (all cores for each);
- ``processes-P``: P worker processes, each training one trial at a time with its share of the
  cores (what ``--population off --parallel P`` does), for each P given;
- ``population``: one ``train_population()`` of all k members (what ``--population on`` does
  with one slot).

Each way runs ``--repeats`` times; the figure is the median, and the ratio is against
``sequential`` measured in the same run. On CUDA the population run also reports achieved
FLOP/s (``torch.utils.flop_counter`` on an untimed repeat of the population run) against the
GPU's peak given with ``--peak-tflops``.

    python benchmarks/throughput.py --model mlp --members 16 64 --repeats 3
    python benchmarks/throughput.py --model cnn --members 16 64 --epochs 2 --device cuda
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch

from hypersearch.objectives.trainer.data import load_dataset
from hypersearch.objectives.trainer.loop import train
from hypersearch.objectives.trainer.population import train_population
from hypersearch.objectives.trainer.settings import TrainerSpec


def configs(k: int, base: TrainerSpec, seed: int = 0) -> list[TrainerSpec]:
    """k members: lr log-uniform in [0.01, 0.3], momentum in [0, 0.9], weight decay in
    [1e-6, 1e-3] log-uniform (the range a tuner explores, minus the diverging corner)."""
    rng = np.random.default_rng(seed)
    return [
        base.model_copy(
            update={
                "lr": float(10 ** rng.uniform(-2, math.log10(0.3))),
                "momentum": float(rng.uniform(0, 0.9)),
                "weight_decay": float(10 ** rng.uniform(-6, -3)),
            }
        )
        for _ in range(k)
    ]


def sequential(members: list[TrainerSpec], device: str) -> float:
    data = load_dataset(members[0].dataset, max_train=members[0].max_train)
    started = time.perf_counter()
    for i, settings in enumerate(members):
        train(settings, data, seed=i, device=device)
    return time.perf_counter() - started


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _one(args: tuple[TrainerSpec, int, str]) -> None:
    settings, seed, device = args
    data = load_dataset(settings.dataset, max_train=settings.max_train)
    train(settings, data, seed=seed, device=device)


def processes(members: list[TrainerSpec], device: str, workers: int) -> float:
    """P worker processes (spawned, warmed up before the clock starts), cores split evenly."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(
        workers,
        mp_context=torch.multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(threads,),
    ) as pool:
        warm = members[0].model_copy(update={"epochs": 1})
        list(pool.map(_one, [(warm, 0, device)] * workers))  # imports and data load, untimed
        started = time.perf_counter()
        list(pool.map(_one, [(s, i, device) for i, s in enumerate(members)]))
        return time.perf_counter() - started


def population(members: list[TrainerSpec], device: str) -> float:
    data = load_dataset(members[0].dataset, max_train=members[0].max_train)
    started = time.perf_counter()
    outcomes = train_population(members, data, seeds=list(range(len(members))), device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    failed = sum(not isinstance(o, dict) for o in outcomes)
    if failed:
        print(f"  (population: {failed} of {len(members)} members diverged)")
    return elapsed


def population_flops(members: list[TrainerSpec], device: str) -> float:
    """FLOPs of the whole population run (training and evaluation), counted by torch's flop
    counter on an untimed repeat of it."""
    from torch.utils.flop_counter import FlopCounterMode

    data = load_dataset(members[0].dataset, max_train=members[0].max_train)
    counter = FlopCounterMode(display=False)
    with counter:
        train_population(members, data, seeds=list(range(len(members))), device=device)
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn"])
    parser.add_argument("--members", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--processes", type=int, nargs="+", default=[2])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's peak (fp32)")
    args = parser.parse_args()

    base = TrainerSpec(
        dataset="digits", model=args.model, epochs=args.epochs, batch_size=args.batch_size
    )
    where = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor()
    print(
        f"# {args.model} on digits, batch {args.batch_size}, {args.epochs} epochs, "
        f"{args.device} ({where or platform.machine()}, {os.cpu_count()} cores), "
        f"torch {torch.__version__}, median of {args.repeats}"
    )
    print("| members | way | seconds | trials/min | × sequential |")
    print("|---:|---|---:|---:|---:|")
    for k in args.members:
        members = configs(k, base)
        ways: dict[str, Any] = {"sequential": lambda m=members: sequential(m, args.device)}
        if args.device == "cpu":
            for p in args.processes:
                ways[f"processes-{p}"] = lambda m=members, p=p: processes(m, args.device, p)
        ways["population"] = lambda m=members: population(m, args.device)
        sequential(members[:2], args.device)  # warm-up: first-call costs, untimed
        population(members[:2], args.device)
        seconds = {
            name: statistics.median(way() for _ in range(args.repeats))
            for name, way in ways.items()
        }
        for name, s in seconds.items():
            ratio = seconds["sequential"] / s
            print(f"| {k} | {name} | {s:.2f} | {60 * k / s:.1f} | {ratio:.2f} |")
        if args.device == "cuda":
            achieved = population_flops(members, args.device) / seconds["population"] / 1e12
            peak = f" of {args.peak_tflops:g} peak" if args.peak_tflops else ""
            print(f"  population: {achieved:.2f} TFLOP/s achieved{peak}")


if __name__ == "__main__":
    main()
