"""Pareto fronts, non-dominated ranks and hypervolume (hypersearch.pareto), and the experiment's
``reference_point``.

Fronts and hypervolumes decide what a multi-objective run reports and how runs are compared, and
they come from a compiled library (moocore), so they are checked here against hand-computed
small cases and against brute-force references written independently below (O(n^2) dominance
checks, a 2-D sweep, a 3-D grid of compressed coordinates) on seeded random points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hypersearch
from hypersearch import pareto
from hypersearch.errors import ExperimentError
from hypersearch.experiment import parse_experiment

# -- brute-force references -------------------------------------------------------------------


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` dominates ``b`` (losses): no worse anywhere, strictly better somewhere."""
    return bool(np.all(a <= b) and np.any(a < b))


def brute_front(losses: np.ndarray) -> np.ndarray:
    n = len(losses)
    return np.array(
        [not any(dominates(losses[j], losses[i]) for j in range(n) if j != i) for i in range(n)],
        dtype=bool,
    )


def brute_ranks(losses: np.ndarray) -> np.ndarray:
    """Peel the brute-force front off again and again."""
    rank = np.zeros(len(losses), dtype=int)
    left = np.arange(len(losses))
    level = 1
    while len(left):
        mask = brute_front(losses[left])
        rank[left[mask]] = level
        left = left[~mask]
        level += 1
    return rank


def sweep_hv_2d(losses: np.ndarray, ref: np.ndarray) -> float:
    """Exact 2-D hypervolume: sweep by the first loss, adding a strip per new lowest second."""
    pts = [p for p in losses if p[0] < ref[0] and p[1] < ref[1]]
    pts.sort(key=lambda p: (p[0], p[1]))
    area, lowest = 0.0, ref[1]
    for x, y in pts:
        if y < lowest:
            area += (ref[0] - x) * (lowest - y)
            lowest = y
    return area


def grid_hv(losses: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume in any dimension: compress the coordinates to a grid and add up the cells
    whose lower corner is weakly dominated by at least one point (strictly inside the box)."""
    inside = np.array([p for p in losses if np.all(p < ref)])
    if len(inside) == 0:
        return 0.0
    axes = [np.unique(np.append(inside[:, k], ref[k])) for k in range(len(ref))]
    lows = np.meshgrid(*[a[:-1] for a in axes], indexing="ij")
    sizes = np.meshgrid(*[np.diff(a) for a in axes], indexing="ij")
    covered = np.zeros(lows[0].shape, dtype=bool)
    for p in inside:
        here = np.ones_like(covered)
        for k in range(len(ref)):
            here &= p[k] <= lows[k]
        covered |= here
    volume = np.ones(covered.shape)
    for size in sizes:
        volume = volume * size
    return float(volume[covered].sum())


def random_values(seed: int, n: int, m: int) -> np.ndarray:
    """Points with ties: half on a coarse integer lattice, plus a few exact duplicate rows."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, m))
    coarse = rng.random(n) < 0.5
    values[coarse] = rng.integers(-3, 4, size=(coarse.sum(), m))
    dupes = rng.integers(0, n, size=max(1, n // 8))
    values[rng.integers(0, n, size=len(dupes))] = values[dupes]
    return values


def random_losses(seed: int, n: int, m: int) -> np.ndarray:
    """Random values with random minimize/maximize directions, turned into losses."""
    rng = np.random.default_rng(1000 + seed)
    directions = [str(d) for d in rng.choice(["minimize", "maximize"], size=m)]
    return pareto.to_losses(random_values(seed, n, m), directions)


CASES = [(seed, n, m) for seed in range(3) for n in (1, 5, 17, 40) for m in (2, 3)]


# -- hand-checked cases -----------------------------------------------------------------------


def test_to_losses_negates_maximized_columns_only() -> None:
    values = np.array([[1.0, 2.0, 3.0], [-4.0, 5.0, 0.0]])
    losses = pareto.to_losses(values, ["minimize", "maximize", "minimize"])
    assert losses.tolist() == [[1.0, -2.0, 3.0], [-4.0, -5.0, 0.0]]


def test_front_mask_small_cases() -> None:
    # (3,3) is dominated by (2,2); the two copies of (2,2) are both kept.
    losses = np.array([[1, 3], [2, 2], [3, 1], [2, 2], [3, 3]], dtype=float)
    assert pareto.front_mask(losses).tolist() == [True, True, True, True, False]
    # Weak dominance: (1,3) loses to (1,2), equal in the first loss, worse in the second.
    assert pareto.front_mask(np.array([[1.0, 2.0], [1.0, 3.0]])).tolist() == [True, False]
    # One objective: every row with the minimum.
    assert pareto.front_mask(np.array([[3.0], [1.0], [2.0], [1.0]])).tolist() == [
        False,
        True,
        False,
        True,
    ]
    assert pareto.front_mask(np.zeros((0, 2))).tolist() == []


def test_ranks_small_cases() -> None:
    # front {(1,3),(2,2),(3,1),(2,2)}, then (3,3), then (4,4) behind it.
    losses = np.array([[1, 3], [2, 2], [3, 1], [2, 2], [3, 3], [4, 4]], dtype=float)
    assert pareto.ranks(losses).tolist() == [1, 1, 1, 1, 2, 3]
    # One objective: dense ranking, ties share a rank, no gaps.
    assert pareto.ranks(np.array([[5.0], [1.0], [5.0], [2.0]])).tolist() == [3, 1, 3, 2]
    assert pareto.ranks(np.zeros((0, 3))).tolist() == []


def test_reference_point_is_worst_plus_tenth_of_range() -> None:
    # worst (3, 5, 7); ranges (2, 0, 7) -> (3.2, 5 + 0.1 * 1, 7.7)
    losses = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 7.0]])
    assert pareto.reference_point(losses) == pytest.approx([3.2, 5.1, 7.7])


def test_given_reference_follows_objective_order_and_directions() -> None:
    objectives = {"a": "minimize", "b": "maximize"}
    assert pareto.given_reference(None, objectives) is None
    ref = pareto.given_reference({"b": 2.0, "a": 1.0}, objectives)
    assert ref is not None
    assert ref.tolist() == [1.0, -2.0]


def test_hypervolume_2d_hand_cases() -> None:
    ref = np.array([4.0, 4.0])
    stairs = np.array([[1, 3], [2, 2], [3, 1]], dtype=float)
    # strips: x in [1,2] height 1, [2,3] height 2, [3,4] height 3 -> 1 + 2 + 3 = 6
    assert pareto.hypervolume(stairs, ref) == pytest.approx(6.0)
    # a dominated point and a duplicate of a front point change nothing
    more = np.vstack([stairs, [[3, 3], [2, 2]]])
    assert pareto.hypervolume(more, ref) == pytest.approx(6.0)
    # one point (1,3): 3 x 1 = 3; two copies of it: still 3
    assert pareto.hypervolume(np.array([[1.0, 3.0]]), ref) == pytest.approx(3.0)
    assert pareto.hypervolume(np.array([[1.0, 3.0], [1.0, 3.0]]), ref) == pytest.approx(3.0)
    # points on or beyond the reference contribute nothing: (4,0), (0,4), (5,-1)
    edge = np.array([[1.0, 3.0], [4.0, 0.0], [0.0, 4.0], [5.0, -1.0]])
    assert pareto.hypervolume(edge, ref) == pytest.approx(3.0)
    assert pareto.hypervolume(np.array([[4.0, 0.0], [5.0, 5.0]]), ref) == 0.0
    assert pareto.hypervolume(np.zeros((0, 2)), ref) == 0.0


def test_hypervolume_derived_reference_hand_case() -> None:
    # (1,3), (3,1): worst (3,3), range (2,2) -> ref (3.2,3.2); two 2.2 x 0.2 boxes that overlap
    # in a 0.2 x 0.2 square: 0.44 + 0.44 - 0.04 = 0.84
    losses = np.array([[1.0, 3.0], [3.0, 1.0]])
    assert pareto.hypervolume(losses) == pytest.approx(0.84)


def test_hypervolume_3d_hand_cases() -> None:
    ref = np.array([3.0, 3.0, 3.0])
    # one box 2 x 2 x 2 = 8
    assert pareto.hypervolume(np.array([[1.0, 1.0, 1.0]]), ref) == pytest.approx(8.0)
    # (0,2,2): 3 x 1 x 1 = 3; (2,0,0): 1 x 3 x 3 = 9; overlap [2,3]^3 = 1 -> 3 + 9 - 1 = 11
    two = np.array([[0.0, 2.0, 2.0], [2.0, 0.0, 0.0]])
    assert pareto.hypervolume(two, ref) == pytest.approx(11.0)
    # (0,1,1), (1,0,1), (1,1,0) with ref (2,2,2): boxes of 2 each, every pairwise and the triple
    # overlap is the unit cube [1,2]^3 -> 3 * 2 - 3 * 1 + 1 = 4
    axes = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert pareto.hypervolume(axes, np.array([2.0, 2.0, 2.0])) == pytest.approx(4.0)
    # adding a dominated point and a duplicate changes nothing
    more = np.vstack([axes, [[1.5, 1.5, 1.5], [0.0, 1.0, 1.0]]])
    assert pareto.hypervolume(more, np.array([2.0, 2.0, 2.0])) == pytest.approx(4.0)


def test_brute_force_references_agree_on_hand_cases() -> None:
    """The references used below reproduce the hand-computed numbers above."""
    stairs = np.array([[1, 3], [2, 2], [3, 1], [3, 3]], dtype=float)
    assert sweep_hv_2d(stairs, np.array([4.0, 4.0])) == pytest.approx(6.0)
    assert grid_hv(stairs, np.array([4.0, 4.0])) == pytest.approx(6.0)
    two = np.array([[0.0, 2.0, 2.0], [2.0, 0.0, 0.0]])
    assert grid_hv(two, np.array([3.0, 3.0, 3.0])) == pytest.approx(11.0)
    axes = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert grid_hv(axes, np.array([2.0, 2.0, 2.0])) == pytest.approx(4.0)
    assert brute_ranks(np.array([[1, 3], [2, 2], [3, 3], [4, 4]], dtype=float)).tolist() == [
        1,
        1,
        2,
        3,
    ]


# -- brute force on random points -------------------------------------------------------------


@pytest.mark.parametrize(("seed", "n", "m"), CASES)
def test_front_mask_matches_brute_force(seed: int, n: int, m: int) -> None:
    losses = random_losses(seed, n, m)
    assert pareto.front_mask(losses).tolist() == brute_front(losses).tolist()


@pytest.mark.parametrize(("seed", "n", "m"), CASES)
def test_ranks_match_repeated_peeling(seed: int, n: int, m: int) -> None:
    losses = random_losses(seed, n, m)
    assert pareto.ranks(losses).tolist() == brute_ranks(losses).tolist()


@pytest.mark.parametrize("seed", range(3))
def test_single_objective_ranks_are_dense(seed: int) -> None:
    values = np.random.default_rng(seed).integers(0, 6, size=(25, 1)).astype(float)
    expected = [1 + len({v for v in values[:, 0] if v < x}) for x in values[:, 0]]
    assert pareto.ranks(values).tolist() == expected


@pytest.mark.parametrize(("seed", "n", "m"), CASES)
def test_hypervolume_matches_exact_reference(seed: int, n: int, m: int) -> None:
    losses = random_losses(seed, n, m)
    exact = sweep_hv_2d if m == 2 else grid_hv
    # derived reference (every point inside), then a tighter one that leaves points outside
    derived = pareto.reference_point(losses)
    tight = np.median(losses, axis=0) + 0.25
    for ref, given in ((derived, None), (derived, derived), (tight, tight)):
        expected = exact(losses, ref)
        assert pareto.hypervolume(losses, given) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    if m == 2:  # the two references agree with each other too
        assert grid_hv(losses, tight) == pytest.approx(sweep_hv_2d(losses, tight), rel=1e-9)


@pytest.mark.parametrize(("seed", "n", "m"), CASES)
def test_hypervolume_ignores_point_order(seed: int, n: int, m: int) -> None:
    losses = random_losses(seed, n, m)
    ref = pareto.reference_point(losses)
    shuffled = losses[np.random.default_rng(seed).permutation(n)]
    assert pareto.hypervolume(shuffled, ref) == pytest.approx(
        pareto.hypervolume(losses, ref), rel=1e-12
    )
    assert pareto.hypervolume(shuffled) == pytest.approx(pareto.hypervolume(losses), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_maximized_objective_equals_negated_minimized(seed: int) -> None:
    values = random_values(seed, 30, 3)
    objectives = {"a": "minimize", "b": "maximize", "c": "maximize"}
    given = {"a": 2.0, "b": -2.0, "c": -1.5}  # in each metric's own units
    losses = pareto.to_losses(values, list(objectives.values()))
    by_hand = values * np.array([1.0, -1.0, -1.0])
    ref = pareto.given_reference(given, objectives)
    ref_by_hand = np.array([2.0, 2.0, 1.5])
    assert ref is not None
    assert ref.tolist() == ref_by_hand.tolist()
    hv = pareto.hypervolume(losses, ref)
    assert hv > 0
    assert hv == pytest.approx(pareto.hypervolume(by_hand, ref_by_hand), rel=1e-12)
    assert hv == pytest.approx(grid_hv(by_hand, ref_by_hand), rel=1e-9)


# -- hypervolume_curve ------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "m"), [(s, m) for s in range(3) for m in (2, 3)])
def test_hypervolume_curve_prefixes(seed: int, m: int) -> None:
    losses = random_losses(seed, 30, m)
    rng = np.random.default_rng(seed)
    failed = rng.random(30) < 0.25
    failed[0] = True  # a failed first trial: the curve starts at 0
    losses[failed] = np.nan
    finite = np.all(np.isfinite(losses), axis=1)
    ref = np.nanmedian(losses, axis=0) + 0.5  # some successful rows fall outside
    curve = pareto.hypervolume_curve(losses, ref)
    exact = sweep_hv_2d if m == 2 else grid_hv

    assert len(curve) == len(losses)
    assert curve[0] == 0.0
    assert np.all(np.diff(curve) >= -1e-12)
    for i in range(len(losses)):
        prefix = losses[: i + 1][finite[: i + 1]]
        assert curve[i] == pytest.approx(exact(prefix, ref), rel=1e-9, abs=1e-12)
        if i and failed[i]:
            assert curve[i] == curve[i - 1]
    assert curve[-1] == pytest.approx(pareto.hypervolume(losses[finite], ref), rel=1e-12)


def test_hypervolume_curve_hand_case() -> None:
    ref = np.array([4.0, 4.0])
    nan = np.nan
    # failed -> 0; (1,3) -> 3; (5,0) outside -> 3; failed -> 3; (2,2) adds [2,4]x[2,3] = 2 -> 5;
    # (3,3) dominated -> 5; (3,1) adds [3,4]x[1,2] = 1 -> 6
    losses = np.array([[nan, nan], [1, 3], [5, 0], [nan, 1], [2, 2], [3, 3], [3, 1]])
    assert pareto.hypervolume_curve(losses, ref) == pytest.approx([0, 3, 3, 3, 5, 5, 6])


# -- the experiment's reference_point ---------------------------------------------------------


def zdt1(**fields: object) -> dict[str, object]:
    return {"name": "z", "objective": {"synthetic": {"function": "zdt1"}}, **fields}


def test_reference_point_is_accepted_and_used_as_losses() -> None:
    exp = parse_experiment(
        zdt1(
            objectives={"f1": "minimize", "f2": "maximize"},
            reference_point={"f2": -1.0, "f1": 1.5},
        )
    )
    assert exp.reference_point == {"f1": 1.5, "f2": -1.0}
    ref = pareto.given_reference(exp.reference_point, exp.objectives)
    assert ref is not None
    assert ref.tolist() == [1.5, 1.0]
    assert parse_experiment(zdt1()).reference_point is None


@pytest.mark.parametrize(
    ("fields", "start", "mentions"),
    [
        (zdt1(reference_point={"f1": 1, "f2": 2, "bogus": 3}), "reference_point.bogus: ", "f1"),
        (zdt1(reference_point={"f1": 1}), "reference_point: ", "f2"),
        (zdt1(reference_point={}), "reference_point: ", "f1"),
        (zdt1(reference_point={"f1": float("nan"), "f2": 1}), "reference_point.f1: ", "finite"),
        (zdt1(reference_point={"f1": float("inf"), "f2": 1}), "reference_point.f1: ", "finite"),
        (zdt1(reference_point={"f1": "x", "f2": 1}), "reference_point.f1: ", "number"),
        (
            {
                "name": "s",
                "objective": {"synthetic": {"function": "sphere"}},
                "reference_point": {"value": 1.0},
            },
            "reference_point: ",
            "two or more objectives",
        ),
    ],
    ids=["unknown", "missing", "empty", "nan", "inf", "not-a-number", "one-objective"],
)
def test_reference_point_errors(fields: dict[str, object], start: str, mentions: str) -> None:
    with pytest.raises(ExperimentError) as err:
        parse_experiment(fields)
    assert str(err.value).startswith(start)
    assert mentions in str(err.value)


@pytest.mark.parametrize(
    ("objectives", "reference"),
    [
        ({"f1": "minimize", "f2": "minimize"}, {"f1": 0.8, "f2": 4.0}),
        ({"f1": "minimize", "f2": "maximize"}, {"f1": 1.2, "f2": 4.0}),
    ],
    ids=["min-min", "min-max"],
)
def test_run_honours_the_given_reference_point(
    tmp_path: Path, objectives: dict[str, str], reference: dict[str, float]
) -> None:
    exp = parse_experiment(zdt1(objectives=objectives, reference_point=reference))
    result = hypersearch.run(exp, algo="random", trials=12, executor="inline", out=tmp_path)
    trials = pd.read_csv(result.run_dir / "trials.csv")
    complete = trials[trials["state"] == "COMPLETE"]
    assert len(complete) == 12
    # losses and reference by hand: maximized metrics negated
    sign = np.array([-1.0 if objectives[m] == "maximize" else 1.0 for m in ("f1", "f2")])
    losses = complete[["f1", "f2"]].to_numpy(dtype=float) * sign
    ref = np.array([reference["f1"], reference["f2"]]) * sign
    # the reference is chosen so that some points lie outside it and some inside
    inside = np.all(losses < ref, axis=1)
    assert 0 < inside.sum() < len(losses)

    hv = result.summary["hypervolume"]
    assert hv == pytest.approx(pareto.hypervolume(losses, ref), rel=1e-9)
    assert hv == pytest.approx(sweep_hv_2d(losses, ref), rel=1e-9)
    assert hv != pytest.approx(pareto.hypervolume(losses), rel=1e-3)
