"""The contract every registered algorithm must keep (like Optuna's shared sampler suite).

The checks live in ``hypersearch.testing`` (shipped, so a third-party algorithm can run them);
here they are parametrized over the whole registry, so a new algorithm is tested the moment it
registers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from hypersearch.algorithms import Observation, Suggestion, available, create, register
from hypersearch.algorithms.base import Algorithm
from hypersearch.errors import ExperimentError, UnknownAlgorithmError
from hypersearch.experiment import parse_experiment
from hypersearch.space import SearchSpace
from hypersearch.testing import (
    CHECKS,
    MIXED,
    check_algorithm,
    factory_of,
    simulate,
    warm_observations,
)

# gp fits a Gaussian process at every ask (about a second at 30 trials here): the whole matrix
# would take minutes. It shares tpe's Optuna mirror (ids, pending, resume), which the matrix
# checks through tpe; tests/test_gp.py runs the contract's properties on it at a smaller size.
ALGORITHMS = sorted(set(available()) - {"gp"})


@pytest.mark.parametrize("check", sorted(CHECKS))
@pytest.mark.parametrize("name", ALGORITHMS)
def test_contract(name: str, check: str) -> None:
    CHECKS[check](factory_of(name))


class Halton(Algorithm):
    """A third-party algorithm as the README shows it: a scrambled Halton sequence by id."""

    name = "halton-test"
    description = "Scrambled Halton points (a third-party example)"

    def ask(self, n: int) -> list[Suggestion]:
        from scipy.stats import qmc

        def point(k: int) -> np.ndarray:
            halton = qmc.Halton(self.space.dim, rng=np.random.default_rng(self.seed))
            halton.fast_forward(k)
            return halton.random(1)[0]

        return [self.issue(point(self.next_id)) for _ in range(n)]

    def tell(self, observations: Sequence[Observation]) -> None:
        for _ in self.arrivals(observations):
            pass


def test_a_third_party_algorithm_passes_the_shipped_contract() -> None:
    check_algorithm(Halton)


class ForgetsPending(Halton):
    """Broken on purpose: a point's index is the number told, so trials in flight at a kill
    are forgotten and the resumed instance asks them again."""

    name = "forgets-pending-test"
    told = 0

    def ask(self, n: int) -> list[Suggestion]:
        rng = np.random.default_rng([self.seed, self.told, len(self.in_flight)])
        return [self.issue(rng.random(self.space.dim)) for _ in range(n)]

    def tell(self, observations: Sequence[Observation]) -> None:
        self.told += len(list(self.arrivals(observations)))

    def pending(self, suggestions: Sequence[Suggestion]) -> None:
        pass  # forgets them


def test_the_resume_check_catches_an_algorithm_that_forgets_trials_in_flight() -> None:
    with pytest.raises(AssertionError):
        CHECKS["resume_asks_what_the_original_would"](factory_of(ForgetsPending))


class RetriesPruned(Halton):
    """Broken on purpose: takes a pruned trial for an unfinished one and asks its point again."""

    name = "retries-pruned-test"

    def __init__(self, space: SearchSpace, n_objectives: int, *, seed: int) -> None:
        super().__init__(space, n_objectives, seed=seed)
        self.again: list[np.ndarray] = []

    def ask(self, n: int) -> list[Suggestion]:
        retries = [self.issue(self.again.pop()) for _ in range(min(n, len(self.again)))]
        return retries + super().ask(n - len(retries))

    def tell(self, observations: Sequence[Observation]) -> None:
        self.again += [obs.x for obs, _ in self.arrivals(observations) if obs.pruned]


def test_the_pruned_check_catches_an_algorithm_that_reruns_pruned_points() -> None:
    with pytest.raises(AssertionError, match="asked twice"):
        CHECKS["pruned_trials"](factory_of(RetriesPruned))
    CHECKS["pruned_trials"](factory_of(Halton))


class IgnoresForeign(Halton):
    """Broken on purpose: learns from its own results (asks near its best) but drops foreign
    ones, so a warm start changes nothing."""

    name = "ignores-foreign-test"
    best: tuple[float, np.ndarray] | None = None

    def ask(self, n: int) -> list[Suggestion]:
        if self.best is None:
            return super().ask(n)
        rng = np.random.default_rng([self.seed, self.next_id])
        return [self.issue(np.clip(self.best[1] + rng.normal(0, 0.05, self.space.dim), 0, 1))]

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs, own in self.arrivals(observations):
            if own and obs.losses and (self.best is None or obs.losses[0] < self.best[0]):
                self.best = (obs.losses[0], obs.x)


def test_the_warm_start_check_catches_an_algorithm_that_ignores_foreign_trials() -> None:
    with pytest.raises(AssertionError, match="asked what a fresh instance asks"):
        CHECKS["warm_start"](factory_of(IgnoresForeign))


def test_gp_is_changed_by_a_warm_start() -> None:
    """gp is out of the matrix (a fit per ask): the warm-start check's first half, past its
    start-up with one fit of six warm trials."""
    hot, cold = (create("gp", MIXED, 1, seed=3, options={"n_startup_trials": 3}) for _ in "ab")
    hot.tell(warm_observations(MIXED, 6))
    asked = hot.ask(1)
    assert [s.id for s in asked] == [0]
    assert not np.array_equal(asked[0].x, cold.ask(1)[0].x)


def test_a_reused_id_is_caught() -> None:
    class ReusesIds(Halton):
        name = "reuses-ids-test"

        def ask(self, n: int) -> list[Suggestion]:
            return [Suggestion(0, s.x) for s in super().ask(n)]

    with pytest.raises(AssertionError, match="already taken"):
        simulate(ReusesIds(MIXED, 1, seed=0), 4, parallel=2)


def test_pso_moves_the_particle_that_asked_whatever_the_order() -> None:
    """Results told in reverse order: each moves the particle of its id, and only that one."""
    # The plain swarm: asks are its positions (a screened particle asks its best candidate).
    algo = create("pso", MIXED, 1, seed=0, options={"swarm_size": 6, "surrogate": False})
    asked = algo.ask(6)
    before = algo.swarm.position.copy()
    for s in reversed(asked[2:5]):
        algo.tell([Observation(s.id, s.x, (float(s.id),))])
        i = algo.particle(s.id)
        assert i == s.id % 6
        np.testing.assert_array_equal(algo.swarm.pbest_pos[i], s.x)
        assert not np.array_equal(algo.swarm.position[i], before[i])  # it moved on
    for j in (0, 1, 5):  # still in flight: untouched
        np.testing.assert_array_equal(algo.swarm.position[j], before[j])
    before_ask = algo.swarm.position.copy()
    # Only particles whose result is in are asked again: ids 6 and 7 (particles 0 and 1, in
    # flight) are skipped, so a slow trial holds back its particle, not a worker.
    again = algo.ask(6)
    assert [(s.id, algo.particle(s.id)) for s in again] == [(8, 2), (9, 3), (10, 4)]
    for s in again:
        np.testing.assert_array_equal(s.x, np.clip(before_ask[algo.particle(s.id)], 0, 1))
    assert algo.ask(6) == []  # every particle is out
    algo.tell([Observation(asked[0].id, asked[0].x, (9.0,))])
    assert [algo.particle(s.id) for s in algo.ask(6)] == [0]


def test_registry_refuses_a_taken_name() -> None:
    class Impostor(Algorithm):
        name = "random"
        description = "not the real one"

        def ask(self, n: int) -> list[Suggestion]:
            return []

        def tell(self, observations) -> None:
            pass

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)
    assert available()["random"] is not Impostor


def test_unknown_algorithm_lists_the_choices() -> None:
    with pytest.raises(UnknownAlgorithmError) as err:
        create("gaa", MIXED, 1, seed=0)
    assert str(err.value) == (
        f"--algo: unknown algorithm 'gaa' (choose from: {', '.join(available())})"
    )


def test_every_algorithm_has_a_one_line_description() -> None:
    for name, cls in available().items():
        assert cls.name == name
        assert cls.description and "\n" not in cls.description


def test_options_come_from_the_experiment_and_are_validated() -> None:
    exp = parse_experiment(
        {
            "objective": {"synthetic": {"function": "branin"}},
            "algorithm": {"tpe": {"n_startup_trials": 3}, "random": {"sobol_points": 0}},
        }
    )
    tpe = create("tpe", exp.space, 1, seed=0, options=exp.algorithm["tpe"])
    assert tpe.options.n_startup_trials == 3
    with pytest.raises(ExperimentError, match=r"^algorithm\.random\.sobol_points: input should"):
        create("random", exp.space, 1, seed=0, options={"sobol_points": -1})


def test_random_search_starts_with_a_balanced_sobol_sequence() -> None:
    space = SearchSpace.from_dict(
        {f"x{i}": {"type": "float", "low": 0, "high": 1} for i in range(2)}
    )
    points = np.array([s.x for s in create("random", space, 1, seed=0).ask(64)])
    # A scrambled Sobol net: each of the 8x8 cells of the unit square holds exactly one point.
    cells = {(int(a * 8), int(b * 8)) for a, b in points}
    assert len(cells) == 64


def test_tpe_spreads_a_parallel_batch() -> None:
    """Constant liar: a batch asked at once is not k copies of one point."""
    algo = create("tpe", MIXED, 1, seed=0, options={"n_startup_trials": 4})
    simulate(algo, 12, parallel=4)
    batch = np.array([s.x for s in algo.ask(4)])
    distances = [np.linalg.norm(a - b) for i, a in enumerate(batch) for b in batch[i + 1 :]]
    assert min(distances) > 1e-3
