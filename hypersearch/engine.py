"""The optimization loop: ask → dispatch → collect → tell, with ``parallel`` trials in flight.

``optimize`` is the loop (after SMAC's ``smbo.optimize``); ``run`` sets a run up (new or
resumed), drives it, and leaves the run folder consistent whatever happens: on Ctrl-C or SIGTERM
trials in flight stay RUNNING in the study and are run again by ``--resume``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hypersearch import algorithms
from hypersearch.algorithms.base import Algorithm, Observation
from hypersearch.errors import AlgorithmError, TrialFailure, UserInputError
from hypersearch.executors import (
    Executor,
    TrialRequest,
    TrialResult,
    check_executor,
    make_executor,
)
from hypersearch.executors.base import COMPLETE, FAIL, PopulationRequest
from hypersearch.experiment import RESERVED_COLUMNS, Experiment, check_name, load_experiment
from hypersearch.objectives.base import build_objective, check_objectives, trial_seed
from hypersearch.processes import trial_dir_free
from hypersearch.store import INFO_ATTR, RunStore, TrialRecord, read_manifest

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
    waiting: float = 0.0

    @property
    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.start

    @property
    def overhead(self) -> float:
        return self.overhead_before + time.perf_counter() - self.start - self.waiting


def optimize(
    store: RunStore,
    algorithm: Algorithm,
    executor: Executor,
    clock: _Clock,
    progress: Progress | None = None,
    population: int = 1,
) -> None:
    """Run trials until the budget of finished trials is reached.

    Besides what the algorithm asks, three kinds of trial are dispatched from ``queue``: trials
    a kill cut off (run again under their number), trials retried with half the batch after an
    out-of-memory error (same number), and one retry of a trial whose worker was lost (a new
    number, linked to the original).

    With ``population`` > 1 (built-in trainer), up to that many compatible trials share a slot
    as one population, trained together as a stacked model; a population that runs out of
    memory is split in two and both halves are dispatched again.
    """
    experiment = store.experiment
    space, budget = experiment.space, experiment.budget.trials
    algorithm.tell([Observation(space.encode(r.params), store.losses(r)) for r in store.finished()])
    queue: deque[_Queued] = deque(
        _Queued(r.number, r.params, space.encode(r.params)) for r in store.running()
    )
    algorithm.pending([item.x for item in queue])
    _renumber_held(store, algorithm, queue)
    in_flight: dict[int, tuple[list[_Queued], TrialRequest]] = {}  # handle -> its trial(s)
    ladders: dict[int, list[int]] = {}  # batch sizes that ran out of memory, per trial
    split: dict[int, list[int]] = {}  # population sizes that ran out of memory, per trial
    n_finished = store.counted()
    key = _population_key(experiment) if population > 1 else None
    changed = False  # since the last export

    def dispatch(group: list[_Queued]) -> None:
        requests = [_request(store, item) for item in group]
        request = requests[0] if len(requests) == 1 else PopulationRequest.of(requests)
        executor.submit(request)
        in_flight[request.number] = (group, request)

    while True:
        slots = executor.free_slots()
        if slots > 0:
            running = sum(len(group) for group, _ in in_flight.values())
            left = budget - n_finished - running - len(queue)
            wanted = min(slots * population - len(queue), left)
            if wanted > 0:
                for x in algorithm.ask(wanted)[:wanted]:
                    config = space.decode(x)
                    queue.append(_Queued(store.start_trial(config), config, x))
            for group in _groups(list(queue), slots, population, key):
                for item in group:
                    queue.remove(item)
                dispatch(group)
                changed = True
        if changed:  # the exports show what finished and what now runs
            store.export(clock.wall, clock.overhead)
            changed = False
        if not in_flight:
            if n_finished >= budget:
                return
            raise AlgorithmError(
                f"algorithm {algorithm.name!r} proposed no point while no trial was in flight"
            )
        waited = time.perf_counter()
        results = executor.poll(POLL_SECONDS)
        clock.waiting += time.perf_counter() - waited
        observations = []
        for outcome in results:
            group, sent = in_flight.pop(outcome.number)
            if isinstance(sent, PopulationRequest) and not outcome.members:
                if outcome.reason == "oom":  # too big for the device: two halves, again
                    half = (len(group) + 1) // 2
                    for item in reversed(group):
                        split.setdefault(item.number, []).append(len(group))
                        queue.appendleft(dataclasses.replace(item, cap=half))
                    continue
                member_results = [
                    dataclasses.replace(outcome, number=item.number) for item in group
                ]
            else:
                member_results = list(outcome.members) or [outcome]
            requests = list(sent.members) if isinstance(sent, PopulationRequest) else [sent]
            for item, result, request in zip(group, member_results, requests, strict=True):
                smaller = _smaller_batch(result, request, experiment)
                if smaller is not None:  # out of memory: same trial, half the batch
                    ladders.setdefault(item.number, []).append(request_batch(request, experiment))
                    queue.appendleft(dataclasses.replace(item, overrides=smaller))
                    continue
                if result.reason == "oom" and experiment.objective.trainer is not None:
                    ladder = [*ladders.get(item.number, []), request_batch(request, experiment)]
                    ladders[item.number] = ladder
                    result = dataclasses.replace(
                        result, error=f"{result.error} (batch sizes tried: {ladder})"
                    )
                extra: dict[str, Any] = {}
                if item.number in ladders:
                    extra["oom_ladder"] = ladders.pop(item.number)
                if item.number in split:
                    extra["population_oom"] = split.pop(item.number)
                if len(group) > 1:
                    extra["population"] = len(group)
                if item.retry_of is not None:
                    extra["retry_of"] = item.retry_of
                elif result.reason == "worker_lost":  # retried once; the retry takes its place
                    extra["retried_as"] = store.start_trial(item.config)
                    queue.append(
                        _Queued(extra["retried_as"], item.config, item.x, retry_of=item.number)
                    )
                record = store.finish_trial(_checked(result, experiment), **extra)
                observations.append(Observation(item.x, store.losses(record)))
                n_finished += not record.superseded
                if progress is not None:
                    progress.trial_finished(record, store)
        if observations:
            algorithm.tell(observations)
            changed = True


def _renumber_held(store: RunStore, algorithm: Algorithm, queue: deque[_Queued]) -> None:
    """Trials a kill cut off run again under their number, in their folder, unless a process of
    the killed run still holds that folder after a short wait (its processes die within moments
    of it): then the trial fails ``worker_lost`` and is retried under a new number."""
    deadline = time.monotonic() + ORPHAN_WAIT_S
    for item in list(queue):
        wait = max(0.0, deadline - time.monotonic())
        if trial_dir_free(store.run_dir / "trials" / str(item.number), wait):
            continue
        queue.remove(item)
        retry = _Queued(store.start_trial(item.config), item.config, item.x, retry_of=item.number)
        lost = TrialResult.failed(
            _request(store, item),
            "worker_lost",
            "still running in a process of the killed run; retried as a new trial",
        )
        record = store.finish_trial(lost, retried_as=retry.number)
        algorithm.tell([Observation(item.x, store.losses(record))])
        queue.append(retry)


def _request(store: RunStore, item: _Queued) -> TrialRequest:
    return TrialRequest(
        item.number,
        item.config,
        trial_seed(store.seed, item.number),
        store.run_dir / "trials" / str(item.number),
        store.experiment.budget.trial_timeout,
        item.overrides,
    )


def _population_key(experiment: Experiment) -> Callable[[_Queued], Any]:
    """What trials must share to be trained together (the trainer's settings but lr, …)."""
    from hypersearch.objectives.trainer import TrainerObjective
    from hypersearch.objectives.trainer.settings import population_key

    assert experiment.objective.trainer is not None
    trainer = TrainerObjective(experiment.objective.trainer)
    return lambda item: population_key(trainer.settings(item.config, item.overrides))


def _groups(
    items: list[_Queued], slots: int, population: int, key: Callable[[_Queued], Any] | None
) -> list[list[_Queued]]:
    """At most ``slots`` groups of compatible trials to dispatch, in queue order. Trials are
    spread evenly over the free slots (16 trials, 2 slots: two populations of 8), no group
    larger than ``population`` or than the cap a split after running out of memory set."""
    if population == 1 or key is None:
        return [[item] for item in items[:slots]]
    by_key: dict[Any, list[_Queued]] = {}
    for item in items:
        by_key.setdefault(key(item), []).append(item)
    even = -(-len(items) // slots)
    groups = []
    for members in by_key.values():
        size = min([population, even, *(i.cap for i in members if i.cap is not None)])
        groups += [members[i : i + size] for i in range(0, len(members), size)]
    return sorted(groups, key=lambda g: items.index(g[0]))[:slots]


@dataclass(frozen=True, eq=False)  # compared by identity: the same config may be queued twice
class _Queued:
    """A trial to dispatch: its number, config, unit-cube point and forced settings."""

    number: int
    config: dict[str, Any]
    x: np.ndarray
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    retry_of: int | None = None  # the trial whose lost worker this one retries
    cap: int | None = None  # the largest population it may join (after one ran out of memory)


def request_batch(request: TrialRequest, experiment: Experiment) -> int:
    """The batch size a built-in-trainer trial ran with."""
    spec = experiment.objective.trainer
    assert spec is not None
    return int(
        request.overrides.get("batch_size", request.config.get("batch_size", spec.batch_size))
    )


def _smaller_batch(
    result: TrialResult, request: TrialRequest, experiment: Experiment
) -> dict[str, Any] | None:
    """After an out-of-memory error, half the batch and twice the gradient accumulation (the
    same effective batch), down to ``min_batch_size``; None when there is no smaller step."""
    spec = experiment.objective.trainer
    if result.reason != "oom" or spec is None:
        return None
    batch = request_batch(request, experiment)
    if batch // 2 < spec.min_batch_size:
        return None
    accum = int(request.overrides.get("grad_accum", spec.grad_accum))
    return {"batch_size": batch // 2, "grad_accum": accum * 2}


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
) -> RunResult:
    """Run (or, with ``resume``, continue) an experiment; returns the run folder and summary.

    >>> result = run("searchspaces/branin.yaml", algo="random", trials=8)  # doctest: +SKIP

    ``ray_address`` (with ``executor="ray"``) connects to a Ray cluster instead of starting a
    local Ray instance. ``gpus`` (default: every GPU found) and ``trials_per_gpu`` place the
    local executor's workers: one per GPU slot, or ``parallel`` CPU workers without GPUs.
    ``population`` (``auto``, ``on``, ``off``): train compatible built-in-trainer trials
    together as one stacked model (see ``population_size``).
    """
    check_executor(executor, ray_address)
    if population not in POPULATION_MODES:
        raise UserInputError(
            f"--population: must be one of {', '.join(POPULATION_MODES)} (got {population!r})"
        )
    store = (
        _resumed(Path(resume), algo, trials, parallel, storage)
        if resume is not None
        else _created(experiment, algo or "tpe", trials, parallel, seed, Path(out), name, storage)
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
            optimize(store, algorithm, pool, clock, watcher, size)
        except KeyboardInterrupt:
            interrupted = True
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
    trials: int | None,
    parallel: int | None,
    seed: int | None,
    out: Path,
    name: str | None,
    storage: str | None,
) -> RunStore:
    if experiment is None:
        raise UserInputError("no experiment given")
    if name is not None:
        check_name(name, "--name")
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    exp = exp.with_overrides(trials=trials, parallel=parallel, seed=seed, name=name)
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
