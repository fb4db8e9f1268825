"""One identity from ask to tell through the real engine: trials finish out of order (an
inline executor that runs the most recently submitted trial first), lost workers are retried,
and every observation the algorithm is told carries the id and point it asked, with the
losses the study recorded for that trial."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from hypersearch.algorithms import Observation, Suggestion, create
from hypersearch.algorithms.base import Algorithm
from hypersearch.engine import _Clock, optimize
from hypersearch.executors.inline import InlineExecutor
from hypersearch.experiment import parse_experiment
from hypersearch.objectives.base import DispatchPolicy
from hypersearch.runner import Runner
from hypersearch.store import RunStore
from hypersearch.trials import TrialResult


class NewestFirst(InlineExecutor):
    """Runs the trial submitted last first: completion order is the reverse of ask order."""

    def poll(self, timeout: float | None) -> list[TrialResult]:
        if self._queue:
            self._queue.rotate(1)  # the newest to the front
        return super().poll(timeout)


class Recorder(Algorithm):
    """Wraps an algorithm and records what it asked, was handed pending, and was told."""

    name = "recorder"
    description = "records another algorithm's asks and tells"

    def __init__(self, inner: Algorithm) -> None:
        super().__init__(inner.space, inner.n_objectives, seed=inner.seed)
        self.inner = inner
        self.asked: dict[int, np.ndarray] = {}
        self.pended: list[Suggestion] = []
        self.told: list[Observation] = []

    def ask(self, n: int) -> list[Suggestion]:
        suggestions = self.inner.ask(n)
        self.asked |= {s.id: s.x for s in suggestions}
        return suggestions

    def tell(self, observations: Sequence[Observation]) -> None:
        self.told += observations
        self.inner.tell(observations)

    def pending(self, suggestions: Sequence[Suggestion]) -> None:
        self.pended += suggestions
        self.inner.pending(suggestions)


def _store(tmp_path: Path, trials: int, parallel: int) -> RunStore:
    exp = parse_experiment(
        {
            "name": "identity",
            "objective": {"synthetic": {"function": "hartmann6"}},
            "budget": {"trials": trials, "parallel": parallel},
        }
    )
    return RunStore.create(tmp_path, "identity", exp, "pso", 0)


@pytest.mark.parametrize("algo", ["pso", "ga", "tpe", "rf", "astar", "random"])
def test_out_of_order_results_reach_the_suggestion_that_asked(tmp_path: Path, algo: str) -> None:
    store = _store(tmp_path, trials=20, parallel=4)
    recorder = Recorder(create(algo, store.experiment.space, 1, seed=0))
    executor = NewestFirst(store.experiment.objective, parallel=4)
    try:
        optimize(store, recorder, Runner(executor, DispatchPolicy()), _Clock())
        order = [o.id for o in recorder.told]
        assert len(order) == 20 and order != sorted(order)  # really out of order
        by_id = {r.suggestion_id: r for r in store.records.values()}
        assert len(by_id) == len(store.records)  # the study keeps each trial's id
        for obs in recorder.told:
            np.testing.assert_array_equal(obs.x, recorder.asked[obs.id])  # its own point
            record = by_id[obs.id]
            assert obs.losses == (record.metrics["value"],)
            np.testing.assert_allclose(
                store.experiment.space.encode(record.params),
                store.experiment.space.encode(store.experiment.space.decode(obs.x)),
            )
    finally:
        store.close()


class LosesWorkerOfTrial(InlineExecutor):
    """Reports trial ``lost``'s first attempt as a lost worker (as the local executor does when
    a worker process dies), then runs every trial."""

    def __init__(self, objective_spec: object, parallel: int, lost: int) -> None:
        super().__init__(objective_spec, parallel)
        self.lost, self.lost_once = lost, False

    def poll(self, timeout: float | None) -> list[TrialResult]:
        if self._queue and self._queue[0].number == self.lost and not self.lost_once:
            self.lost_once = True
            return [TrialResult.failed(self._queue.popleft(), "worker_lost", "worker died")]
        return super().poll(timeout)


def test_a_lost_workers_retry_keeps_its_suggestion_id(tmp_path: Path) -> None:
    """The retry runs under a new trial number, but the algorithm is told one observation for
    the suggestion, under its id: the lost attempt is superseded, never told."""
    store = _store(tmp_path, trials=10, parallel=2)
    recorder = Recorder(create("pso", store.experiment.space, 1, seed=0))
    executor = LosesWorkerOfTrial(store.experiment.objective, parallel=2, lost=3)
    try:
        optimize(store, recorder, Runner(executor, DispatchPolicy()), _Clock())
        lost, retry = store.records[3], store.records[store.records[3].retried_as or -1]
        assert lost.superseded and lost.reason == "worker_lost"
        told = [o.id for o in recorder.told]
        assert sorted(told) == sorted(recorder.asked) and len(set(told)) == len(told) == 10
        assert recorder.pended == []  # a retry is the same suggestion, still in flight
        (obs,) = [o for o in recorder.told if o.id == lost.suggestion_id]
        assert obs.losses == (retry.metrics["value"],)
        np.testing.assert_array_equal(obs.x, lost.x)
        assert retry.suggestion_id == lost.suggestion_id and retry.x == lost.x
    finally:
        store.close()


def test_each_result_moves_the_particle_that_asked_for_it(tmp_path: Path) -> None:
    """Through the engine, completion reversed: replayed in the order the engine told them,
    each result moves its own particle (id mod swarm size) and no other."""
    store = _store(tmp_path, trials=12, parallel=4)
    space = store.experiment.space
    recorder = Recorder(create("pso", space, 1, seed=0, options={"swarm_size": 6}))
    executor = NewestFirst(store.experiment.objective, parallel=4)
    try:
        optimize(store, recorder, Runner(executor, DispatchPolicy()), _Clock())
    finally:
        store.close()
    assert [o.id for o in recorder.told] != sorted(o.id for o in recorder.told)
    fresh = create("pso", space, 1, seed=0, options={"swarm_size": 6})
    for obs in recorder.told:
        before = fresh.swarm.position.copy()
        fresh.tell([obs])
        moved = np.flatnonzero(np.any(fresh.swarm.position != before, axis=1))
        assert list(moved) == [obs.id % 6]
