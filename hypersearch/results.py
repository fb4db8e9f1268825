"""Reading what runs stored: a run folder's exports as pandas DataFrames.

Reads only the exports (``summary.json``, ``trials.csv``, ``pareto.csv``, ``curves.csv``),
which a run rewrites atomically after every finished trial: reading never touches the study or
its lock, so it works on a run still in progress and on runs whose study lives in an external
``--storage``.

A run counts its trials as the store does (``RunStore.tally``): a trial whose worker was lost
and whose retry took its place (``superseded`` in trials.csv) is in ``trials`` and ``finished``
but not in ``counted``, so it is in no budget, curve, failure count or best so far.

    >>> trials, front = hypersearch.load_run("runs/branin-tpe-s0-20261126-101500")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hypersearch import pareto
from hypersearch.errors import RunFolderError
from hypersearch.experiment import Experiment, load_experiment
from hypersearch.exports import CURVES, STEPS, SUPERSEDED, trials_frame
from hypersearch.space import CategoricalParam
from hypersearch.trials import COMPLETE, FAIL, PRUNED


@dataclass
class RunData:
    """A run as stored. Unpacks as ``trials, front``.

    ``trials``: ``trials.csv`` (every trial, RUNNING ones of a live run and superseded ones too)
    plus ``pareto_rank`` (non-dominated sorting of the complete trials: 1 is the front);
    ``front``: ``pareto.csv``.
    """

    run_dir: Path
    experiment: Experiment
    summary: dict[str, Any]
    trials: pd.DataFrame
    front: pd.DataFrame

    def __iter__(self) -> Iterator[pd.DataFrame]:
        yield self.trials
        yield self.front

    @property
    def algo(self) -> str:
        return str(self.summary["algo"])

    @property
    def seed(self) -> int:
        return int(self.summary["seed"])

    @property
    def objectives(self) -> dict[str, str]:
        return dict(self.experiment.objectives)

    @property
    def directions(self) -> list[str]:
        return list(self.experiment.directions)

    @property
    def done(self) -> bool:
        """Whether the run spent its whole budget (nothing left to run or resume)."""
        budget, (counted, _) = self.experiment.budget, self.tally()
        if budget.steps is not None:  # as the engine counts: a finished trial is at least one
            steps = pd.to_numeric(self.trials[STEPS], errors="coerce").fillna(0)
            steps[self.trials["state"].isin([COMPLETE, FAIL, PRUNED])] = steps.clip(lower=1)
            if steps.sum() >= budget.steps:
                return not self.running_count
        return budget.trials is not None and counted >= budget.trials and not self.running_count

    @property
    def finished(self) -> pd.DataFrame:
        """Finished trials (COMPLETE, FAIL or PRUNED) by number, superseded ones too."""
        finished = self.trials["state"].isin([COMPLETE, FAIL, PRUNED])
        return self.trials[finished].sort_values("number")

    @property
    def counted(self) -> pd.DataFrame:
        """Finished trials that count toward the budget (``RunStore.counted``): a lost
        trial's retry counts in its place."""
        finished = self.finished
        return finished[~finished[SUPERSEDED].to_numpy(dtype=bool)]

    def tally(self) -> tuple[int, int]:
        """Counted trials and the failed ones among them, as ``RunStore.tally`` gives them."""
        counted = self.counted
        return len(counted), int((counted["state"] == FAIL).sum())

    @property
    def finished_count(self) -> int:
        """Every finished trial, superseded ones too (``tally()`` gives the counted ones)."""
        return len(self.finished)

    @property
    def running_count(self) -> int:
        return int((self.trials["state"] == "RUNNING").sum())

    def steps(self) -> np.ndarray:
        """Steps each counted trial trained (the last step it reported), in trial-number order as
        ``losses()``; 0 for a trial that reported none (check ``reported_steps`` first)."""
        counted = self.counted
        if STEPS not in counted:  # a run exported before the column
            return np.zeros(len(counted), dtype=int)
        return pd.to_numeric(counted[STEPS], errors="coerce").fillna(0).to_numpy(dtype=int)

    @property
    def reported_steps(self) -> bool:
        """Whether any counted trial reported a step (its steps and curves mean something)."""
        return STEPS in self.counted and bool(self.counted[STEPS].notna().any())

    def curves(self) -> pd.DataFrame:
        """``curves.csv``: ``number,state,step,<first objective>``, one row per report, read
        when asked (a comparison reads many runs and needs none); no rows without the file."""
        primary = next(iter(self.objectives))
        curves = _read_csv(self.run_dir / CURVES)
        return (
            curves
            if curves is not None
            else pd.DataFrame(columns=["number", "state", "step", primary])
        )

    def losses(self) -> np.ndarray:
        """(counted trials × objectives) as losses, in trial-number order; NaN rows failed."""
        counted = self.counted
        values = counted[list(self.objectives)].to_numpy(dtype=float, copy=True)
        values[(counted["state"] != COMPLETE).to_numpy()] = np.nan
        return pareto.to_losses(values, list(self.objectives.values()))


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / "run.json").is_file()


def load_run(run_dir: str | Path) -> RunData:
    """A run folder's trials (with Pareto ranks), front, summary and experiment."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise RunFolderError(f"{run_dir} is not a hypersearch run folder (no run.json)")
    experiment = load_experiment(run_dir / "experiment.yaml")
    summary = _read_json(run_dir / "summary.json")
    text = [  # kept as written: the choice "0.10" is not the number 0.1, nor "01" the choice "1"
        name
        for name, param in experiment.space.params.items()
        if isinstance(param, CategoricalParam) and all(isinstance(c, str) for c in param.choices)
    ]
    trials = _read_csv(run_dir / "trials.csv", text)
    front = _read_csv(run_dir / "pareto.csv", text)
    if trials is None:  # created, but killed before its first export
        trials = trials_frame([], experiment)
    if front is None:
        front = trials.iloc[0:0][["number", *experiment.params, *experiment.objectives]]
    trials = _with_ranks(_with_superseded(trials), experiment)
    if summary is None:
        manifest = _read_json(run_dir / "run.json") or {}
        summary = {"algo": manifest.get("algo"), "seed": manifest.get("seed"), "trials": 0}
    return RunData(run_dir, experiment, summary, trials, front)


def _with_superseded(trials: pd.DataFrame) -> pd.DataFrame:
    """``superseded`` as booleans; False throughout for a run exported before the column."""
    trials = trials.copy()
    if SUPERSEDED in trials:  # bool, or text where pandas met a gap: "True" is the only true
        trials[SUPERSEDED] = trials[SUPERSEDED].astype(str).str.strip().str.lower() == "true"
    else:
        trials[SUPERSEDED] = False
    return trials


def _with_ranks(trials: pd.DataFrame, experiment: Experiment) -> pd.DataFrame:
    trials = trials.copy()
    complete = (trials["state"] == COMPLETE).to_numpy()
    objectives = list(experiment.objectives)
    losses = pareto.to_losses(
        trials.loc[complete, objectives].to_numpy(dtype=float), list(experiment.directions)
    )
    rank = pd.Series(pd.NA, index=trials.index, dtype="Int64")
    rank[complete] = pareto.ranks(losses)
    trials["pareto_rank"] = rank
    return trials


def _read_csv(path: Path, text: Sequence[str] = ()) -> pd.DataFrame | None:
    """The file as a frame, the ``text`` columns as strings; None when missing or empty."""
    try:
        return pd.read_csv(path, dtype=dict.fromkeys(text, str))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object, or None when the file is missing or damaged (not UTF-8, not JSON, not an
    object): the exports are rewritten by the run, so a reader makes do without them."""
    try:
        data = json.loads(path.read_bytes().decode())
    except (FileNotFoundError, ValueError):  # JSONDecodeError and UnicodeDecodeError
        return None
    return data if isinstance(data, dict) else None
