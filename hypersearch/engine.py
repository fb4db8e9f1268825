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
from hypersearch.executors import Executor, TrialRequest, TrialResult, make_executor
from hypersearch.executors.base import COMPLETE, FAIL
from hypersearch.experiment import RESERVED_COLUMNS, Experiment, load_experiment
from hypersearch.objectives.base import build_objective, check_objectives, trial_seed
from hypersearch.store import INFO_ATTR, RunStore, TrialRecord

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
) -> None:
    """Run trials until the budget of finished trials is reached."""
    experiment = store.experiment
    space, budget = experiment.space, experiment.budget.trials
    algorithm.tell([Observation(space.encode(r.params), store.losses(r)) for r in store.finished()])
    requeue = deque(store.running())  # cut off by a kill: run again under the same number
    algorithm.pending([space.encode(r.params) for r in requeue])
    in_flight: dict[int, np.ndarray] = {}
    n_finished = len(store.finished())

    def dispatch(number: int, config: dict[str, Any], x: np.ndarray) -> None:
        executor.submit(
            TrialRequest(
                number,
                config,
                trial_seed(store.seed, number),
                store.run_dir / "trials" / str(number),
                experiment.budget.trial_timeout,
            )
        )
        in_flight[number] = x

    while True:
        slots = executor.free_slots()
        while slots > 0 and requeue:
            record = requeue.popleft()
            dispatch(record.number, record.params, space.encode(record.params))
            slots -= 1
        wanted = min(slots, budget - n_finished - len(in_flight) - len(requeue))
        if wanted > 0:
            for x in algorithm.ask(wanted)[:wanted]:
                config = space.decode(x)
                dispatch(store.start_trial(config), config, x)
        if not in_flight:
            if n_finished >= budget:
                return
            raise AlgorithmError(
                f"algorithm {algorithm.name!r} proposed no point while no trial was in flight"
            )
        waited = time.perf_counter()
        results = executor.poll(POLL_SECONDS)
        clock.waiting += time.perf_counter() - waited
        if not results:
            continue
        observations = []
        for result in results:
            record = store.finish_trial(_checked(result, experiment))
            observations.append(Observation(in_flight.pop(result.number), store.losses(record)))
            n_finished += 1
            if progress is not None:
                progress.trial_finished(record, store)
        algorithm.tell(observations)
        store.export(clock.wall, clock.overhead)


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
    progress: Callable[[RunStore], Progress] | None = None,
) -> RunResult:
    """Run (or, with ``resume``, continue) an experiment; returns the run folder and summary.

    >>> result = run("searchspaces/branin.yaml", algo="random", trials=8)  # doctest: +SKIP
    """
    store = (
        _resumed(Path(resume), algo, trials, parallel)
        if resume is not None
        else _created(experiment, algo or "tpe", trials, parallel, seed, Path(out), name, storage)
    )
    try:
        exp = store.experiment
        previous = _previous_times(store.run_dir)
        clock = _Clock(*previous)
        algorithm = algorithms.create(
            store.algo,
            exp.space,
            len(exp.objectives),
            seed=store.seed,
            options=exp.algorithm.get(store.algo),
        )
        store.export(clock.wall, clock.overhead)
        pool = make_executor(
            executor, exp.objective, exp.budget.parallel, log_dir=store.run_dir / "logs"
        )
        interrupted = False
        watcher = progress(store) if progress is not None else None
        with pool, _sigterm_as_interrupt(), watcher or contextlib.nullcontext():
            try:
                optimize(store, algorithm, pool, clock, watcher)
            except KeyboardInterrupt:
                interrupted = True
        summary = store.export(clock.wall, clock.overhead)
        return RunResult(store.run_dir, summary, interrupted)
    finally:
        store.close()


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
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    exp = exp.with_overrides(trials=trials, parallel=parallel, seed=seed, name=name)
    algorithms.get_algorithm(algo)
    build_objective(exp.objective).check()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{exp.name}-{algo}-s{exp.seed}-{stamp}"
    for attempt in range(1, 1000):
        run_dir = out / (base if attempt == 1 else f"{base}-{attempt}")
        if not run_dir.exists():
            return RunStore.create(run_dir, exp, algo, exp.seed, storage)
    raise UserInputError(f"--out: too many runs named {base} in {out}")


def _resumed(run_dir: Path, algo: str | None, trials: int | None, parallel: int | None) -> RunStore:
    store = RunStore.open(run_dir)
    if algo is not None and algo != store.algo:
        store.close()
        raise UserInputError(f"--algo: {run_dir} was run with {store.algo!r}, not {algo!r}")
    if trials is not None or parallel is not None:
        store.experiment = store.experiment.with_overrides(trials=trials, parallel=parallel)
        (run_dir / "experiment.yaml").write_text(store.experiment.to_yaml())
    build_objective(store.experiment.objective).check()
    return store


def _previous_times(run_dir: Path) -> tuple[float, float]:
    """Wall and overhead seconds already spent by earlier sessions of this run."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        return float(summary["wall_seconds"]), float(summary["overhead_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0, 0.0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
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
