"""A run folder's exports: ``trials.csv``, ``pareto.csv``, ``summary.json`` and, once a trial
reported a step, ``curves.csv``.

They are what readers (``results.load_run``, ``hypersearch report``, ``hypersearch compare``,
pandas) use instead of the study, so they are rewritten atomically after every finished trial: a
reader never sees half a file, and never needs the run's lock or its storage URL.

``trials.csv``: ``number,state,<param…>,<metric…>,duration_s,error,superseded,steps``
(objectives first among the metrics; state COMPLETE, FAIL, PRUNED or RUNNING). ``superseded``
is true for a trial whose worker was lost and whose retry took its place: it is shown, but left
out of budgets, curves and failure counts, as the store's ``counted()`` leaves it out.
``steps`` is the last step a trial reported (a PRUNED trial's is where it was stopped).

``curves.csv``: ``number,state,step,<first objective>``, one row per report of a trial (its
learning curve, as the study's intermediate values hold it), every trial as trials.csv has it.

This module reads a run through the ``RecordedRun`` protocol (which ``store.RunStore``
satisfies) and never imports the store, which imports it.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from hypersearch import __version__, pareto
from hypersearch.errors import user_errors
from hypersearch.experiment import Experiment
from hypersearch.records import TrialRecord, record_losses
from hypersearch.trials import COMPLETE, FAIL, PRUNED

SUPERSEDED = "superseded"  # the trials.csv column, after the columns it had before it
STEPS = "steps"  # the last step a trial reported (empty if it reported none), last
CURVES = "curves.csv"  # the learning curves: one row per report
WARM_CSV = "warm_start.csv"  # a warm start's trials (hypersearch.warm_start)


class RecordedRun(Protocol):
    """What the exports read from a run's record (``store.RunStore``)."""

    run_dir: Path
    experiment: Experiment
    algo: str
    seed: int
    storage_url: str
    study_name: str
    records: dict[int, TrialRecord]

    def finished(self) -> list[TrialRecord]: ...
    def running(self) -> list[TrialRecord]: ...
    def front(self) -> list[TrialRecord]: ...
    def best(self) -> TrialRecord | None: ...


def trials_frame(records: Sequence[TrialRecord], experiment: Experiment) -> pd.DataFrame:
    """``number,state,<param…>,<metric…>,duration_s,error,superseded,steps`` (objectives
    first; ``steps`` an integer, empty when a trial reported none)."""
    metrics = list(experiment.objectives)
    for record in records:
        metrics += [m for m in record.metrics if m not in metrics]
    rows = [
        {
            "number": r.number,
            "state": r.state,
            **r.params,
            **{m: r.metrics.get(m) for m in metrics},
            "duration_s": r.duration_s,
            "error": r.error,
            SUPERSEDED: r.superseded,
            STEPS: r.steps,
        }
        for r in records
    ]
    columns = [
        "number",
        "state",
        *experiment.params,
        *metrics,
        "duration_s",
        "error",
        SUPERSEDED,
        STEPS,
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame[STEPS] = frame[STEPS].astype("Int64")  # 3, not 3.0, beside empty cells
    return frame


def curves_frame(records: Sequence[TrialRecord], experiment: Experiment) -> pd.DataFrame:
    """``number,state,step,<first objective>``: each trial's reports (the first objective's value
    at each step it reported), by trial number and step."""
    primary = next(iter(experiment.objectives))
    rows = [
        (r.number, r.state, step, value)
        for r in sorted(records, key=lambda r: r.number)
        for step, value in sorted(r.curve.items())
    ]
    return pd.DataFrame(rows, columns=["number", "state", "step", primary])


def pareto_frame(front: Sequence[TrialRecord], experiment: Experiment) -> pd.DataFrame:
    """``number,<param…>,<objective…>`` of the trials on the front."""
    frame = trials_frame(front, experiment)
    return frame[["number", *experiment.params, *experiment.objectives]]


def hypervolume(records: Sequence[TrialRecord], experiment: Experiment) -> float | None:
    """Hypervolume of the complete trials (several objectives; None for one)."""
    if len(experiment.objectives) < 2:
        return None
    losses = [record_losses(r, experiment.objectives) for r in records if r.state == COMPLETE]
    if not losses:
        return 0.0
    reference = pareto.given_reference(experiment.reference_point, experiment.objectives)
    return pareto.hypervolume(np.array(losses), reference)


def devices(records: Sequence[TrialRecord]) -> dict[str, list[int]]:
    """Which device ran each finished trial: device -> trial numbers."""
    ran: dict[str, list[int]] = {}
    for record in sorted(records, key=lambda r: r.number):
        if record.finished:
            ran.setdefault(record.device or "unknown", []).append(record.number)
    return ran


def summary(run: RecordedRun, wall_seconds: float, overhead_seconds: float) -> dict[str, Any]:
    """``summary.json``. ``trials``, ``complete``, ``failed`` and ``pruned`` count every
    finished trial (as they always did; ``steps`` adds up the steps they reported).
    ``superseded`` of them were lost workers' trials that a retry replaced, so
    ``trials - superseded`` is what counts toward the budget, as in ``store.tally()`` and
    ``results.RunData.tally()``."""
    finished = run.finished()
    best = run.best()
    experiment = run.experiment
    return {
        "name": experiment.name,
        "algo": run.algo,
        "seed": run.seed,
        "trials": len(finished),
        "budget": experiment.budget.trials,  # None: bounded by steps alone
        "budget_steps": experiment.budget.steps,
        "complete": sum(r.state == COMPLETE for r in finished),
        "failed": sum(r.state == FAIL for r in finished),
        "running": len(run.running()),
        "superseded": sum(r.superseded for r in finished),
        "pruned": sum(r.state == PRUNED for r in finished),
        "steps": sum(r.steps or 0 for r in finished),  # steps (epochs) trained, in all
        "objectives": dict(experiment.objectives),
        "best": None
        if best is None
        else {"number": best.number, "params": best.params, "metrics": best.metrics},
        "devices": devices(finished),
        "pareto_size": len(run.front()),
        "hypervolume": hypervolume(list(run.records.values()), experiment),
        "wall_seconds": round(wall_seconds, 3),
        "overhead_seconds": round(overhead_seconds, 3),
        "run_dir": str(run.run_dir),
        "storage": run.storage_url,
        "study_name": run.study_name,
        "versions": versions(),
    } | _warm_start(run.run_dir)


def _warm_start(run_dir: Path) -> dict[str, Any]:
    """summary.json's ``warm_start: {runs, told, skipped}``, only for a warm-started run (its
    ``warm_start.csv``, written once when the run was created)."""
    path = run_dir / WARM_CSV
    if not path.is_file():
        return {}
    with user_errors("run folder", path), path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    skipped = sum(bool(r.get("skipped")) for r in rows)
    runs = list(dict.fromkeys(r.get("source", "") for r in rows))
    return {"warm_start": {"runs": runs, "told": len(rows) - skipped, "skipped": skipped}}


def write(run: RecordedRun, wall_seconds: float, overhead_seconds: float) -> dict[str, Any]:
    """Rewrite trials.csv, pareto.csv, summary.json and, once a trial reported a step,
    curves.csv (each atomically); returns the summary."""
    records = sorted(run.records.values(), key=lambda r: r.number)
    trials = trials_frame(records, run.experiment)
    front = pareto_frame(run.front(), run.experiment)
    written = summary(run, wall_seconds, overhead_seconds)
    with user_errors("run folder", run.run_dir, writing=True):
        atomic_write(run.run_dir / "trials.csv", trials.to_csv(index=False))
        if any(r.curve for r in records):
            curves = curves_frame(records, run.experiment)
            atomic_write(run.run_dir / CURVES, curves.to_csv(index=False))
        atomic_write(run.run_dir / "pareto.csv", front.to_csv(index=False))
        atomic_write(run.run_dir / "summary.json", json.dumps(written, indent=2, default=str))
    return written


def atomic_write(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a reader sees the old file or the new one); the store
    writes ``run.json`` and ``experiment.yaml`` with it too."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@functools.cache
def versions() -> dict[str, str]:
    """Versions that matter for reproducing a run (read without importing torch)."""
    found = {"python": platform.python_version()}
    for package in ("hypersearch", "numpy", "optuna", "scikit-learn", "deap", "pyswarms", "torch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    found.setdefault("hypersearch", __version__)  # run from a checkout, not installed
    return found
