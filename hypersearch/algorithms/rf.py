"""Random-forest Bayesian optimization in the style of SMAC, with ParEGO for several objectives.

Follows Hutter, Hoos & Leyton-Brown, "Sequential Model-Based Optimization for General Algorithm
Configuration" (LION 2011, SMAC):

* an initial design (here a scrambled Sobol sequence, ``initial`` points, by default
  ``min(2 d + 2, 8)``: the algorithm never knows the budget, so the cap is a fixed number,
  and a quarter of a 32-trial run);
* a random forest on log-scaled costs (here their ranks: see below); its predictive mean and
  variance are the mean and variance of the trees' predictions;
* expected improvement in its log-normal form (SMAC's "LogEI", Hutter et al. 2009) against the
  best predicted mean among the observed points;
* the acquisition maximized by scoring many random points plus a local search from the best
  observed and the best random points;
* one random configuration interleaved with probability ``random_fraction`` (0.1), which keeps
  the convergence guarantee of random search whatever the model does.

Several objectives are scalarized per asked point as in Knowles, "ParEGO" (IEEE TEC 2006): each
objective normalized by its observed range, then the augmented Chebyshev function
``max_i w_i f_i + 0.05 sum_i w_i f_i`` with weights drawn uniformly from the simplex.

Where it departs from the papers:

* the forest is scikit-learn's ``ExtraTreesRegressor`` with ``bootstrap=True``: randomized split
  thresholds like SMAC's forest, vectorized in C; tree variance only (SMAC also adds the
  within-leaf variance), floored so the EI never divides by zero;
* the forest is fit on the log of the costs' *ranks* (``log(1 + (r - 1) / (n - 1))``), not of
  the costs: losses may be negative, and a few huge ones (Rosenbrock's walls) squashed every
  good point to the same log-cost. A smaller offset than 1 (0.01, 0.1) stretched the best few
  so much that under noise the model chased lucky draws;
* a smaller initial design (8 at most, SMAC's is 10 per parameter up to a quarter of the
  budget) and half SMAC's random interleaving (0.1): the budgets here are tens of trials.
  Measured on the quality suite's tune half (``benchmarks/quality.py``, 10 seeds, Bayesmark's
  score): ranks took 64 by 8 from 33.3 to 43.4; with the small design and 0.1, 64 by 8 scored
  39.7 and 32 by 2 went from 14.3 to 29.7 (0.2 with the small design: 14.7; 0.05: 25.2);
* leaves hold at least 3 points (as SMAC), which smooths noise;
* local search takes Gaussian steps in the unit cube (SMAC's one-exchange neighbourhood is for
  categorical configurations); ParEGO's simplex-lattice weights become continuous draws;
* batches and trials in flight use a constant liar (Ginsbourger et al. 2010): each in-flight
  point enters the forest at the mean observed cost, and each point of a batch is chosen after
  the previous ones were put in flight, so a batch spreads out and never repeats a point;
* failed trials are imputed as the worst observed cost plus 10% of the observed range.

Pruned trials (BOHB: Falkner, Klein & Hutter, ICML 2018): with one objective the forest models
the final results while ``enough = max(d + 3, initial)`` trials finished (BOHB's N_min + 2 with
N_min = d + 1, and no fewer than the initial design); else the highest step a pruned trial
reported that ``enough`` trials reached, each trial valued by its curve there (the latest report
at or before it; a finished trial that reported nothing by then, by its final loss); else the
level with the most data. Trials pruned before the modelled level (BOHB leaves them out) are
imputed between the worst cost and the failures, by step reached then last loss, so EI does
not send the search back where the scheduler stopped it. With several objectives the final
results are modelled (a curve holds the first objective only), pruned trials imputed alike.
Without pruned trials nothing changes. On a 3-d learning-curve task under ASHA the step model
gained nothing measurable over this ranking alone (tests/test_pruned_learning.py).

Determinism: every point is a function of (seed, ordered history, points in flight): its RNG and
forest are seeded from (seed, number told, number in flight), so a resumed run, told the history
and handed the in-flight points, asks exactly what the uninterrupted run would have.

The model itself (forest, log EI, imputation, ParEGO) is in ``surrogate.py``, shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from hypersearch.algorithms.base import Algorithm, Observation, Suggestion, point_key, register
from hypersearch.algorithms.pruned import Fidelity, pruned_fractions, pruned_key
from hypersearch.algorithms.surrogate import (
    N_ESTIMATORS,
    fit_forest,
    impute_failed,
    impute_pruned,
    log_costs,
    log_expected_improvement,
    parego,
    predict_mean_var,
    sobol_design,
)
from hypersearch.space import SearchSpace, StrictModel

LOCAL_STARTS = 5  # local searches from the best observed and best random points, each
LOCAL_STEPS = 5
LOCAL_NEIGHBOURS = 20
LOCAL_SIGMA = 0.05  # step size in the unit cube, halved when a step finds nothing better


class RFOptions(StrictModel):
    initial: Annotated[int, Field(ge=0, le=1024)] | None = None  # None: min(2 d + 2, 8)
    random_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    n_estimators: Annotated[int, Field(ge=2, le=500)] = N_ESTIMATORS
    n_candidates: Annotated[int, Field(ge=1, le=100_000)] = 1000


@register
class RandomForest(Algorithm):
    name = "rf"
    description = "SMAC-style random-forest surrogate with log EI (ParEGO for several objectives)"
    Options = RFOptions

    def __init__(self, space: SearchSpace, n_objectives: int, *, seed: int, **options: Any):
        super().__init__(space, n_objectives, seed=seed, **options)
        d = space.dim
        self.initial = (
            self.options.initial if self.options.initial is not None else min(2 * d + 2, 8)
        )
        self._sobol = sobol_design(d, self.initial, seed)
        self._X: list[np.ndarray] = []  # told points, in told order
        self._losses: list[tuple[float, ...] | None] = []
        self._told: list[Observation] = []  # for their steps and curves
        self._any_pruned = False
        self._level: tuple[int, int | None] = (-1, None)  # (trials told, level): a cache

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs, _ in self.arrivals(observations):
            losses = obs.losses
            if losses is not None and not all(np.isfinite(v) for v in losses):
                losses = None  # nan/inf: as good as a failure
            self._X.append(np.array(obs.x, dtype=float))
            self._losses.append(None if losses is None else tuple(float(v) for v in losses))
            self._told.append(obs)
            self._any_pruned |= obs.pruned

    # -- asking ------------------------------------------------------------------------------

    def ask(self, n: int) -> list[Suggestion]:
        return [self.issue(self._next_point()) for _ in range(n)]

    def _snap(self, x: np.ndarray) -> np.ndarray:
        """The cube point of the configuration ``x`` decodes to: what gets run."""
        return np.asarray(self.space.encode(self.space.decode(np.clip(x, 0.0, 1.0))), dtype=float)

    def _next_point(self) -> np.ndarray:
        flying = list(self.in_flight.values())
        index = len(self._X) + len(flying)
        rng = np.random.default_rng([self.seed, len(self._X), len(flying)])
        if index < len(self._sobol):
            return self._snap(self._sobol[index])
        taken = {point_key(x) for x in [*self._X, *flying]}
        if self._any_pruned:
            n_ok = self._fidelity().count(self._modelled())
        else:
            n_ok = sum(losses is not None for losses in self._losses)
        if n_ok < 2 or rng.random() < self.options.random_fraction:
            return self._fresh(rng.random((64, self.space.dim)), taken, rng)
        return self._model_point(rng, flying, taken)

    def _fresh(
        self, candidates: np.ndarray, taken: set[bytes], rng: np.random.Generator
    ) -> np.ndarray:
        """The first candidate (in order) that is neither observed nor in flight."""
        for c in candidates:
            x = self._snap(c)
            if point_key(x) not in taken:
                return x
        for _ in range(1000):  # a small discrete space: keep drawing
            x = self._snap(rng.random(self.space.dim))
            if point_key(x) not in taken:
                return x
        return self._snap(rng.random(self.space.dim))  # everything taken: a repeat is all left

    def _costs(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One cost per told point (ParEGO scalarization for several objectives) and the
        failed mask."""
        failed = np.array([losses is None for losses in self._losses])
        F = np.array(
            [
                losses if losses is not None else (np.nan,) * self.n_objectives
                for losses in self._losses
            ],
            dtype=float,
        ).reshape(len(self._losses), self.n_objectives)
        return parego(F, failed, rng), failed

    def _fidelity(self) -> Fidelity:
        firsts = [None if losses is None else losses[0] for losses in self._losses]
        return Fidelity(firsts, self._told)

    def _modelled(self) -> int | None:
        """The step the forest models (BOHB), None for the final results; always the final
        results with several objectives (a curve holds the first objective only)."""
        if self._level[0] != len(self._told):
            enough = max(self.space.dim + 3, self.initial)
            level = self._fidelity().level(enough) if self.n_objectives == 1 else None
            self._level = (len(self._told), level)
        return self._level[1]

    def _targets(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Log-ranks of the costs to fit, one per told point, and the mask of points without
        a value at the modelled level (failed, or pruned before it: those rank between the
        worst value and the failures, by step reached then last loss)."""
        if not self._any_pruned:
            costs, failed = self._costs(rng)
            return _log_ranks(impute_failed(costs, failed)), failed
        level = self._modelled()
        if level is None:
            costs, failed = self._costs(rng)
        else:
            costs = self._fidelity().values(level)
            failed = ~np.isfinite(costs)
        stopped = failed & np.array([obs.pruned for obs in self._told])
        keys = [pruned_key(obs) for obs, s in zip(self._told, stopped, strict=True) if s]
        places = pruned_fractions(keys)
        return _log_ranks(impute_pruned(costs, failed, stopped, places)), failed

    def _model_point(
        self, rng: np.random.Generator, flying: list[np.ndarray], taken: set[bytes]
    ) -> np.ndarray:
        y, failed = self._targets(rng)
        X = np.array(self._X)
        if flying:  # constant liar: in-flight points at the mean observed (log-)cost
            X = np.vstack([X, np.array(flying)])
            y = np.concatenate([y, np.full(len(flying), y[~failed].mean())])
        forest_seed = int(rng.integers(2**31 - 1))
        model = fit_forest(X, y, forest_seed, self.options.n_estimators)
        mean_obs, _ = predict_mean_var(model, np.array(self._X))
        best = float(mean_obs[~failed].min()) if (~failed).any() else float(mean_obs.min())

        def score(points: np.ndarray) -> np.ndarray:
            return log_expected_improvement(*predict_mean_var(model, points), best)

        d = self.space.dim
        randoms = rng.random((self.options.n_candidates, d))
        random_scores = score(randoms)
        observed = np.array(self._X)[np.argsort(np.where(failed, np.inf, mean_obs))[:LOCAL_STARTS]]
        starts = np.vstack([observed, randoms[np.argsort(-random_scores)[:LOCAL_STARTS]]])
        local, local_scores = self._local_search(starts, score, rng)
        candidates = np.vstack([randoms, local])
        scores = np.concatenate([random_scores, local_scores])
        return self._fresh(candidates[np.argsort(-scores, kind="stable")], taken, rng)

    def _local_search(
        self, starts: np.ndarray, score: Any, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hill-climb every start at once on Gaussian neighbours; every visited point is a
        candidate."""
        current, current_scores = starts.copy(), score(starts)
        sigma = np.full(len(starts), LOCAL_SIGMA)
        seen, seen_scores = [current.copy()], [current_scores.copy()]
        k, d = len(starts), starts.shape[1]
        for _ in range(LOCAL_STEPS):
            steps = rng.standard_normal((k, LOCAL_NEIGHBOURS, d)) * sigma[:, None, None]
            neighbours = np.clip(current[:, None, :] + steps, 0.0, 1.0).reshape(-1, d)
            s = score(neighbours).reshape(k, LOCAL_NEIGHBOURS)
            best = s.argmax(axis=1)
            best_scores = s[np.arange(k), best]
            better = best_scores > current_scores
            current[better] = neighbours.reshape(k, LOCAL_NEIGHBOURS, d)[np.arange(k), best][better]
            current_scores[better] = best_scores[better]
            sigma[~better] *= 0.5
            seen.append(neighbours)
            seen_scores.append(s.ravel())
        return np.vstack(seen), np.concatenate(seen_scores)


def _log_ranks(costs: np.ndarray) -> np.ndarray:
    """The log-scaled ranks of the costs (ties averaged): what the forest is fit on."""
    from scipy.stats import rankdata  # lazily: scipy.stats is slow to import

    return log_costs(np.asarray(rankdata(costs), dtype=float))
