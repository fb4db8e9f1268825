"""Early-stopping benchmark: learning curves (best final loss against epochs trained) and the
scheduler overhead per report.

``python benchmarks/early_stopping.py --curves``: every configuration (``random``/``tpe`` with
``none``/``asha``/``hyperband``, and Optuna's TPE with its ``HyperbandPruner``) on every task,
several seeds, the same epoch budget (see ``learning_curves.py`` for the tasks and the score).
Runs are cached as JSON in ``--out`` (a rerun only adds what is missing) and spread over
``--jobs`` processes of one torch thread each. Printed: the median best final validation loss
within the budget, its ratio to random search without a scheduler (measured in the same
invocation), and the epochs each configuration needed to reach random search's final best.

``python benchmarks/early_stopping.py --overhead``: each scheduler is fed ``--trials`` trials of
``--steps`` reports each (random losses, every trial finished or stopped), then timed over
``--timed`` more reports of new trials; median of ``--repeats`` repeats. The scheduler alone:
in a run each report also costs a write to the study and, in a worker, a round trip to the
driver.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import learning_curves as lc  # beside this script (its folder is on sys.path)
import numpy as np

from hypersearch.schedulers import create

CONFIGS = [
    "random+none",
    "random+asha",
    "random+hyperband",
    "tpe+none",
    "tpe+asha",
    "tpe+hyperband",
    "optuna+hyperband",
]
BUDGETS = {"default": 96, "tabular": 400}  # epochs: 12 and 20 full trials

OPTIONS = {
    "none": {},
    "median": {},
    "asha": {"min_step": 1, "reduction_factor": 3},
    "hyperband": {"min_step": 1, "max_step": 9, "reduction_factor": 3},
}


def per_report(name: str, trials: int, steps: int, timed: int, seed: int) -> float:
    """Seconds per report once ``trials`` trials have reported."""
    scheduler = create(name, OPTIONS[name])
    rng = np.random.default_rng(seed)
    for number in range(trials):
        loss = 0.0
        for step in range(1, steps + 1):
            loss = float(rng.random() + 1.0 / step)
            if scheduler.report(number, step, loss):
                scheduler.finished(number, "PRUNED")
                break
        else:
            scheduler.finished(number, "COMPLETE", loss)
    started = time.perf_counter()
    for k in range(timed):
        scheduler.report(trials + k, 1 + k % steps, float(rng.random()))
    return (time.perf_counter() - started) / timed


def curves(args: argparse.Namespace) -> None:
    """Run what is missing, then print one table per task."""
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (task, config, seed, BUDGETS[task], args.out)
        for task in args.tasks
        for seed in range(args.seeds)
        for config in args.configs
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        files = list(pool.map(lc.one, *zip(*jobs, strict=True)))
    runs: dict[tuple[str, str], list[list[dict]]] = {}
    for path in files:
        found = json.loads(path.read_text())
        runs.setdefault((found["task"], found["config"]), []).append(found["trials"])
    for task in args.tasks:
        budget = BUDGETS[task]
        base = runs[(task, "random+none")]
        targets = [lc.best_within(rows, budget) for rows in base]
        base_best = statistics.median(targets)
        print(f"\n### {task}: {budget} epochs, {args.seeds} seeds\n")
        print(
            "| configuration | best final val_loss (median) | vs random+none "
            "| epochs to random+none's best (median) | trials | pruned |"
        )
        print("|---|---|---|---|---|---|")
        for config in args.configs:
            rows = runs[(task, config)]
            best = statistics.median(lc.best_within(r, budget) for r in rows)
            reach = statistics.median(
                lc.epochs_to_reach(r, t) for r, t in zip(rows, targets, strict=True)
            )
            reach_cell = (
                "not reached" if reach == float("inf") else f"{reach:.0f} ({reach / budget:.0%})"
            )
            trials = statistics.median(len(r) for r in rows)
            pruned = statistics.median(sum(t["state"] == "PRUNED" for t in r) for r in rows)
            print(
                f"| {config} | {best:.4f} | {best / base_best:.3f} | {reach_cell} "
                f"| {trials:.0f} | {pruned:.0f} |"
            )
    elapsed = time.perf_counter() - started
    print(f"\nMachine: {platform.machine()}, Python {platform.python_version()}; {elapsed:.0f} s.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--curves", action="store_true")
    mode.add_argument("--overhead", action="store_true")
    parser.add_argument("--tasks", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    parser.add_argument(
        "--configs", nargs="+", default=CONFIGS, help=f"default: {' '.join(CONFIGS)}"
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/early_stopping"))
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--timed", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    curves(args) if args.curves else overhead(args)


def overhead(args: argparse.Namespace) -> None:
    """Seconds per report of each scheduler, at each history size."""
    started = time.perf_counter()
    print(f"Seconds per report ({args.steps} reports per trial; median of {args.repeats}).\n")
    print("| scheduler | " + " | ".join(f"{n} trials" for n in args.trials) + " |")
    print("|---|" + "---|" * len(args.trials))
    for name in OPTIONS:
        cells = []
        for n in args.trials:
            runs = [per_report(name, n, args.steps, args.timed, r) for r in range(args.repeats)]
            cells.append(f"{statistics.median(runs) * 1e3:.3f} ms")
        print(f"| {name} | " + " | ".join(cells) + " |")
    elapsed = time.perf_counter() - started
    print(f"\nMachine: {platform.machine()}, Python {platform.python_version()}; {elapsed:.0f} s.")


if __name__ == "__main__":
    main()
