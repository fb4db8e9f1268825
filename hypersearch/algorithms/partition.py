"""The boxes of astar's partition tree, and the surrogate bound it may use as optimism.

Kept apart from ``astar.py`` so the search (selection, priorities, rebuild) reads on its own.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hypersearch.algorithms.base import point_key
from hypersearch.algorithms.surrogate import fit_forest as fit_rf_forest
from hypersearch.algorithms.surrogate import predict_mean_var


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
    """``X -> (means, variances)``: the rf algorithm's surrogate fit on ``(xs, ys)``."""
    model = fit_rf_forest(xs, ys, seed=seed)
    return lambda X: predict_mean_var(model, X)
