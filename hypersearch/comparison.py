"""``hypersearch compare``: every algorithm × seed on one experiment, then the results table.

The runs are ordinary run folders inside one compare folder, named ``<name>-<algo>-s<seed>``,
run seed by seed (so a compare cut short holds complete seeds to pair) on one executor that
serves them in turn: its workers, and the GPUs they hold, are shared by every run. Seeds are the
same for every algorithm, which pairs the comparison (same seeds, same noise on the objective).
A compare is resumed like a run: finished runs are kept, a cut-off run is resumed, the rest run.

Compare folder: ``experiment.yaml``, ``compare.json`` (algorithms, seeds, target), the run
folders, ``logs/``, ``results.csv``, ``results.md`` and the plots (PNG).

This module runs and computes; it returns a :class:`Comparison`. Writing results.csv and
results.md is ``report.write_comparison``'s job, drawing the plots ``plots.compare_plots``'s, and
``report.compare`` (which is ``hypersearch.compare``) runs a comparison and writes them. Nothing
here imports ``report`` or ``plots``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from hypersearch import algorithms, pareto
from hypersearch.engine import Progress, RunResult, drive, sigterm_as_interrupt
from hypersearch.errors import RunFolderError, UserInputError
from hypersearch.executors import Executor, check_executor, make_executor
from hypersearch.experiment import Experiment, budget_words, check_name, load_experiment
from hypersearch.folders import create_folder
from hypersearch.objectives import build_objective
from hypersearch.results import PRUNED, RunData, load_run
from hypersearch.stats import Results, RunScore, best_so_far, results_table
from hypersearch.store import RunStore, read_json_model

MANIFEST = "compare.json"


@dataclass
class CompareFolder:
    """A compare folder's plan: the experiment, algorithms and seeds."""

    path: Path
    experiment: Experiment
    algos: list[str]
    seeds: list[int]
    target: float | None = None

    def run_dir(self, algo: str, seed: int) -> Path:
        return self.path / f"{self.experiment.name}-{algo}-s{seed}"

    def planned(self) -> list[tuple[str, int]]:
        """(algorithm, seed) in the order they run: seed by seed."""
        return [(algo, seed) for seed in self.seeds for algo in self.algos]

    def runs(self) -> list[RunData]:
        """The planned runs that have a folder (finished or not)."""
        return [load_run(d) for a, s in self.planned() if (d := self.run_dir(a, s)).is_dir()]


def is_compare_dir(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


class CompareManifest(BaseModel):
    """``compare.json``: the algorithms, seeds and target of a compare folder."""

    model_config = ConfigDict(extra="allow", strict=True)

    algos: list[str]
    seeds: list[int]
    target: float | None = None


def open_compare(path: str | Path) -> CompareFolder:
    path = Path(path)
    if not is_compare_dir(path):
        raise RunFolderError(f"{path} is not a hypersearch compare folder (no {MANIFEST})")
    manifest = read_json_model(path / MANIFEST, CompareManifest, "--resume")
    return CompareFolder(
        path,
        load_experiment(path / "experiment.yaml"),
        manifest.algos,
        manifest.seeds,
        manifest.target,
    )


def create_compare(
    experiment: Experiment,
    algos: Sequence[str],
    seeds: Sequence[int],
    out: Path,
    target: float | None,
) -> CompareFolder:
    """A new compare folder, created whole or not at all (``folders.create_folder``)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    manifest = {
        "algos": list(algos),
        "seeds": list(seeds),
        "target": target,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
    }

    def build(staging: Path, name: str) -> None:
        (staging / "experiment.yaml").write_text(experiment.to_yaml())
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))

    path = create_folder(out, f"compare-{experiment.name}-{stamp}", build)
    return CompareFolder(path, experiment, list(algos), list(seeds), target)


@dataclass
class Comparison:
    """What a comparison found: its folder (plan), the runs read from it, one score per
    finished run, and the results table with the notes a reader needs to interpret it."""

    folder: CompareFolder
    runs: list[RunData]
    scores: list[RunScore]
    results: Results
    interrupted: bool = False  # Ctrl-C cut it short: continue with ``resume=compare_dir``

    @property
    def compare_dir(self) -> Path:
        return self.folder.path

    @property
    def table(self) -> pd.DataFrame:
        """The results table: one row per algorithm (see ``stats.results_table``)."""
        return self.results.table

    @property
    def notes(self) -> dict[str, Any]:
        """What the table's columns mean and what it covers (score, target, seeds, runs …)."""
        return self.results.notes

    @property
    def runs_without_success(self) -> list[str]:
        """The finished runs (folder names) in which no trial succeeded."""
        return list(self.notes.get("runs_without_success") or [])


class CompareProgress(Protocol):
    """Told when each run of a compare starts and ends (the CLI prints a line per run)."""

    def run_started(self, index: int, total: int, algo: str, seed: int) -> None: ...
    def run_finished(self, index: int, total: int, result: RunResult) -> None: ...


def compare(
    experiment: Experiment | str | Path | None = None,
    *,
    algos: Sequence[str] | None = None,
    seeds: int = 3,
    trials: int | None = None,
    parallel: int | None = None,
    out: str | Path = "runs",
    name: str | None = None,
    resume: str | Path | None = None,
    executor: str = "local",
    target: float | None = None,
    ray_address: str | None = None,
    gpus: list[str] | None = None,
    trials_per_gpu: int = 1,
    progress: CompareProgress | None = None,
    run_progress: Callable[[RunStore], Progress] | None = None,
    population: str = "off",
    scheduler: str | None = None,
) -> Comparison:
    """Run every algorithm (default: all registered) with ``seeds`` shared seeds and return the
    :class:`Comparison`: ``.table`` (one row per algorithm; see ``stats.results_table``),
    ``.compare_dir``, and ``.interrupted`` (Ctrl-C cut it short: continue with ``resume=``).
    ``hypersearch.compare`` (``report.compare``) takes the same arguments and also writes the
    folder's results.csv, results.md and plots. ``population`` is ``off`` or ``on`` for every
    algorithm alike: ``auto`` would train ga/pso/random in populations and the others one at a
    time, which changes their wall time and any ``train_seconds`` objective (a member's share of
    its population's time) for reasons unrelated to the algorithms. ``scheduler`` replaces the
    experiment's (every algorithm runs under the same one; a new compare only).

    >>> comparison = compare("searchspaces/branin.yaml", seeds=5, trials=30)  # doctest: +SKIP
    """
    check_executor(executor, ray_address)
    if population not in ("on", "off"):
        raise UserInputError(f"--population: must be on or off for a compare (got {population!r})")
    if resume is not None:
        folder = open_compare(resume)
    else:
        folder = _new_compare(
            experiment, algos, seeds, trials, parallel, Path(out), name, target, scheduler
        )
    exp = folder.experiment
    build_objective(exp.objective).check()
    pool = make_executor(
        executor,
        exp.objective,
        exp.budget.parallel,
        log_dir=folder.path / "logs",
        ray_address=ray_address,
        cpus_per_trial=exp.budget.cpus_per_trial,
        gpus_per_trial=exp.budget.gpus_per_trial,
        gpus=gpus,
        trials_per_gpu=trials_per_gpu,
        ray_spec=exp.ray,
    )
    plan = folder.planned()
    try:
        with pool, sigterm_as_interrupt():
            interrupted = _run_plan(folder, plan, pool, progress, run_progress, population)
    except KeyboardInterrupt:  # between two runs: every finished run is saved already
        interrupted = True
    return evaluate(folder, interrupted)


def _run_plan(
    folder: CompareFolder,
    plan: list[tuple[str, int]],
    pool: Executor,
    progress: CompareProgress | None,
    run_progress: Callable[[RunStore], Progress] | None,
    population: str = "off",
) -> bool:
    """Run what is left of the plan; returns whether a run was interrupted."""
    exp = folder.experiment
    for index, (algo, seed) in enumerate(plan, start=1):
        run_dir = folder.run_dir(algo, seed)
        if run_dir.is_dir() and load_run(run_dir).done:
            continue
        if progress is not None:
            progress.run_started(index, len(plan), algo, seed)
        store = (
            RunStore.open(run_dir)
            if run_dir.is_dir()
            else RunStore.create(
                folder.path, run_dir.name, exp.with_overrides(seed=seed), algo, seed, numbered=False
            )
        )
        try:
            if not (run_dir / "summary.json").exists():
                store.export(0.0, 0.0)  # the folder reads as a run from the start
            result = drive(store, pool, run_progress, population)
        finally:
            store.close()
        if progress is not None:
            progress.run_finished(index, len(plan), result)
        if result.interrupted:
            return True
    return False


def _new_compare(
    experiment: Experiment | str | Path | None,
    algos: Sequence[str] | None,
    seeds: int,
    trials: int | None,
    parallel: int | None,
    out: Path,
    name: str | None,
    target: float | None,
    scheduler: str | None = None,
) -> CompareFolder:
    if experiment is None:
        raise UserInputError("no experiment given")
    names = list(algos) if algos else list(algorithms.available())
    for algo in names:
        algorithms.get_algorithm(algo)
    if len(set(names)) != len(names):
        raise UserInputError(f"--algos: an algorithm is named twice ({', '.join(names)})")
    if seeds < 1:
        raise UserInputError(f"--seeds: must be at least 1 (got {seeds})")
    if name is not None:
        check_name(name, "--name")
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    exp = exp.with_overrides(trials=trials, parallel=parallel, name=name, scheduler=scheduler)
    build_objective(exp.objective).check()
    return create_compare(exp, names, [exp.seed + i for i in range(seeds)], out, target)


# -- results -------------------------------------------------------------------------------------


def evaluate(folder: CompareFolder, interrupted: bool = False) -> Comparison:
    """The comparison as its folder stands: every planned run with a folder, scored if it
    finished (reads only the runs' exports, so it works while a compare is running)."""
    runs = folder.runs()
    scored, reference = score_runs(folder, runs)
    results = tabulate(folder, scored, reference, runs)
    return Comparison(folder, runs, scored, results, interrupted)


def score_runs(
    folder: CompareFolder, runs: Sequence[RunData]
) -> tuple[list[RunScore], np.ndarray | None]:
    """One score per finished run, and the hypervolume reference point they share (several
    objectives: the experiment's, or derived from every finished run's trials together)."""
    exp = folder.experiment
    done = [run for run in runs if run.done]
    multi = len(exp.objectives) > 1
    reference = None
    if multi:
        reference = pareto.given_reference(exp.reference_point, exp.objectives)
        if reference is None:
            pooled = np.vstack([run.losses() for run in done]) if done else np.zeros((0, 2))
            pooled = pooled[np.all(np.isfinite(pooled), axis=1)]
            reference = pareto.reference_point(pooled) if len(pooled) else None
    scored = []
    for run in done:
        losses = run.losses()
        if multi:
            curve = (
                -pareto.hypervolume_curve(losses, reference)
                if reference is not None
                else np.full(len(losses), np.nan)
            )
            hv: float | None = float(-curve[-1]) if len(curve) else 0.0
        else:
            curve, hv = best_so_far(losses[:, 0]), None
        primary = losses[:, 0]
        best = float(np.nanmin(primary)) if np.isfinite(primary).any() else None
        sign = -1.0 if exp.directions[0] == "maximize" else 1.0
        counted, failed = run.tally()  # superseded trials are in neither (as in the store)
        scored.append(
            RunScore(
                algo=run.algo,
                seed=run.seed,
                curve=curve,
                best=None if best is None else sign * best,
                hypervolume=hv,
                failed=failed,
                wall_seconds=float(run.summary.get("wall_seconds") or 0.0),
                overhead_per_trial=float(run.summary.get("overhead_seconds") or 0.0)
                / max(counted, 1),
            )
        )
    return scored, reference


def tabulate(
    folder: CompareFolder,
    scored: Sequence[RunScore],
    reference: np.ndarray | None,
    runs: Sequence[RunData] = (),
) -> Results:
    """The results table of a compare folder, from its finished runs' scores (and, for the
    ``pruned`` and ``steps`` columns, the runs themselves)."""
    exp = folder.experiment
    multi = len(exp.objectives) > 1
    primary, direction = next(iter(exp.objectives.items()))
    primary_sign = -1.0 if direction == "maximize" else 1.0
    outcome = results_table(
        scored,
        score_name="hypervolume" if multi else primary,
        score_sign=-1.0 if multi else primary_sign,
        primary_sign=primary_sign,
        target=folder.target,
        multi=multi,
    )
    outcome = Results(_with_steps(outcome.table, scored, runs), outcome.notes)
    outcome.notes.update(
        {
            "experiment": exp.name,
            "primary": primary,
            "objectives": dict(exp.objectives),
            "algos": folder.algos,
            "planned_seeds": folder.seeds,
            "trials": exp.budget.trials,
            "budget": budget_words(exp.budget),
            "runs_finished": len(scored),
            "runs_without_success": [
                f"{exp.name}-{s.algo}-s{s.seed}" for s in scored if s.best is None
            ],
            "runs_planned": len(folder.planned()),
            "reference_point": None if reference is None else _natural(reference, exp),
        }
    )
    return outcome


def _with_steps(
    table: pd.DataFrame, scored: Sequence[RunScore], runs: Sequence[RunData]
) -> pd.DataFrame:
    """The table with ``pruned`` (trials a scheduler stopped, over all seeds, as ``failed``) and
    ``steps`` (median over seeds of the steps a run trained: the sum of its counted trials'
    last reported steps, a trial that reported none counting 0; NaN when no run of the algorithm
    reported a step) after ``failed``."""
    if "failed" not in table:  # no finished run: no rows, no columns
        return table
    finished = {(run.algo, run.seed): run for run in runs if run.done}
    pruned: dict[str, int] = {}
    steps: dict[str, float] = {}
    for algo in table["algo"]:
        mine = [
            finished[k] for s in scored if s.algo == algo and (k := (s.algo, s.seed)) in finished
        ]
        pruned[algo] = sum(int((run.counted["state"] == PRUNED).sum()) for run in mine)
        trained = [float(run.steps().sum()) for run in mine if run.reported_steps]
        steps[algo] = float(np.median(trained)) if trained else float("nan")
    table = table.copy()
    at = list(table.columns).index("failed") + 1
    table.insert(at, "pruned", table["algo"].map(pruned).astype(int))
    table.insert(at + 1, "steps", table["algo"].map(steps).astype(float))
    return table


def _natural(reference: np.ndarray, exp: Experiment) -> dict[str, float]:
    signs = [-1.0 if d == "maximize" else 1.0 for d in exp.directions]
    return {m: float(v * s) for m, v, s in zip(exp.objectives, reference, signs, strict=True)}
