"""The scheduler interface (early stopping) and the name → class registry.

A scheduler sees every intermediate report of every trial and answers at once whether the
trial should stop, without waiting for other trials. The schedulers are Optuna's pruners,
whose median rule, successive halving (asynchronous: a trial is judged against the trials that
reached its rung so far, as in ASHA) and Hyperband fit many workers reporting at their own pace.
They run on a private in-memory mirror of the run's trials rather than on the run's study: a
pruner reads every trial at each decision, which on a SQLite or PostgreSQL study would cost a
query per report (the target is under a millisecond at 1000 trials), and the rung bookkeeping
it writes stays out of the user's study.

Values are losses (minimized; the engine negates maximized metrics).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import optuna
from optuna.trial import TrialState
from pydantic import BaseModel, ValidationError

from hypersearch.errors import ExperimentError, format_validation_error
from hypersearch.space import IntParam, StrictModel

PRUNED = "PRUNED"
_STATES = {"COMPLETE": TrialState.COMPLETE, "FAIL": TrialState.FAIL, PRUNED: TrialState.PRUNED}


class NoOptions(StrictModel):
    """Options model for schedulers without settings: anything given is an error."""


class Scheduler:
    """Decides at each report whether a trial stops. Subclasses set ``name``,
    ``description``, ``Options`` and build their Optuna pruner in ``pruner``; ``none`` (this
    class) never stops a trial."""

    name: ClassVar[str] = "none"
    description: ClassVar[str] = "never stop a trial early (the default)"
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, **options: Any) -> None:
        self.options: Any = parse_options(type(self), options)
        self._pruner = self.pruner()
        quiet = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line
        try:
            self._study = optuna.create_study(study_name="hypersearch-scheduler")
        finally:
            optuna.logging.set_verbosity(quiet)
        self._trial_ids: dict[int, int] = {}  # trial number -> mirror trial id
        self._last: dict[int, int] = {}  # trial number -> last step reported

    def pruner(self) -> optuna.pruners.BasePruner | None:
        """The Optuna pruner that decides (None: never stop)."""
        return None

    def report(self, number: int, step: int, loss: float) -> bool:
        """Record trial ``number``'s loss at ``step``; whether the trial should stop now.
        A step at or before one already reported is ignored (no decision)."""
        trial_id = self._mirror(number)
        if step <= self._last.get(number, -1):
            return False
        self._last[number] = step
        storage = self._study._storage
        storage.set_trial_intermediate_value(trial_id, step, float(loss))  # NaN: Optuna prunes
        if self._pruner is None:
            return False
        return bool(self._pruner.prune(self._study, storage.get_trial(trial_id)))

    def finished(self, number: int, state: str, loss: float | None = None) -> None:
        """A trial ended: COMPLETE (with its final loss), FAIL or PRUNED."""
        trial_id = self._mirror(number)
        values = [float(loss)] if state == "COMPLETE" and loss is not None else None
        if state == "COMPLETE" and values is None:
            state = "FAIL"
        self._study._storage.set_trial_state_values(trial_id, _STATES[state], values)

    def _mirror(self, number: int) -> int:
        if number not in self._trial_ids:
            self._trial_ids[number] = self._study._storage.create_new_trial(self._study._study_id)
        return self._trial_ids[number]


_REGISTRY: dict[str, type[Scheduler]] = {"none": Scheduler}


def register(cls: type[Scheduler]) -> type[Scheduler]:
    """Class decorator adding a scheduler under ``cls.name``; a name is never taken twice."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"scheduler name {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> dict[str, type[Scheduler]]:
    return dict(_REGISTRY)


def parse_options(
    cls: type[Scheduler], options: Mapping[str, Any], field: str | None = None
) -> BaseModel:
    try:
        return cls.Options.model_validate(dict(options))
    except ValidationError as err:
        raise format_validation_error(err, prefix=field or f"scheduler.{cls.name}") from None


def validate(name: str, options: Mapping[str, Any]) -> None:
    """Check the experiment's ``scheduler`` without building it."""
    if name not in _REGISTRY:
        raise ExperimentError(
            "scheduler", f"unknown scheduler {name!r} (choose from: {', '.join(_REGISTRY)})"
        )
    if not isinstance(options, Mapping):
        raise ExperimentError(
            f"scheduler.{name}", f"must be a mapping of options (got {options!r})"
        )
    parse_options(_REGISTRY[name], options)


def create(name: str, options: Mapping[str, Any] | None = None) -> Scheduler:
    """Build a registered scheduler by name."""
    validate(name, options or {})
    return _REGISTRY[name](**dict(options or {}))


EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy")  # what the trainer reports per epoch


def spec_of(experiment: Any) -> tuple[str, dict[str, Any]]:
    """An experiment's scheduler: its name and options. On the built-in trainer a trial's
    steps are its epochs, which ``max_step`` defaults to (a tuned ``epochs``: its largest)."""
    given = experiment.scheduler
    if isinstance(given, str):
        name, options = given, {}
    elif len(given) != 1:
        raise ExperimentError(
            "scheduler", f"must name one scheduler (got {', '.join(given) or 'none'})"
        )
    else:
        ((name, options),) = given.items()
    trainer = experiment.objective.trainer
    if trainer is not None and name in ("asha", "hyperband"):
        epochs = experiment.params.get("epochs")
        most = int(epochs.high) if isinstance(epochs, IntParam) else trainer.epochs
        options = {"max_step": most, **options}
    return name, dict(options)


def check_experiment(experiment: Any) -> None:
    """The scheduler exists, its options are valid, and on the trainer it judges a metric the
    trainer reports every epoch."""
    name, options = spec_of(experiment)
    validate(name, options)
    first = next(iter(experiment.objectives))
    if name != "none" and experiment.objective.trainer is not None and first not in EPOCH_METRICS:
        raise ExperimentError(
            "scheduler",
            f"judges the first objective, {first}, which the trainer does not report per "
            f"epoch (it reports {', '.join(EPOCH_METRICS)}): put one of those first",
        )
