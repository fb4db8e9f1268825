"""One ask of astar: which leaves of the partition tree to re-evaluate, evaluate or expand.

Kept apart from ``astar.py`` (the algorithm's state: history, tree, surrogate) so the choice of
points reads on its own. The choice is a function of the tree, the transformed losses per site
and the surrogate; splits made while choosing are undone by the caller.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hypersearch.algorithms.base import point_key
from hypersearch.algorithms.partition import Tree

Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # points -> (mean, std)


@dataclass
class Evidence:
    """What the history says, per site of the tree (index: site)."""

    total: np.ndarray  # sum of the transformed losses told
    count: np.ndarray  # losses told
    real: np.ndarray  # of which finished (neither failed nor pruned)
    flying: np.ndarray  # evaluations in flight
    best: float  # least transformed loss told
    scale: float  # range of the transformed losses told


class Memo:
    """Per (node, site) of a tree: the leaf's point and the points its expansion would ask
    (``sides``), and the surrogate's lower confidence bounds there while the surrogate is
    ``key``: at its point, and the least at the others. Kept across asks for the lasting
    tree (node indices there never change)."""

    def __init__(self) -> None:
        self.sides: dict[tuple[int, int], list[np.ndarray]] = {}
        self.key: Any = None
        self.bounds: dict[tuple[int, int], tuple[float, float]] = {}

    def points(self, tree: Tree, node: int) -> list[np.ndarray]:
        """The leaf's point (an empty leaf's: its centre, snapped to the values it decodes
        to), then its would-be children's centres (snapped) but the one holding its point."""
        key = (node, tree.site[node])
        if key in self.sides:
            return self.sides[key]
        site, centre = tree.site[node], tree.centre(node)
        anchor = tree.points[site] if site >= 0 else tree.grid.snap(centre)
        out = [anchor]
        d, bounds = tree.would_split(node)
        if d >= 0:
            keep = bisect_index(bounds, anchor[d])
            for i in range(len(bounds) - 1):
                if i != keep:
                    c = centre.copy()
                    c[d] = (bounds[i] + bounds[i + 1]) / 2
                    out.append(tree.grid.snap(c))
        self.sides[key] = out
        return out

    def fill(self, tree: Tree, nodes: list[int], predict: Predict, kappa: float) -> None:
        """The bounds, predicted in one batch, of the nodes without them."""
        todo = [(v, tree.site[v]) for v in nodes if (v, tree.site[v]) not in self.bounds]
        points = [self.points(tree, v) for v, _ in todo]
        if not todo:
            return
        mean, std = predict(np.array([p for ps in points for p in ps]))
        lcb = (mean - kappa * std).tolist()
        i = 0
        for key, ps in zip(todo, points, strict=True):
            self.bounds[key] = (lcb[i], min(lcb[i + 1 : i + len(ps)], default=math.inf))
            i += len(ps)


class Selection:
    """The points of one ask, in ``out``: StoSOO re-evaluations, then best-first (or SOO
    sweeps) over the open leaves, each expansion asking its new children's centres."""

    def __init__(
        self,
        tree: Tree,
        ev: Evidence,
        options: Any,
        predict: Predict | None,
        memo: Memo,
        n: int,
    ) -> None:
        self.tree, self.ev, self.options, self.predict, self.memo = tree, ev, options, predict, memo
        self.n = n
        self.lasting = tree.count  # nodes below this index outlive the ask
        self.out: list[np.ndarray] = []
        self.taken: set[bytes] = set()
        self.busy: set[int] = set()  # sites this ask re-evaluates
        self.estimate: dict[int, float] = {}  # leaves only in flight, valued as the best
        self.local = Memo()  # for the nodes this ask makes (their indices are reused)
        self.asked: dict[int, np.ndarray] = {}  # empty leaves this ask evaluates, and where

    @property
    def full(self) -> bool:
        return len(self.out) >= self.n

    def propose(self, x: np.ndarray) -> bool:
        key = point_key(x)
        if key in self.taken or self.full:
            return False
        self.taken.add(key)
        self.out.append(x)
        return True

    # --- priorities ------------------------------------------------------------------------

    def bonus(self, node: int, evaluations: float) -> float:
        """``h``: optimism that shrinks with the box and with the evaluations at its point."""
        o = self.options
        return o.c * self.ev.scale * self.tree.size[node] ** o.alpha / math.sqrt(evaluations)

    def tie(self, node: int) -> float:
        """Deterministic tie-break between equal priorities: the box centre, weighted."""
        return self.tree.tie[node]

    def _memo(self, node: int) -> Memo:
        return self.memo if node < self.lasting else self.local

    def sides(self, node: int) -> list[np.ndarray]:
        return self._memo(node).points(self.tree, node)

    def predict_bounds(self, nodes: list[int]) -> None:
        if self.predict is not None:
            lasting = [v for v in nodes if v < self.lasting]
            self.memo.fill(self.tree, lasting, self.predict, self.options.kappa)
            local = [v for v in nodes if v >= self.lasting]
            self.local.fill(self.tree, local, self.predict, self.options.kappa)

    def bound(self, node: int) -> tuple[float, float]:
        """The surrogate's lower confidence bound at the leaf's point, and the least at the
        points its expansion would ask; (inf, inf) without a surrogate."""
        if self.predict is None:
            return math.inf, math.inf
        memo, key = self._memo(node), (node, self.tree.site[node])
        if key not in memo.bounds:
            self.predict_bounds([node])
        return memo.bounds[key]

    def priority(self, node: int) -> float:
        """``f = g - h``, lowest first. ``g``: the mean transformed loss at the leaf's point;
        the surrogate's mean for a leaf it valued; for an empty leaf the surrogate's lower
        confidence bound at its centre (without a surrogate, the best loss)."""
        site = self.tree.site[node]
        if node in self.estimate:
            return self.estimate[node] - self.bonus(node, 1)
        here, ahead = self.bound(node)
        if site >= 0:
            count = float(self.ev.count[site])
            return min(float(self.ev.total[site]) / count, ahead) - self.bonus(node, count)
        return (self.ev.best if self.predict is None else here) - self.bonus(node, 1)

    # --- the ask -----------------------------------------------------------------------------

    def run(self, slots: int) -> list[np.ndarray]:
        self.reevaluate(slots)
        open_ = self.open_leaves()
        self.predict_bounds(open_)
        if self.options.sweep == "best":
            self.best_first(open_)
        else:
            self.sweeps(open_)
        if not self.full:
            # Nothing left but points in flight (the first batch): expand them as if their
            # values were the best, DIRECT's initial design around each.
            waiting = self.waiting() + [v for v in self.asked if self.expandable(v)]
            for node in waiting:
                self.estimate[node] = self.ev.best
            self.best_first(waiting)
        return self.out

    def waiting(self) -> list[int]:
        """Leaves whose point has only evaluations in flight."""
        tree, ev = self.tree, self.ev
        return [
            v
            for v in range(tree.count)
            if tree.first[v] < 0
            and tree.site[v] >= 0
            and not ev.count[tree.site[v]]
            and self.expandable(v)
        ]

    def open_leaves(self) -> list[int]:
        """Leaves that can be evaluated (empty) or expanded (evaluated, none in flight)."""
        tree, ev = self.tree, self.ev
        out = []
        for node in range(tree.count):
            if tree.first[node] >= 0:
                continue
            site = tree.site[node]
            if site < 0 or (
                self.expandable(node)
                and ev.count[site]
                and not ev.flying[site]
                and site not in self.busy
            ):
                out.append(node)
        return out

    def expandable(self, node: int) -> bool:
        return self.tree.size[node] > 0 and self.tree.depth[node] < self.tree.grid.max_depth

    def reevaluate(self, slots: int) -> None:
        """StoSOO: evaluate again the most promising points evaluated fewer than
        ``max_evals`` times (finished values only: a failure is not noise)."""
        ev = self.ev
        if slots <= 0:
            return
        ok = (ev.real > 0) & (ev.count < self.options.max_evals) & (ev.flying == 0)
        sites = np.flatnonzero(ok)
        means = ev.total[sites] / ev.count[sites]
        for site in sites[np.argsort(means, kind="stable")][:slots]:
            if self.propose(self.tree.points[site].copy()):
                self.busy.add(int(site))

    def step(self, node: int) -> list[int]:
        """Evaluate an empty leaf's centre, or expand a leaf (DIRECT: its other children's
        centres are asked, most promising first). Returns the leaves to consider next."""
        tree = self.tree
        estimate = self.estimate.get(node)
        if tree.site[node] < 0 and estimate is None:
            x = self.sides(node)[0]
            if self.propose(x):
                self.asked[node] = x
            return []
        site = tree.site[node]
        anchor = tree.points[site] if site >= 0 else self.asked[node]
        if not tree.split(node):
            return []
        again, empty = [], []
        for child in tree.children(node):
            if child == tree.child(node, anchor):
                if estimate is not None:
                    self.estimate[child] = estimate
                if site < 0:
                    self.asked[child] = anchor
                if self.expandable(child):
                    again.append(child)
            else:
                empty.append(child)
        self.predict_bounds(empty + again)
        for child in sorted(empty, key=lambda v: (self.priority(v), self.tie(v))):
            if self.full:
                break
            again += self.step(child)
        return again

    def best_first(self, nodes: list[int]) -> None:
        queue = [(self.priority(v), self.tie(v), v) for v in nodes]
        heapq.heapify(queue)
        while queue and not self.full:
            _, _, node = heapq.heappop(queue)
            for child in self.step(node):
                heapq.heappush(queue, (self.priority(child), self.tie(child), child))

    def sweeps(self, nodes: list[int]) -> None:
        """SOO: per sweep, the best leaf of each depth whose priority beats every shallower
        pick of the sweep."""
        open_ = {v: (self.priority(v), self.tie(v)) for v in nodes}
        while open_ and not self.full:
            by_depth: dict[int, list[int]] = {}
            for v in open_:
                by_depth.setdefault(self.tree.depth[v], []).append(v)
            picks, bar = [], math.inf
            for depth in sorted(by_depth):
                v = min(by_depth[depth], key=open_.__getitem__)
                if open_[v][0] < bar:
                    picks.append(v)
                    bar = open_[v][0]
            for v in picks:
                del open_[v]
                if not self.full:
                    for child in self.step(v):
                        open_[child] = (self.priority(child), self.tie(child))


def bisect_index(bounds: list[float], x: float) -> int:
    """The child (by index) of ``bounds`` that holds coordinate ``x``."""
    return min(max(bisect.bisect_right(bounds, x) - 1, 0), len(bounds) - 2)
