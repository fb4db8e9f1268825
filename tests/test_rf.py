"""Random-forest (SMAC-style) optimizer: behaviour specific to rf (the shared suite covers the
common contract: bounds, determinism, resume, failures)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hypersearch.algorithms import Observation, Suggestion, create
from hypersearch.algorithms.rf import RandomForest
from hypersearch.algorithms.surrogate import (
    FAILED_MARGIN,
    VARIANCE_FLOOR,
    fit_forest,
    impute_failed,
    predict_mean_var,
)
from hypersearch.errors import ExperimentError
from hypersearch.objectives.synthetic import zdt1
from hypersearch.space import SearchSpace
from hypersearch.testing import final_regret

SPACE = SearchSpace.from_dict({f"x{i}": {"type": "float", "low": 0, "high": 1} for i in range(4)})


def sphere(x: np.ndarray) -> float:
    return float(np.sum((x - 0.3) ** 2))


def drive(algo: RandomForest, trials: int, batch: int) -> list[np.ndarray]:
    asked: list[np.ndarray] = []
    while len(asked) < trials:
        points = algo.ask(min(batch, trials - len(asked)))
        assert points
        algo.tell([Observation(s.id, s.x, (sphere(s.x),)) for s in points])
        asked += [s.x for s in points]
    return asked


def test_defaults_tie_the_initial_design_to_the_dimension() -> None:
    plane = SearchSpace.from_dict({f"x{i}": {"type": "float", "low": 0, "high": 1} for i in "ab"})
    assert create("rf", plane, 1, seed=0).initial == 2 * 2 + 2
    algo = create("rf", SPACE, 1, seed=0)
    assert algo.initial == 8  # capped: a quarter of a 32-trial run
    assert algo.options.random_fraction == 0.1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"initial": -1}, r"^algorithm\.rf\.initial: input should be greater than or equal to 0"),
        ({"random_fraction": 1.5}, r"^algorithm\.rf\.random_fraction: input should be less"),
        ({"n_estimators": 1}, r"^algorithm\.rf\.n_estimators: input should be greater"),
        ({"n_candidate": 10}, r"^algorithm\.rf\.n_candidate"),
    ],
)
def test_options_are_validated_with_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(ExperimentError, match=message) as err:
        create("rf", SPACE, 1, seed=0, options=options)
    assert "\n" not in str(err.value)


def test_initial_design_is_sobol_then_the_model_takes_over() -> None:
    algo = create("rf", SPACE, 1, seed=0, options={"random_fraction": 0.0})
    points = drive(algo, 40, 4)
    np.testing.assert_allclose(np.array(points[:8]), algo._sobol, rtol=0, atol=1e-12)
    initial = np.array([sphere(x) for x in points[:8]])
    model = np.array([sphere(x) for x in points[-10:]])
    assert np.median(model) < 0.5 * np.median(initial), (np.median(model), np.median(initial))


def test_a_batch_is_distinct_and_spread_out() -> None:
    algo = create("rf", SPACE, 1, seed=0, options={"random_fraction": 0.0})
    drive(algo, 24, 4)
    batch = np.array([s.x for s in algo.ask(8)])
    distances = [np.linalg.norm(a - b) for i, a in enumerate(batch) for b in batch[i + 1 :]]
    assert min(distances) > 1e-3, min(distances)


def test_points_in_flight_are_never_asked_again() -> None:
    """Nine configurations in all: asked one by one with nothing told, each comes once."""
    space = SearchSpace.from_dict(
        {
            "a": {"type": "categorical", "choices": ["p", "q", "r"]},
            "b": {"type": "int", "low": 1, "high": 3},
        }
    )
    algo = create("rf", space, 1, seed=0, options={"initial": 2, "random_fraction": 0.0})
    first = [s.x for s in algo.ask(4)]
    algo.tell([Observation(i, x, (float(x.sum()),)) for i, x in enumerate(first[:2])])
    resumed = Suggestion(99, space.encode({"a": "r", "b": 3}))  # a resumed run's trial
    algo.pending([resumed])
    later = [algo.ask(1)[0].x for _ in range(6)]
    keys = {x.tobytes() for x in first + later} | {space.encode({"a": "r", "b": 3}).tobytes()}
    assert len(keys) == 9


def test_failed_trials_are_imputed_just_above_the_worst() -> None:
    costs = np.array([1.0, 3.0, np.nan, 2.0, np.nan])
    failed = np.isnan(costs)
    out = impute_failed(costs, failed)
    assert np.all(np.isfinite(out))
    assert np.all(out[failed] > 3.0) and np.all(out[failed] <= 3.0 + FAILED_MARGIN * 2.0)
    np.testing.assert_array_equal(out[~failed], costs[~failed])
    assert np.all(impute_failed(costs, np.ones(5, bool)) == 0.0)  # nothing succeeded


def test_huge_and_failed_losses_keep_the_model_finite() -> None:
    algo = create("rf", SPACE, 1, seed=0, options={"initial": 4, "random_fraction": 0.0})
    points = algo.ask(8)
    bad = [None, (1e300,), (float("nan"),), (1.0,), (2.0,), None, (float("inf"),), (0.5,)]
    algo.tell([Observation(s.id, s.x, b) for s, b in zip(points, bad, strict=True)])
    costs, failed = algo._costs(np.random.default_rng(0))
    assert failed.sum() == 4
    assert np.all(np.isfinite(impute_failed(costs, failed)))
    assert all(np.all(np.isfinite(s.x)) for s in algo.ask(4))


def test_multi_objective_draws_new_weights_and_spreads_along_the_front() -> None:
    space = SearchSpace.from_dict(
        {f"x{i}": {"type": "float", "low": 0, "high": 1} for i in range(6)}
    )
    algo = create("rf", space, 2, seed=0)
    points: list[np.ndarray] = []
    while len(points) < 64:
        batch = algo.ask(8)
        algo.tell([Observation(s.id, s.x, zdt1(s.x)) for s in batch])
        points += [s.x for s in batch]
    orders = {tuple(np.argsort(algo._costs(np.random.default_rng(s))[0])[:5]) for s in range(10)}
    assert len(orders) > 1  # different weights, different best points
    late = np.array([x[0] for x in points[32:]])  # f1 = x0: where on the front
    assert late.min() < 0.3 and late.max() > 0.7


def test_the_forest_predicts_its_targets_with_positive_variance() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((200, 3))
    y = np.sin(6 * X[:, 0]) + X[:, 1] ** 2
    model = fit_forest(X, y, seed=1)
    mean, var = predict_mean_var(model, X)
    assert np.all(var > 0)
    assert np.mean(np.abs(mean - y)) < 0.25 * np.std(y)
    assert np.corrcoef(mean, y)[0, 1] > 0.95
    far_mean, _ = predict_mean_var(model, rng.random((200, 3)))
    again, _ = predict_mean_var(fit_forest(X, y, seed=1), X)
    np.testing.assert_array_equal(mean, again)  # seeded: reproducible
    assert np.all(np.isfinite(far_mean))


def test_prediction_is_the_trees_own() -> None:
    """``predict_mean_var`` skips the trees' input checks; the numbers must not change."""
    rng = np.random.default_rng(0)
    X, Q = rng.random((64, 4)), rng.random((500, 4))
    model = fit_forest(X, np.sin(6 * X[:, 0]), seed=2)
    mean, var = predict_mean_var(model, Q)
    per_tree = np.stack([tree.predict(Q) for tree in model.estimators_])
    np.testing.assert_array_equal(mean, per_tree.mean(axis=0))
    np.testing.assert_array_equal(var, np.maximum(per_tree.var(axis=0), VARIANCE_FLOOR))


def test_ask_time_with_many_observations_is_measured() -> None:
    """Not asserted (tests never assert times): printed with ``-s`` for the record."""
    space = SearchSpace.from_dict(
        {f"x{i}": {"type": "float", "low": 0, "high": 1} for i in range(6)}
    )
    rng = np.random.default_rng(0)
    for n in (100, 500):
        algo = create("rf", space, 1, seed=0, options={"random_fraction": 0.0})
        algo.tell([Observation(i, x, (sphere(x),)) for i, x in enumerate(rng.random((n, 6)))])
        start = time.perf_counter()
        points = algo.ask(1)
        print(f"rf ask(1) after {n} observations: {time.perf_counter() - start:.3f} s")
        assert len(points) == 1


# Quality (see tests/test_pso.py for the method): median final regret after 64 trials in
# batches of 8, rf on a few seeds against random search's median over many. A random run takes
# ~2 ms and an rf run ~0.8 s, so random's median is taken near exactly and the chance is all in
# rf's: an odd number of rf seeds fails only if most of its runs lose to random's median.
QUALITY_SEEDS = {
    "rosenbrock": range(7),
    "ackley": range(9),
    "hartmann6-noisy": range(11),
}
RANDOM_SEEDS = range(200)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "function", "dim", "noise"),
    [
        ("rosenbrock", "rosenbrock", 4, 0.0),
        ("ackley", "ackley", 5, 0.0),
        ("hartmann6-noisy", "hartmann6", None, 0.3),
    ],
)
def test_rf_beats_random_search(case: str, function: str, dim: int | None, noise: float) -> None:
    """Median final regret after 64 trials in batches of 8 (noisy: told value + N(0, 0.3^2)).

    Measured (defaults: forest on ranks, 8 Sobol points, 10% random; rf over 60 seeds, random
    over 400; regret median, IQR): hartmann6 rf 0.63 (0.38-0.96) vs random 1.48 (1.09-1.83);
    rosenbrock-4 rf 115 (59-322) vs random 2931 (976-5612); ackley-5 rf 13.4 (10.4-15.8) vs
    random 17.8 (16.7-18.6); noisy hartmann6 rf 0.60 (0.43-0.92) vs random 1.48 (random never
    sees the noise). Bootstrap (100k resamples of rf's seeds and of 200 of random's) of this
    median comparison: false-failure rate < 1e-5 (rosenbrock, 7 seeds), 3e-5 (ackley, 9), 9e-5
    (noisy hartmann6, 11): about 1.3e-4 per run in all. Noiseless hartmann6 (6e-5 at 11 seeds)
    is left to the noisy case, which is harder, to keep the suite short.
    """
    seeds = QUALITY_SEEDS[case]
    rand = [final_regret("random", function, s, 64, 8, dim, noise) for s in RANDOM_SEEDS]
    rf = [final_regret("rf", function, s, 64, 8, dim, noise) for s in seeds]
    assert np.median(rf) < np.median(rand), (np.median(rf), np.median(rand))


def test_screen_learns_from_successes_only_and_scalarizes_several_objectives() -> None:
    """``screen``: None until two trials succeeded (non-finite counts as failed); then a scorer
    that prefers the region of the good losses; several objectives go through ParEGO."""
    from hypersearch.algorithms.surrogate import screen, sobol_design

    X = sobol_design(2, 16, seed=0)
    assert screen(X[:3], [None, (float("nan"),), (1.0,)], seed=0) is None
    losses = [(float(np.sum((x - 0.2) ** 2)),) for x in X]
    score = screen(X, losses, seed=0)
    assert score is not None
    near, far = score(np.array([[0.2, 0.2]])), score(np.array([[0.95, 0.95]]))
    assert near[0] > far[0]
    two = [(v[0], 1.0 - v[0]) for v in losses]
    assert screen(X, [*two[:-1], None], seed=1) is not None


def test_sobol_design_is_balanced_and_seeded() -> None:
    from hypersearch.algorithms.surrogate import sobol_design

    points = sobol_design(3, 8, seed=4)
    assert points.shape == (8, 3) and sobol_design(3, 0, seed=4).shape == (0, 3)
    for axis in range(3):  # a scrambled Sobol net: one point in each eighth of every axis
        assert sorted(np.floor(points[:, axis] * 8).astype(int)) == list(range(8))
    np.testing.assert_array_equal(points, sobol_design(3, 8, seed=4))
    assert not np.array_equal(points, sobol_design(3, 8, seed=5))
