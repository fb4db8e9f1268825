"""A*-style best-first search over a partition tree of the unit cube.

Nodes are boxes; the root is the whole cube, evaluated at its centre first. Expanding a node
trisects its longest side (DIRECT: Jones, Perttunen & Stuckman 1993; SOO: Munos 2011): the
middle child has the parent's centre, so it inherits the parent's evaluations, and only the two
side children's centres are new points. A categorical coordinate is split first, into its ``k``
buckets at once (each bucket's centre decodes to one choice). Ties between equally long sides
are broken by a seed-dependent order of the coordinates, so two seeds explore differently.

Priority, lowest first (the A* ``f = g - h`` with an admissible-looking optimism):

* ``g``: mean observed loss at the node's evaluation point (an unevaluated child borrows its
  parent's ``g``);
* ``h = c * R * size**alpha / sqrt(n)``: an optimism bonus that shrinks with the box's longest
  side ``size`` and with the number ``n`` of evaluations; ``R`` is the observed loss range, so
  ``c`` is scale free. With ``heuristic: surrogate`` a random-forest surrogate's lower
  confidence bound at the box centre replaces ``g`` when lower (learned optimism);
* virtual loss: a node with an evaluation in flight is skipped, so ``k`` parallel asks expand
  ``k`` different nodes.

Selection (``sweep``): ``best`` (default) is A* proper, the open leaf of lowest ``f`` each
time, virtual loss spreading a batch; ``soo`` builds a batch by SOO sweeps over depths (at
every depth the best leaf is taken if its ``f`` beats every shallower pick of the sweep), so a
batch mixes coarse exploration and deep exploitation. A departure from SOO: with 64 trials in
6 dimensions the sweeps spend most of the budget on shallow boxes (median hartmann6 regret
1.37 vs 0.27 best-first), so ``soo`` is an option, not the default. Losses enter ``g`` as
ranks in [0, 1] by default (``transform``): heavy-tailed losses (rosenbrock) otherwise make the
range, hence ``h``, meaningless.

Noise (StoSOO, Valko, Carpentier & Munos 2013): instead of evaluating every node ``k`` times, a
share ``reevaluate`` of each batch re-evaluates the most promising leaves that have fewer than
``max_evals`` evaluations. Whether values are noisy is learned: once ``probe_after`` results
are in, the best leaf is re-evaluated once; if repeats agree exactly, re-evaluation stops.

Node states:

=========  =====================================================================
state      meaning
=========  =====================================================================
open       a leaf: evaluated (a candidate to expand or re-evaluate) or not yet
           (a candidate to evaluate at its centre, with its parent's ``g``)
running    a leaf with an evaluation in flight (virtual loss: not selected again)
expanded   an inner node: its box is split among its children
=========  =====================================================================

The tree is a deterministic function of the ordered history: every ``ask`` rebuilds it by
inserting the finished observations (in the order told) and then the points in flight. A point
is inserted into the leaf containing it: an unevaluated leaf takes it as its evaluation; a leaf
whose evaluation point is the same point averages it; otherwise the leaf is split (by the same
rule as an expansion) until the two points are apart, or averaged at ``max_depth``. Our own asks
are children's centres, so inserting them rebuilds exactly the expansions that produced them;
foreign points (warm start) refine the tree where they fall. Hence resume == no kill.

Departures: failed trials count as the worst observed loss plus 10% of the range (finite);
an unevaluated leaf whose centre decodes to an already seen config (ints, steps, categoricals)
borrows that config's losses instead of being asked again; several objectives are scalarized
per ask by a seeded random augmented-Chebyshev weighting of min-max normalized losses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from hypersearch.algorithms.base import Algorithm, Observation, point_key, register
from hypersearch.space import CategoricalParam, SearchSpace, StrictModel


class AStarOptions(StrictModel):
    c: Annotated[float, Field(ge=0, le=100)] = 0.3  # optimism, in units of the loss range
    alpha: Annotated[float, Field(gt=0, le=4)] = 1.0  # how fast optimism shrinks with the box
    reevaluate: Annotated[float, Field(ge=0, lt=1)] = 0.125  # share of a batch for re-evaluation
    max_evals: Annotated[int, Field(ge=1, le=100)] = 2  # re-evaluate a leaf up to this many
    probe_after: Annotated[int, Field(ge=1)] = 24  # results before the one-off noise probe
    max_depth: Annotated[int, Field(ge=1, le=200)] = 60
    heuristic: Literal["box", "surrogate"] = "box"
    transform: Literal["rank", "log", "none"] = "rank"
    sweep: Literal["best", "soo"] = "best"  # soo: one pick per depth; best: global best-first
    kappa: Annotated[float, Field(ge=0, le=10)] = 1.0  # surrogate LCB width, in std units


class Node:
    """A box of the partition tree and the evaluations that fell on its evaluation point."""

    __slots__ = ("children", "depth", "hi", "lo", "parent", "point", "split_dim", "values")

    def __init__(self, lo: np.ndarray, hi: np.ndarray, depth: int, parent: Node | None) -> None:
        self.lo, self.hi, self.depth, self.parent = lo, hi, depth, parent
        self.children: list[Node] = []
        self.split_dim = -1
        self.point: np.ndarray | None = None  # where its evaluations were taken
        self.values: list[float | None] = []  # None: in flight (running)

    @property
    def centre(self) -> np.ndarray:
        return (self.lo + self.hi) / 2

    @property
    def done(self) -> list[float]:
        return [v for v in self.values if v is not None]

    @property
    def running(self) -> bool:
        return any(v is None for v in self.values)

    def leaves(self) -> list[Node]:
        if not self.children:
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]


@register
class AStar(Algorithm):
    name = "astar"
    description = "A*-style best-first partition-tree search (DIRECT/SOO trisection, StoSOO)"
    Options = AStarOptions

    def __init__(self, space, n_objectives, *, seed, **options):  # type: ignore[no-untyped-def]
        super().__init__(space, n_objectives, seed=seed, **options)
        self._told: list[Observation] = []
        self._pending: list[np.ndarray] = []
        # Categorical coordinates are split first, into their buckets; then the longest side,
        # ties broken by this seeded order (the seed's only influence on the tree).
        self._buckets = np.array(
            [len(p.choices) if isinstance(p, CategoricalParam) else 0 for p in _params(space)]
        )
        self._order = np.argsort(self.rng.permutation(space.dim))

    # --- the interface -------------------------------------------------------------------------

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs in observations:
            key = point_key(obs.x)
            for i, p in enumerate(self._pending):
                if point_key(p) == key:
                    del self._pending[i]
                    break
            self._told.append(Observation(np.asarray(obs.x, dtype=float).copy(), obs.losses))

    def pending(self, points: Sequence[np.ndarray]) -> None:
        self._pending += [np.asarray(p, dtype=float).copy() for p in points]

    def ask(self, n: int) -> list[np.ndarray]:
        if n <= 0:
            return []
        rng = np.random.default_rng([self.seed, len(self._told), len(self._pending)])
        root, seen = self._rebuild(rng)
        points = self._select(root, seen, n, rng)
        self._pending += [p.copy() for p in points]
        return points

    # --- the tree ------------------------------------------------------------------------------

    def _rebuild(self, rng: np.random.Generator) -> tuple[Node, dict[tuple, list[float]]]:
        """The tree from the ordered history; ``seen``: decoded config -> scalar losses."""
        values = self._transform(self._scalarize(rng))
        root = Node(np.zeros(self.space.dim), np.ones(self.space.dim), 0, None)
        seen: dict[tuple, list[float]] = {}
        for obs, v in zip(self._told, values, strict=True):
            self._insert(root, obs.x, v)
            seen.setdefault(self._config(obs.x), []).append(v)
        for x in self._pending:
            self._insert(root, x, None)
            seen.setdefault(self._config(x), [])
        return root, seen

    def _scalarize(self, rng: np.random.Generator) -> list[float]:
        """One finite loss per told observation (failed: worst + 10% of the range)."""
        m = self.n_objectives
        raw = np.array(
            [
                o.losses if o.losses is not None and np.all(np.isfinite(o.losses)) else [np.nan] * m
                for o in self._told
            ],
            dtype=float,
        ).reshape(len(self._told), m)
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
            s = np.where(ok, s, worst + 0.1 * max(worst - best, 1.0))
        else:
            s = np.ones(len(s))
        return [float(v) for v in s]

    def _transform(self, values: list[float]) -> list[float]:
        """Rank or log scale (heavy-tailed losses would otherwise make the range meaningless)."""
        v = np.asarray(values, dtype=float)
        if not len(v) or self.options.transform == "none":
            return values
        if self.options.transform == "rank":
            from scipy.stats import rankdata  # here: scipy.stats takes ~0.8 s to import

            return [float(r) for r in rankdata(v) / len(v)]
        span = max(float(v.max() - v.min()), 1e-12)
        return [float(x) for x in np.log(v - v.min() + 0.01 * span)]

    def _split_dim(self, node: Node) -> int:
        """Categorical coordinates first (once), then the longest side; -1: cannot split."""
        width = node.hi - node.lo
        cat = (self._buckets > 0) & (width > 0.999)
        if cat.any():
            candidates = np.flatnonzero(cat)
        else:
            width = np.where(self._buckets > 0, 0.0, width)
            if width.max() <= 1e-12:
                return -1
            candidates = np.flatnonzero(width >= width.max() * (1 - 1e-9))
        return int(candidates[np.argmin(self._order[candidates])])

    def _split(self, node: Node) -> bool:
        """Expand ``node``: its evaluations go to the child containing its evaluation point."""
        d = self._split_dim(node)
        if d < 0 or node.depth >= self.options.max_depth:
            return False
        k = int(self._buckets[d]) or 3
        edges = node.lo[d] + (node.hi[d] - node.lo[d]) * np.arange(k + 1) / k
        for i in range(k):
            lo, hi = node.lo.copy(), node.hi.copy()
            lo[d], hi[d] = edges[i], edges[i + 1]
            node.children.append(Node(lo, hi, node.depth + 1, node))
        node.split_dim = d
        if node.point is not None:
            child = self._child(node, node.point)
            child.point, child.values = node.point, node.values
        node.values = []
        return True

    def _child(self, node: Node, x: np.ndarray) -> Node:
        d = node.split_dim
        k = len(node.children)
        i = int((x[d] - node.lo[d]) / (node.hi[d] - node.lo[d]) * k)
        return node.children[min(max(i, 0), k - 1)]

    def _insert(self, root: Node, x: np.ndarray, value: float | None) -> None:
        x = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)
        node = root
        while True:
            while node.children:
                node = self._child(node, x)
            if node.point is None:
                node.point = x.copy()
            elif not np.array_equal(node.point, x) and self._split(node):
                continue
            node.values.append(value)
            return

    def _config(self, x: np.ndarray) -> tuple:
        return tuple(self.space.decode(x).values())

    # --- selection -----------------------------------------------------------------------------

    def _select(
        self, root: Node, seen: dict[tuple, list[float]], n: int, rng: np.random.Generator
    ) -> list[np.ndarray]:
        done = [v for vs in seen.values() for v in vs]
        best, worst = (min(done), max(done)) if done else (0.0, 1.0)
        scale = max(worst - best, 1e-12)
        lcb = self._surrogate(root) if self.options.heuristic == "surrogate" and done else None
        out: list[np.ndarray] = []
        taken: set[bytes] = set()

        def g(node: Node) -> float:
            cur: Node | None = node
            while cur is not None:
                if cur.done:
                    return float(np.mean(cur.done))
                cur = cur.parent
            return best

        def f(node: Node) -> float:
            n_evals = max(len(node.done), 1)
            size = float(np.linalg.norm(node.hi - node.lo)) / math.sqrt(self.space.dim)
            value = g(node)
            if lcb is not None:
                value = min(value, lcb(node.centre))
            return value - self.options.c * scale * size**self.options.alpha / math.sqrt(n_evals)

        def propose(x: np.ndarray) -> bool:
            key = point_key(x)
            if key in taken or len(out) >= n:
                return False
            taken.add(key)
            out.append(x)
            return True

        # Re-evaluation (StoSOO): only once values look noisy, or a one-off probe.
        repeats = [node.done for node in root.leaves() if len(node.done) >= 2]
        noisy = any(np.ptp(r) > 1e-12 * scale for r in repeats)
        probe = not repeats and len(self._told) >= self.options.probe_after
        slots = round(self.options.reevaluate * n) if (noisy or probe) else 0
        if probe:
            slots = min(slots, 1) if self.options.reevaluate > 0 else 0
        if slots:
            ranked = sorted(
                (leaf for leaf in root.leaves() if leaf.done and not leaf.running),
                key=g,
            )
            for leaf in ranked:
                if slots <= 0:
                    break
                few = len(leaf.done) < self.options.max_evals
                if few and leaf.point is not None and propose(leaf.point.copy()):
                    leaf.values.append(None)
                    slots -= 1

        # Unevaluated leaves first (a side child a full batch left out), best parent first;
        # then SOO sweeps over depths among evaluated leaves, each pick expanded and its new
        # children's centres asked (DIRECT). A leaf whose centre decodes to a seen config
        # borrows those losses instead.
        def ask_empty(leaves: list[Node]) -> bool:
            asked = False
            for leaf in sorted(leaves, key=lambda leaf: (f(leaf), self._tie(leaf))):
                if leaf.point is not None or leaf.running:
                    continue
                known = seen.get(self._config(leaf.centre))
                if known is not None:
                    leaf.point = leaf.centre
                    leaf.values = list(known) if known else [None]
                    continue
                if not propose(leaf.centre):
                    break
                leaf.point = leaf.centre
                leaf.values.append(None)
                seen[self._config(leaf.centre)] = []
                asked = True
            return asked

        ask_empty(root.leaves())
        for _ in range(10 * n + 50):
            if len(out) >= n:
                break
            leaves = [leaf for leaf in root.leaves() if leaf.point is not None and not leaf.running]
            if lcb is not None:
                lcb.prime([leaf.centre for leaf in leaves])
            by_depth: dict[int, list[Node]] = {}
            for leaf in leaves:
                by_depth.setdefault(leaf.depth, []).append(leaf)
            picks, bar = [], math.inf
            if self.options.sweep == "best":
                by_depth = {0: leaves} if leaves else {}
            for depth in sorted(by_depth):
                cand = min(by_depth[depth], key=lambda leaf: (f(leaf), self._tie(leaf)))
                if f(cand) < bar:
                    picks.append(cand)
                    bar = f(cand)
            if not picks:
                break
            for node in picks:
                if len(out) >= n:
                    break
                if self._split(node):
                    ask_empty(node.children)
                else:  # a box that cannot be split further: retired for this ask
                    node.values.append(None)
        for _ in range(100 * n):  # nothing left to split: seeded uniform unseen configs
            if len(out) >= n:
                break
            x = rng.random(self.space.dim)
            if self._config(x) not in seen and propose(x):
                seen[self._config(x)] = []
        while len(out) < n:  # every config seen: repeats are all that is left
            propose(rng.random(self.space.dim))
        return out

    def _tie(self, node: Node) -> float:
        """Deterministic tie-break between equal priorities: the lexicographic box centre."""
        return float(np.dot(node.centre, 1.0 / (1.0 + self._order)))

    def _surrogate(self, root: Node) -> Any:
        """``centre -> mu - kappa * sigma`` from a forest on the leaves' mean losses, cached
        per box centre (one batched prediction per sweep)."""
        leaves = [n for n in root.leaves() if n.done and n.point is not None]
        if len(leaves) < 4:
            return None
        xs = np.array([n.point for n in leaves])
        ys = np.array([np.mean(n.done) for n in leaves])
        predict = fit_forest(xs, ys, seed=self.seed % 2**32)
        return SurrogateBound(predict, self.options.kappa)


class SurrogateBound:
    """The forest's lower confidence bound, predicted in batches and cached by point."""

    def __init__(self, predict: Any, kappa: float) -> None:
        self.predict, self.kappa = predict, kappa
        self.cache: dict[bytes, float] = {}

    def prime(self, points: list[np.ndarray]) -> None:
        new = [p for p in points if point_key(p) not in self.cache]
        if new:
            mu, var = self.predict(np.array(new))
            for p, m, v in zip(new, mu, var, strict=True):
                self.cache[point_key(p)] = float(m - self.kappa * math.sqrt(max(v, 0.0)))

    def __call__(self, x: np.ndarray) -> float:
        self.prime([x])
        return self.cache[point_key(x)]


def fit_forest(xs: np.ndarray, ys: np.ndarray, seed: int) -> Any:
    """``X -> (means, variances)`` over the trees of a random forest fit on ``(xs, ys)``.

    Reuses ``hypersearch.algorithms.rf`` (``fit_forest``/``predict_mean_var``), the
    random-forest algorithm's surrogate, when present; else scikit-learn's ExtraTreesRegressor
    directly (the same model, without rf's tuning)."""
    try:
        from hypersearch.algorithms import rf

        model = rf.fit_forest(xs, ys, seed=seed)
        return lambda X: rf.predict_mean_var(model, X)
    except (ImportError, AttributeError):
        pass
    from sklearn.ensemble import ExtraTreesRegressor

    forest = ExtraTreesRegressor(n_estimators=30, min_samples_leaf=2, random_state=seed, n_jobs=1)
    forest.fit(xs, ys)

    def predict(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per_tree = np.stack([tree.predict(X) for tree in forest.estimators_])
        return per_tree.mean(axis=0), per_tree.var(axis=0)

    return predict


def _params(space: SearchSpace) -> list[Any]:
    return [space.params[name] for name in space.names]
