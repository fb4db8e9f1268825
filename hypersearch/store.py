"""The record of a run: an Optuna study, plus the run folder's exports.

Every trial is an Optuna trial (params with their distributions, objective values, every metric
as a user attr, failure reason and error under the ``hypersearch`` user attr), so
``optuna.load_study`` and optuna-dashboard open a run as it is. The driver is the only writer
(a lock file keeps a second driver out). A trial is created RUNNING when it is dispatched and
finished when its result arrives; trials found RUNNING when a run is reopened were cut off by a
kill, and the engine runs them again under the same number.

Run folder: ``experiment.yaml`` (resolved), ``run.json`` (algorithm, seed, storage),
``study.db``, and the exports ``trials.csv``, ``pareto.csv``, ``summary.json``, rewritten
atomically after every finished trial.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import json
import os
import platform
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from hypersearch import pareto
from hypersearch.errors import RunFolderError
from hypersearch.executors.base import COMPLETE, FAIL, TrialResult
from hypersearch.experiment import Experiment, load_experiment

RUNNING = "RUNNING"
INFO_ATTR = "hypersearch"  # the per-trial user attr holding duration, device, reason, error
_STATES = {TrialState.COMPLETE: COMPLETE, TrialState.FAIL: FAIL, TrialState.RUNNING: RUNNING}


@dataclass
class TrialRecord:
    """One trial as the run folder shows it."""

    number: int
    state: str
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    reason: str | None = None
    error: str | None = None
    device: str | None = None
    superseded: bool = False  # its worker was lost and a retry took its place in the budget

    @property
    def finished(self) -> bool:
        return self.state in (COMPLETE, FAIL)


class RunStore:
    """Opens or creates a run's study; records trials; writes the exports."""

    def __init__(self, run_dir: Path, experiment: Experiment, manifest: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.experiment = experiment
        self.algo: str = manifest["algo"]
        self.seed: int = manifest["seed"]
        self.storage_url: str = manifest.get("storage") or _sqlite_url(run_dir)
        self._lock = _lock(run_dir)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._rdb = _open_storage(self.storage_url)
        self.storage = optuna.storages.get_storage(self._rdb)
        self.study_name: str = manifest["study_name"]
        self.study = optuna.load_study(study_name=self.study_name, storage=self.storage)
        self._study_id = self.storage.get_study_id_from_name(self.study_name)
        self._distributions = experiment.space.distributions()
        self.records: dict[int, TrialRecord] = {}
        self._front: tuple[int, list[TrialRecord]] | None = None  # (finished trials, front)
        self._trial_ids: dict[int, int] = {}
        for trial in self.study.get_trials(deepcopy=False):
            self.records[trial.number] = _record(trial)
            self._trial_ids[trial.number] = trial._trial_id

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def create(
        cls, run_dir: Path, experiment: Experiment, algo: str, seed: int, storage: str | None = None
    ) -> RunStore:
        """A new run folder with a new study (``storage``: any SQLAlchemy URL; default SQLite).

        The folder is built under a hidden name and renamed into place once complete, so a kill
        during creation never leaves a half-made run folder that cannot be resumed.
        """
        if run_dir.exists():
            raise RunFolderError(f"--out: run folder {run_dir} already exists")
        staging = run_dir.with_name(f".{run_dir.name}.creating")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _atomic_write(staging / "experiment.yaml", experiment.to_yaml())
        manifest = {
            "algo": algo,
            "seed": seed,
            "storage": storage,
            "study_name": run_dir.name,
            "created": dt.datetime.now().isoformat(timespec="seconds"),
        }
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        rdb = _open_storage(storage or _sqlite_url(staging))
        study = optuna.create_study(
            storage=rdb, study_name=run_dir.name, directions=experiment.directions
        )
        study.set_user_attr(
            "hypersearch", {"algo": algo, "seed": seed, "objectives": experiment.objectives}
        )
        rdb.engine.dispose()
        _atomic_write(staging / "run.json", json.dumps(manifest, indent=2))
        try:
            staging.rename(run_dir)
        except OSError:
            raise RunFolderError(f"--out: run folder {run_dir} already exists") from None
        return cls(run_dir, experiment, manifest)

    @classmethod
    def open(cls, run_dir: Path) -> RunStore:
        """Reopen a run folder (to resume or report it)."""
        manifest_path = run_dir / "run.json"
        if not manifest_path.is_file():
            raise RunFolderError(
                f"--resume: {run_dir} is not a hypersearch run folder (no run.json)"
            )
        manifest = json.loads(manifest_path.read_text())
        return cls(run_dir, load_experiment(run_dir / "experiment.yaml"), manifest)

    def close(self) -> None:
        self._rdb.engine.dispose()  # SQLite checkpoints its write-ahead log into study.db
        self._lock.close()

    # -- recording -------------------------------------------------------------------------------

    def start_trial(self, config: Mapping[str, Any]) -> int:
        """Create a RUNNING trial for ``config``; returns its number."""
        template = FrozenTrial(
            number=-1,
            state=TrialState.RUNNING,
            value=None,
            datetime_start=dt.datetime.now(),
            datetime_complete=None,
            params=dict(config),
            distributions=self._distributions,
            user_attrs={},
            system_attrs={},
            intermediate_values={},
            trial_id=-1,
        )
        trial_id = self.storage.create_new_trial(self._study_id, template_trial=template)
        # Optuna numbers a study's trials in creation order, and this store is the study's only
        # writer (the run folder's lock), so the number is the count so far: no query needed.
        number = len(self._trial_ids)
        self._trial_ids[number] = trial_id
        self.records[number] = TrialRecord(number, RUNNING, dict(config))
        return number

    def finish_trial(self, result: TrialResult, **info_extra: Any) -> TrialRecord:
        """Record a result; a COMPLETE result must carry every objective metric (finite).
        ``info_extra`` (e.g. the batch sizes an out-of-memory ladder tried) joins the trial's
        ``hypersearch`` user attr."""
        trial_id = self._trial_ids[result.number]
        for key, value in result.metrics.items():
            self.storage.set_trial_user_attr(trial_id, key, value)
        info = {
            "duration_s": result.duration_s,
            "device": result.device,
            "reason": result.reason,
            "error": result.error,
            "traceback": result.traceback,
            **info_extra,
        }
        self.storage.set_trial_user_attr(trial_id, INFO_ATTR, info)
        if result.state == COMPLETE:
            values = [result.metrics[m] for m in self.experiment.objectives]
            self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, values)
        else:
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        record = self.records[result.number]
        record.state, record.metrics = result.state, dict(result.metrics)
        record.duration_s, record.device = result.duration_s, result.device
        record.reason = result.reason
        record.superseded = info.get("retried_as") is not None
        record.error = f"{result.reason}: {result.error}" if result.state == FAIL else None
        return record

    # -- reading ---------------------------------------------------------------------------------

    def finished(self) -> list[TrialRecord]:
        return [r for r in self.records.values() if r.finished]

    def counted(self) -> int:
        """Finished trials that count toward the budget (a lost trial's retry replaces it)."""
        return sum(r.finished and not r.superseded for r in self.records.values())

    def running(self) -> list[TrialRecord]:
        return [r for r in self.records.values() if r.state == RUNNING]

    def losses(self, record: TrialRecord) -> tuple[float, ...] | None:
        """A finished record's losses (maximized metrics negated); None if it failed."""
        if record.state != COMPLETE:
            return None
        return tuple(
            -record.metrics[m] if d == "maximize" else record.metrics[m]
            for m, d in self.experiment.objectives.items()
        )

    def front(self) -> list[TrialRecord]:
        """Complete trials on the Pareto front of the objectives (the best one(s) for one);
        computed once per finished trial, however often it is asked for."""
        finished = len(self.finished())
        if self._front is None or self._front[0] != finished:
            self._front = (finished, self._compute_front())
        return self._front[1]

    def _compute_front(self) -> list[TrialRecord]:
        complete = [r for r in self.records.values() if r.state == COMPLETE]
        if not complete:
            return []
        losses = np.array([self.losses(r) for r in complete])
        mask = pareto.front_mask(losses)
        members = [r for r, keep in zip(complete, mask, strict=True) if keep]
        return sorted(members, key=lambda r: (self.losses(r), r.number))

    def best(self) -> TrialRecord | None:
        front = self.front()
        return front[0] if front else None

    def devices(self) -> dict[str, list[int]]:
        """Which device ran each finished trial: device -> trial numbers."""
        ran: dict[str, list[int]] = {}
        for record in sorted(self.finished(), key=lambda r: r.number):
            ran.setdefault(record.device or "unknown", []).append(record.number)
        return ran

    def hypervolume(self) -> float | None:
        if len(self.experiment.objectives) < 2:
            return None
        complete = [r for r in self.records.values() if r.state == COMPLETE]
        if not complete:
            return 0.0
        reference = pareto.given_reference(
            self.experiment.reference_point, self.experiment.objectives
        )
        return pareto.hypervolume(np.array([self.losses(r) for r in complete]), reference)

    # -- exports ---------------------------------------------------------------------------------

    def trials_frame(self, records: list[TrialRecord] | None = None) -> pd.DataFrame:
        """``number,state,<param…>,<metric…>,duration_s,error`` (objectives first)."""
        records = (
            sorted(self.records.values(), key=lambda r: r.number) if records is None else records
        )
        metrics = list(self.experiment.objectives)
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
            }
            for r in records
        ]
        columns = ["number", "state", *self.experiment.params, *metrics, "duration_s", "error"]
        return pd.DataFrame(rows, columns=columns)

    def summary(self, wall_seconds: float, overhead_seconds: float) -> dict[str, Any]:
        finished = self.finished()
        best = self.best()
        return {
            "name": self.experiment.name,
            "algo": self.algo,
            "seed": self.seed,
            "trials": len(finished),
            "budget": self.experiment.budget.trials,
            "complete": sum(r.state == COMPLETE for r in finished),
            "failed": sum(r.state == FAIL for r in finished),
            "running": len(self.running()),
            "objectives": dict(self.experiment.objectives),
            "best": None
            if best is None
            else {"number": best.number, "params": best.params, "metrics": best.metrics},
            "devices": self.devices(),
            "pareto_size": len(self.front()),
            "hypervolume": self.hypervolume(),
            "wall_seconds": round(wall_seconds, 3),
            "overhead_seconds": round(overhead_seconds, 3),
            "run_dir": str(self.run_dir),
            "storage": self.storage_url,
            "study_name": self.study_name,
            "versions": versions(),
        }

    def export(self, wall_seconds: float, overhead_seconds: float) -> dict[str, Any]:
        """Rewrite trials.csv, pareto.csv and summary.json (each atomically)."""
        _atomic_write(self.run_dir / "trials.csv", self.trials_frame().to_csv(index=False))
        front = self.trials_frame(self.front())
        front = front[["number", *self.experiment.params, *self.experiment.objectives]]
        _atomic_write(self.run_dir / "pareto.csv", front.to_csv(index=False))
        summary = self.summary(wall_seconds, overhead_seconds)
        _atomic_write(self.run_dir / "summary.json", json.dumps(summary, indent=2, default=str))
        return summary


def _record(trial: FrozenTrial) -> TrialRecord:
    attrs = dict(trial.user_attrs)
    info = attrs.pop(INFO_ATTR, None) or {}
    state = _STATES.get(trial.state, trial.state.name)
    reason, error = info.get("reason"), info.get("error")
    return TrialRecord(
        trial.number,
        state,
        dict(trial.params),
        attrs,
        info.get("duration_s"),
        reason,
        f"{reason}: {error}" if state == FAIL else None,
        info.get("device"),
        info.get("retried_as") is not None,
    )


def _open_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage; SQLite in WAL mode (commits ~2x faster, readers never blocked;
    still safe against a killed process, which is the failure that matters here)."""
    storage = optuna.storages.RDBStorage(url)
    if url.startswith("sqlite"):
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # reconnect with the pragmas
    return storage


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_url(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def _lock(run_dir: Path) -> Any:
    """Hold an exclusive lock on the run folder for as long as this store is open."""
    handle = (run_dir / ".lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunFolderError(f"{run_dir} is in use by another hypersearch process") from None
    return handle


def _atomic_write(path: Path, text: str) -> None:
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
    return found


@contextlib.contextmanager
def opened(run_dir: Path) -> Iterator[RunStore]:
    store = RunStore.open(run_dir)
    try:
        yield store
    finally:
        store.close()
