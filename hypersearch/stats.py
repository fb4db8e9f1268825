"""The statistics of a comparison: anytime curves, ranks and paired tests over seeds.

Everything here works on *scores* oriented as losses (lower is better): the best primary
objective so far for one objective (maximized metrics negated), minus the hypervolume so far for
several. ``results_table`` turns one :class:`RunScore` per algorithm × seed into the table of
``hypersearch compare``, in each column's natural units.

Significance is SciPy's paired Wilcoxon signed-rank test over the seeds both algorithms ran
(two-sided). It has little power with few seeds: with n pairs the smallest possible p-value is
2 / 2**n (0.25 for 3 seeds), so "n.s." with 3 seeds says "not enough seeds", not "equal".
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

ALPHA = 0.05


@dataclass(frozen=True)
class RunScore:
    """What the comparison needs from one finished run."""

    algo: str
    seed: int
    curve: np.ndarray  # best score so far after trial 1, 2, … (NaN before the first success)
    best: float | None  # best value of the primary objective, in its own units
    hypervolume: float | None  # several objectives only
    failed: int
    wall_seconds: float
    overhead_per_trial: float  # engine seconds per trial

    @property
    def final(self) -> float:
        finite = self.curve[np.isfinite(self.curve)]
        return float(finite[-1]) if len(finite) else float("nan")


def best_so_far(losses: Sequence[float] | np.ndarray) -> np.ndarray:
    """Running minimum; failed trials (NaN) carry the previous best forward."""
    values = np.asarray(losses, dtype=float)
    return np.fmin.accumulate(values) if len(values) else values


def anytime_area(curve: np.ndarray, fill: float) -> float:
    """Area under the best-so-far curve per trial (its mean); before the first success the
    curve counts as ``fill`` (the worst score seen), so late starters pay for it."""
    if len(curve) == 0:
        return float("nan")
    return float(np.mean(np.where(np.isfinite(curve), curve, fill)))


def trials_to_target(curve: np.ndarray, target: float) -> float:
    """Trials (1-based) until the best so far reaches ``target``; inf if it never does."""
    reached = np.flatnonzero(np.nan_to_num(curve, nan=np.inf) <= target)
    return float(reached[0] + 1) if len(reached) else float("inf")


def paired_wilcoxon(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of SciPy's Wilcoxon signed-rank test on paired samples; 1.0 when every
    pair is equal, NaN with fewer than two pairs."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2:
        return float("nan")
    if np.all(x == y):
        return 1.0
    from scipy import stats as scipy_stats  # here: ~0.5 s to import, paid by every CLI start

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(scipy_stats.wilcoxon(x, y).pvalue)


def smallest_p(pairs: int) -> float:
    """The smallest two-sided p-value the exact signed-rank test can give for ``pairs`` pairs."""
    return min(1.0, 2.0 / 2**pairs) if pairs else float("nan")


def mean_ranks(finals: pd.DataFrame) -> pd.Series:
    """Mean over seeds (rows) of each algorithm's (column's) rank, 1 best, ties averaged; a seed
    ranks only the algorithms that ran it."""
    return finals.rank(axis=1, method="average").mean(axis=0)


def verdict(p: float, median_difference: float, alpha: float = ALPHA) -> str:
    """'better' or 'worse' (significant at ``alpha``), 'n.s.', or 'n/a' (no test possible)."""
    if not np.isfinite(p):
        return "n/a"
    if p >= alpha or median_difference == 0:
        return "n.s."
    return "better" if median_difference < 0 else "worse"


@dataclass(frozen=True)
class Results:
    """The comparison table and what a reader needs to interpret it."""

    table: pd.DataFrame  # one row per algorithm
    notes: dict[str, Any]


def results_table(
    runs: Sequence[RunScore],
    *,
    score_name: str,
    score_sign: float,
    primary_sign: float,
    target: float | None = None,
    baseline: str = "random",
    alpha: float = ALPHA,
    multi: bool = False,
) -> Results:
    """One row per algorithm from its runs over seeds.

    ``score_sign`` turns a loss-oriented score back into its own units (+1 minimized, -1
    maximized or hypervolume); ``primary_sign`` does the same for the primary objective (its
    ``best`` values are given in its own units already, and the sign only orders them).
    ``target`` is in the score's own units; without one, the median final score of
    ``baseline`` (or, without that algorithm, of every run) is used.
    """
    algos = list(dict.fromkeys(run.algo for run in runs))
    finals, fill = _finals(runs, algos)
    if target is None:
        target_loss, target_source = _default_target(finals, baseline, score_name)
    else:
        target_loss, target_source = float(target) * score_sign, "given"
    ranks = mean_ranks(finals)
    order = sorted(algos, key=lambda a: (ranks.get(a, np.inf), np.nanmedian(finals[a])))
    best_algo = order[0] if order else None
    rows = []
    for algo in algos:
        mine = [run for run in runs if run.algo == algo]
        row = {
            "algo": algo,
            "runs": len(mine),
            **_best_columns(mine),
            **_anytime_columns(mine, fill, target_loss, score_sign),
            **(_hypervolume_columns(mine) if multi else {}),
            **_cost_columns(mine),
            "mean_rank": float(ranks.get(algo, np.nan)),
            **_versus_columns(finals, algo, baseline, best_algo),
        }
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table = table.set_index("algo").loc[order].reset_index()
    pairs = int(finals.notna().all(axis=1).sum())
    notes = {
        "score": score_name,
        "score_direction": "minimize" if score_sign > 0 else "maximize",
        "target": target_loss * score_sign if np.isfinite(target_loss) else None,
        "target_source": target_source,
        "alpha": alpha,
        "seeds": pairs,
        "smallest_possible_p": smallest_p(pairs),
        "best_algo": best_algo,
        "baseline": baseline if baseline in algos else None,
        "primary_direction": "minimize" if primary_sign > 0 else "maximize",
    }
    return Results(table, notes)


def _finals(runs: Sequence[RunScore], algos: list[str]) -> tuple[pd.DataFrame, float]:
    """Final scores (seeds × algorithms), and the worst score seen anywhere (the ``fill`` of
    ``anytime_area``). A run without a successful trial ranks just below that worst success."""
    seen = np.concatenate([run.curve for run in runs]) if runs else np.zeros(0)
    seen = seen[np.isfinite(seen)]
    fill = float(seen.max()) if len(seen) else float("nan")
    no_success = float(np.nextafter(fill, np.inf)) if np.isfinite(fill) else 0.0
    finals = pd.DataFrame(
        [{"seed": r.seed, "algo": r.algo, "final": _or(r.final, no_success)} for r in runs],
        columns=["seed", "algo", "final"],
    )
    finals = finals.pivot(index="seed", columns="algo", values="final").reindex(columns=algos)
    return finals, fill


def _default_target(finals: pd.DataFrame, baseline: str, score_name: str) -> tuple[float, str]:
    """The median final score (as a loss) of ``baseline``, or of every run without it; and
    where it came from, in words."""
    if baseline in finals:
        pool, source = finals[baseline], baseline
    else:
        pool, source = finals.stack(), "all runs"
    target = float(np.nanmedian(pool)) if pool.notna().any() else float("nan")
    return target, f"median final {score_name} of {source}"


def _versus_columns(
    finals: pd.DataFrame, algo: str, baseline: str, best_algo: str | None
) -> dict[str, Any]:
    """Paired tests of ``algo`` against the baseline and against the best algorithm."""
    columns: dict[str, Any] = {}
    for label, other in (("random", baseline), ("best", best_algo)):
        p, diff = _paired(finals, algo, other)
        columns[f"p_vs_{label}"] = p
        columns[f"vs_{label}"] = (
            ("best" if label == "best" else "baseline") if algo == other else verdict(p, diff)
        )
    return columns


def _best_columns(mine: list[RunScore]) -> dict[str, float]:
    """The best primary value over seeds: median, quartiles, mean and std (its own units)."""
    best = np.array([np.nan if r.best is None else r.best for r in mine], dtype=float)
    return {
        "best_median": _nan(np.nanmedian, best),
        "best_q1": _nan(lambda v: np.nanpercentile(v, 25), best),
        "best_q3": _nan(lambda v: np.nanpercentile(v, 75), best),
        "best_mean": _nan(np.nanmean, best),
        "best_std": _nan(lambda v: np.nanstd(v, ddof=1) if np.isfinite(v).sum() > 1 else 0.0, best),
    }


def _anytime_columns(
    mine: list[RunScore], fill: float, target_loss: float, score_sign: float
) -> dict[str, Any]:
    """Area under the best-so-far curves (score units) and the trials each took to target."""
    reach = np.array([trials_to_target(r.curve, target_loss) for r in mine])
    return {
        "auc": score_sign * float(np.mean([anytime_area(r.curve, fill) for r in mine])),
        "trials_to_target": float(np.median(reach)) if len(reach) else float("nan"),
        "reached_target": f"{int(np.isfinite(reach).sum())}/{len(mine)}",
    }


def _hypervolume_columns(mine: list[RunScore]) -> dict[str, float]:
    """Final hypervolume over seeds: median and quartiles (several objectives)."""
    hv = np.array([np.nan if r.hypervolume is None else r.hypervolume for r in mine])
    return {
        "hypervolume_median": _nan(np.nanmedian, hv),
        "hypervolume_q1": _nan(lambda v: np.nanpercentile(v, 25), hv),
        "hypervolume_q3": _nan(lambda v: np.nanpercentile(v, 75), hv),
    }


def _cost_columns(mine: list[RunScore]) -> dict[str, Any]:
    """Failed trials over all seeds, and the median wall time and engine overhead of a run."""
    return {
        "failed": int(sum(r.failed for r in mine)),
        "wall_s": float(np.median([r.wall_seconds for r in mine])),
        "overhead_ms_per_trial": 1000 * float(np.median([r.overhead_per_trial for r in mine])),
    }


def _paired(finals: pd.DataFrame, algo: str, other: str | None) -> tuple[float, float]:
    """p-value and median paired difference (algo − other, losses) over shared seeds."""
    if other is None or other not in finals or algo == other:
        return float("nan"), 0.0
    both = finals[[algo, other]].dropna()
    diff = both[algo] - both[other]
    return paired_wilcoxon(both[algo], both[other]), float(np.median(diff)) if len(diff) else 0.0


def _or(value: float, fill: float) -> float:
    return value if np.isfinite(value) else fill


def _nan(reduce: Any, values: np.ndarray) -> float:
    """``reduce(values)``, or NaN when no value is finite (and without NumPy's warning)."""
    return float(reduce(values)) if np.isfinite(values).any() else float("nan")
