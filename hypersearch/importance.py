"""Which parameters mattered: fANOVA parameter importance of a run's complete trials, one column
per objective, and of a comparison's trials pooled per algorithm (all seeds together).

Optuna computes it (``optuna.importance.get_param_importances`` with
``FanovaImportanceEvaluator``, a random forest from scikit-learn): each parameter's share of the
variance of the objective that it explains on its own, normalized to sum to 1 over the
parameters. fANOVA rather than Optuna's default PED-ANOVA because on the few dozen trials a run
has, PED-ANOVA's top quantile holds a handful of trials and gives an unused parameter a share of
up to half; fANOVA keeps it near zero. It is fitted on an in-memory study built from the
exports (``trials.csv``), as every reader here works, so it needs neither the run's lock nor
its ``--storage``. Log parameters are measured on their log scale, as they are searched (fANOVA
itself would weigh 1e-4..1e-3 as a thousandth of 1e-4..1). Above ``MAX_TRIALS`` a seeded random
sample is used: the forest's cost grows faster than the trials.

Written by ``report`` (``hypersearch report``, and a compare's results at its end), never after
every trial: one fit takes about a second. Files: ``importance.csv`` (run:
``param,<objective…>,evaluator,trials``; compare: ``algo,objective,param,importance,evaluator,
trials``); the pictures are ``importance_plots``'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial

from hypersearch.experiment import Experiment
from hypersearch.results import COMPLETE, RunData
from hypersearch.space import CategoricalParam, FloatParam, IntParam

EVALUATOR = "fANOVA"  # named in the csv, the tables and the pictures
MIN_TRIALS = 4  # fewer complete trials: no forest worth reading
MAX_TRIALS = 200  # more: a seeded random sample of this many
SEED = 0  # the forest's and the sample's: a report is the same each time
FILE = "importance.csv"
PICTURE = "importance.png"


@dataclass
class Importance:
    """Importances of one set of trials: ``table`` has a row per parameter (most important
    first) and a column per objective it could be computed for (shares summing to 1);
    ``skipped`` says why an objective has no column."""

    table: pd.DataFrame
    trials: int  # complete trials used
    complete: int  # complete trials there were
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.table.shape[1] == 0

    def where(self) -> str:
        """``fANOVA, 40 complete trials`` (``a sample of 200 of 612`` above the cap)."""
        sample = f"a sample of {self.trials} of " if self.trials < self.complete else ""
        return f"{EVALUATOR}, {sample}{self.complete} complete trials"


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _distributions(experiment: Experiment) -> dict[str, BaseDistribution]:
    """Numbers on the scale they are searched (log10 of a log parameter), choices as text."""
    found: dict[str, BaseDistribution] = {}
    for name, param in experiment.space.params.items():
        if isinstance(param, CategoricalParam):
            found[name] = CategoricalDistribution([str(c) for c in param.choices])
        elif isinstance(param, FloatParam | IntParam):
            low, high = (
                (math.log10(param.low), math.log10(param.high))
                if param.log
                else (
                    float(param.low),
                    float(param.high),
                )
            )
            found[name] = FloatDistribution(low, high)
    return found


def _params(row: Mapping[str, Any], experiment: Experiment) -> dict[str, Any] | None:
    """A trials.csv row's parameters in ``_distributions``'s terms; None if one is unreadable."""
    params: dict[str, Any] = {}
    for name, param in experiment.space.params.items():
        if isinstance(param, CategoricalParam):
            index = param.index_read_back(row[name])
            if index is None:
                return None
            params[name] = str(param.choices[index])
            continue
        value = _number(row[name])
        if value is None or not math.isfinite(value):
            return None
        value = min(max(value, param.low), param.high)  # csv round-off at a bound
        params[name] = math.log10(value) if param.log else value
    return params


def _study(trials: pd.DataFrame, experiment: Experiment) -> optuna.Study:
    """An in-memory study of ``trials`` (complete, finite objectives) for Optuna's evaluator."""
    distributions = _distributions(experiment)
    objectives = list(experiment.objectives)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        study = optuna.create_study(directions=list(experiment.directions))
    finally:
        optuna.logging.set_verbosity(verbosity)
    frozen = []
    for row in trials.to_dict("records"):
        params = _params(row, experiment)
        if params is not None:
            values = [float(row[m]) for m in objectives]
            frozen.append(
                optuna.trial.create_trial(params=params, distributions=distributions, values=values)
            )
    study.add_trials(frozen)
    return study


def importances(trials: pd.DataFrame, experiment: Experiment) -> Importance:
    """fANOVA importance of ``trials``'s complete ones (rows of trials.csv), per objective."""
    objectives = list(experiment.objectives)
    complete = trials[trials["state"] == COMPLETE]
    values = complete[objectives].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    complete = complete[np.all(np.isfinite(values), axis=1)]
    total = len(complete)
    names = list(experiment.params)
    empty = pd.DataFrame(index=pd.Index(names, name="param"))
    if total < MIN_TRIALS:
        why = f"only {total} complete trial{'s' * (total != 1)} ({EVALUATOR} needs {MIN_TRIALS})"
        return Importance(empty, total, total, dict.fromkeys(objectives, why))
    if total > MAX_TRIALS:
        rng = np.random.default_rng(SEED)
        complete = complete.iloc[np.sort(rng.choice(total, MAX_TRIALS, replace=False))]
    # here: optuna.importance imports scikit-learn (~0.9 s), which every CLI start would pay
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    if complete[names].nunique(dropna=False).max() <= 1:  # fANOVA has nothing to split on
        why = "the parameters never varied in the complete trials"
        return Importance(empty, len(complete), total, dict.fromkeys(objectives, why))
    study = _study(complete, experiment)
    columns: dict[str, pd.Series] = {}
    skipped: dict[str, str] = {}
    for i, metric in enumerate(objectives):
        target = complete[metric].to_numpy(dtype=float)
        if np.ptp(target) == 0:
            skipped[metric] = f"{metric} is the same in every complete trial"
            continue
        shares = get_param_importances(
            study,
            evaluator=FanovaImportanceEvaluator(seed=SEED),
            params=names,
            target=_objective(i),
        )
        if not np.all(np.isfinite(list(shares.values()))):  # fANOVA's 0/0: nothing varied
            skipped[metric] = "the parameters never varied in the complete trials"
            continue
        columns[metric] = pd.Series(shares, dtype=float)
    table = pd.DataFrame(columns, index=empty.index)
    if columns:
        table = table.sort_values(next(iter(columns)), ascending=False, kind="stable")
    return Importance(table, len(complete), total, skipped)


def _objective(index: int) -> Callable[[FrozenTrial], float]:
    """The evaluator's target: objective ``index`` of a trial."""

    def value(trial: FrozenTrial) -> float:
        return float(trial.values[index])

    return value


def run_importance(run: RunData) -> Importance:
    """A run's importances, from the trials that count (``RunData.counted``)."""
    return importances(run.counted, run.experiment)


def pooled_importance(
    experiment: Experiment, algos: Sequence[str], runs: Sequence[RunData]
) -> dict[str, Importance]:
    """Each algorithm's importances over its finished runs' trials, all seeds pooled (the runs
    the results table scores); algorithms without a finished run are left out."""
    found = {}
    for algo in algos:
        done = [run.counted for run in runs if run.algo == algo and run.done]
        if done:
            found[algo] = importances(pd.concat(done, ignore_index=True), experiment)
    return found


def write_run_csv(importance: Importance, path: Path) -> Path:
    """``param,<objective…>,evaluator,trials``: a column per objective computed."""
    table = importance.table.reset_index()
    table["evaluator"] = EVALUATOR
    table["trials"] = importance.trials
    table.to_csv(path, index=False)
    return path


def write_pooled_csv(found: Mapping[str, Importance], path: Path) -> Path:
    """``algo,objective,param,importance,evaluator,trials``: one row per algorithm, objective
    and parameter."""
    rows = [
        {
            "algo": algo,
            "objective": metric,
            "param": param,
            "importance": share,
            "evaluator": EVALUATOR,
            "trials": imp.trials,
        }
        for algo, imp in found.items()
        for metric in imp.table.columns
        for param, share in imp.table[metric].items()
    ]
    columns = ["algo", "objective", "param", "importance", "evaluator", "trials"]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path
