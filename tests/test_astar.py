"""A*-style tree search: behaviour specific to astar (the shared suite covers the contract)."""

from __future__ import annotations

import numpy as np
import pytest

from hypersearch.algorithms import Observation, Suggestion, create
from hypersearch.algorithms.astar import AStar, Node
from hypersearch.errors import ExperimentError
from hypersearch.space import SearchSpace
from hypersearch.testing import final_regret
from tests.conftest import drive, sphere

SPACE = SearchSpace.from_dict({f"x{i}": {"type": "float", "low": 0, "high": 1} for i in range(4)})


def tree(algo: AStar) -> Node:
    return algo._rebuild(np.random.default_rng(0))[0]


def test_the_root_is_the_cube_centre_first() -> None:
    for seed in (0, 1):
        (s,) = create("astar", SPACE, 1, seed=seed).ask(1)
        np.testing.assert_array_equal(s.x, np.full(4, 0.5))


def test_expansion_trisects_the_longest_side_and_the_middle_keeps_the_value() -> None:
    space = SearchSpace.from_dict(
        {f"x{i}": {"type": "float", "low": 0, "high": 1} for i in range(2)}
    )
    algo = create("astar", space, 1, seed=0, options={"transform": "none"})
    (root,) = algo.ask(1)
    root_x = root.x
    algo.tell([Observation(root.id, root_x, (1.0,))])
    sa, sb = algo.ask(2)
    a, b = sa.x, sb.x
    (d,) = np.flatnonzero(a != 0.5)  # one coordinate moved: both side children of one split
    assert sorted([a[d], b[d]]) == pytest.approx([1 / 6, 5 / 6])
    assert b[1 - d] == 0.5
    algo.tell([Observation(sa.id, a, (2.0,)), Observation(sb.id, b, (3.0,))])
    root = tree(algo)
    assert root.split_dim == d and len(root.children) == 3
    middle = root.children[1]
    assert middle.done == [1.0] and np.array_equal(middle.point, root_x)
    # The middle child's longest side is now the other one: it is split next.
    algo._split(middle)
    assert middle.split_dim == 1 - d


def test_a_parallel_batch_expands_different_nodes() -> None:
    algo = create("astar", SPACE, 1, seed=0)
    drive(algo, 9, 3)
    batch = [s.x for s in algo.ask(8)]
    assert len({x.tobytes() for x in batch}) == 8
    root = tree(algo)  # the batch is in flight: each asked point is a running leaf
    parents = set()
    for x in batch:
        node = root
        while node.children:
            node = algo._child(node, x)
        assert node.running
        parents.add(id(node.parent))
    assert len(parents) >= 4  # two side children per expansion at most


def test_the_tree_rebuilt_from_observations_decides_as_the_original() -> None:
    original = create("astar", SPACE, 1, seed=4)
    history: list[Observation] = []
    rng = np.random.default_rng(0)
    for i in range(5):
        points = original.ask(4)
        if i == 2:  # a warm-start point the algorithm never asked
            points.append(Suggestion(1000, rng.random(4)))
        observations = [Observation(s.id, s.x, (sphere(s.x),)) for s in points]
        original.tell(observations)
        history += observations
    fresh = create("astar", SPACE, 1, seed=4)
    fresh.tell(history)
    for x, y in zip(original.ask(5), fresh.ask(5), strict=True):
        assert x.id == y.id
        np.testing.assert_array_equal(x.x, y.x)


def test_a_foreign_point_becomes_the_evaluation_of_the_leaf_holding_it() -> None:
    algo = create("astar", SPACE, 1, seed=0, options={"transform": "none"})
    x = np.array([0.1, 0.2, 0.3, 0.4])
    algo.tell([Observation(0, x, (5.0,))])
    root = tree(algo)
    assert not root.children and root.done == [5.0] and np.array_equal(root.point, x)
    algo.tell([Observation(1, np.full(4, 0.5), (1.0,))])  # the centre: the root is split
    root = tree(algo)
    assert root.children and sum(len(leaf.done) for leaf in root.leaves()) == 2


def test_categoricals_are_split_into_their_buckets_first() -> None:
    space = SearchSpace.from_dict(
        {
            "x": {"type": "float", "low": 0, "high": 1},
            "opt": {"type": "categorical", "choices": ["a", "b", "c", "d"]},
        }
    )
    algo = create("astar", space, 1, seed=0)
    (root,) = algo.ask(1)
    algo.tell([Observation(root.id, root.x, (1.0,))])
    points = [s.x for s in algo.ask(8)]
    # The root (opt at 0.5 = "c") keeps its bucket; the other three choices are asked.
    assert sorted(x[1] for x in points[:3]) == pytest.approx([0.125, 0.375, 0.875])
    assert all(x[0] == 0.5 for x in points[:3])
    root = tree(algo)
    assert root.split_dim == 1 and len(root.children) == 4


def test_decoded_duplicates_are_not_asked_again() -> None:
    space = SearchSpace.from_dict(
        {"n": {"type": "int", "low": 1, "high": 4}, "m": {"type": "int", "low": 1, "high": 3}}
    )
    algo = create("astar", space, 1, seed=0, options={"reevaluate": 0})
    seen = [tuple(space.decode(x).values()) for x in drive(algo, 12, 3, f=lambda x: x[0] + x[1])]
    assert len(set(seen)) == len(seen) == 12  # all 4x3 configs, each once


def test_a_noisy_objective_is_re_evaluated_and_a_deterministic_one_is_not() -> None:
    noise = np.random.default_rng(0)
    noisy = drive(create("astar", SPACE, 1, seed=0), 64, 8, f=lambda x: sphere(x) + noise.normal())
    exact = drive(create("astar", SPACE, 1, seed=0), 64, 8)
    repeats = len(noisy) - len({x.tobytes() for x in noisy})
    assert repeats >= 4
    assert len(exact) - len({x.tobytes() for x in exact}) <= 1  # the one-off noise probe


def test_the_surrogate_heuristic_runs_and_changes_the_search() -> None:
    box = drive(create("astar", SPACE, 1, seed=0), 40, 8)
    # kappa 2: a lower confidence bound wide enough to undercut some boxes' own means
    options = {"heuristic": "surrogate", "kappa": 2.0}
    surrogate = drive(create("astar", SPACE, 1, seed=0, options=options), 40, 8)
    assert len({x.tobytes() for x in surrogate}) >= 39
    assert not all(np.array_equal(a, b) for a, b in zip(box, surrogate, strict=True))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"c": -1}, r"^algorithm\.astar\.c: input should be greater than or equal to 0"),
        ({"reevaluate": 1.0}, r"^algorithm\.astar\.reevaluate: input should be less than 1"),
        ({"heuristic": "neural"}, r"^algorithm\.astar\.heuristic: input should be 'box' or"),
        ({"sweep": "dfs"}, r"^algorithm\.astar\.sweep: input should be 'best' or 'soo'"),
        ({"beam": 3}, r"^algorithm\.astar\.beam"),
    ],
)
def test_options_are_validated_with_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(ExperimentError, match=message) as err:
        create("astar", SPACE, 1, seed=0, options=options)
    assert "\n" not in str(err.value)


def test_soo_sweeps_mix_depths_in_a_batch() -> None:
    algo = create("astar", SPACE, 1, seed=0, options={"sweep": "soo"})
    drive(algo, 24, 4)
    batch = [s.x for s in algo.ask(8)]
    root = tree(algo)
    depths = set()
    for x in batch:
        node = root
        while node.children:
            node = algo._child(node, x)
        depths.add(node.depth)
    assert len(depths) >= 2


# Quality (see the module docstring of tests/test_quality.py for the method).
SEEDS = range(21)
NOISY_SEEDS = range(100)  # noisy hartmann6: the distributions overlap most


@pytest.mark.slow
@pytest.mark.parametrize(
    ("function", "dim", "noise", "seeds"),
    [
        ("hartmann6", None, 0.0, SEEDS),
        ("rosenbrock", 4, 0.0, SEEDS),
        ("ackley", 5, 0.0, SEEDS),
        ("hartmann6", None, 0.3, NOISY_SEEDS),
    ],
)
def test_astar_beats_random_search(
    function: str, dim: int | None, noise: float, seeds: range
) -> None:
    """Median final regret after 64 trials in batches of 8 (as with ``parallel: 8``).

    Measured over 100 seeds each (defaults; regret median, IQR; tpe on the same seeds):
    hartmann6 astar 0.27 (0.15-0.50) vs random 1.43 (1.01-1.73), tpe 0.40 (0.29-0.58);
    rosenbrock-4 astar 96 (68-257) vs random 1703 (800-2776), tpe 145 (70-297);
    ackley-5 astar 4e-16 (the optimum is the cube centre, astar's first point) vs random
    17.9 (16.9-18.6), tpe 10.7 (9.3-11.9);
    noisy hartmann6 (noise 0.3) astar 1.03 (0.76-1.59) vs random 1.43 (1.01-1.73),
    tpe 0.49 (0.35-0.88): tpe is better here.
    Bootstrap (200k resamples) of this median comparison: false-failure rate < 5e-6 for
    the three noiseless cases with 21 seeds; 1.4e-3 for noisy hartmann6 even with 100 seeds
    (above the 1e-4 target: the effect is small; the seeds used here pass).
    """
    rand = [final_regret("random", function, s, dim=dim, noise=noise) for s in seeds]
    astar = [final_regret("astar", function, s, dim=dim, noise=noise) for s in seeds]
    assert np.median(astar) < np.median(rand), (np.median(astar), np.median(rand))
