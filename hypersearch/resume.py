"""Bringing a fresh algorithm and scheduler up to date with a study, and what they are told.

Resume and warm start are one feature: a fresh algorithm is told every counted finished trial
in the order they finished, under the id and point it was asked as; the trials a kill cut off
are handed over as pending and run again. The scheduler hears every recorded report again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from hypersearch import warm_start
from hypersearch.algorithms.base import Algorithm, Observation, Suggestion
from hypersearch.experiment import Experiment
from hypersearch.objectives.base import trial_seed
from hypersearch.processes import trial_dir_free
from hypersearch.runner import Runner
from hypersearch.schedulers import Scheduler, spec_of
from hypersearch.store import RunStore, TrialRecord
from hypersearch.trials import PRUNED, TrialRequest, TrialResult

# How long a resumed run waits for the processes of the killed run (which die within moments of
# it) to let go of a cut-off trial's folder before it gives the trial a new number instead.
ORPHAN_WAIT_S = 10.0


def trial_request(store: RunStore, number: int, config: dict[str, Any]) -> TrialRequest:
    """Trial ``number`` of this run, with its seed, folder and timeout."""
    return TrialRequest(
        number,
        config,
        trial_seed(store.seed, number),
        store.run_dir / "trials" / str(number),
        store.experiment.budget.trial_timeout,
    )


def first_loss(store: RunStore, metrics: Mapping[str, float]) -> float | None:
    """The first objective as a loss (negated if maximized); None if it is missing."""
    metric, direction = next(iter(store.experiment.objectives.items()))
    value = metrics.get(metric)
    if value is None:
        return None
    return -float(value) if direction == "maximize" else float(value)


def observation(suggestion: Suggestion, store: RunStore, record: TrialRecord) -> Observation:
    """A pruned trial is told with the step it was stopped at (0: before its first report) and
    no final losses (so no algorithm mistakes it for a finished one); every trial with its
    curve (first objective as a loss per reported step)."""
    step = (record.steps or 0) if record.state == PRUNED else None
    sign = -1.0 if next(iter(store.experiment.objectives.values())) == "maximize" else 1.0
    curve = {k: sign * v for k, v in sorted(record.curve.items())}
    return Observation(suggestion.id, suggestion.x, store.losses(record), step, curve)


def most_steps(experiment: Experiment) -> int | None:
    """The most steps one trial reports: the scheduler's ``max_step`` (on the built-in trainer,
    its epochs); None when unknown."""
    most = spec_of(experiment)[1].get("max_step")
    trainer = experiment.objective.trainer
    return int(most) if most is not None else (trainer.epochs if trainer is not None else None)


def steps_trained(store: RunStore) -> int:
    """Steps (epochs) trained by every trial so far, running ones included (what
    ``budget.steps`` counts): a finished trial that reported no step counts as one."""
    return sum(max(r.steps or 0, int(r.finished)) for r in store.records.values())


def catch_up(
    store: RunStore, algorithm: Algorithm, runner: Runner, scheduler: Scheduler
) -> dict[int, Suggestion]:
    """Tell ``algorithm`` the warm start (if any) and ``algorithm`` and ``scheduler`` the study
    so far, and submit the trials a kill cut off again; returns the trials in flight (number ->
    suggestion)."""
    counted = [r for r in store.finished() if not r.superseded]
    counted.sort(key=lambda r: (r.order is not None, r.order or 0, r.number))
    told = [observation(suggestion_of(store, r), store, r) for r in counted]
    algorithm.tell(warm_start.observations(store) + told)  # a warm start's trials come first
    _replay(store, scheduler, counted)
    in_flight = {r.number: suggestion_of(store, r) for r in store.running()}
    for number in in_flight:  # run again from its start: the cut-off attempt's steps are gone
        store.records[number].curve.clear()
        store.records[number].steps = None
    algorithm.pending(list(in_flight.values()))
    retries = _renumber_held(store, in_flight)
    for number in in_flight:
        config = store.records[number].params
        runner.submit(trial_request(store, number, config), retries.get(number))
    return in_flight


def suggestion_of(store: RunStore, record: TrialRecord) -> Suggestion:
    """What a trial was asked as (recorded with it), else its number and encoded config."""
    space = store.experiment.space
    recorded = record.x is not None and len(record.x) == space.dim
    x = np.asarray(record.x, dtype=float) if recorded else space.encode(record.params)
    id_ = record.number if record.suggestion_id is None else record.suggestion_id
    return Suggestion(id_, x)


def _replay(store: RunStore, scheduler: Scheduler, finished: list[TrialRecord]) -> None:
    """The scheduler hears again every recorded report of the finished trials."""
    sign = -1.0 if next(iter(store.experiment.objectives.values())) == "maximize" else 1.0
    for record in finished:  # a running trial is run again from its start
        for step, value in sorted(record.curve.items()):
            scheduler.report(record.number, step, sign * value)
        scheduler.finished(record.number, record.state, first_loss(store, record.metrics))


def _renumber_held(store: RunStore, in_flight: dict[int, Suggestion]) -> dict[int, int]:
    """Trials a kill cut off run again under their number, in their folder, unless a process of
    the killed run still holds that folder after a short wait (its processes die within moments
    of it): then the trial fails ``worker_lost`` and is retried under a new number (the same
    suggestion, still pending for the algorithm). Returns each retry's number -> the trial it
    retries."""
    retries = {}
    deadline = time.monotonic() + ORPHAN_WAIT_S
    for number, suggestion in list(in_flight.items()):
        wait = max(0.0, deadline - time.monotonic())
        if trial_dir_free(store.run_dir / "trials" / str(number), wait):
            continue
        config = store.records[number].params
        retry = store.start_trial(config, suggestion.x, suggestion.id)
        lost = TrialResult.failed(
            trial_request(store, number, config),
            "worker_lost",
            "still running in a process of the killed run; retried as a new trial",
        )
        store.finish_trial(lost, retried_as=retry)
        in_flight[retry] = in_flight.pop(number)
        retries[retry] = number
    return retries
