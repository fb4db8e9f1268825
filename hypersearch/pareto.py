"""Pareto fronts, non-dominated ranks and hypervolume, on losses (every objective minimized).

Non-dominated sorting and hypervolume come from moocore (a DEAP dependency). The hypervolume
reference point is either given in the experiment (``reference_point``) or derived reproducibly
from the observed losses: the worst value of each objective plus 10% of its observed range (1
where the range is zero). Comparisons of several runs derive it from all their trials together, so
that their hypervolumes are measured against the same point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import moocore
import numpy as np


def to_losses(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Objective values (n, m) as losses: maximized columns negated."""
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.asarray(values, dtype=float).reshape(-1, len(signs)) * signs


def front_mask(losses: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows (ties are all kept)."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return np.zeros(0, dtype=bool)
    if losses.shape[1] == 1:
        return losses[:, 0] == losses[:, 0].min()
    return np.asarray(moocore.is_nondominated(losses, keep_weakly=True), dtype=bool)


def ranks(losses: np.ndarray) -> np.ndarray:
    """Non-dominated sorting: 1 for the front, 2 for the front of what remains, and so on."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return np.zeros(0, dtype=int)
    if losses.shape[1] == 1:  # one objective: dense ranking of the values
        return np.unique(losses[:, 0], return_inverse=True)[1].astype(int) + 1
    return np.asarray(moocore.pareto_rank(losses), dtype=int) + 1


def reference_point(losses: np.ndarray) -> np.ndarray:
    """Worst observed loss of each objective plus 10% of its range."""
    losses = np.asarray(losses, dtype=float)
    worst, best = losses.max(axis=0), losses.min(axis=0)
    span = np.where(worst > best, worst - best, 1.0)
    return worst + 0.1 * span


def given_reference(
    reference: Mapping[str, float] | None, objectives: Mapping[str, str]
) -> np.ndarray | None:
    """The experiment's ``reference_point`` (in the metrics' own units) as losses."""
    if reference is None:
        return None
    values = np.array([[reference[m] for m in objectives]], dtype=float)
    return to_losses(values, list(objectives.values()))[0]


def hypervolume(losses: np.ndarray, reference: np.ndarray | None = None) -> float:
    """Hypervolume dominated by ``losses`` up to ``reference`` (derived if not given); points
    that do not strictly dominate the reference contribute nothing."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        return 0.0
    ref = reference_point(losses) if reference is None else np.asarray(reference, dtype=float)
    inside = losses[np.all(losses < ref, axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(moocore.hypervolume(inside, ref=ref))


def hypervolume_curve(losses: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Hypervolume of the first 1, 2, … rows (NaN rows, failed trials, add nothing)."""
    losses = np.asarray(losses, dtype=float)
    curve = np.zeros(len(losses))
    front = np.empty((0, losses.shape[1]))
    for i, row in enumerate(losses):
        if np.all(np.isfinite(row)) and np.all(row < reference):
            front = np.vstack([front, row])
            front = front[front_mask(front)]
            curve[i] = moocore.hypervolume(front, ref=reference)
        else:
            curve[i] = curve[i - 1] if i else 0.0
    return curve
