"""Random search: a scrambled Sobol sequence first (even coverage), then uniform draws.

The baseline every other algorithm must beat. The point of id ``k`` is the ``k``-th of the
sequence, so a fresh instance told the history (ids it never issued) continues where the
original left off, and ids taken by other trials (a lost worker's retry) skip a point.
Pruned trials: nothing to learn, as from any result; a pruned trial's id counts like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from hypersearch.algorithms.base import Algorithm, Observation, Suggestion, register
from hypersearch.space import SearchSpace, StrictModel


class RandomOptions(StrictModel):
    sobol_points: Annotated[int, Field(ge=0, le=2**16)] = 64  # a power of two keeps balance


@register
class RandomSearch(Algorithm):
    name = "random"
    description = "Random search: scrambled Sobol points, then uniform (the baseline)"
    batch_friendly = True
    Options = RandomOptions

    def __init__(self, space: SearchSpace, n_objectives: int, *, seed: int, **options: Any):
        super().__init__(space, n_objectives, seed=seed, **options)
        n_sobol = self.options.sobol_points
        from scipy.stats import qmc  # lazily: scipy.stats is slow to import

        self._sobol = (
            qmc.Sobol(space.dim, scramble=True, rng=self.rng).random(n_sobol)
            if n_sobol
            else np.empty((0, space.dim))
        )

    def _point(self, index: int) -> np.ndarray:
        if index < len(self._sobol):
            return self._sobol[index].copy()
        # Uniform draws keyed by index, so the sequence does not depend on batch sizes.
        return np.random.default_rng([self.seed, index]).random(self.space.dim)

    def ask(self, n: int) -> list[Suggestion]:
        return [self.issue(self._point(self.next_id)) for _ in range(n)]

    def tell(self, observations: Sequence[Observation]) -> None:
        for _ in self.arrivals(observations):  # nothing to learn: only the ids count
            pass
