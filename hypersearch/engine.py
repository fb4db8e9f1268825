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
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hypersearch import algorithms, schedulers
from hypersearch import warm_start as warm
from hypersearch.algorithms.base import Algorithm, Suggestion
from hypersearch.errors import AlgorithmError, TrialFailure, UserInputError
from hypersearch.executors import (
    Executor,
    TrialResult,
    check_executor,
    make_executor,
)
from hypersearch.executors.base import COMPLETE, FAIL
from hypersearch.experiment import RESERVED_COLUMNS, Experiment, check_name, load_experiment
from hypersearch.objectives import build_objective
from hypersearch.objectives.base import check_objectives
from hypersearch.resume import (
    catch_up,
    first_loss,
    most_steps,
    observation,
    steps_trained,
    trial_request,
)
from hypersearch.runner import Runner
from hypersearch.schedulers import Scheduler
from hypersearch.store import INFO_ATTR, RunStore, TrialRecord, read_manifest
from hypersearch.trials import Report

POLL_SECONDS = 1.0


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
    """ask → submit → collect → tell → record, until the budget is spent: ``budget.trials``
    finished trials (pruned ones included), or ``budget.steps`` trained (no trial starts once
    they are; trials in flight run on to their end).

    A trial carries its suggestion's id from ask to tell; the study keeps the id and the point
    with the trial. A lost worker's trial is retried once under a new number but the same id:
    the algorithm is told only the retry's result.
    """
    scheduler = scheduler or Scheduler()
    in_flight = catch_up(store, algorithm, runner, scheduler)  # trial number -> its suggestion
    queue = warm.waiting(store)  # enqueued configs not yet run: before any the algorithm asks
    runner.listen(_judge(store, scheduler))  # reports: recorded, then judged at once
    n_finished = store.counted()
    changed = False  # trials finished since the last export
    while True:
        wanted = min(runner.capacity(), _room(store, n_finished + len(in_flight), in_flight))
        enqueued, queue = queue[: max(wanted, 0)], queue[max(wanted, 0) :]
        if enqueued:  # trials the algorithm did not ask: pending to it, as a retry is
            algorithm.pending([suggestion for suggestion, _ in enqueued])
        for suggestion, config in enqueued:
            in_flight[_start(store, runner, suggestion, config)] = suggestion
        for suggestion in _asked(algorithm, wanted - len(enqueued), in_flight):
            in_flight[_start(store, runner, suggestion)] = suggestion
        if runner.dispatch() or changed:  # the exports show what finished and what now runs
            store.export(clock.wall, clock.overhead)
            changed = False
        if not in_flight:
            if _room(store, n_finished) <= 0:
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
                scheduler.finished(record.number, record.state, first_loss(store, record.metrics))
                observations.append(observation(suggestion, store, record))
                n_finished += 1
            if progress is not None:
                progress.trial_finished(record, store)
        if observations:
            algorithm.tell(observations)
            changed = True


def _room(store: RunStore, trials: int, in_flight: Collection[int] = ()) -> int:
    """How many more trials the budget allows, ``trials`` being counted or in flight. Under
    ``budget.steps``, each trial in flight keeps the steps it may still train (its most, less
    what it reported) and a new one may start while steps are left for it."""
    budget = store.experiment.budget
    room = (budget.trials - trials) if budget.trials is not None else sys.maxsize
    if budget.steps is None:
        return room
    left = budget.steps - steps_trained(store)
    if left <= 0:
        return 0
    most = most_steps(store.experiment) or 1
    left -= sum(max(most - (store.records[n].steps or 0), 0) for n in in_flight)
    fits = max(-(-left // most), 0 if in_flight else 1)  # a run with nothing in flight goes on
    return min(room, fits)


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
    runner.submit(trial_request(store, number, config), retry_of)
    return number


def _judge(store: RunStore, scheduler: Scheduler) -> Callable[[Report], bool]:
    """Record a report in the study, then let the scheduler judge its first objective."""

    def hear(report: Report) -> bool:
        store.report(report)
        loss = first_loss(store, report.metrics)
        return loss is not None and scheduler.report(report.number, report.step, loss)

    return hear


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
    steps: int | None = None,
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
    warm_start: Sequence[str | Path] = (),
    enqueue: str | Path | None = None,
) -> RunResult:
    """Run (or, with ``resume``, continue) an experiment; returns the run folder and summary.

    >>> result = run("searchspaces/branin.yaml", algo="random", trials=8)  # doctest: +SKIP

    ``ray_address`` (with ``executor="ray"``) connects to a Ray cluster instead of starting a
    local Ray instance. ``gpus`` (default: every GPU found) and ``trials_per_gpu`` place the
    local executor's workers: one per GPU slot, or ``parallel`` CPU workers without GPUs.
    ``population`` (``auto``, ``on``, ``off``): train compatible built-in-trainer trials
    together as one stacked model (see ``population_size``). ``scheduler`` (``none``,
    ``median``, ``asha``, ``hyperband``) replaces the experiment's ``scheduler`` (a new run
    only; options given in the file for the same scheduler are kept). ``warm_start`` (run
    folders told first) and ``enqueue`` (a YAML file of configs run first): a new run only.
    """
    check_executor(executor, ray_address)
    if resume is not None and (warm_start or enqueue is not None):
        flag = "--warm-start" if warm_start else "--enqueue"
        raise UserInputError(f"{flag}: a resumed run keeps its own (it is in the run folder)")
    if population not in POPULATION_MODES:
        raise UserInputError(
            f"--population: must be one of {', '.join(POPULATION_MODES)} (got {population!r})"
        )
    store = (
        _resumed(
            Path(resume), algo, {"trials": trials, "steps": steps, "parallel": parallel}, storage
        )
        if resume is not None
        else _created(
            experiment,
            algo or "tpe",
            {"trials": trials, "steps": steps, "parallel": parallel, "seed": seed},
            Path(out),
            name,
            storage,
            scheduler,
            (warm_start, enqueue),
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
    if mode == "auto" and not algorithm.batch_friendly:
        return 1
    return experiment.budget.population_size


def _created(
    experiment: Experiment | str | Path | None,
    algo: str,
    budget: dict[str, int | None],
    out: Path,
    name: str | None,
    storage: str | None,
    scheduler: str | None = None,
    first: tuple[Sequence[str | Path], str | Path | None] = ((), None),
) -> RunStore:
    """A new run; ``first``: its warm-start folders and ``--enqueue`` file, every one checked
    before the folder is made (the enqueued configs join ``initial:`` in experiment.yaml, and
    the warm trials go to warm_start.csv, so a resume needs neither again)."""
    if experiment is None:
        raise UserInputError("no experiment given")
    if name is not None:
        check_name(name, "--name")
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    exp = exp.with_overrides(**budget, name=name, scheduler=scheduler)
    exp, warm_trials = warm.prepared(exp, *first)
    algorithms.get_algorithm(algo)
    build_objective(exp.objective).check()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{exp.name}-{algo}-s{exp.seed}-{stamp}"
    store = RunStore.create(out, base, exp, algo, exp.seed, storage)
    try:
        warm.record(store.run_dir, warm_trials, exp, len(warm.source_dirs(first[0])))
    except BaseException:
        store.close()
        raise
    return store


def _resumed(
    run_dir: Path,
    algo: str | None,
    budget: dict[str, int | None],
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
        if any(value is not None for value in budget.values()):
            store.experiment = store.experiment.with_overrides(**budget)
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
