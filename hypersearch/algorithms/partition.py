"""astar's partition tree: boxes of the unit cube, split until each leaf holds one point.

A box is split by a rule of the box alone (``Grid.split``), and only when a second distinct
point falls into it. The tree is therefore a function of the *set* of points inserted, not of
their order: astar grows it one point per tell and still has exactly the tree a resumed run
rebuilds from its history. An ask's trial expansions are recorded (``mark``) and undone
(``undo``) afterwards; the points it asked are then inserted for real.
"""

from __future__ import annotations

import bisect
import math
from decimal import Decimal

import numpy as np

from hypersearch.space import CategoricalParam, FloatParam, IntParam, SearchSpace

MAX_CELLS = 100_000  # a discrete parameter with more values is split as a continuous one
MIN_WIDTH = 1e-9  # a continuous side this narrow is not split again


def cell_edges(param: FloatParam | IntParam | CategoricalParam) -> np.ndarray | None:
    """The sorted cube coordinates between which one value decodes (0 and 1 included), or
    None for a continuous parameter."""
    if isinstance(param, CategoricalParam):
        n = len(param.choices)
    elif isinstance(param, IntParam) and param.log:
        if param.high - param.low + 1 > MAX_CELLS:
            return None
        lo, hi = math.log(param.low - 0.5), math.log(param.high + 0.5)
        inner = (np.log(np.arange(param.low, param.high) + 0.5) - lo) / (hi - lo)
        return np.concatenate([[0.0], inner, [1.0]])
    elif isinstance(param, IntParam):
        n = (param.high - param.low) // param.step + 1
    elif param.step is not None:  # as FloatParam counts its grid, in decimal arithmetic
        n = int((Decimal(str(param.high)) - Decimal(str(param.low))) / Decimal(str(param.step)))
        n += 1
    elif param.high == param.low:
        n = 1
    else:
        return None
    return None if n > MAX_CELLS else np.arange(n + 1) / n


class Grid:
    """Where a box may be split: a continuous side anywhere (in thirds), a discrete one only
    between its values (an int, a stepped float) or buckets (a categorical), so no child is
    narrower than one value and no box is split along a side that holds one value.

    Categorical sides are split first, into one child per choice; then the longest splittable
    side, ties broken by the seeded ``order`` (the seed's only influence on the tree)."""

    def __init__(self, space: SearchSpace, order: np.ndarray, max_depth: int) -> None:
        params = [space.params[name] for name in space.names]
        self.edges = [cell_edges(p) for p in params]
        self.categorical = np.array([isinstance(p, CategoricalParam) for p in params])
        self.discrete = np.array([e is not None for e in self.edges])
        self._discrete = [d for d, e in enumerate(self.edges) if e is not None]
        self.order, self.max_depth = order, max_depth
        self.weights = 1.0 / (1.0 + order.astype(float))  # of the tie-break

    def cells(self, d: int, lo: float, hi: float) -> tuple[int, int]:
        """Indices of the edges at ``lo`` and ``hi`` (a discrete side's ends are edges)."""
        edges = self.edges[d]
        assert edges is not None
        return int(np.searchsorted(edges, lo - 1e-12)), int(np.searchsorted(edges, hi - 1e-12))

    def extent(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Per side, its width where it can still be split, else 0."""
        width = hi - lo
        out = np.where(width > MIN_WIDTH, width, 0.0)
        for d in self._discrete:
            a, b = self.cells(d, lo[d], hi[d])
            out[d] = width[d] if b - a >= 2 else 0.0
        return out

    def split(
        self, lo: np.ndarray, hi: np.ndarray, depth: int, width: np.ndarray
    ) -> tuple[int, list[float]]:
        """The side to split and the children's bounds along it (``width``: the box's
        ``extent``); (-1, []) when none can be."""
        if depth >= self.max_depth:
            return -1, []
        cats = np.flatnonzero(self.categorical & (width > 0))
        if len(cats):
            candidates = cats
        elif width.max() <= 0:
            return -1, []
        else:
            candidates = np.flatnonzero(width >= width.max() * (1 - 1e-9))
        d = int(candidates[np.argmin(self.order[candidates])])
        a, b = float(lo[d]), float(hi[d])
        edges = self.edges[d]
        if edges is None:
            return d, [a, a + (b - a) / 3, a + 2 * (b - a) / 3, b]
        i, j = self.cells(d, a, b)
        if self.categorical[d] or j - i <= 3:
            return d, [float(e) for e in edges[i : j + 1]]
        k1 = min(max(int(np.argmin(abs(edges[i:j] - (a + (b - a) / 3)))) + i, i + 1), j - 2)
        k2 = min(max(int(np.argmin(abs(edges[i:j] - (a + 2 * (b - a) / 3)))) + i, k1 + 1), j - 1)
        return d, [a, float(edges[k1]), float(edges[k2]), b]

    def snap(self, x: np.ndarray) -> np.ndarray:
        """``x`` (a point, or points in rows) with each discrete coordinate moved to the
        middle of its value's cell: the point of the configuration it decodes to."""
        out = np.array(x, dtype=float)
        for d in self._discrete:
            edges = self.edges[d]
            assert edges is not None
            i = np.clip(np.searchsorted(edges, out[..., d], side="right") - 1, 0, len(edges) - 2)
            out[..., d] = (edges[i] + edges[i + 1]) / 2
        return out


class Tree:
    """Nodes by index (0: the whole cube); each leaf holds at most one *site*, a distinct point
    (by index into ``points``) where evaluations were taken or are in flight."""

    def __init__(self, grid: Grid, dim: int) -> None:
        self.grid = grid
        self.lo, self.hi = np.zeros((64, dim)), np.ones((64, dim))
        self.depth, self.parent, self.first = [0], [-1], [-1]  # first: first child, -1: leaf
        self.dims, self.bounds = [-1], [[0.0]]
        self.site: list[int] = [-1]  # per node
        self.ext = np.zeros((64, dim))  # per node: its extent (sides that can be split)
        self.size: list[float] = []  # per node: the optimism's box size
        self.tie: list[float] = []  # per node: a tie-break, its centre weighted
        self._measure(0)
        self.points: list[np.ndarray] = []  # per site
        self.holder: list[int] = []  # per site: its leaf
        self._log: list[tuple[int, int]] | None = None
        self._mark = 1

    @property
    def count(self) -> int:
        return len(self.depth)

    def leaf(self, x: np.ndarray) -> int:
        node = 0
        while self.first[node] >= 0:
            node = self.child(node, x)
        return node

    def child(self, node: int, x: np.ndarray) -> int:
        bounds = self.bounds[node]
        i = bisect.bisect_right(bounds, float(x[self.dims[node]])) - 1
        return self.first[node] + min(max(i, 0), len(bounds) - 2)

    def children(self, node: int) -> range:
        first = self.first[node]
        return range(first, first + len(self.bounds[node]) - 1) if first >= 0 else range(0)

    def insert(self, x: np.ndarray) -> int:
        """The site of ``x``, new or the same point's; splits leaves until it stands alone. A
        leaf that cannot be split keeps one site, the lexicographically least point (so the
        order of insertion does not matter)."""
        node = self.leaf(x)
        while True:
            s = self.site[node]
            if s < 0:
                self.site[node] = len(self.points)
                self.points.append(x.copy())
                self.holder.append(node)
                return self.site[node]
            if np.array_equal(self.points[s], x):
                return s
            if not self.split(node):
                if tuple(x) < tuple(self.points[s]):
                    self.points[s] = x.copy()
                return s
            node = self.child(node, x)

    def split(self, node: int) -> bool:
        """Split a leaf by the grid's rule; its site moves to the child holding its point."""
        d, bounds = self.would_split(node)
        if d < 0:
            return False
        first = self.count
        k = len(bounds) - 1
        if first + k > len(self.lo):
            self.lo = np.vstack([self.lo, np.zeros_like(self.lo)])
            self.hi = np.vstack([self.hi, np.ones_like(self.hi)])
            self.ext = np.vstack([self.ext, np.zeros_like(self.ext)])
        for i in range(k):
            self.lo[first + i], self.hi[first + i] = self.lo[node], self.hi[node]
            self.lo[first + i, d], self.hi[first + i, d] = bounds[i], bounds[i + 1]
            self.depth.append(self.depth[node] + 1)
            self.parent.append(node)
            self.first.append(-1)
            self.dims.append(-1)
            self.bounds.append([0.0])
            self.site.append(-1)
            self._measure(first + i)
        self.first[node], self.dims[node], self.bounds[node] = first, d, bounds
        s = self.site[node]
        if s >= 0:
            holder = self.child(node, self.points[s])
            self.site[node], self.site[holder], self.holder[s] = -1, s, holder
        if self._log is not None:
            self._log.append((node, s))
        return True

    def _measure(self, node: int) -> None:
        """A new node's extent, size (the length of its extent over the cube's diagonal: 0
        for a box each side of which holds one value) and tie-break."""
        lo, hi = self.lo[node], self.hi[node]
        self.ext[node] = self.grid.extent(lo, hi)
        self.size.append(float(np.linalg.norm(self.ext[node])) / math.sqrt(len(lo)))
        self.tie.append(float(np.dot((lo + hi) / 2, self.grid.weights)))

    def would_split(self, node: int) -> tuple[int, list[float]]:
        """How ``split`` would split ``node``."""
        return self.grid.split(self.lo[node], self.hi[node], self.depth[node], self.ext[node])

    def centre(self, node: int) -> np.ndarray:
        return (self.lo[node] + self.hi[node]) / 2

    def mark(self) -> None:
        """From here on, splits are temporary: ``undo`` takes them back."""
        self._log, self._mark = [], self.count

    def undo(self) -> None:
        assert self._log is not None
        for node, s in reversed(self._log):
            if s >= 0:
                self.site[self.holder[s]], self.site[node], self.holder[s] = -1, s, node
            self.first[node], self.dims[node], self.bounds[node] = -1, -1, [0.0]
        n = self._mark
        del self.depth[n:], self.parent[n:], self.first[n:]
        del self.dims[n:], self.bounds[n:], self.site[n:], self.size[n:], self.tie[n:]
        self._log = None
