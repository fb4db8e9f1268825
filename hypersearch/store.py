"""The record of a run: an Optuna study, its manifest, and reopening it to resume.

Every trial is an Optuna trial (params with their distributions, objective values, every metric
as a user attr, failure reason and error under the ``hypersearch`` user attr), so
``optuna.load_study`` and optuna-dashboard open a run as it is. The driver is the only writer
(a lock file keeps a second driver out). A trial is created RUNNING when it is dispatched and
finished when its result arrives; trials found RUNNING when a run is reopened were cut off by a
kill, and the engine runs them again under the same number.

Run folder: ``experiment.yaml`` (resolved), ``run.json`` (algorithm, seed, storage),
``study.db``, and the exports ``trials.csv``, ``pareto.csv``, ``summary.json``, rewritten
atomically after every finished trial by ``export`` (written by ``hypersearch.exports``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, ValidationError

from hypersearch import database, exports, pareto
from hypersearch.errors import (
    NameTaken,
    RunFolderError,
    UserInputError,
    format_validation_error,
    user_errors,
)
from hypersearch.experiment import Experiment, load_experiment
from hypersearch.exports import atomic_write, versions
from hypersearch.folders import create_folder
from hypersearch.records import RUNNING, TrialRecord, record_losses
from hypersearch.trials import COMPLETE, FAIL, PRUNED, Report, TrialResult

__all__ = [
    "INFO_ATTR",
    "MAX_METRICS",
    "RUNNING",
    "X_ATTR",
    "Manifest",
    "RunStore",
    "TrialRecord",
    "opened",
    "read_json_model",
    "read_manifest",
    "versions",
]
ModelT = TypeVar("ModelT", bound=BaseModel)
# Metrics stored per trial besides the objectives: a trial that returns thousands would
# otherwise hold the driver and grow trials.csv by as many columns.
MAX_METRICS = 256
INFO_ATTR = "hypersearch"  # the per-trial user attr holding duration, device, reason, error
X_ATTR = "hypersearch:x"  # the per-trial system attr holding the unit-cube point it was asked as
ID_ATTR = "hypersearch:id"  # and the one holding the algorithm's id for it
_STATES = {
    TrialState.COMPLETE: COMPLETE,
    TrialState.FAIL: FAIL,
    TrialState.PRUNED: PRUNED,
    TrialState.RUNNING: RUNNING,
}


class RunStore:
    """Opens or creates a run's study and records its trials (``export`` writes the run
    folder's exports through ``hypersearch.exports``)."""

    def __init__(
        self,
        run_dir: Path,
        experiment: Experiment,
        manifest: dict[str, Any],
        storage_url: str | None = None,
        field: str = "--resume",
    ) -> None:
        """Open the study of ``run_dir`` (``storage_url``: the manifest's, with its password;
        default SQLite in the folder) and check that it can be written, so that a run that
        cannot record anything stops before it starts; errors are one line naming ``field``."""
        self.run_dir = run_dir
        self.experiment = experiment
        self.algo: str = manifest["algo"]
        self.seed: int = manifest["seed"]
        url = storage_url or manifest.get("storage") or database.sqlite_url(run_dir)
        self.storage_url: str = database.masked(url) or url
        with user_errors(field, run_dir, writing=True):
            self._lock = _lock(run_dir)
        try:
            self._rdb = database.open_storage(url, field)
            self.storage = optuna.storages.get_storage(self._rdb)
            self.study_name: str = manifest["study_name"]
            with user_errors(field, url, writing=True):
                try:
                    self.study = optuna.load_study(study_name=self.study_name, storage=self.storage)
                except KeyError:
                    raise UserInputError(
                        f"{field}: no study named {self.study_name!r} in {self.storage_url}"
                    ) from None
                # A write (when this session opened the study) proves the study can be recorded
                # before anything else is changed.
                self._study_id = self.storage.get_study_id_from_name(self.study_name)
                self.storage.set_study_system_attr(
                    self._study_id,
                    "hypersearch:opened",
                    dt.datetime.now().isoformat(timespec="seconds"),
                )
                trials = self.study.get_trials(deepcopy=False)
            with user_errors(field, run_dir, writing=True):
                (run_dir / "trials").mkdir(exist_ok=True)  # each trial's folder goes in it
        except BaseException:
            self._lock.close()
            raise
        self._distributions = experiment.space.distributions()
        self.records: dict[int, TrialRecord] = {}
        self._front: tuple[int, list[TrialRecord]] | None = None  # (finished trials, front)
        self._trial_ids: dict[int, int] = {}
        for trial in trials:
            self.records[trial.number] = _record(trial)
            self._trial_ids[trial.number] = trial._trial_id
        orders = [r.order for r in self.records.values() if r.order is not None]
        self._next_order = max(orders, default=-1) + 1

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        out: Path,
        base: str,
        experiment: Experiment,
        algo: str,
        seed: int,
        storage: str | None = None,
        *,
        numbered: bool = True,
    ) -> RunStore:
        """A new run folder ``out/base`` (``base-2``, … when the name is taken, unless not
        ``numbered``) with a new study (``storage``: any SQLAlchemy URL; default SQLite in the
        folder). The folder appears whole or not at all (``folders.create_folder``); a study
        name already in a shared storage moves on to the next free name."""

        manifest: dict[str, Any] = {}

        def build(staging: Path, name: str) -> None:
            atomic_write(staging / "experiment.yaml", experiment.to_yaml())
            (staging / "trials").mkdir()
            manifest.clear()
            manifest.update(
                {
                    "algo": algo,
                    "seed": seed,
                    "storage": database.masked(storage),
                    "study_name": name,
                    "created": dt.datetime.now().isoformat(timespec="seconds"),
                }
            )
            rdb = database.open_storage(storage or database.sqlite_url(staging), "--storage")
            try:
                with user_errors("--storage", storage or staging, writing=True):
                    study = optuna.create_study(
                        storage=rdb, study_name=name, directions=experiment.directions
                    )
                    study.set_user_attr(
                        INFO_ATTR, {"algo": algo, "seed": seed, "objectives": experiment.objectives}
                    )
            except optuna.exceptions.DuplicatedStudyError:
                raise NameTaken(name) from None
            finally:
                rdb.engine.dispose()
            atomic_write(staging / "run.json", json.dumps(manifest, indent=2))

        run_dir = create_folder(out, base, build, numbered=numbered)
        return cls(run_dir, experiment, manifest, storage, field="--storage")

    @classmethod
    def open(
        cls, run_dir: Path, storage: str | None = None, manifest: dict[str, Any] | None = None
    ) -> RunStore:
        """Reopen a run folder to resume it (``storage``: the URL with its password, when the
        saved one had one; ``manifest``: its ``run.json``, if the caller has read it)."""
        manifest = manifest or read_manifest(run_dir, "--resume")
        url = database.resumed_url(manifest.get("storage"), storage)
        experiment = load_experiment(run_dir / "experiment.yaml")
        return cls(run_dir, experiment, manifest, url)

    def save_experiment(self) -> None:
        """Rewrite experiment.yaml (after a resume changed the budget)."""
        with user_errors("run folder", self.run_dir, writing=True):
            atomic_write(self.run_dir / "experiment.yaml", self.experiment.to_yaml())

    def close(self) -> None:
        self._rdb.engine.dispose()  # SQLite checkpoints its write-ahead log into study.db
        self._lock.close()

    # -- recording -------------------------------------------------------------------------------

    def start_trial(
        self,
        config: Mapping[str, Any],
        x: Sequence[float] | np.ndarray | None = None,
        suggestion_id: int | None = None,
    ) -> int:
        """Create a RUNNING trial for ``config``; returns its number. ``x`` and
        ``suggestion_id``, the unit-cube point the algorithm asked and its id for it, are kept
        with the trial (optional), so a resume tells the algorithm that very point under that
        very id rather than the config encoded again."""
        point = None if x is None else [float(v) for v in np.asarray(x, dtype=float).ravel()]
        asked: dict[str, Any] = {} if point is None else {X_ATTR: point}
        if suggestion_id is not None:
            asked[ID_ATTR] = int(suggestion_id)
        template = FrozenTrial(
            number=-1,
            state=TrialState.RUNNING,
            value=None,
            datetime_start=dt.datetime.now(),
            datetime_complete=None,
            params=dict(config),
            distributions=self._distributions,
            user_attrs={},
            system_attrs=asked,
            intermediate_values={},
            trial_id=-1,
        )
        with user_errors("run folder", self.storage_url, writing=True):
            trial_id = self.storage.create_new_trial(self._study_id, template_trial=template)
        # Optuna numbers a study's trials in creation order, and this store is the study's only
        # writer (the run folder's lock), so the number is the count so far: no query needed.
        number = len(self._trial_ids)
        self._trial_ids[number] = trial_id
        self.records[number] = TrialRecord(
            number, RUNNING, dict(config), x=point, suggestion_id=asked.get(ID_ATTR)
        )
        return number

    def finish_trial(self, result: TrialResult, **info_extra: Any) -> TrialRecord:
        """Record a result; a COMPLETE result must carry every objective metric (finite).
        ``info_extra`` (e.g. the batch sizes an out-of-memory ladder tried) joins the trial's
        ``hypersearch`` user attr. The objectives and the first ``MAX_METRICS`` other metrics
        are stored (the rest is counted in ``dropped_metrics``), in one transaction."""
        trial_id = self._trial_ids[result.number]
        metrics, dropped = self._capped(result.metrics)
        info = {
            "duration_s": result.duration_s,
            "device": result.device,
            "reason": result.reason,
            "error": result.error,
            "traceback": result.traceback,
            "order": self._next_order,  # resume tells trials in this order
            "steps": result.step,
            **info_extra,
        }
        if dropped:
            info["dropped_metrics"] = {"count": len(dropped), "first": dropped[:5]}
        with user_errors("run folder", self.storage_url, writing=True):
            self._write_user_attrs(trial_id, {**metrics, INFO_ATTR: info})
            if result.state == COMPLETE:
                values = [metrics[m] for m in self.experiment.objectives]
                self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, values)
            elif result.state == PRUNED:
                self.storage.set_trial_state_values(trial_id, TrialState.PRUNED)
            else:
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        record = self.records[result.number]
        record.state, record.metrics = result.state, metrics
        record.duration_s, record.device = result.duration_s, result.device
        record.reason = result.reason
        record.retried_as = info.get("retried_as")
        record.error = f"{result.reason}: {result.error}" if result.state == FAIL else None
        record.dropped = dropped
        record.order = self._next_order
        record.steps = result.step if result.step is not None else record.steps
        self._next_order += 1
        return record

    def report(self, report: Report) -> None:
        """An intermediate result: the first objective's value at the step becomes the
        trial's Optuna intermediate value (optuna-dashboard draws the learning curves)."""
        record = self.records[report.number]
        record.steps = report.step
        metric = next(iter(self.experiment.objectives))
        value = report.metrics.get(metric)
        if value is None:
            return
        record.curve[report.step] = float(value)
        with user_errors("run folder", self.storage_url, writing=True):
            self.storage.set_trial_intermediate_value(
                self._trial_ids[report.number], report.step, float(value)
            )

    def _capped(self, metrics: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
        """The objectives and the first ``MAX_METRICS`` other metrics; and the names left out."""
        objectives = self.experiment.objectives
        others = [k for k in metrics if k not in objectives]
        kept = {k: metrics[k] for k in objectives if k in metrics}
        kept |= {k: metrics[k] for k in others[:MAX_METRICS]}
        return kept, others[MAX_METRICS:]

    def _write_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Every user attr of a trial in one transaction, in Optuna's own table (Optuna's API
        commits once per attr: 256 metrics would hold the driver for a quarter of a second)."""
        rows = [
            {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
            for key, value in attrs.items()
        ]
        table = _USER_ATTRS
        with self._rdb.engine.begin() as connection:
            connection.execute(
                table.delete().where(table.c.trial_id == trial_id, table.c.key.in_(list(attrs)))
            )
            connection.execute(table.insert(), rows)

    # -- reading ---------------------------------------------------------------------------------

    def finished(self) -> list[TrialRecord]:
        return [r for r in self.records.values() if r.finished]

    def counted(self) -> int:
        """Finished trials that count toward the budget (a lost trial's retry replaces it)."""
        return self.tally()[0]

    def tally(self) -> tuple[int, int]:
        """Finished trials that count toward the budget, and the failed ones among them."""
        counted = [r for r in self.records.values() if r.finished and not r.superseded]
        return len(counted), sum(r.state == FAIL for r in counted)

    def running(self) -> list[TrialRecord]:
        return [r for r in self.records.values() if r.state == RUNNING]

    def losses(self, record: TrialRecord) -> tuple[float, ...] | None:
        """A finished record's losses (maximized metrics negated); None if it failed."""
        return record_losses(record, self.experiment.objectives)

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

    # -- exports ---------------------------------------------------------------------------------

    def export(self, wall_seconds: float, overhead_seconds: float) -> dict[str, Any]:
        """Rewrite trials.csv, pareto.csv and summary.json (each atomically); returns the
        summary."""
        return exports.write(self, wall_seconds, overhead_seconds)


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
        info.get("retried_as"),
        x=trial.system_attrs.get(X_ATTR),
        suggestion_id=trial.system_attrs.get(ID_ATTR),
        order=info.get("order"),
        steps=trial.last_step if info.get("steps") is None else info["steps"],
        curve=_curve(trial.intermediate_values, info.get("steps")),
    )


def _curve(values: dict[int, float], steps: int | None) -> dict[int, float]:
    """Reports up to the finished trial's step (a killed attempt's later ones stay)."""
    return {k: v for k, v in values.items() if steps is None or k <= steps}


class Manifest(BaseModel):
    """``run.json``: what a run was made with (the storage URL with its password masked)."""

    model_config = ConfigDict(extra="allow", strict=True)

    algo: str
    seed: int
    study_name: str
    storage: str | None = None


def read_manifest(run_dir: Path, field: str) -> dict[str, Any]:
    """A run folder's ``run.json``: what it was run with (one line if missing or damaged)."""
    if not (run_dir / "run.json").is_file():
        raise RunFolderError(f"{field}: {run_dir} is not a hypersearch run folder (no run.json)")
    return read_json_model(run_dir / "run.json", Manifest, field).model_dump()


def read_json_model(path: Path, model: type[ModelT], field: str) -> ModelT:
    """A folder's JSON record (``run.json``, ``compare.json``) validated by ``model``; a file
    that is not UTF-8, not JSON or not what the model says is one line naming ``field``."""
    with user_errors(field, path):
        data = json.loads(path.read_bytes().decode())
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise RunFolderError(
            f"{field}: {path} is damaged ({format_validation_error(err)})"
        ) from None


# Optuna's table of trial user attrs (its schema is what optuna-dashboard reads), for writing a
# result's metrics in one statement.
_USER_ATTRS = sqlalchemy.table(
    "trial_user_attributes",
    sqlalchemy.column("trial_id"),
    sqlalchemy.column("key"),
    sqlalchemy.column("value_json"),
)


def _lock(run_dir: Path) -> Any:
    """Hold an exclusive lock on the run folder for as long as this store is open."""
    handle = (run_dir / ".lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunFolderError(f"{run_dir} is in use by another hypersearch process") from None
    return handle


@contextlib.contextmanager
def opened(run_dir: Path) -> Iterator[RunStore]:
    store = RunStore.open(run_dir)
    try:
        yield store
    finally:
        store.close()
