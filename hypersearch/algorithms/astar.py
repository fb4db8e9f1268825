"""A*-style best-first search over a partition tree of the unit cube.

Nodes are boxes; the root is the whole cube, evaluated at its centre first. Expanding a leaf
trisects its longest side (DIRECT: Jones, Perttunen & Stuckman 1993; SOO: Munos 2011): the
child holding the leaf's point inherits its evaluations and the other children's centres are
asked. A categorical side is split first, one child per choice. Integer, stepped and
categorical sides are split only between values (``partition.Grid``), never below one value,
and every point asked is snapped to the config it decodes to, so no trial repeats a config by
accident and a box of single values is never split again. Ties between equally long sides
are broken by a seeded order of the coordinates, so two seeds explore differently.

Priority, lowest first (the A* ``f = g - h``):

* ``g``: the mean of the (rank-transformed, ``transform``) losses at the leaf's point. With
  ``heuristic: surrogate`` (default) a random forest (``surrogate.py``, fit at most once per ask)
  gives a lookahead: the least lower confidence bound ``mean - kappa * std`` at the centres an
  expansion would ask replaces ``g`` when lower. An empty leaf (a box a foreign point left
  unevaluated) is valued by the bound at its centre; with ``heuristic: box`` by the best loss;
* ``h = c * R * size**alpha / sqrt(n)``: optimism that shrinks with the box (its splittable
  extent) and with the ``n`` evaluations at its point; ``R`` is the range of ``g``;
* virtual loss: a leaf with an evaluation in flight is skipped, so a batch spreads. When only
  points in flight are left (the first batch), they are expanded as if they were the best:
  DIRECT's initial design of the centre +- 1/3 along one side after another.

Selection (``sweep``): ``best`` (default) is A* proper, the leaf of lowest ``f`` each time;
``soo`` takes, per sweep over depths, the best leaf of a depth if it beats every shallower
pick (SOO), which spends 64 trials in 6 dimensions on shallow boxes (hartmann6 median regret
1.51 vs 0.21 best-first, 20 seeds), so it is an option, not the default.

Noise (StoSOO, Valko, Carpentier & Munos 2013): a share ``reevaluate`` of all trials
re-evaluates the most promising points evaluated fewer than ``max_evals`` times, once two
evaluations of a point disagree. The share carries across asks (owed = ``reevaluate`` x trials
so far, less the repeats made), so it happens at ``parallel: 1`` too. Whether values are noisy
is learned: after ``probe_after`` finished results the best point is evaluated once more; if
the two agree exactly, nothing is repeated again.

Measured (final regret, median of 20 seeds; tpe and rf on the same seeds; "before": astar
without the lookahead, the value grid and the initial design; "mixed": 8 parameters, a log
float, ints, log-ints, a 4-way categorical, floats, a smooth loss of the decoded config, its
optimum inside or, "edge", near the bounds):

===============  ======================================  ======================================
                 64 trials, batches of 8                 32 trials, batches of 2
problem          before   astar    tpe      rf           before   astar    tpe      rf
===============  ======================================  ======================================
hartmann6        0.26     0.21     0.37     0.54         0.28     0.12     1.04     1.13
rosenbrock-4     1020     79       98       652          302      29       363      1240
ackley-5         12.1     11.7     10.6     14.8         10.8     8.8      14.4     17.1
hartmann6 noisy  1.17     0.88     0.66     0.87         1.16     1.16     0.98     1.30
mixed            0.31     0.19     0.18     0.30         0.14     0.09     0.34     0.47
mixed, edge      0.72     0.51     0.55     0.68         0.02     0.03     0.74     1.11
===============  ======================================  ======================================

Where it is weaker: noise (a single lucky draw steers a best-first search; smoothing values
with the forest measured worse) and, at batches of 8, continuous optima between the
trisection points. Over 100 seeds at 64x8: hartmann6 0.28 (tpe 0.40), ackley 10.3 (10.5),
rosenbrock 79 (99), noisy hartmann6 0.99 (0.49), the mixed space of ``tests/test_astar.py``
0.20 (0.09; random 0.36).

The tree is a function of the history (``partition.Tree``): a box is split, by a rule of the
box alone, exactly when it holds two distinct points, so the tree of a set of points does not
depend on their order. A tell inserts its point; an ask's trial expansions are undone and the
points it asked inserted (in flight). A resumed run, told the history and handed the points in
flight, has the same tree and asks the same points (resume == no kill). The forest is fit on
all results up to 100, then on a prefix growing in steps of 10% (refit at the tell that moves
it, with the bounds of every leaf): ask(1) + tell(1) at 1000 results took 9.8 ms
(``benchmarks/overhead.py``; 97 ms when the tree was rebuilt at every ask), 7.5 ms on average
over 150 rounds that include a refit (59 ms).

Departures: failed trials count as the worst observed loss plus 10% of the range (finite);
pruned trials between that and the worst, by step reached then last loss; several objectives
are scalarized per ask by a seeded random augmented-Chebyshev weighting of min-max normalized
losses (the forest is then refit at every ask). Points at which the tree cannot split (single
values everywhere) share one leaf; once every leaf is such, unseen configs are drawn at random,
then repeats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from hypersearch.algorithms.astar_select import Evidence, Memo, Predict, Selection
from hypersearch.algorithms.base import Algorithm, Observation, Suggestion, point_key, register
from hypersearch.algorithms.partition import Grid, Tree
from hypersearch.algorithms.pruned import pruned_fractions, pruned_key
from hypersearch.algorithms.surrogate import fit_forest, predict_mean_var
from hypersearch.space import SearchSpace, StrictModel

MIN_FIT = 4  # finished results before the surrogate is fit
REFIT_FULL = 100  # up to this many results the surrogate is fit on all of them at every ask;
REFIT_GROWTH = 1.1  # beyond, on a prefix of the history that grows in steps of 10%


class AStarOptions(StrictModel):
    c: Annotated[float, Field(ge=0, le=100)] = 0.3  # optimism, in units of the loss range
    alpha: Annotated[float, Field(gt=0, le=4)] = 1.0  # how fast optimism shrinks with the box
    reevaluate: Annotated[float, Field(ge=0, lt=1)] = 0.125  # share of trials re-evaluated
    max_evals: Annotated[int, Field(ge=1, le=100)] = 2  # re-evaluate a point up to this many
    probe_after: Annotated[int, Field(ge=1)] = 24  # finished results before the noise probe
    max_depth: Annotated[int, Field(ge=1, le=200)] = 60
    heuristic: Literal["box", "surrogate"] = "surrogate"
    transform: Literal["rank", "log", "none"] = "rank"
    sweep: Literal["best", "soo"] = "best"  # soo: one pick per depth; best: global best-first
    kappa: Annotated[float, Field(ge=0, le=10)] = 0.5  # surrogate LCB width, in std units


@register
class AStar(Algorithm):
    name = "astar"
    description = "A*-style best-first partition-tree search (DIRECT/SOO trisection, StoSOO)"
    Options = AStarOptions

    def __init__(self, space: SearchSpace, n_objectives: int, *, seed: int, **options: Any):
        super().__init__(space, n_objectives, seed=seed, **options)
        order = np.argsort(self.rng.permutation(space.dim))
        self._grid = Grid(space, order, self.options.max_depth)
        self._told: list[Observation] = []
        self._rows: list[list[float]] = []  # losses per told trial, NaN when failed or pruned
        self._reset()

    def _reset(self) -> None:
        """An empty tree, then every point told (in order) and in flight: the tree the history
        determines (also a resumed run's)."""
        self._tree = Tree(self._grid, self.space.dim)
        self._memo = Memo()
        self._sites: list[int] = [self._tree.insert(_clip(o.x)) for o in self._told]
        self._flying = {
            i: (self._tree.insert(_clip(x)), _clip(x)) for i, x in self.in_flight.items()
        }
        self._model: tuple[Any, Any] = (None, None)
        self._stale = False

    # --- the interface -------------------------------------------------------------------------

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs, _ in self.arrivals(observations):
            x = _clip(obs.x)
            site, asked = self._flying.pop(obs.id, (-1, x))
            if not np.array_equal(asked, x):
                self._stale = True  # told at another point than asked: rebuild at the next ask
            self._told.append(obs)
            ok = obs.losses is not None and bool(np.all(np.isfinite(obs.losses)))
            self._rows.append(
                list(obs.losses) if ok and obs.losses else [math.nan] * self.n_objectives
            )
            self._sites.append(site if site >= 0 else self._tree.insert(x))
        if not self._stale:
            self._refresh()

    def pending(self, suggestions: Sequence[Suggestion]) -> None:
        super().pending(suggestions)
        for s in suggestions:
            x = _clip(s.x)
            self._flying[s.id] = (self._tree.insert(x), x)

    def ask(self, n: int) -> list[Suggestion]:
        if n <= 0:
            return []
        if self._stale:
            self._reset()
        rng = np.random.default_rng([self.seed, len(self._told), len(self.in_flight)])
        values = self._transform(self._scalarize(rng))
        ev = self._evidence(values)
        tree = self._tree
        tree.mark()
        selection = Selection(tree, ev, self.options, self._surrogate(values), self._memo, n)
        points = selection.run(self._slots(ev, values, n))
        tree.undo()
        points += self._fallback(n - len(points), selection.taken, rng)
        out = []
        for x in points:
            suggestion = self.issue(x)
            self._flying[suggestion.id] = (tree.insert(x), x)
            out.append(suggestion)
        return out

    # --- losses --------------------------------------------------------------------------------

    def _scalarize(self, rng: np.random.Generator, upto: int | None = None) -> np.ndarray:
        """One finite loss per told observation (the first ``upto`` of them): a failed one
        the worst plus 10% of the range, a pruned one between the worst and the failed (by
        step reached, then last loss); several objectives by a seeded random
        augmented-Chebyshev weighting."""
        m = self.n_objectives
        upto = len(self._told) if upto is None else upto
        raw = np.array(self._rows[:upto], dtype=float).reshape(upto, m)
        ok = ~np.isnan(raw).any(axis=1)
        if m > 1 and ok.any():
            lo, hi = raw[ok].min(axis=0), raw[ok].max(axis=0)
            z = (raw - lo) / np.where(hi > lo, hi - lo, 1.0)
            w = rng.dirichlet(np.ones(m))
            s = np.max(w * z, axis=1) + 0.05 * np.sum(w * z, axis=1)
        else:
            s = raw[:, 0] if m else np.zeros(len(raw))
        if ok.any():
            worst, best = float(np.max(s[ok])), float(np.min(s[ok]))
            margin = 0.1 * max(worst - best, 1.0)
            s = np.where(ok, s, worst + margin)
        else:
            worst, margin, s = 0.0, 1.0, np.ones(len(s))
        stopped = [i for i in range(upto) if self._told[i].pruned and not ok[i]]
        if stopped:
            places = pruned_fractions([pruned_key(self._told[i]) for i in stopped])
            s[stopped] = worst + margin * places
        return np.asarray(s, dtype=float)

    def _transform(self, v: np.ndarray) -> np.ndarray:
        """Rank or log scale (heavy-tailed losses would otherwise make the range meaningless)."""
        if not len(v) or self.options.transform == "none":
            return v
        if self.options.transform == "rank":
            from scipy.stats import rankdata  # here: scipy.stats takes ~0.8 s to import

            return np.asarray(rankdata(v) / len(v), dtype=float)
        span = max(float(v.max() - v.min()), 1e-12)
        return np.log(v - v.min() + 0.01 * span)

    def _evidence(self, values: np.ndarray) -> Evidence:
        s = len(self._tree.points)
        sites = np.array(self._sites, dtype=int)
        real = np.array([not math.isnan(r[0]) for r in self._rows], dtype=float)
        flying = [site for site, _ in self._flying.values()]
        return Evidence(
            total=np.bincount(sites, weights=values, minlength=s),
            count=np.bincount(sites, minlength=s).astype(float),
            real=np.bincount(sites, weights=real, minlength=s),
            flying=np.bincount(np.array(flying, dtype=int), minlength=s),
            best=float(values.min()) if len(values) else 0.0,
            scale=max(float(np.ptp(values)), 1e-12) if len(values) else 1.0,
        )

    # --- the surrogate -------------------------------------------------------------------------

    def _surrogate(self, values: np.ndarray | None = None) -> Predict | None:
        """``points -> (mean, std)`` of a random forest on the transformed losses. With one
        objective it is fit on a prefix of the history: all of it up to ``REFIT_FULL``
        results, then refit each time the history grew by 10% (so a long run does not refit
        at every ask); several objectives are scalarized per ask, so refit at every ask."""
        n = len(self._told)
        if self.options.heuristic != "surrogate" or n < MIN_FIT:
            return None
        key: Any = _prefix(n) if self.n_objectives == 1 else (n, len(self.in_flight))
        if self._model[0] != key:
            upto = key if self.n_objectives == 1 else n
            if values is None or upto < n:
                values = self._transform(self._scalarize(np.random.default_rng(0), upto))
            X = np.array([_clip(o.x) for o in self._told[:upto]])
            seed = int(np.random.default_rng([self.seed, upto]).integers(2**31 - 1))
            self._model = (key, fit_forest(X, values, seed=seed))
            self._memo.key, self._memo.bounds = key, {}
        return self._predict

    def _predict(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, var = predict_mean_var(self._model[1], points)
        return mean, np.sqrt(var)

    def _refresh(self) -> None:
        """After a tell that moved the surrogate's prefix on (a long history): refit it, and
        predict at every leaf, so the next asks only predict at new nodes."""
        n = len(self._told)
        if self.n_objectives > 1 or n <= REFIT_FULL or self._model[0] == _prefix(n):
            return
        predict = self._surrogate()
        tree = self._tree
        if predict is not None:
            leaves = [v for v in range(tree.count) if tree.first[v] < 0]
            self._memo.fill(tree, leaves, predict, self.options.kappa)

    # --- re-evaluation and the last resort -----------------------------------------------------

    def _slots(self, ev: Evidence, values: np.ndarray, n: int) -> int:
        """Re-evaluations this ask owes (StoSOO). Once two evaluations of one point disagree,
        a share ``reevaluate`` of all trials so far and of this ask, less the repeats already
        made (so the share carries across asks: one in eight at ``parallel: 1`` too); before
        that, one probe once ``probe_after`` results finished, to find out."""
        if self.options.reevaluate <= 0:
            return 0
        total = len(self._told) + len(self._flying)
        repeats = total - int(np.count_nonzero(ev.count + ev.flying))
        if self._noisy(values):
            owed = math.floor(self.options.reevaluate * (total + n)) - repeats
            return max(0, min(owed, n))
        return int(repeats == 0 and ev.real.sum() >= self.options.probe_after)

    def _noisy(self, values: np.ndarray) -> bool:
        """Whether two finished evaluations of one point differ."""
        real = np.array([not math.isnan(r[0]) for r in self._rows], dtype=bool)
        sites = np.array(self._sites, dtype=int)[real]
        v = values[real]
        if len(sites) == len(set(sites.tolist())):
            return False
        lo = np.full(len(self._tree.points), np.inf)
        hi = np.full(len(self._tree.points), -np.inf)
        np.minimum.at(lo, sites, v)
        np.maximum.at(hi, sites, v)
        gap = np.where(np.isfinite(lo), hi - lo, 0.0)
        return bool(gap.max() > 1e-12 * max(float(np.ptp(values)), 1e-12))

    def _fallback(self, k: int, taken: set[bytes], rng: np.random.Generator) -> list[np.ndarray]:
        """Seeded uniform configurations not seen yet, once the tree has nothing left to ask
        (a small discrete space, fully split); repeats last of all."""
        if k <= 0:
            return []
        seen = {self._config(p) for p in self._tree.points}
        out: list[np.ndarray] = []
        for attempt in range(110 * k):
            if len(out) >= k:
                break
            x = self._grid.snap(rng.random(self.space.dim))
            # every config seen after 100 draws a point: repeats are all that is left
            fresh = attempt >= 100 * k or self._config(x) not in seen
            if fresh and point_key(x) not in taken:
                seen.add(self._config(x))
                taken.add(point_key(x))
                out.append(x)
        return out

    def _config(self, x: np.ndarray) -> tuple:
        return tuple(self.space.decode(x).values())


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=float), 0.0, 1.0)


def _prefix(n: int) -> int:
    """How many results the surrogate is fit on: all up to ``REFIT_FULL``; beyond, the
    largest of 100, 110, 121, 133, ... (each the last times ``REFIT_GROWTH``, rounded down)
    not above ``n``."""
    upto = REFIT_FULL
    while int(upto * REFIT_GROWTH) <= n:
        upto = int(upto * REFIT_GROWTH)
    return n if n <= REFIT_FULL else upto
