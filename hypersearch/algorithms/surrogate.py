"""The random-forest surrogate shared by ``rf``, ``astar``, ``ga`` and ``pso``.

The model of ``rf`` (SMAC-style: bootstrapped extremely randomized trees on log-scaled cost
ranks, mean and variance across the trees, log expected improvement), usable on its own: ``rf``
maximizes its EI; ``astar`` takes its lower confidence bound as optimism; ``ga`` and ``pso``
pre-screen many candidate offspring or moves with ``screen`` and evaluate only the most
promising (surrogate-assisted evolution: Jin, "Surrogate-assisted evolutionary computation",
Swarm and Evolutionary Computation 2011).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sklearn.ensemble import ExtraTreesRegressor

N_ESTIMATORS = 24  # enough trees for a usable variance; fit + predict stay in milliseconds
MIN_SAMPLES_LEAF = 3  # as SMAC: smooths noise (measured better than 2 on noisy hartmann6)
VARIANCE_FLOOR = 1e-6  # of log-costs: no zero variance where all trees agree
LOG_OFFSET = 1.0  # log(1 + normalized cost): 0.01 or 0.1 chased lucky noisy draws
FAILED_MARGIN = 0.1  # failed trials: worst + this share of the observed range


def fit_forest(
    X: np.ndarray, y: np.ndarray, seed: int, n_estimators: int = N_ESTIMATORS
) -> ExtraTreesRegressor:
    """Fit the surrogate: bootstrapped extremely randomized trees (randomized splits like
    SMAC's forest). An integer seed makes it reproducible without global state."""
    from sklearn.ensemble import ExtraTreesRegressor  # here: scikit-learn takes ~0.5 s to import

    model = ExtraTreesRegressor(
        n_estimators=n_estimators,
        bootstrap=True,
        min_samples_leaf=MIN_SAMPLES_LEAF,
        max_features=1.0,
        random_state=int(seed),
        n_jobs=1,
    )
    model.fit(np.asarray(X, dtype=float), np.asarray(y, dtype=float))
    return model


def predict_mean_var(model: ExtraTreesRegressor, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and variance across the trees (floored at ``VARIANCE_FLOOR``).

    Looks up each tree's leaf values directly: ``tree.predict`` validates its input on every
    call (~0.1 ms, ~8000 calls in a 64-trial run), half of an rf run's time. Same numbers:
    float32 is what the trees split on and what that validation converts to."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    per_tree = np.stack([tree.tree_.value[tree.tree_.apply(X), 0, 0] for tree in model.estimators_])
    return per_tree.mean(axis=0), np.maximum(per_tree.var(axis=0), VARIANCE_FLOOR)


def log_expected_improvement(mean: np.ndarray, var: np.ndarray, best: float) -> np.ndarray:
    """EI of the cost ``exp(y)`` when the model predicts ``y ~ N(mean, var)`` (log-costs):
    Hutter et al. 2009, eq. for log-transformed run times, as SMAC's LogEI."""
    from scipy.special import ndtr  # lazily: scipy.special costs every CLI start ~0.3 s

    s = np.sqrt(var)
    v = (best - mean) / s
    return np.exp(best) * ndtr(v) - np.exp(mean + 0.5 * var) * ndtr(v - s)


def ranked(losses: Sequence[tuple[float, ...] | None]) -> list[tuple[float, ...] | None]:
    """Each objective replaced by its rank among the values (ties averaged; None stays).

    Why ranks: on raw losses a few huge values (Rosenbrock's walls) squash every good point
    to the same log-cost and the model picks blindly near the optimum. Ranks took pso's
    rosenbrock-4 median regret at 64 trials from 262 to 102 (100 seeds), and rf's and ga's
    quality scores up by 4 to 15 points (BENCHMARKS.md)."""
    from scipy.stats import rankdata  # lazily: scipy.stats is slow to import

    ok = [j for j, v in enumerate(losses) if v is not None]
    out: list[tuple[float, ...] | None] = [None] * len(losses)
    if ok:
        ranks = rankdata(np.array([losses[j] for j in ok], dtype=float), axis=0)
        for j, row in zip(ok, ranks, strict=True):
            out[j] = tuple(float(v) for v in row)
    return out


def log_costs(costs: np.ndarray) -> np.ndarray:
    """Shift to positive and log: a few huge losses (Rosenbrock) don't swamp the forest."""
    lo, hi = float(costs.min()), float(costs.max())
    scale = hi - lo if hi > lo else 1.0
    return np.log((costs - lo) / scale + LOG_OFFSET)


def impute_failed(costs: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """Failed trials cost the worst observed plus a margin (a finite value that keeps the
    forest's scale), or 0 when nothing succeeded."""
    out = np.array(costs, dtype=float)
    ok = ~failed
    if not ok.any():
        out[:] = 0.0
        return out
    worst, best = float(out[ok].max()), float(out[ok].min())
    out[failed] = worst + FAILED_MARGIN * (worst - best if worst > best else max(abs(worst), 1.0))
    return out


def impute_pruned(
    costs: np.ndarray, failed: np.ndarray, stopped: np.ndarray, places: np.ndarray
) -> np.ndarray:
    """As ``impute_failed``, but the ``stopped`` (pruned) points among the failed ones sit
    between the worst observed cost and the failures, in the order of ``places`` (fractions
    in (0, 1), larger is worse)."""
    out = impute_failed(costs, failed)
    if not stopped.any():
        return out
    ok = ~failed
    worst = float(out[ok].max()) if ok.any() else -1.0
    failure = float(out[failed].max()) if ok.any() else 0.0
    out[stopped] = worst + (failure - worst) * places
    return out


RHO = 0.05  # ParEGO's augmentation


def parego(F: np.ndarray, failed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One cost per row of losses ``F`` (n x m): ParEGO's augmented Chebyshev scalarization
    of the min-max normalized objectives, weights drawn uniformly from the simplex (Knowles,
    IEEE TEC 2006). One objective: its values."""
    if F.shape[1] == 1:
        return F[:, 0].copy()
    weights = rng.dirichlet(np.ones(F.shape[1]))
    ok = F[~failed]
    lo, hi = ok.min(axis=0), ok.max(axis=0)
    Z = (F - lo) / np.where(hi > lo, hi - lo, 1.0)
    wz = weights * Z
    return wz.max(axis=1) + RHO * wz.sum(axis=1)


def sobol_design(dim: int, n: int, seed: int) -> np.ndarray:
    """The first ``n`` points of a scrambled Sobol sequence seeded by ``[seed, 1]``: the
    initial design of rf, ga and pso, before a model can be fit (balanced in every coordinate
    when ``n`` is a power of 2)."""
    from scipy.stats import qmc  # lazily: scipy.stats is slow to import

    sobol = qmc.Sobol(dim, scramble=True, rng=np.random.default_rng([seed, 1]))
    return sobol.random_base2(max(0, math.ceil(math.log2(max(n, 1)))))[:n]


Scorer = Callable[[np.ndarray], np.ndarray]
REFIT_EXACT = 6  # a screening forest sees every told point up to 2**6 told


def fitted(told: int) -> int:
    """How many of the first ``told`` points a screening forest is fit on: all of them up to
    2**``REFIT_EXACT``, then a prefix rounded down to a step that doubles with the history, so
    a long run refits once per 1/64th growth and ask + tell stay in milliseconds."""
    step = 2 ** max(0, told.bit_length() - 1 - REFIT_EXACT)
    return told - told % step


def screen(
    X: np.ndarray,
    losses: Sequence[tuple[float, ...] | None],
    seed: int,
) -> Scorer | None:
    """A scorer of candidate points (higher is more promising): the log EI of a forest fit on
    the told points ``X`` with the ranks of their ``losses`` (None or non-finite: failed;
    several objectives: a seeded ParEGO scalarization of the ranks). None while fewer than 2
    trials succeeded: nothing to learn from yet."""
    failed = np.array([v is None or not np.all(np.isfinite(v)) for v in losses], dtype=bool)
    if (~failed).sum() < 2:
        return None
    losses = ranked([None if f else v for v, f in zip(losses, failed, strict=True)])
    m = next(len(v) for v, f in zip(losses, failed, strict=True) if v is not None and not f)
    F = np.array(
        [(np.nan,) * m if f or v is None else v for v, f in zip(losses, failed, strict=True)]
    )
    rng = np.random.default_rng(seed)
    y = log_costs(impute_failed(parego(F.reshape(len(F), m), failed, rng), failed))
    X = np.asarray(X, dtype=float)
    model = fit_forest(X, y, int(rng.integers(2**31 - 1)))
    mean_obs, _ = predict_mean_var(model, X)
    best = float(mean_obs[~failed].min())
    return lambda points: log_expected_improvement(*predict_mean_var(model, points), best)
