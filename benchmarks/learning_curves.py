"""The learning-curve part of ``benchmarks/early_stopping.py``: tasks, one run, its scores.

A run trains real trials with the built-in trainer, one at a time (``--executor inline``,
``--population off``), until ``budget.steps`` epochs are trained in all. Its score is the best
validation loss of the trials that trained to their last epoch (a pruned trial's loss is not a
final one), read against the epochs trained so far (trials in the order they finished).

Tasks (both offline):
- ``default``: the packaged default experiment (a cnn on scikit-learn's 8×8 digits, one-cycle,
  8 epochs), with validation loss as its only objective (Optuna's ``HyperbandPruner`` judges one
  objective; ``train_flops`` would make TPE a multi-objective search);
- ``tabular``: an mlp on a fixed ``make_classification`` problem (5 classes, 30 features, 3000
  rows, label noise), cosine schedule, 20 epochs, with dropout tuned as well: another model,
  another data set, another schedule, and curves that cross (a high learning rate leads early
  and then stalls).

Configurations: ``<algo>+<scheduler>`` for ours (``random+none``, ``tpe+asha``, …; with
``:<min_step>`` after the scheduler, the first step it judges: ``random+asha:2``) and
``optuna+hyperband``: Optuna's ``TPESampler`` (multivariate, 10 startup trials, as our tpe) with
its ``HyperbandPruner`` (min_resource 1, max_resource = epochs, reduction factor 3), asked and
told by hand on the same trainer, the same trial seeds and the same epoch budget.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = {"default": 8, "tabular": 20}
SPACE_TABULAR = {
    "lr": {"type": "float", "low": 1.0e-3, "high": 1.0, "log": True},
    "weight_decay": {"type": "float", "low": 1.0e-6, "high": 1.0e-1, "log": True},
    "momentum": {"type": "float", "low": 0.0, "high": 0.99},
    "width": {"type": "categorical", "choices": [16, 32, 64, 128]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
}


def tabular_data(folder: Path) -> Path:
    """The tabular task's data set, written once (same arrays on every machine)."""
    from sklearn.datasets import make_classification

    path = folder / "tabular.npz"
    if not path.exists():
        x, y = make_classification(
            n_samples=3000,
            n_features=30,
            n_informative=12,
            n_redundant=6,
            n_classes=5,
            class_sep=0.9,
            flip_y=0.05,
            random_state=7,
        )
        x = (x - x.mean(axis=0)) / x.std(axis=0)
        np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))
    return path


def experiment(task: str, data_dir: Path) -> Any:
    """The task's experiment (single objective: validation loss)."""
    from hypersearch.experiment import load_experiment, parse_experiment

    if task == "default":
        exp = load_experiment(ROOT / "searchspaces" / "default.yaml")
        data = exp.model_dump(mode="json", exclude_none=True)
        data["params"] = exp.space.to_dict()
        data["objectives"] = {"val_loss": "minimize"}
        return parse_experiment(data, base_dir=ROOT)
    trainer = {
        "dataset": f"npz:{tabular_data(data_dir)}",
        "model": "mlp",
        "width": 64,
        "depth": 2,
        "epochs": EPOCHS["tabular"],
        "batch_size": 64,
        "schedule": "cosine",
    }
    data = {
        "name": "tabular-mlp",
        "objective": {"trainer": trainer},
        "objectives": {"val_loss": "minimize"},
        "params": SPACE_TABULAR,
        "budget": {"trials": 1000, "parallel": 1},
    }
    return parse_experiment(data)


def run_ours(task: str, config: str, seed: int, budget: int, folder: Path) -> list[dict[str, Any]]:
    """One hypersearch run; its trials in the order they finished."""
    import pandas as pd

    from hypersearch.engine import run

    algo, scheduler = config.split("+")
    name, _, min_step = scheduler.partition(":")  # e.g. asha:2, its min_step
    spec = {name: {"min_step": int(min_step)}} if min_step else name
    exp = experiment(task, folder).with_overrides(steps=budget, seed=seed, scheduler=spec)
    result = run(exp, algo=algo, executor="inline", population="off", out=folder / "runs")
    frame = pd.read_csv(result.run_dir / "trials.csv").sort_values("number")
    return [
        {"state": str(r.state), "steps": int(r.steps or 0), "loss": _float(r.val_loss)}
        for r in frame.itertuples()
    ]


def run_optuna(task: str, seed: int, budget: int, folder: Path) -> list[dict[str, Any]]:
    """Optuna's TPE with its HyperbandPruner on the same trainer, trial seeds and budget."""
    import optuna

    from hypersearch.executors.base import execute
    from hypersearch.objectives import build_objective
    from hypersearch.objectives.base import trial_seed
    from hypersearch.trials import COMPLETE, PRUNED, Report, TrialRequest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    exp = experiment(task, folder)
    objective = build_objective(exp.objective)
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10),
        pruner=optuna.pruners.HyperbandPruner(1, EPOCHS[task], 3),
    )

    class ToOptuna:
        """The trial's reports go to Optuna's trial; its pruner says when to stop."""

        def __init__(self, trial: optuna.Trial) -> None:
            self.trial, self.stop = trial, False

        def report(self, report: Report) -> None:
            self.trial.report(report.metrics["val_loss"], report.step)
            self.stop = self.trial.should_prune()

        def stopped(self, number: int) -> bool:
            return self.stop

    rows: list[dict[str, Any]] = []
    while sum(max(r["steps"], 1) for r in rows) < budget:
        trial = study.ask(exp.space.distributions())
        number = trial.number
        request = TrialRequest(
            number, trial.params, trial_seed(seed, number), folder / "optuna" / str(number)
        )
        result = execute(objective, request, "cpu", channel=ToOptuna(trial))
        loss = result.metrics.get("val_loss")
        if result.state == COMPLETE and loss is not None:
            study.tell(trial, loss)
        elif result.state == PRUNED:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        rows.append({"state": result.state, "steps": int(result.step or 0), "loss": loss})
    return rows


def _float(value: Any) -> float | None:
    return None if value is None or value != value else float(value)


def one(task: str, config: str, seed: int, budget: int, out: Path) -> Path:
    """Run one (task, config, seed) unless its result file exists; returns the file."""
    path = out / f"{task}-{config}-s{seed}-e{budget}.json"
    if path.exists():
        return path
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = (
            run_optuna(task, seed, budget, folder)
            if config == "optuna+hyperband"
            else run_ours(task, config, seed, budget, folder)
        )
    path.write_text(json.dumps({"task": task, "config": config, "seed": seed, "trials": rows}))
    return path


def curve(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Epochs trained after each trial, and the best final loss so far (inf before any)."""
    epochs = np.cumsum([max(r["steps"], 1) for r in rows])
    final = [
        r["loss"] if r["state"] == "COMPLETE" and r["loss"] is not None else np.inf for r in rows
    ]
    return epochs, np.minimum.accumulate(np.asarray(final, dtype=float))


def best_within(rows: list[dict[str, Any]], budget: int) -> float:
    """Best final loss of the trials finished within ``budget`` epochs."""
    epochs, best = curve(rows)
    inside = best[epochs <= budget]
    return float(inside[-1]) if len(inside) else float("inf")


def epochs_to_reach(rows: list[dict[str, Any]], target: float) -> float:
    """Epochs trained when the best final loss first reached ``target`` (inf: never)."""
    epochs, best = curve(rows)
    reached = np.nonzero(best <= target)[0]
    return float(epochs[reached[0]]) if len(reached) else float("inf")
