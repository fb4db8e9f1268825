"""The statistics of ``hypersearch compare`` (hypersearch.stats) on constructed inputs.

The comparison table turns runs over seeds into verdicts ("better", "worse", "n.s."), ranks and
targets; a sign slip or an off-by-one there would silently mislead a reader. Each quantity is
checked against a value written by hand or recomputed here with plain loops, including the
orientation of maximized scores, failed runs and the limits of the Wilcoxon test with few seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from hypersearch.stats import (
    RunScore,
    anytime_area,
    best_so_far,
    mean_ranks,
    paired_wilcoxon,
    results_table,
    smallest_p,
    trials_to_target,
    verdict,
)

NAN = float("nan")

# -- plain-loop references --------------------------------------------------------------------


def running_best(values: np.ndarray, better=lambda a, b: a < b) -> list[float]:
    """Best so far by a loop; NaN (failed) carries the previous best, NaN before any success."""
    out, best = [], NAN
    for v in values:
        if not math.isnan(v) and (math.isnan(best) or better(v, best)):
            best = v
        out.append(best)
    return out


def first_reaching(curve: np.ndarray, target: float, reached=lambda v, t: v <= t) -> float:
    for i, v in enumerate(curve):
        if not math.isnan(v) and reached(v, target):
            return float(i + 1)
    return math.inf


def average_rank(value: float, others: list[float]) -> float:
    """Rank among ``others`` (which include ``value``), 1 best, ties averaged."""
    below = sum(o < value for o in others)
    equal = sum(o == value for o in others)
    return 1 + below + (equal - 1) / 2


def run(
    algo: str,
    seed: int,
    losses: np.ndarray,
    *,
    failed: int = 0,
    best: float | None = None,
    hv: float | None = None,
    wall: float = 1.0,
) -> RunScore:
    curve = best_so_far(losses)
    if best is None and np.isfinite(curve).any():
        best = float(np.nanmin(curve))
    return RunScore(algo, seed, curve, best, hv, failed, wall, 0.002)


def row(table: pd.DataFrame, algo: str) -> pd.Series:
    return table.set_index("algo").loc[algo]


# -- curves -----------------------------------------------------------------------------------


def test_best_so_far_with_failures_in_front_and_middle() -> None:
    losses = np.array([NAN, NAN, 3.0, NAN, 5.0, 2.0, NAN, 1.0])
    curve = best_so_far(losses)
    assert np.isnan(curve[:2]).all()
    assert curve[2:].tolist() == [3.0, 3.0, 3.0, 2.0, 2.0, 1.0]
    assert len(best_so_far([])) == 0


@pytest.mark.parametrize("seed", range(4))
def test_best_so_far_matches_a_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    losses = rng.normal(size=40)
    losses[rng.random(40) < 0.3] = NAN
    np.testing.assert_array_equal(best_so_far(losses), running_best(losses))


def test_anytime_area_fills_leading_failures() -> None:
    # (10 + 10 + 4 + 2) / 4 = 6.5
    assert anytime_area(np.array([NAN, NAN, 4.0, 2.0]), fill=10.0) == pytest.approx(6.5)
    # no failure: the plain mean (3 + 2 + 2 + 1) / 4 = 2
    assert anytime_area(np.array([3.0, 2.0, 2.0, 1.0]), fill=99.0) == pytest.approx(2.0)
    assert math.isnan(anytime_area(np.zeros(0), fill=1.0))


def test_trials_to_target_is_one_based_and_inf_when_never_reached() -> None:
    curve = np.array([NAN, 5.0, 3.0, 3.0, 1.0])
    assert trials_to_target(curve, 5.0) == 2.0
    assert trials_to_target(curve, 3.0) == 3.0
    assert trials_to_target(curve, 4.0) == 3.0
    assert trials_to_target(curve, 1.0) == 5.0
    assert trials_to_target(curve, 0.5) == math.inf
    assert trials_to_target(np.array([NAN, NAN]), 100.0) == math.inf
    assert trials_to_target(np.array([2.0]), 2.0) == 1.0


# -- tests and ranks --------------------------------------------------------------------------


def test_paired_wilcoxon_edge_cases() -> None:
    assert paired_wilcoxon([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0
    assert math.isnan(paired_wilcoxon([1.0], [2.0]))
    assert math.isnan(paired_wilcoxon([], []))


def test_paired_wilcoxon_shifted_sample_agrees_with_scipy() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=10)
    b = a + 2.0 + rng.normal(0.0, 0.1, size=10)  # every pair shifted by about 2
    p = paired_wilcoxon(a, b)
    assert p < 0.01
    assert p == pytest.approx(scipy_stats.wilcoxon(a, b).pvalue, rel=1e-12)
    assert paired_wilcoxon(b, a) == pytest.approx(p, rel=1e-12)  # two-sided
    # all 10 differences of one sign, distinct magnitudes: the exact p is 2 / 2**10
    assert p == pytest.approx(2 / 2**10)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_smallest_p_is_the_most_extreme_sample(n: int) -> None:
    assert smallest_p(n) == pytest.approx(2 / 2**n)
    # every difference positive, distinct sizes: the most extreme sample there is
    assert paired_wilcoxon(np.arange(1.0, n + 1), np.zeros(n)) == pytest.approx(smallest_p(n))


def test_smallest_p_values() -> None:
    assert smallest_p(3) == 0.25
    assert smallest_p(1) == 1.0
    assert math.isnan(smallest_p(0))


def test_mean_ranks_by_hand() -> None:
    finals = pd.DataFrame(
        {"a": [1.0, 2.0, 5.0], "b": [2.0, 2.0, NAN], "c": [3.0, 1.0, 4.0]}, index=[0, 1, 2]
    )
    # seed 0: a 1, b 2, c 3; seed 1: c 1, a and b tie 2.5; seed 2 (b did not run): c 1, a 2
    ranks = mean_ranks(finals)
    assert ranks["a"] == pytest.approx((1 + 2.5 + 2) / 3)
    assert ranks["b"] == pytest.approx((2 + 2.5) / 2)
    assert ranks["c"] == pytest.approx((3 + 1 + 1) / 3)


def test_verdict() -> None:
    assert verdict(0.01, -1.0) == "better"
    assert verdict(0.01, 1.0) == "worse"
    assert verdict(0.2, -1.0) == "n.s."
    assert verdict(0.05, -1.0) == "n.s."  # alpha itself is not significant
    assert verdict(0.01, 0.0) == "n.s."
    assert verdict(NAN, -1.0) == "n/a"
    assert verdict(0.07, -1.0, alpha=0.1) == "better"


# -- results_table ----------------------------------------------------------------------------

SEEDS = range(10)


def comparison(seeds=SEEDS, trials: int = 20) -> list[RunScore]:
    """random ~ N(10,1); good ~ N(5,1) (clearly better); same = random's curves; worse ~ N(15,1)."""
    rng = np.random.default_rng(42)
    runs = []
    for seed in seeds:
        base = rng.normal(10.0, 1.0, trials)
        base[rng.random(trials) < 0.2] = NAN  # some failed trials
        runs += [
            run("random", seed, base, failed=int(np.isnan(base).sum())),
            run("good", seed, rng.normal(5.0, 1.0, trials), failed=seed % 3),
            run("same", seed, base.copy(), failed=int(np.isnan(base).sum())),
            run("worse", seed, rng.normal(15.0, 1.0, trials), wall=2.0 + seed),
        ]
    return runs


def finals_of(runs: list[RunScore], algo: str) -> list[float]:
    return [float(np.asarray(running_best(r.curve))[-1]) for r in runs if r.algo == algo]


def test_results_table_verdicts_and_order() -> None:
    runs = comparison()
    res = results_table(runs, score_name="value", score_sign=1.0, primary_sign=1.0)
    table = res.table

    assert table["algo"].tolist()[0] == "good"
    assert table["algo"].tolist()[-1] == "worse"
    assert sorted(table["algo"]) == ["good", "random", "same", "worse"]
    assert res.notes["best_algo"] == "good"
    assert res.notes["baseline"] == "random"
    assert res.notes["seeds"] == 10
    assert res.notes["score_direction"] == "minimize"

    good, rnd, same, worse = (row(table, a) for a in ("good", "random", "same", "worse"))
    assert good["vs_random"] == "better"
    assert good["p_vs_random"] < 0.05
    expected_p = scipy_stats.wilcoxon(finals_of(runs, "good"), finals_of(runs, "random")).pvalue
    assert good["p_vs_random"] == pytest.approx(expected_p, rel=1e-12)
    assert good["vs_best"] == "best"
    assert rnd["vs_random"] == "baseline"
    assert rnd["vs_best"] == "worse"
    assert same["p_vs_random"] == 1.0
    assert same["vs_random"] == "n.s."
    assert worse["vs_random"] == "worse"
    assert worse["p_vs_random"] < 0.05
    assert all(r["runs"] == 10 for r in (good, rnd, same, worse))


def test_results_table_mean_rank_by_hand() -> None:
    runs = comparison()
    table = results_table(runs, score_name="value", score_sign=1.0, primary_sign=1.0).table
    algos = ["random", "good", "same", "worse"]
    finals = {a: finals_of(runs, a) for a in algos}
    for algo in algos:
        per_seed = [average_rank(finals[algo][i], [finals[o][i] for o in algos]) for i in range(10)]
        assert row(table, algo)["mean_rank"] == pytest.approx(np.mean(per_seed))
    # good is first on every seed, worse last, random and same share 2nd/3rd: 1, 2.5, 2.5, 4
    assert [row(table, a)["mean_rank"] for a in algos] == pytest.approx([2.5, 1.0, 2.5, 4.0])


def test_results_table_default_target_is_median_final_of_random() -> None:
    runs = comparison()
    res = results_table(runs, score_name="value", score_sign=1.0, primary_sign=1.0)
    target = float(np.median(finals_of(runs, "random")))
    assert res.notes["target"] == pytest.approx(target)
    assert "random" in res.notes["target_source"]
    for algo in ("random", "good", "same", "worse"):
        reach = [first_reaching(r.curve, target) for r in runs if r.algo == algo]
        got = row(res.table, algo)
        assert got["trials_to_target"] == pytest.approx(np.median(reach))
        assert got["reached_target"] == f"{sum(math.isfinite(x) for x in reach)}/10"
    assert row(res.table, "random")["reached_target"] == "5/10"  # half reach their median
    assert row(res.table, "worse")["reached_target"] == "0/10"
    assert row(res.table, "worse")["trials_to_target"] == math.inf


def test_results_table_given_target() -> None:
    runs = comparison()
    res = results_table(runs, score_name="value", score_sign=1.0, primary_sign=1.0, target=8.5)
    assert res.notes["target"] == 8.5
    assert res.notes["target_source"] == "given"
    for algo in ("random", "good", "worse"):
        reach = [first_reaching(r.curve, 8.5) for r in runs if r.algo == algo]
        assert row(res.table, algo)["trials_to_target"] == pytest.approx(np.median(reach))


def test_results_table_sums_failures_and_keeps_units() -> None:
    runs = comparison()
    table = results_table(runs, score_name="value", score_sign=1.0, primary_sign=1.0).table
    for algo in ("random", "good", "worse"):
        mine = [r for r in runs if r.algo == algo]
        got = row(table, algo)
        assert got["failed"] == sum(r.failed for r in mine)
        assert got["wall_s"] == pytest.approx(np.median([r.wall_seconds for r in mine]))
        assert got["overhead_ms_per_trial"] == pytest.approx(2.0)
        assert got["best_median"] == pytest.approx(np.median([r.best for r in mine]))
    assert row(table, "good")["failed"] == sum(s % 3 for s in SEEDS)
    assert row(table, "random")["failed"] > 0
    # auc: the mean over runs of the mean curve, leading failures counted as the worst score
    fill = max(np.nanmax(r.curve) for r in runs)
    mine = [r for r in runs if r.algo == "random"]
    areas = [np.mean([fill if math.isnan(v) else v for v in r.curve]) for r in mine]
    assert row(table, "random")["auc"] == pytest.approx(np.mean(areas))


def test_results_table_maximized_score_flips_orientation() -> None:
    """Scores in their own units where higher is better; the curves hold them negated."""
    rng = np.random.default_rng(3)
    runs, own = [], {}
    for seed in SEEDS:
        for algo, mean in (("random", 0.5), ("high", 0.9), ("low", 0.1)):
            scores = rng.normal(mean, 0.05, 15)
            own.setdefault(algo, []).append(scores)
            curve = best_so_far(-scores)
            runs.append(RunScore(algo, seed, curve, float(scores.max()), None, 0, 1.0, 0.0))
    res = results_table(runs, score_name="accuracy", score_sign=-1.0, primary_sign=-1.0, target=0.7)
    table = res.table
    assert table["algo"].tolist() == ["high", "random", "low"]
    assert res.notes["score_direction"] == "maximize"
    assert res.notes["primary_direction"] == "maximize"
    assert row(table, "high")["vs_random"] == "better"
    assert row(table, "low")["vs_random"] == "worse"
    assert row(table, "high")["vs_best"] == "best"
    assert res.notes["target"] == pytest.approx(0.7)
    for algo, series in own.items():
        got = row(table, algo)
        # auc in the score's own units: mean running maximum
        maxima = [running_best(s, better=lambda a, b: a > b) for s in series]
        assert got["auc"] == pytest.approx(np.mean([np.mean(m) for m in maxima]))
        reach = [first_reaching(np.array(m), 0.7, reached=lambda v, t: v >= t) for m in maxima]
        assert got["trials_to_target"] == pytest.approx(np.median(reach))
        assert got["best_median"] == pytest.approx(np.median([s.max() for s in series]))
    assert row(table, "high")["trials_to_target"] == 1.0
    assert row(table, "low")["trials_to_target"] == math.inf


def test_results_table_maximized_default_target_in_own_units() -> None:
    rng = np.random.default_rng(5)
    runs, finals = [], []
    for seed in range(5):
        scores = rng.normal(0.5, 0.1, 10)
        finals.append(scores.max())
        runs.append(RunScore("random", seed, best_so_far(-scores), None, None, 0, 1.0, 0.0))
    res = results_table(runs, score_name="hv", score_sign=-1.0, primary_sign=1.0)
    assert res.notes["target"] == pytest.approx(np.median(finals))


def test_results_table_multi_objective_columns() -> None:
    runs = []
    hvs = {"random": [0.2, 0.4, 0.3, 0.1], "nsga": [0.6, 0.5, 0.9, 0.7]}
    for algo, values in hvs.items():
        for seed, hv in enumerate(values):
            runs.append(RunScore(algo, seed, np.array([-hv / 2, -hv]), 1.0, hv, 0, 1.0, 0.0))
    table = results_table(
        runs, score_name="hypervolume", score_sign=-1.0, primary_sign=1.0, multi=True
    ).table
    for algo, values in hvs.items():
        got = row(table, algo)
        assert got["hypervolume_median"] == pytest.approx(np.median(values))
        assert got["hypervolume_q1"] == pytest.approx(np.percentile(values, 25))
        assert got["hypervolume_q3"] == pytest.approx(np.percentile(values, 75))
    assert table["algo"].tolist() == ["nsga", "random"]
    single = results_table(runs, score_name="hypervolume", score_sign=-1.0, primary_sign=1.0)
    assert not any(c.startswith("hypervolume") for c in single.table.columns)


def test_results_table_three_seeds_cannot_be_significant() -> None:
    runs = comparison(seeds=range(3))
    res = results_table(runs, score_name="value", score_sign=1.0, primary_sign=1.0)
    assert res.notes["seeds"] == 3
    assert res.notes["smallest_possible_p"] == 0.25
    table = res.table
    assert row(table, "good")["p_vs_random"] == pytest.approx(0.25)  # as extreme as it gets
    for algo in ("good", "same", "worse"):
        assert row(table, algo)["vs_random"] == "n.s."
    for algo in ("random", "same", "worse"):
        assert row(table, algo)["vs_best"] == "n.s."
    assert table["algo"].tolist()[0] == "good"  # still ranked first


def test_results_table_without_baseline() -> None:
    runs = [r for r in comparison(seeds=range(4)) if r.algo != "random"]
    res = results_table(runs, score_name="value", score_sign=1.0, primary_sign=1.0)
    assert res.notes["baseline"] is None
    assert "all runs" in res.notes["target_source"]
    assert res.notes["target"] == pytest.approx(
        np.median([running_best(r.curve)[-1] for r in runs])
    )
    assert set(res.table["vs_random"]) == {"n/a"}


def test_results_table_empty() -> None:
    res = results_table([], score_name="value", score_sign=1.0, primary_sign=1.0)
    assert len(res.table) == 0
    assert res.notes["best_algo"] is None
    assert res.notes["seeds"] == 0
    assert res.notes["target"] is None


def test_results_table_run_without_success_ranks_last_for_its_seed() -> None:
    rng = np.random.default_rng(11)
    runs = []
    for seed in range(3):
        runs.append(run("random", seed, rng.normal(10.0, 1.0, 8)))
        runs.append(run("tpe", seed, rng.normal(8.0, 1.0, 8)))
        # broken: best of all on seeds 1 and 2, but no successful trial at all on seed 0
        broken = np.full(8, NAN) if seed == 0 else rng.normal(2.0, 0.5, 8)
        runs.append(run("broken", seed, broken, failed=8 if seed == 0 else 0))
    table = results_table(runs, score_name="value", score_sign=1.0, primary_sign=1.0).table
    # seed 0: tpe 1, random 2, broken 3; seeds 1, 2: broken 1, tpe 2, random 3
    assert row(table, "broken")["mean_rank"] == pytest.approx((3 + 1 + 1) / 3)
    assert row(table, "tpe")["mean_rank"] == pytest.approx((1 + 2 + 2) / 3)
    assert row(table, "random")["mean_rank"] == pytest.approx((2 + 3 + 3) / 3)
    assert row(table, "broken")["failed"] == 8
    assert row(table, "broken")["reached_target"] == "2/3"


def test_results_table_algorithm_that_never_succeeds_is_last() -> None:
    rng = np.random.default_rng(12)
    runs = []
    for seed in range(4):
        runs.append(run("random", seed, rng.normal(10.0, 1.0, 8)))
        runs.append(run("dead", seed, np.full(8, NAN), failed=8))
    res = results_table(runs, score_name="value", score_sign=1.0, primary_sign=1.0)
    assert res.table["algo"].tolist() == ["random", "dead"]
    dead = row(res.table, "dead")
    assert dead["mean_rank"] == 2.0
    assert dead["reached_target"] == "0/4"
    assert math.isnan(dead["best_median"])
    assert dead["failed"] == 32


def test_run_without_success_ranks_below_a_run_with_the_worst_success() -> None:
    runs = [
        # random's only success is the worst score seen anywhere (5.0)
        RunScore("random", 0, best_so_far([5.0, NAN, NAN]), 5.0, None, 2, 1.0, 0.0),
        RunScore("tpe", 0, best_so_far([4.0, 3.0, 1.0]), 1.0, None, 0, 1.0, 0.0),
        RunScore("dead", 0, best_so_far([NAN, NAN, NAN]), None, None, 3, 1.0, 0.0),
    ]
    table = results_table(runs, score_name="value", score_sign=1.0, primary_sign=1.0).table
    assert row(table, "dead")["mean_rank"] == 3.0
    assert row(table, "random")["mean_rank"] == 2.0
