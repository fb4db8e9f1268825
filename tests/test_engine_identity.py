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
        for obs in recorder.told:
            np.testing.assert_array_equal(obs.x, recorder.asked[obs.id])  # its own point
            record = store.records[obs.id]  # the id is the trial's number
            assert obs.losses == (record.metrics["value"],)
            np.testing.assert_allclose(
                store.experiment.space.encode(record.params),
                store.experiment.space.encode(store.experiment.space.decode(obs.x)),
            )
    finally:
        store.close()


def test_pso_moves_the_particle_whose_trial_finished(tmp_path: Path) -> None:
    """Through the engine, with completion reversed: after each result, its particle (id mod
    swarm size) holds that trial's point as its personal best or has a better one."""
    store = _store(tmp_path, trials=12, parallel=4)
    pso = create("pso", store.experiment.space, 1, seed=0, options={"swarm_size": 6})
    recorder = Recorder(pso)
    executor = NewestFirst(store.experiment.objective, parallel=4)
    try:
        optimize(store, recorder, Runner(executor, DispatchPolicy()), _Clock())
    finally:
        store.close()
    fresh = create("pso", store.experiment.space, 1, seed=0, options={"swarm_size": 6})
    for obs in recorder.told:  # replayed one by one, each result changes only its particle
        before = fresh.swarm.position.copy()
        fresh.tell([obs])
        moved = np.flatnonzero(np.any(fresh.swarm.position != before, axis=1))
        assert list(moved) == [obs.id % 6]
    np.testing.assert_array_equal(fresh.swarm.pbest_pos, pso.swarm.pbest_pos)
