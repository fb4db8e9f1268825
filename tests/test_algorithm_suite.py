"""The contract every registered algorithm must keep (like Optuna's shared sampler suite).

Parametrized over the whole registry, so a new algorithm is tested the moment it registers.
"""

from __future__ import annotations

import numpy as np
import pytest

from hypersearch.algorithms import Observation, available, create, register
from hypersearch.algorithms.base import Algorithm
from hypersearch.errors import ExperimentError, UnknownAlgorithmError
from hypersearch.experiment import parse_experiment
from hypersearch.space import SearchSpace

ALGORITHMS = sorted(available())

MIXED = SearchSpace.from_dict(
    {
        "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
        "momentum": {"type": "float", "low": 0.0, "high": 0.99},
        "layers": {"type": "int", "low": 1, "high": 6},
        "width": {"type": "int", "low": 8, "high": 512, "log": True},
        "opt": {"type": "categorical", "choices": ["sgd", "adam", "rmsprop"]},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
    }
)


def loss(space: SearchSpace, x: np.ndarray) -> float:
    """A smooth test function of the decoded config (so ints/categoricals matter)."""
    u = space.encode(space.decode(x))
    return float(np.sum((u - 0.3) ** 2))


def drive(
    algo: Algorithm, space: SearchSpace, trials: int, batch: int, fail_every: int = 0
) -> list[np.ndarray]:
    """Ask/tell in batches, as the engine does; returns every asked point."""
    asked: list[np.ndarray] = []
    while len(asked) < trials:
        points = algo.ask(min(batch, trials - len(asked)))
        assert points, "ask() returned nothing with nothing in flight"
        observations = []
        for x in points:
            failed = fail_every and (len(asked) % fail_every == 0)
            observations.append(Observation(x, None if failed else (loss(space, x),)))
            asked.append(x)
        algo.tell(observations)
    return asked


@pytest.mark.parametrize("name", ALGORITHMS)
def test_points_are_inside_the_cube_and_decode(name: str) -> None:
    points = drive(create(name, MIXED, 1, seed=0), MIXED, trials=30, batch=4)
    for x in points:
        assert x.shape == (MIXED.dim,) and np.all(np.isfinite(x))
        assert np.all((x >= 0) & (x <= 1)), x
        MIXED.decode(x)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_same_seed_same_points_other_seed_other_points(name: str) -> None:
    a = drive(create(name, MIXED, 1, seed=7), MIXED, trials=24, batch=3)
    b = drive(create(name, MIXED, 1, seed=7), MIXED, trials=24, batch=3)
    c = drive(create(name, MIXED, 1, seed=8), MIXED, trials=24, batch=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("name", ALGORITHMS)
def test_ask_never_returns_more_than_n(name: str) -> None:
    algo = create(name, MIXED, 1, seed=0)
    for n in (1, 2, 5, 1, 8):
        points = algo.ask(n)
        assert len(points) <= n
        algo.tell([Observation(x, (loss(MIXED, x),)) for x in points])
    assert algo.ask(0) == []


@pytest.mark.parametrize("name", ALGORITHMS)
def test_tell_out_of_order_and_foreign_points(name: str) -> None:
    algo = create(name, MIXED, 1, seed=0)
    points = algo.ask(6)
    algo.tell([Observation(x, (loss(MIXED, x),)) for x in reversed(points[3:])])
    rng = np.random.default_rng(1)
    foreign = [MIXED.encode(MIXED.decode(rng.random(MIXED.dim))) for _ in range(5)]
    algo.tell([Observation(x, (loss(MIXED, x),)) for x in foreign])
    algo.tell([Observation(x, (loss(MIXED, x),)) for x in points[:3]])
    assert len(drive(algo, MIXED, trials=10, batch=2)) == 10


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("pattern", ["first-failed", "30%-failed", "whole-batch-failed"])
def test_failed_trials_never_crash(name: str, pattern: str) -> None:
    algo = create(name, MIXED, 1, seed=0)
    if pattern == "first-failed":
        first = algo.ask(1)
        algo.tell([Observation(first[0], None)])
        drive(algo, MIXED, trials=15, batch=3)
    elif pattern == "30%-failed":
        drive(algo, MIXED, trials=30, batch=4, fail_every=3)
    else:
        batch = algo.ask(4)
        algo.tell([Observation(x, None) for x in batch])
        drive(algo, MIXED, trials=12, batch=4)


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("dim", [1, 20])
def test_tiny_and_wide_spaces(name: str, dim: int) -> None:
    space = SearchSpace.from_dict(
        {f"x{i}": {"type": "float", "low": -1, "high": 1} for i in range(dim)}
    )
    points = drive(create(name, space, 1, seed=0), space, trials=20, batch=4)
    assert len({x.tobytes() for x in points}) == 20


@pytest.mark.parametrize("name", ALGORITHMS)
def test_multi_objective_losses_are_accepted(name: str) -> None:
    algo = create(name, MIXED, 2, seed=0)
    for _ in range(5):
        points = algo.ask(3)
        algo.tell([Observation(x, (loss(MIXED, x), -loss(MIXED, x) + x[0])) for x in points])


@pytest.mark.parametrize("name", ALGORITHMS)
def test_resume_equals_a_fresh_algorithm_told_the_history(name: str) -> None:
    """Kill after 12 trials, rebuild by telling everything: the next points are the same."""
    original = create(name, MIXED, 1, seed=3)
    history = []
    for _ in range(4):
        points = original.ask(3)
        observations = [Observation(x, (loss(MIXED, x),)) for x in points]
        original.tell(observations)
        history += observations
    resumed = create(name, MIXED, 1, seed=3)
    resumed.tell([Observation(o.x.copy(), o.losses) for o in history])
    for x, y in zip(original.ask(3), resumed.ask(3), strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)


def test_registry_refuses_a_taken_name() -> None:
    class Impostor(Algorithm):
        name = "random"
        description = "not the real one"

        def ask(self, n: int) -> list[np.ndarray]:
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
    points = np.array(create("random", space, 1, seed=0).ask(64))
    # A scrambled Sobol net: each of the 8x8 cells of the unit square holds exactly one point.
    cells = {(int(a * 8), int(b * 8)) for a, b in points}
    assert len(cells) == 64


def test_tpe_spreads_a_parallel_batch() -> None:
    """Constant liar: a batch asked at once is not k copies of one point."""
    algo = create("tpe", MIXED, 1, seed=0, options={"n_startup_trials": 4})
    drive(algo, MIXED, trials=12, batch=4)
    batch = np.array(algo.ask(4))
    distances = [np.linalg.norm(a - b) for i, a in enumerate(batch) for b in batch[i + 1 :]]
    assert min(distances) > 1e-3


@pytest.mark.parametrize("name", ALGORITHMS)
def test_resume_with_trials_in_flight_asks_what_the_original_would(name: str) -> None:
    """Killed with a batch in flight: the rebuilt algorithm is told the finished trials and
    handed the in-flight points as pending; its next asks equal the original's and repeat none
    of the points in flight."""
    original = create(name, MIXED, 1, seed=5)
    finished = []
    for _ in range(3):
        points = original.ask(3)
        observations = [Observation(x, (loss(MIXED, x),)) for x in points]
        original.tell(observations)
        finished += observations
    in_flight = original.ask(3)
    resumed = create(name, MIXED, 1, seed=5)
    resumed.tell([Observation(o.x.copy(), o.losses) for o in finished])
    resumed.pending([MIXED.encode(MIXED.decode(x)) for x in in_flight])
    expected, got = original.ask(2), resumed.ask(2)
    for x, y in zip(expected, got, strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-12)
    flying = {MIXED.encode(MIXED.decode(x)).tobytes() for x in in_flight}
    assert not flying & {MIXED.encode(MIXED.decode(y)).tobytes() for y in got}
    resumed.tell([Observation(MIXED.encode(MIXED.decode(x)), (1.0,)) for x in in_flight])
    assert len(resumed.ask(2)) == 2
