"""Early-stopping benchmark. So far: the scheduler overhead per report.

``python benchmarks/early_stopping.py --overhead``: each scheduler is fed ``--trials`` trials of
``--steps`` reports each (random losses, every trial finished or stopped), then timed over
``--timed`` more reports of new trials; median of ``--repeats`` repeats. The scheduler alone:
in a run each report also costs a write to the study and, in a worker, a round trip to the
driver. The learning-curve part (best final loss against epochs trained, with and without a
scheduler, several seeds) is still to come.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

from hypersearch.schedulers import create

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overhead", action="store_true", required=True)
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--timed", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
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
