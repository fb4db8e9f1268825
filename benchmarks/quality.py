"""Quality benchmark: final regret of each algorithm on synthetic functions.

For every function and algorithm: the median and quartiles of the final regret over seeds
(64 trials asked in batches of 8, as with ``parallel: 8``), and the ratio of each median to
random search's measured in the same run; plus the hypervolume on the two-objective ZDT1.

    python benchmarks/quality.py --seeds 10 > quality.md
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from hypersearch.algorithms import available
from hypersearch.testing import final_hypervolume, final_regret

PROBLEMS = [
    ("hartmann6", None, 0.0),
    ("rosenbrock", 4, 0.0),
    ("ackley", 5, 0.0),
    ("hartmann6", None, 0.3),
]
ZDT1 = ("zdt1", 6, (1.1, 11.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--algos",
        default=",".join(
            a for a in ("ga", "pso", "rf", "astar", "tpe", "random") if a in available()
        ),
    )
    args = parser.parse_args()
    algos = args.algos.split(",")
    seeds = range(args.seeds)
    started = time.perf_counter()
    print(
        f"Final regret, {args.trials} trials in batches of {args.batch}, {args.seeds} seeds "
        f"(median [25%, 75%]; ratio = median / random's median).\n"
    )
    print("| function | " + " | ".join(algos) + " |")
    print("|---|" + "---|" * len(algos))
    for function, dim, noise in PROBLEMS:
        regrets = {
            a: [final_regret(a, function, s, args.trials, args.batch, dim, noise) for s in seeds]
            for a in algos
        }
        base = np.median(regrets["random"]) if "random" in regrets else None
        cells = []
        for algo in algos:
            q1, med, q3 = np.percentile(regrets[algo], [25, 50, 75])
            ratio = f", ×{med / base:.2f}" if base else ""
            cells.append(f"{med:.3g} [{q1:.3g}, {q3:.3g}]{ratio}")
        label = (
            f"{function}" + (f" ({dim}-D)" if dim else "") + (f", noise {noise}" if noise else "")
        )
        print(f"| {label} | " + " | ".join(cells) + " |")
    function, dim, reference = ZDT1
    volumes = {
        a: [
            final_hypervolume(a, function, s, reference, args.trials, args.batch, dim)
            for s in seeds
        ]
        for a in algos
    }
    cells = []
    for algo in algos:
        q1, med, q3 = np.percentile(volumes[algo], [25, 50, 75])
        cells.append(f"{med:.4g} [{q1:.4g}, {q3:.4g}]")
    print(
        f"| zdt1 ({dim}-D) hypervolume, ref {reference}, higher is better | "
        + " | ".join(cells)
        + " |"
    )
    print(
        f"\nMachine: {platform.machine()}, {platform.python_version()}; "
        f"{time.perf_counter() - started:.0f} s."
    )


if __name__ == "__main__":
    main()
