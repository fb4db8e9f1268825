"""Pareto fronts and hypervolume, on losses (every objective minimized).

Non-dominated filtering and hypervolume come from moocore (a DEAP dependency). The hypervolume
reference point is derived reproducibly from the observed losses: the worst value of each
objective plus 10% of its observed range (1 where the range is zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import moocore
import numpy as np


def to_losses(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Objective values (n, m) as losses: maximized columns negated."""
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.asarray(values, dtype=float) * signs


def front_mask(losses: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows (ties are all kept)."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return np.zeros(0, dtype=bool)
    if losses.shape[1] == 1:
        return losses[:, 0] == losses[:, 0].min()
    return np.asarray(moocore.is_nondominated(losses, keep_weakly=True), dtype=bool)


def reference_point(losses: np.ndarray) -> np.ndarray:
    """Worst observed loss of each objective plus 10% of its range."""
    losses = np.asarray(losses, dtype=float)
    worst, best = losses.max(axis=0), losses.min(axis=0)
    span = np.where(worst > best, worst - best, 1.0)
    return worst + 0.1 * span


def hypervolume(losses: np.ndarray, reference: np.ndarray | None = None) -> float:
    """Hypervolume dominated by ``losses`` up to ``reference`` (derived if not given)."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return 0.0
    ref = reference_point(losses) if reference is None else np.asarray(reference, dtype=float)
    return float(moocore.hypervolume(losses, ref=ref))
