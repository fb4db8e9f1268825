"""What algorithms learn from pruned trials (stopped early by a scheduler), in one place.

A pruned trial has no final result, so it must never pass for a finished one; but how far it
got, and its curve on the way, say something. Two rules serve the algorithms:

* a ranking (ga, pso, astar; the order Optuna's TPE applies, ``_get_pruned_trial_score``):
  every pruned trial below every finished one, pruned trials among themselves by the step they
  reached (later is better), then by their loss at their last reported step (lower is better;
  NaN or no report last);
* a fidelity to model (rf, as BOHB: Falkner, Klein & Hutter, ICML 2018, Algorithm 2): the
  final results while enough trials finished, else the highest step that enough trials
  reached, each trial valued by its curve there.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

import numpy as np

from hypersearch.algorithms.base import Observation


def last_loss(curve: Mapping[int, float]) -> float:
    """The loss at the last reported step: +inf when NaN or when nothing was reported."""
    if not curve:
        return math.inf
    value = float(curve[max(curve)])
    return math.inf if math.isnan(value) else value


def pruned_key(obs: Observation) -> tuple[float, float]:
    """Sort key of a pruned trial, lower is better: (-step reached, last loss)."""
    return (-float(obs.step or 0), last_loss(obs.curve))


def pruned_fractions(keys: Sequence[tuple[float, float]]) -> np.ndarray:
    """Each key's place among ``keys`` as a fraction in (0, 1), larger is worse; equal keys
    share it. Used to put pruned trials between the worst finished value and failures."""
    place = {key: i for i, key in enumerate(sorted(set(keys)))}
    return np.array([(1 + place[key]) / (len(place) + 1) for key in keys], dtype=float)


# --- the fidelity rf models (BOHB) ---------------------------------------------------------------


class Fidelity:
    """The trials told so far, seen as BOHB's data sets per budget: ``D_final`` holds the
    finished trials' first losses; ``D_s`` every trial that reached step ``s``, valued by its
    curve at ``s`` (the latest report at or before ``s``; a finished trial that reported
    nothing by then counts with its final loss)."""

    def __init__(self, losses: Sequence[float | None], observations: Sequence[Observation]):
        self.losses = list(losses)  # first loss of each trial, None unless finished (finite)
        self.stops = [obs.step if obs.pruned else None for obs in observations]
        self.curves = [dict(obs.curve) for obs in observations]
        self.steps = [sorted(curve) for curve in self.curves]

    def value(self, i: int, step: int) -> float | None:
        """Trial ``i``'s loss at ``step``; None if it did not get there."""
        stop, finished = self.stops[i], self.losses[i] is not None
        if not finished and (stop is None or stop < step):
            return None
        k = bisect.bisect_right(self.steps[i], step)
        if k:
            return float(self.curves[i][self.steps[i][k - 1]])
        return self.losses[i] if finished else None

    def count(self, step: int | None) -> int:
        """How many trials have a finite value at ``step`` (None: the final results)."""
        if step is None:
            return sum(loss is not None for loss in self.losses)
        values = (self.value(i, step) for i in range(len(self.losses)))
        return sum(v is not None and math.isfinite(v) for v in values)

    def level(self, enough: int) -> int | None:
        """The fidelity to model (None: final results): the final results if ``enough``
        trials finished, else the highest step a pruned trial reported that ``enough``
        trials reached, else whichever level has the most data (the higher on ties)."""
        reported = {
            step
            for stop, steps in zip(self.stops, self.steps, strict=True)
            if stop is not None
            for step in steps
        }
        levels: list[int | None] = [None, *sorted(reported, reverse=True)]
        counts = [self.count(level) for level in levels]
        for level, n in zip(levels, counts, strict=True):
            if n >= enough:
                return level
        return levels[int(np.argmax(counts))]

    def values(self, step: int | None) -> np.ndarray:
        """Every trial's value at ``step`` (NaN where it has none)."""
        if step is None:
            return np.array([np.nan if v is None else v for v in self.losses], dtype=float)
        got = (self.value(i, step) for i in range(len(self.losses)))
        return np.array([np.nan if v is None else v for v in got], dtype=float)
