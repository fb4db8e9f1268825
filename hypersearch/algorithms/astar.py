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
pruned trials between that and the worst, by step reached then last loss (expanded after
every finished node's box, before a failed one's);
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

from hypersearch.algorithms.base import Algorithm, Observation, Suggestion, point_key, register
from hypersearch.algorithms.partition import Node, SurrogateBound, fit_forest
from hypersearch.algorithms.pruned import pruned_fractions, pruned_key
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


@register
class AStar(Algorithm):
    name = "astar"
    description = "A*-style best-first partition-tree search (DIRECT/SOO trisection, StoSOO)"
    Options = AStarOptions

    def __init__(self, space: SearchSpace, n_objectives: int, *, seed: int, **options: Any):
        super().__init__(space, n_objectives, seed=seed, **options)
        self._told: list[Observation] = []
        # Categorical coordinates are split first, into their buckets; then the longest side,
        # ties broken by this seeded order (the seed's only influence on the tree).
        self._buckets = np.array(
            [len(p.choices) if isinstance(p, CategoricalParam) else 0 for p in _params(space)]
        )
        self._order = np.argsort(self.rng.permutation(space.dim))

    # --- the interface -------------------------------------------------------------------------

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs, _ in self.arrivals(observations):
            self._told.append(obs)

    def ask(self, n: int) -> list[Suggestion]:
        if n <= 0:
            return []
        rng = np.random.default_rng([self.seed, len(self._told), len(self.in_flight)])
        root, seen = self._rebuild(rng)
        return [self.issue(x) for x in self._select(root, seen, n, rng)]

    # --- the tree ------------------------------------------------------------------------------

    def _rebuild(self, rng: np.random.Generator) -> tuple[Node, dict[tuple, list[float]]]:
        """The tree from the ordered history; ``seen``: decoded config -> scalar losses."""
        values = self._transform(self._scalarize(rng))
        root = Node(np.zeros(self.space.dim), np.ones(self.space.dim), 0, None)
        seen: dict[tuple, list[float]] = {}
        for obs, v in zip(self._told, values, strict=True):
            self._insert(root, obs.x, v)
            seen.setdefault(self._config(obs.x), []).append(v)
        for x in self.in_flight.values():
            self._insert(root, x, None)
            seen.setdefault(self._config(x), [])
        return root, seen

    def _scalarize(self, rng: np.random.Generator) -> list[float]:
        """One finite loss per told observation (failed: worst + 10% of the range; pruned:
        between the worst and the failed, by step reached then last loss)."""
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
            margin = 0.1 * max(worst - best, 1.0)
            s = np.where(ok, s, worst + margin)
        else:
            worst, margin, s = 0.0, 1.0, np.ones(len(s))
        stopped = [i for i, o in enumerate(self._told) if o.pruned and not ok[i]]
        if stopped:
            places = pruned_fractions([pruned_key(self._told[i]) for i in stopped])
            s[stopped] = worst + margin * places
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
        """Up to ``n`` points: re-evaluations (StoSOO), unevaluated leaves, then expansions;
        seeded uniform unseen configs once nothing is left to split, repeats last of all."""
        batch = _Batch(self, root, seen, n)
        batch.reevaluate(len(self._told))
        batch.ask_empty(root.leaves())
        batch.expand()
        for _ in range(100 * n):
            if batch.full:
                break
            x = rng.random(self.space.dim)
            if self._config(x) not in seen and batch.propose(x):
                seen[self._config(x)] = []
        while not batch.full:  # every config seen: repeats are all that is left
            batch.propose(rng.random(self.space.dim))
        return batch.out

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


class _Batch:
    """One ask's selection over a rebuilt tree: priorities, virtual loss, the points taken."""

    def __init__(self, algo: AStar, root: Node, seen: dict[tuple, list[float]], n: int) -> None:
        self.algo, self.root, self.seen, self.n = algo, root, seen, n
        self.options = algo.options
        done = [v for vs in seen.values() for v in vs]
        self.best, worst = (min(done), max(done)) if done else (0.0, 1.0)
        self.scale = max(worst - self.best, 1e-12)
        surrogate = self.options.heuristic == "surrogate" and done
        self.lcb = algo._surrogate(root) if surrogate else None
        self.out: list[np.ndarray] = []
        self.taken: set[bytes] = set()

    @property
    def full(self) -> bool:
        return len(self.out) >= self.n

    def g(self, node: Node) -> float:
        """Mean loss at the node's point, else its nearest evaluated ancestor's."""
        cur: Node | None = node
        while cur is not None:
            if cur.done:
                return float(np.mean(cur.done))
            cur = cur.parent
        return self.best

    def f(self, node: Node) -> float:
        """Priority (lowest first): ``g`` minus the optimism bonus of the box."""
        n_evals = max(len(node.done), 1)
        size = float(np.linalg.norm(node.hi - node.lo)) / math.sqrt(self.algo.space.dim)
        value = self.g(node)
        if self.lcb is not None:
            value = min(value, self.lcb(node.centre))
        bonus = self.options.c * self.scale * size**self.options.alpha / math.sqrt(n_evals)
        return value - bonus

    def propose(self, x: np.ndarray) -> bool:
        key = point_key(x)
        if key in self.taken or self.full:
            return False
        self.taken.add(key)
        self.out.append(x)
        return True

    def reevaluate(self, n_told: int) -> None:
        """StoSOO: re-evaluate promising leaves, only once values look noisy (or a one-off
        probe to find out)."""
        repeats = [node.done for node in self.root.leaves() if len(node.done) >= 2]
        noisy = any(np.ptp(r) > 1e-12 * self.scale for r in repeats)
        probe = not repeats and n_told >= self.options.probe_after
        slots = round(self.options.reevaluate * self.n) if (noisy or probe) else 0
        if probe:
            slots = min(slots, 1) if self.options.reevaluate > 0 else 0
        if not slots:
            return
        leaves = (leaf for leaf in self.root.leaves() if leaf.done and not leaf.running)
        for leaf in sorted(leaves, key=self.g):
            if slots <= 0:
                break
            few = len(leaf.done) < self.options.max_evals
            if few and leaf.point is not None and self.propose(leaf.point.copy()):
                leaf.values.append(None)
                slots -= 1

    def ask_empty(self, leaves: list[Node]) -> bool:
        """Ask the centres of unevaluated leaves, best parent first; a centre that decodes to
        a seen config borrows its losses instead."""
        asked = False
        for leaf in sorted(leaves, key=lambda leaf: (self.f(leaf), self.algo._tie(leaf))):
            if leaf.point is not None or leaf.running:
                continue
            config = self.algo._config(leaf.centre)
            known = self.seen.get(config)
            if known is not None:
                leaf.point = leaf.centre
                leaf.values = list(known) if known else [None]
                continue
            if not self.propose(leaf.centre):
                break
            leaf.point = leaf.centre
            leaf.values.append(None)
            self.seen[config] = []
            asked = True
        return asked

    def expand(self) -> None:
        """Sweeps over the open evaluated leaves (all at once with ``best``, per depth with
        ``soo``): each pick is split and its new children's centres asked (DIRECT)."""
        for _ in range(10 * self.n + 50):
            if self.full:
                return
            leaves = [n for n in self.root.leaves() if n.point is not None and not n.running]
            if self.lcb is not None:
                self.lcb.prime([leaf.centre for leaf in leaves])
            by_depth: dict[int, list[Node]] = {}
            for leaf in leaves:
                by_depth.setdefault(leaf.depth, []).append(leaf)
            if self.options.sweep == "best":
                by_depth = {0: leaves} if leaves else {}
            picks: list[Node] = []
            bar = math.inf
            for depth in sorted(by_depth):
                cand = min(by_depth[depth], key=lambda n: (self.f(n), self.algo._tie(n)))
                if self.f(cand) < bar:
                    picks.append(cand)
                    bar = self.f(cand)
            if not picks:
                return
            for node in picks:
                if self.full:
                    break
                if self.algo._split(node):
                    self.ask_empty(node.children)
                else:  # a box that cannot be split further: retired for this ask
                    node.values.append(None)


def _params(space: SearchSpace) -> list[Any]:
    return [space.params[name] for name in space.names]
