"""The optimization loop: ask → submit → collect → tell → record, ``parallel`` trials in flight.

``optimize`` is the loop (after SMAC's ``smbo.optimize``); how trials reach the executor
(queueing, populations, out-of-memory retries) is the ``runner``'s business, under the
objective's dispatch policy. ``run`` sets a run up (new or resumed), drives it, and leaves the
run folder consistent whatever happens: on Ctrl-C or SIGTERM trials in flight stay RUNNING in
the study and are run again by ``--resume``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hypersearch import algorithms, schedulers
from hypersearch.algorithms.base import Algorithm, Observation, Suggestion
from hypersearch.errors import AlgorithmError, TrialFailure, UserInputError
from hypersearch.executors import (
    Executor,
    TrialRequest,
    TrialResult,
    check_executor,
    make_executor,
)
from hypersearch.executors.base import COMPLETE, FAIL
from hypersearch.experiment import RESERVED_COLUMNS, Experiment, check_name, load_experiment
from hypersearch.objectives import build_objective
from hypersearch.objectives.base import check_objectives, trial_seed
from hypersearch.processes import trial_dir_free
from hypersearch.runner import Runner
from hypersearch.schedulers import Scheduler
from hypersearch.store import INFO_ATTR, RunStore, TrialRecord, read_manifest
from hypersearch.trials import PRUNED, Report

POLL_SECONDS = 1.0
# How long a resumed run waits for the processes of the killed run (which die within moments of
# it) to let go of a cut-off trial's folder before it gives the trial a new number instead.
ORPHAN_WAIT_S = 10.0


class Progress(Protocol):
    """Told of every finished trial (the CLI shows a live bar; see ``report.RunProgress``)."""

    def __enter__(self) -> Progress: ...
    def __exit__(self, *exc: object) -> None: ...
    def trial_finished(self, record: TrialRecord, store: RunStore) -> None: ...


@dataclass
class RunResult:
    """What ``run`` returns: the run folder, its summary, and whether it was interrupted."""

    run_dir: Path
    summary: dict[str, Any]
    interrupted: bool = False


@dataclass
class _Clock:
    """Wall time and the share of it spent outside the executor (engine overhead)."""

    wall_before: float = 0.0
    overhead_before: float = 0.0
    start: float = dataclasses.field(default_factory=time.perf_counter)
    waited: float = 0.0

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Time spent waiting for the executor (not overhead)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.waited += time.perf_counter() - began

    @property
    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.start

    @property
    def overhead(self) -> float:
        return self.overhead_before + time.perf_counter() - self.start - self.waited


def optimize(
    store: RunStore,
    algorithm: Algorithm,
    runner: Runner,
    clock: _Clock,
    progress: Progress | None = None,
    scheduler: Scheduler | None = None,
) -> None:
    """ask → submit → collect → tell → record, until the budget of finished trials is reached.

    A trial carries its suggestion's id from ask to tell; the study keeps the id and the point
    with the trial. A lost worker's trial is retried once under a new number but the same id:
    the algorithm is told only the retry's result.
    """
    budget = store.experiment.budget.trials
    scheduler = scheduler or Scheduler()
    in_flight = _resume(store, algorithm, runner, scheduler)  # trial number -> its suggestion
    runner.listen(_judge(store, scheduler))  # reports: recorded, then judged at once
    n_finished = store.counted()
    changed = False  # trials finished since the last export
    while True:
        wanted = min(runner.capacity(), budget - n_finished - len(in_flight))
        for suggestion in _asked(algorithm, wanted, in_flight):
            in_flight[_start(store, runner, suggestion)] = suggestion
        if runner.dispatch() or changed:  # the exports show what finished and what now runs
            store.export(clock.wall, clock.overhead)
            changed = False
        if not in_flight:
            if n_finished >= budget:
                return
            raise AlgorithmError(
                f"algorithm {algorithm.name!r} proposed no point while no trial was in flight"
            )
        with clock.waiting():
            finished = runner.collect(POLL_SECONDS)
        observations = []
        for done in finished:
            suggestion, extra = in_flight.pop(done.number), dict(done.extra)
            if done.retry:  # its config again, as a new trial that takes its place
                retry = _start(store, runner, suggestion, done.request.config, done.number)
                in_flight[retry], extra["retried_as"] = suggestion, retry
            record = store.finish_trial(_checked(done.result, store.experiment), **extra)
            if not record.superseded:
                scheduler.finished(record.number, record.state, _loss(store, record.metrics))
                observations.append(_told(suggestion, store, record))
                n_finished += 1
            if progress is not None:
                progress.trial_finished(record, store)
        if observations:
            algorithm.tell(observations)
            changed = True


def _asked(algorithm: Algorithm, wanted: int, in_flight: dict[int, Suggestion]) -> list[Suggestion]:
    """Up to ``wanted`` suggestions, each under an id not in flight."""
    asked = algorithm.ask(wanted) if wanted > 0 else []
    ids = [s.id for s in asked] + [s.id for s in in_flight.values()]
    if len(asked) > max(wanted, 0) or len(set(ids)) < len(ids):
        raise AlgorithmError(
            f"algorithm {algorithm.name!r} returned {len(asked)} suggestions for {wanted} "
            f"(ids {[s.id for s in asked]}, in flight {sorted(s.id for s in in_flight.values())})"
        )
    return asked


def _start(
    store: RunStore,
    runner: Runner,
    suggestion: Suggestion,
    config: dict[str, Any] | None = None,
    retry_of: int | None = None,
) -> int:
    """Create the suggestion's trial in the study and submit it; returns its number."""
    config = store.experiment.space.decode(suggestion.x) if config is None else config
    number = store.start_trial(config, suggestion.x, suggestion.id)
    runner.submit(_request(store, number, config), retry_of)
    return number


def _judge(store: RunStore, scheduler: Scheduler) -> Callable[[Report], bool]:
    """Record a report in the study, then let the scheduler judge its first objective."""

    def hear(report: Report) -> bool:
        store.report(report)
        loss = _loss(store, report.metrics)
        return loss is not None and scheduler.report(report.number, report.step, loss)

    return hear


def _loss(store: RunStore, metrics: Mapping[str, float]) -> float | None:
    """The first objective as a loss (negated if maximized); None if it is missing."""
    metric, direction = next(iter(store.experiment.objectives.items()))
    value = metrics.get(metric)
    if value is None:
        return None
    return -float(value) if direction == "maximize" else float(value)


def _told(suggestion: Suggestion, store: RunStore, record: TrialRecord) -> Observation:
    """A pruned trial is told with the step it was stopped at and no final losses (so no
    algorithm mistakes it for a finished one)."""
    step = record.steps if record.state == PRUNED else None
    return Observation(suggestion.id, suggestion.x, store.losses(record), step)


def _resume(
    store: RunStore, algorithm: Algorithm, runner: Runner, scheduler: Scheduler
) -> dict[int, Suggestion]:
    """Bring a fresh algorithm up to date with the study (resume and warm start are one
    feature): told every counted finished trial in the order they finished, under the id and
    point it was asked as; handed the trials a kill cut off as pending, which run again under
    their number (``_renumber_held``)."""
    counted = [r for r in store.finished() if not r.superseded]
    counted.sort(key=lambda r: (r.order is not None, r.order or 0, r.number))
    algorithm.tell([_told(_suggestion(store, r), store, r) for r in counted])
    _replay(store, scheduler, counted)
    in_flight = {r.number: _suggestion(store, r) for r in store.running()}
    algorithm.pending(list(in_flight.values()))
    retries = _renumber_held(store, in_flight)
    for number in in_flight:
        runner.submit(_request(store, number, store.records[number].params), retries.get(number))
    return in_flight


def _suggestion(store: RunStore, record: TrialRecord) -> Suggestion:
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
        scheduler.finished(record.number, record.state, _loss(store, record.metrics))


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
            _request(store, number, config),
            "worker_lost",
            "still running in a process of the killed run; retried as a new trial",
        )
        store.finish_trial(lost, retried_as=retry)
        in_flight[retry] = in_flight.pop(number)
        retries[retry] = number
    return retries


def _request(store: RunStore, number: int, config: dict[str, Any]) -> TrialRequest:
    return TrialRequest(
        number,
        config,
        trial_seed(store.seed, number),
        store.run_dir / "trials" / str(number),
        store.experiment.budget.trial_timeout,
    )


def _checked(result: TrialResult, experiment: Experiment) -> TrialResult:
    """Extra metrics named like a column are renamed ``metric.<name>``; a COMPLETE result
    missing an objective metric, or with a non-finite one, fails."""
    taken = RESERVED_COLUMNS | set(experiment.params) | {INFO_ATTR}
    if taken & set(result.metrics):
        renamed = {(f"metric.{k}" if k in taken else k): v for k, v in result.metrics.items()}
        result = dataclasses.replace(result, metrics=renamed)
    if result.state != COMPLETE:
        return result
    try:
        check_objectives(result.metrics, experiment.objectives)
    except TrialFailure as failure:
        return dataclasses.replace(result, state=FAIL, reason=failure.reason, error=str(failure))
    return result


def run(
    experiment: Experiment | str | Path | None = None,
    *,
    algo: str | None = None,
    trials: int | None = None,
    parallel: int | None = None,
    seed: int | None = None,
    out: str | Path = "runs",
    name: str | None = None,
    resume: str | Path | None = None,
    executor: str = "local",
    storage: str | None = None,
    ray_address: str | None = None,
    gpus: list[str] | None = None,
    trials_per_gpu: int = 1,
    progress: Callable[[RunStore], Progress] | None = None,
    population: str = "auto",
    scheduler: str | None = None,
) -> RunResult:
    """Run (or, with ``resume``, continue) an experiment; returns the run folder and summary.

    >>> result = run("searchspaces/branin.yaml", algo="random", trials=8)  # doctest: +SKIP

    ``ray_address`` (with ``executor="ray"``) connects to a Ray cluster instead of starting a
    local Ray instance. ``gpus`` (default: every GPU found) and ``trials_per_gpu`` place the
    local executor's workers: one per GPU slot, or ``parallel`` CPU workers without GPUs.
    ``population`` (``auto``, ``on``, ``off``): train compatible built-in-trainer trials
    together as one stacked model (see ``population_size``). ``scheduler`` (``none``,
    ``median``, ``asha``, ``hyperband``) replaces the experiment's ``scheduler`` (a new run
    only; options given in the file for the same scheduler are kept).
    """
    check_executor(executor, ray_address)
    if population not in POPULATION_MODES:
        raise UserInputError(
            f"--population: must be one of {', '.join(POPULATION_MODES)} (got {population!r})"
        )
    store = (
        _resumed(Path(resume), algo, trials, parallel, storage)
        if resume is not None
        else _created(
            experiment, algo or "tpe", trials, parallel, seed, Path(out), name, storage, scheduler
        )
    )
    try:
        exp = store.experiment
        store.export(*_previous_times(store.run_dir))  # summary.json exists from the start
        pool = make_executor(
            executor,
            exp.objective,
            exp.budget.parallel,
            log_dir=store.run_dir / "logs",
            ray_address=ray_address,
            cpus_per_trial=exp.budget.cpus_per_trial,
            gpus_per_trial=exp.budget.gpus_per_trial,
            gpus=gpus,
            trials_per_gpu=trials_per_gpu,
            ray_spec=exp.ray,
        )
        with pool:
            return drive(store, pool, progress, population)
    finally:
        store.close()


def drive(
    store: RunStore,
    pool: Executor,
    progress: Callable[[RunStore], Progress] | None = None,
    population: str = "auto",
) -> RunResult:
    """Run an opened store's trials on ``pool`` (which may serve several runs in turn, as in
    ``compare``) until its budget is spent or Ctrl-C / SIGTERM interrupts it."""
    exp = store.experiment
    clock = _Clock(*_previous_times(store.run_dir))
    algorithm = algorithms.create(
        store.algo,
        exp.space,
        len(exp.objectives),
        seed=store.seed,
        options=exp.algorithm.get(store.algo),
    )
    interrupted = False
    watcher = progress(store) if progress is not None else None
    with sigterm_as_interrupt(), watcher or contextlib.nullcontext():
        try:
            size = population_size(population, exp, algorithm)
            runner = Runner(pool, build_objective(exp.objective).dispatch_policy(size))
            scheduler = schedulers.create(*exp.scheduler_spec())
            if scheduler.name != "none" and not pool.relays_reports:
                raise UserInputError(
                    f"--scheduler: {scheduler.name} needs an executor that relays reports "
                    "(inline or local; the ray executor does not yet)"
                )
            optimize(store, algorithm, runner, clock, watcher, scheduler)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            pool.listen(None)  # the pool may serve the next run of a compare
    summary = store.export(clock.wall, clock.overhead)
    return RunResult(store.run_dir, summary, interrupted)


POPULATION_MODES = ("auto", "on", "off")


def population_size(mode: str, experiment: Experiment, algorithm: Algorithm) -> int:
    """How many trials may share a slot as one population: ``budget.population_size`` for the
    built-in trainer with ``on``, or with ``auto`` for algorithms that propose whole
    generations (ga, pso, random); else 1."""
    if mode not in POPULATION_MODES:
        raise UserInputError(
            f"--population: must be one of {', '.join(POPULATION_MODES)} (got {mode!r})"
        )
    if mode == "off" or experiment.objective.trainer is None:
        return 1
    if experiment.scheduler_spec()[0] != "none":  # members cannot be stopped one by one yet
        return 1
    if mode == "auto" and not algorithm.batch_friendly:
        return 1
    return experiment.budget.population_size


def _created(
    experiment: Experiment | str | Path | None,
    algo: str,
    trials: int | None,
    parallel: int | None,
    seed: int | None,
    out: Path,
    name: str | None,
    storage: str | None,
    scheduler: str | None = None,
) -> RunStore:
    if experiment is None:
        raise UserInputError("no experiment given")
    if name is not None:
        check_name(name, "--name")
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    exp = exp.with_overrides(
        trials=trials, parallel=parallel, seed=seed, name=name, scheduler=scheduler
    )
    algorithms.get_algorithm(algo)
    build_objective(exp.objective).check()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{exp.name}-{algo}-s{exp.seed}-{stamp}"
    return RunStore.create(out, base, exp, algo, exp.seed, storage)


def _resumed(
    run_dir: Path,
    algo: str | None,
    trials: int | None,
    parallel: int | None,
    storage: str | None,
) -> RunStore:
    """Reopen a run; nothing is written (not even to the study) before the flags are checked,
    and experiment.yaml is rewritten (new budget) only once the store is open and writable."""
    manifest = read_manifest(run_dir, "--resume")
    if algo is not None and algo != manifest["algo"]:
        raise UserInputError(f"--algo: {run_dir} was run with {manifest['algo']!r}, not {algo!r}")
    store = RunStore.open(run_dir, storage, manifest)
    try:
        build_objective(store.experiment.objective).check()
        if trials is not None or parallel is not None:
            store.experiment = store.experiment.with_overrides(trials=trials, parallel=parallel)
            store.save_experiment()
    except BaseException:
        store.close()
        raise
    return store


def _previous_times(run_dir: Path) -> tuple[float, float]:
    """Wall and overhead seconds already spent by earlier sessions of this run."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        return float(summary["wall_seconds"]), float(summary["overhead_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0, 0.0


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so a terminated run saves its state the same way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
