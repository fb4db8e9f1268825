"""Warm starts and enqueued trials: what a run's algorithm is told, or runs, before its own asks.

``--warm-start RUN_DIR`` (as Optuna's ``add_trials`` or Ray Tune's ``points_to_evaluate`` with
``evaluated_rewards``): every COMPLETE trial of earlier runs (any algorithm; the same parameter
names and objectives) is told to the algorithm before its first ask. They are not trials of this
run (not in the study, trials.csv or the budget): the run folder keeps them in
``warm_start.csv`` (``source,number,<param…>,<objective…>,skipped``), with the trials left out
(a value outside this run's bounds or choices) and why. A resume tells the rows of that file
again, first and in the same order, so it needs none of the old folders and a resumed algorithm
asks what the uninterrupted one would: resume and warm start are one feature.

Ids: the algorithm sees warm trials and enqueued configs (``initial:``, ``--enqueue``) under
negative ids (warm ones first, then the enqueued, each in order), so none ever collides with an
id it issues, and a resume gives them the same ones. An enqueued config is a trial of this run,
started before the algorithm is asked for anything and declared ``pending`` to it (as a lost
worker's retry is): the algorithm never issued it, and learns its result like any other.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hypersearch import pareto, results
from hypersearch.algorithms.base import Observation, Suggestion
from hypersearch.errors import RunFolderError, UserInputError, user_errors
from hypersearch.experiment import Experiment, load_experiment
from hypersearch.exports import WARM_CSV, atomic_write
from hypersearch.initial import ParamSpec, check_value, enqueued_id, load_enqueued
from hypersearch.space import CategoricalParam, IntParam
from hypersearch.store import RunStore
from hypersearch.trials import COMPLETE

FLAG = "--warm-start"


@dataclass(frozen=True)
class WarmTrial:
    """A trial of an earlier run: its folder and number there, its config (normalized; the
    cells as read when skipped), objective values, and why it was left out (None: told)."""

    source: str
    number: int
    config: dict[str, Any]
    metrics: dict[str, float]
    skipped: str | None = None


# -- gathering from earlier runs -----------------------------------------------------------------


def source_dirs(given: Sequence[str | Path]) -> list[Path]:
    """The folders of ``--warm-start A --warm-start B,C`` (an existing folder whose name has a
    comma is taken whole); each once."""
    dirs: list[Path] = []
    for item in given:
        text = str(item)
        parts = [text] if Path(text).is_dir() else [p for p in text.split(",") if p.strip()]
        for part in parts:
            path = Path(part.strip())
            if path.resolve() in {d.resolve() for d in dirs}:
                raise UserInputError(f"{FLAG}: {path} is given twice")
            dirs.append(path)
    return dirs


def gather(given: Sequence[str | Path], experiment: Experiment) -> list[WarmTrial]:
    """Every COMPLETE trial of the runs ``given``, run by run in trial order; ones outside
    ``experiment``'s space are kept, marked skipped. A folder that is no run, or whose
    objectives or parameter names differ, is a one-line error naming it and the field."""
    trials: list[WarmTrial] = []
    for run_dir in source_dirs(given):
        if not results.is_run_dir(run_dir):
            raise RunFolderError(f"{FLAG}: {run_dir} is not a hypersearch run folder (no run.json)")
        try:
            source = load_experiment(run_dir / "experiment.yaml")
        except UserInputError as err:
            raise UserInputError(f"{FLAG}: {run_dir}: {err}") from None
        _check_compatible(run_dir, source, experiment)
        with user_errors(FLAG, run_dir / "trials.csv"):
            rows = _csv_rows(run_dir / "trials.csv")
        rows = [r for r in rows if r.get("state") == COMPLETE and not _superseded(r)]
        rows.sort(key=lambda r: int(r["number"]))
        trials += [_trial(str(run_dir.resolve()), r, experiment) for r in rows]
    return trials


def _check_compatible(run_dir: Path, source: Experiment, experiment: Experiment) -> None:
    """Same objectives (names and directions) and the same parameter names."""
    for metric in [*experiment.objectives, *source.objectives]:
        here = experiment.objectives.get(metric, "not an objective")
        there = source.objectives.get(metric, "not an objective")
        if here != there:
            raise UserInputError(
                f"{FLAG}: {run_dir}: objectives.{metric}: {there} there, {here} here"
            )
    for name in [*experiment.params, *source.params]:
        if (name in experiment.params) != (name in source.params):
            where = "this run" if name in experiment.params else "that run"
            raise UserInputError(
                f"{FLAG}: {run_dir}: params.{name}: a parameter of {where} only "
                "(a warm start needs the same parameter names)"
            )


def _superseded(row: dict[str, str]) -> bool:
    return row.get("superseded", "").strip().lower() == "true"


def _trial(source: str, row: dict[str, str], experiment: Experiment) -> WarmTrial:
    """A row of a trials.csv (or warm_start.csv) as a trial of ``experiment``'s space."""
    config: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    reasons = []
    for name, param in experiment.space.params.items():
        try:
            config[name] = check_value(param, _parsed(param, row.get(name, "")))
        except ValueError as err:
            config[name] = row.get(name, "")
            reasons.append(f"{name}: {err}")
    for metric in experiment.objectives:
        try:
            metrics[metric] = float(row.get(metric, ""))
        except ValueError:
            metrics[metric] = float("nan")
        if not np.isfinite(metrics[metric]):
            reasons.append(f"{metric}: not a finite number")
    skipped = "; ".join(reasons) or None
    return WarmTrial(source, int(row["number"]), config, metrics, skipped)


def _parsed(param: ParamSpec, text: str) -> Any:
    """A CSV cell as a value of ``param``'s type where it reads as one (else the text, which
    ``check_value`` then refuses)."""
    if isinstance(param, CategoricalParam):
        index = param.index_read_back(text)
        return text if index is None else param.choices[index]
    if isinstance(param, IntParam):
        try:
            return int(text)
        except ValueError:
            number = _float(text)
            return int(number) if number is not None and number.is_integer() else text
    number = _float(text)
    return text if number is None else number


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """A CSV file's rows as text (pandas would retype values; floats must round-trip)."""
    try:
        text = path.read_bytes().decode()
    except FileNotFoundError:
        return []
    return list(csv.DictReader(io.StringIO(text)))


def prepared(
    experiment: Experiment, given: Sequence[str | Path], enqueue: str | Path | None
) -> tuple[Experiment, list[WarmTrial]]:
    """A new run's experiment, the ``--enqueue`` file's configs added to its ``initial:`` (so
    experiment.yaml keeps them for a resume), and its warm trials: all checked before the run
    folder is made."""
    if enqueue is not None:
        configs = experiment.initial + load_enqueued(enqueue, experiment.space)
        experiment = experiment.with_overrides(initial=configs)
    return experiment, gather(given, experiment)


def record(run_dir: Path, trials: Sequence[WarmTrial], experiment: Experiment, runs: int) -> None:
    """Keep a new run's warm trials in its folder and say how many were told (on stderr)."""
    if runs:
        save(run_dir, trials, experiment)
        told = sum(t.skipped is None for t in trials)
        print(described(told, len(trials) - told, runs), file=sys.stderr, flush=True)


# -- the run folder's copy -----------------------------------------------------------------------


def save(run_dir: Path, trials: Sequence[WarmTrial], experiment: Experiment) -> None:
    """Write ``warm_start.csv``: every trial gathered, told or skipped, in the order told."""
    columns = ["source", "number", *experiment.params, *experiment.objectives, "skipped"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for t in trials:
        values = [t.config[n] for n in experiment.params]
        values += [t.metrics[m] for m in experiment.objectives]
        writer.writerow([t.source, t.number, *values, t.skipped or ""])  # floats as repr()
    with user_errors("run folder", run_dir, writing=True):
        atomic_write(run_dir / WARM_CSV, out.getvalue())


def load(run_dir: Path, experiment: Experiment) -> list[WarmTrial]:
    """The trials of ``warm_start.csv`` (none without the file), as ``gather`` found them."""
    path = run_dir / WARM_CSV
    with user_errors("run folder", path):
        rows = _csv_rows(path)
    trials = []
    for line, row in enumerate(rows, start=2):
        if row.get("skipped"):
            trials.append(WarmTrial(row["source"], int(row["number"]), {}, {}, row["skipped"]))
            continue
        trial = _trial(row.get("source", ""), row, experiment)
        if trial.skipped:
            raise RunFolderError(f"run folder: {path} is damaged (line {line}: {trial.skipped})")
        trials.append(trial)
    return trials


def observations(store: RunStore) -> list[Observation]:
    """The warm trials a run's algorithm is told before anything else, in order, under ids
    before the enqueued configs' (losses minimized, as the engine tells its own)."""
    exp = store.experiment
    told = [t for t in load(store.run_dir, exp) if t.skipped is None]
    first = enqueued_id(0, len(exp.initial)) - len(told)
    values = np.array([[t.metrics[m] for m in exp.objectives] for t in told], dtype=float)
    losses = pareto.to_losses(values, list(exp.objectives.values()))
    return [
        Observation(first + k, exp.space.encode(t.config), tuple(float(v) for v in row))
        for k, (t, row) in enumerate(zip(told, losses, strict=True))
    ]


def waiting(store: RunStore) -> list[tuple[Suggestion, dict[str, Any]]]:
    """The enqueued configs no trial of the run has taken up yet, in order, each with the
    suggestion it runs as."""
    initial = store.experiment.initial
    taken = {r.suggestion_id for r in store.records.values()}
    ids = [enqueued_id(j, len(initial)) for j in range(len(initial))]
    space = store.experiment.space
    return [
        (Suggestion(id_, space.encode(config)), dict(config))
        for id_, config in zip(ids, initial, strict=True)
        if id_ not in taken
    ]


# -- what the run says about them ----------------------------------------------------------------


def described(told: int, skipped: int, runs: int) -> str:
    """``warm start: 37 trials from 2 runs told (5 skipped: out of bounds or unreadable; see
    warm_start.csv)``: said when the run starts, and by ``report``."""
    line = f"warm start: {_count(told, 'trial')} from {_count(runs, 'run')} told"
    why = f" ({skipped} skipped: out of bounds or unreadable; see warm_start.csv)"
    return line + (why if skipped else "")


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
