"""The genetic algorithm: options, elitism, NSGA-II, isolation of randomness, and quality.

Quality (``test_ga_beats_random_search``): 64 trials in batches of 8 (as with ``parallel: 8``).
Measured over 30 seeds each (median [IQR]); final regret, lower is better:
hartmann6 ga 0.97 [0.56, 1.69] vs random 1.44 [1.21, 1.87]; rosenbrock (d=4) ga 719 [300, 1712]
vs random 1703 [863, 3272]; ackley (d=5) ga 15.7 [12.6, 17.2] vs random 17.9 [16.9, 18.5].
zdt1 hypervolume at reference (1.1, 11), higher is better: ga 9.97 [9.58, 10.15] vs random
9.54 [9.44, 9.62]. A bootstrap of the median comparison from those samples fails with
probability 1.3e-4 (hartmann6), 2.4e-4 (rosenbrock), 0 (ackley, zdt1; < 1e-5) at 101 seeds,
and at the 151 seeds used here 2e-5 (rosenbrock) and 0 of 1e5 draws for the others: a total
false-failure rate of about 3e-5, below 1e-4. The whole file runs in about 12 s.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from hypersearch.algorithms import Observation, create
from hypersearch.algorithms import ga as ga_module
from hypersearch.errors import ExperimentError
from hypersearch.experiment import parse_experiment
from hypersearch.pareto import front_mask
from hypersearch.space import SearchSpace
from hypersearch.testing import final_hypervolume, final_regret
from tests.conftest import drive, sphere


def cube(dim: int) -> SearchSpace:
    return SearchSpace.from_dict(
        {f"x{i}": {"type": "float", "low": 0, "high": 1} for i in range(dim)}
    )


def test_defaults_and_options_from_the_experiment() -> None:
    algo = create("ga", cube(6), 1, seed=0)
    assert algo.population_size == 8 and algo.mutation_rate == pytest.approx(1 / 6)
    assert ga_module.default_population(20) == 12 and ga_module.default_population(100) == 16
    exp = parse_experiment(
        {
            "objective": {"synthetic": {"function": "branin"}},
            "algorithm": {"ga": {"population": 16, "crossover": 0.8, "mutation": 0.3}},
        }
    )
    algo = create("ga", exp.space, 1, seed=0, options=exp.algorithm["ga"])
    assert (algo.population_size, algo.options.crossover, algo.mutation_rate) == (16, 0.8, 0.3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"population": 2}, r"^algorithm\.ga\.population: input should be greater than"),
        ({"crossover": 1.5}, r"^algorithm\.ga\.crossover: input should be less than"),
        ({"eta_mutation": 0}, r"^algorithm\.ga\.eta_mutation: input should be greater than"),
        ({"populaton": 8}, r"^algorithm\.ga\.populaton: unknown field \(did you mean"),
        ({"population": 4, "tournament": 5}, r"tournament \(5\) must not exceed population"),
    ],
)
def test_options_are_validated_with_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(ExperimentError, match=message) as err:
        create("ga", cube(3), 1, seed=0, options=options)
    assert "\n" not in str(err.value)


def test_elitist_population_keeps_the_best() -> None:
    algo = create("ga", cube(3), 1, seed=0)
    points = drive(algo, trials=8 * 6, batch=8)
    losses = sorted(sphere(x) for x in points)
    kept = sorted(ind.fitness.values[0] for ind in algo._parents)
    assert kept == pytest.approx(losses[: algo.population_size])


def test_multi_objective_survivors_are_non_dominated_first() -> None:
    def two(x: np.ndarray) -> tuple[float, float]:
        return float(x[0]), float(1 - x[0] + np.sum(x[1:] ** 2))

    algo = create("ga", cube(3), 2, seed=1)
    told: list[tuple[float, float]] = []
    for _ in range(6):
        points = algo.ask(8)
        algo.tell([Observation(s.id, s.x, two(s.x)) for s in points])
        told += [two(s.x) for s in points]
    front = {tuple(v) for v in np.array(told)[front_mask(np.array(told))]}
    kept = [ind.fitness.values for ind in algo._parents]
    # NSGA-II fills the population front by front: the first front, as far as it fits.
    n_front = sum(tuple(v) in front for v in kept)
    assert n_front == min(len(front), algo.population_size)


def test_global_random_state_is_untouched() -> None:
    random.seed(123)
    np.random.seed(123)
    before, before_np = random.getstate(), np.random.get_state()
    algo = create("ga", cube(4), 2, seed=0)
    for _ in range(5):
        points = algo.ask(8)
        algo.tell([Observation(s.id, s.x, (sphere(s.x), -sphere(s.x))) for s in points])
    assert random.getstate() == before
    after_np = np.random.get_state()
    assert np.array_equal(after_np[1], before_np[1]) and after_np[2:] == before_np[2:]


def test_two_interleaved_instances_equal_each_alone() -> None:
    alone = [drive(create("ga", cube(4), 1, seed=s), trials=40, batch=8) for s in (1, 2)]
    a, b = create("ga", cube(4), 1, seed=1), create("ga", cube(4), 1, seed=2)
    got: list[list[np.ndarray]] = [[], []]
    while len(got[0]) < 40:
        for i, algo in enumerate((a, b)):
            points = algo.ask(8)
            random.random()  # a third party drawing from the global generator in between
            algo.tell([Observation(s.id, s.x, (sphere(s.x),)) for s in points])
            got[i] += [s.x for s in points]
    for expected, seen in zip(alone, got, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(expected, seen, strict=True))


def test_no_nan_reaches_deap_even_when_every_trial_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = ga_module.tools.cxSimulatedBinaryBounded

    def checked(a, b, *args):  # type: ignore[no-untyped-def]
        assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
        assert min(a + b) >= 0 and max(a + b) <= 1
        calls.append(1)
        return real(a, b, *args)

    monkeypatch.setattr(ga_module.tools, "cxSimulatedBinaryBounded", checked)
    for n_objectives in (1, 2):
        algo = create("ga", cube(3), n_objectives, seed=0)
        for generation in range(6):
            points = algo.ask(8)
            losses = [None if generation < 3 else (float("nan"),) * n_objectives] * len(points)
            algo.tell([Observation(s.id, s.x, v) for s, v in zip(points, losses, strict=True)])
            for ind in algo._parents:
                assert all(np.isfinite(v) for v in ind.fitness.values)
    assert calls


def test_never_asks_an_evaluated_or_in_flight_point() -> None:
    space = SearchSpace.from_dict(
        {
            "a": {"type": "int", "low": 0, "high": 3},
            "b": {"type": "categorical", "choices": ["x", "y", "z"]},
            "c": {"type": "int", "low": 0, "high": 4},
        }
    )  # 60 configurations: offspring collide often
    algo = create("ga", space, 1, seed=0)
    seen: set[tuple] = set()
    for _ in range(7):
        points = algo.ask(8)
        configs = [tuple(space.decode(s.x).values()) for s in points]
        assert not seen & set(configs) and len(set(configs)) == len(configs)
        seen |= set(configs)
        algo.tell([Observation(s.id, s.x, (sphere(s.x),)) for s in points])


def test_generation_barrier_waits_for_results() -> None:
    algo = create("ga", cube(2), 1, seed=0)
    first = algo.ask(5) + algo.ask(5)
    assert len(first) == 8 and algo.ask(4) == []  # the generation's results are outstanding
    algo.tell([Observation(s.id, s.x, (sphere(s.x),)) for s in first[:7]])
    assert algo.ask(4) == []
    algo.tell([Observation(first[7].id, first[7].x, None)])
    assert len(algo.ask(4)) == 4


# --- quality ------------------------------------------------------------------------------

SEEDS = range(151)


def run(algo_name: str, function: str, seed: int, dim: int | None = None) -> float:
    """Final regret (single objective) or hypervolume at (1.1, 11) (zdt1): 64 trials by 8."""
    if function == "zdt1":
        return final_hypervolume(algo_name, function, seed, (1.1, 11.0), dim=dim)
    return final_regret(algo_name, function, seed, dim=dim)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("function", "dim"), [("hartmann6", None), ("rosenbrock", 4), ("ackley", 5), ("zdt1", None)]
)
def test_ga_beats_random_search(function: str, dim: int | None) -> None:
    ga = np.median([run("ga", function, s, dim) for s in SEEDS])
    rs = np.median([run("random", function, s, dim) for s in SEEDS])
    if function == "zdt1":
        assert ga > rs, (ga, rs)  # hypervolume: higher is better
    else:
        assert ga < rs, (ga, rs)  # regret: lower is better
