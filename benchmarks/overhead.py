"""Overhead benchmark: ask+tell time per trial of every algorithm, against Optuna's TPE.

Each algorithm is told ``N`` observations of Hartmann-6 (random points), then timed over
``--steps`` rounds of ask(1) + tell(1); the figure is the median time of one round over
``--repeats`` repetitions. The baseline is plain Optuna (``TPESampler`` on a study holding the
same N trials, ask + tell), measured in the same run.

    python benchmarks/overhead.py --repeats 5

``--end-to-end`` instead runs the packaged default experiment (cnn on digits, real training in
worker processes) with ``hypersearch.run`` and reports the engine's own time (ask, tell, the
study, the exports: ``overhead_seconds`` in summary.json) as a share of the trials' time.

    python benchmarks/overhead.py --end-to-end --trials 16 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import numpy as np
import optuna

from hypersearch.algorithms import Observation, available, create
from hypersearch.experiment import parse_experiment
from hypersearch.objectives.synthetic import hartmann6

SPACE = parse_experiment({"objective": {"synthetic": {"function": "hartmann6"}}}).space


def history(n: int) -> list[Observation]:
    rng = np.random.default_rng(0)
    points = rng.random((n, SPACE.dim))
    return [Observation(i, x, (hartmann6(x),)) for i, x in enumerate(points)]


def time_algorithm(name: str, n: int, steps: int) -> float:
    """Seconds per ask(1)+tell(1) round after telling ``n`` observations."""
    algo = create(name, SPACE, 1, seed=0)
    algo.tell(history(n))
    started = time.perf_counter()
    for _ in range(steps):
        (s,) = algo.ask(1)
        algo.tell([Observation(s.id, s.x, (hartmann6(s.x),))])
    return (time.perf_counter() - started) / steps


def time_optuna_tpe(n: int, steps: int) -> float:
    """The same rounds with plain Optuna: TPESampler, study.ask + study.tell."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = SPACE.distributions()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, multivariate=True))
    for obs in history(n):
        study.add_trial(
            optuna.trial.create_trial(
                params=SPACE.decode(obs.x), distributions=dists, value=obs.losses[0]
            )
        )
    started = time.perf_counter()
    for _ in range(steps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask(dists)
        study.tell(trial, hartmann6(SPACE.encode(trial.params)))
    return (time.perf_counter() - started) / steps


def end_to_end(algo: str, trials: int, repeats: int) -> None:
    """Engine overhead as a share of trial time on the packaged default experiment."""
    import json
    import tempfile
    from pathlib import Path

    import pandas as pd

    import hypersearch
    from hypersearch.experiment import default_experiment_path

    path, _ = default_experiment_path()
    shares, per_trial = [], []
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            result = hypersearch.run(path, algo=algo, trials=trials, seed=repeat, out=out)
            summary = json.loads((Path(result.run_dir) / "summary.json").read_text())
            durations = pd.read_csv(Path(result.run_dir) / "trials.csv")["duration_s"].sum()
        shares.append(summary["overhead_seconds"] / durations)
        per_trial.append(summary["overhead_seconds"] / summary["trials"])
    print(
        f"default experiment, {algo}, {trials} trials, median of {repeats}: engine overhead "
        f"{statistics.median(per_trial) * 1e3:.1f} ms per trial, "
        f"{statistics.median(shares) * 100:.2f}% of trial time "
        f"(runs: {', '.join(f'{s * 100:.2f}%' for s in shares)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--algos", default=",".join(available()))
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()
    if args.end_to_end:
        for algo in args.algos.split(","):
            end_to_end(algo, args.trials, args.repeats)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    algos = args.algos.split(",")
    started = time.perf_counter()
    results: dict[str, dict[int, float]] = {"optuna TPE (baseline)": {}}
    for n in sizes:
        results["optuna TPE (baseline)"][n] = statistics.median(
            time_optuna_tpe(n, args.steps) for _ in range(args.repeats)
        )
        for algo in algos:
            results.setdefault(algo, {})[n] = statistics.median(
                time_algorithm(algo, n, args.steps) for _ in range(args.repeats)
            )
    base = results["optuna TPE (baseline)"]
    print(
        f"ask(1)+tell(1) per trial, median of {args.repeats} repeats of {args.steps} rounds "
        "(ms; ratio to Optuna's TPE at the same size).\n"
    )
    print("| algorithm | " + " | ".join(f"{n} observations" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for algo, row in results.items():
        cells = [f"{row[n] * 1e3:.2f} ms (×{row[n] / base[n]:.2f})" for n in sizes]
        print(f"| {algo} | " + " | ".join(cells) + " |")
    print(
        f"\nMachine: {platform.machine()}, Python {platform.python_version()}, "
        f"optuna {optuna.__version__}; {time.perf_counter() - started:.0f} s."
    )


if __name__ == "__main__":
    main()
