"""Random search: a scrambled Sobol sequence first (even coverage), then uniform draws.

The baseline every other algorithm must beat. Its state is just how many points it has issued,
so a fresh instance told ``k`` foreign observations continues where the original left off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
from pydantic import Field

from hypersearch.algorithms.base import Algorithm, Observation, point_key, register
from hypersearch.space import StrictModel


class RandomOptions(StrictModel):
    sobol_points: Annotated[int, Field(ge=0, le=2**16)] = 64  # a power of two keeps balance


@register
class RandomSearch(Algorithm):
    name = "random"
    description = "Random search: scrambled Sobol points, then uniform (the baseline)"
    batch_friendly = True
    Options = RandomOptions

    def __init__(self, space, n_objectives, *, seed, **options):  # type: ignore[no-untyped-def]
        super().__init__(space, n_objectives, seed=seed, **options)
        n_sobol = self.options.sobol_points
        from scipy.stats import qmc  # lazily: scipy.stats is slow to import

        self._sobol = (
            qmc.Sobol(space.dim, scramble=True, rng=self.rng).random(n_sobol)
            if n_sobol
            else np.empty((0, space.dim))
        )
        self._issued = 0
        self._asked: set[bytes] = set()

    def _point(self, index: int) -> np.ndarray:
        if index < len(self._sobol):
            return self._sobol[index].copy()
        # Uniform draws keyed by index, so the sequence does not depend on batch sizes.
        return np.random.default_rng([self.seed, index]).random(self.space.dim)

    def ask(self, n: int) -> list[np.ndarray]:
        points = [self._point(self._issued + i) for i in range(n)]
        self._issued += n
        self._asked.update(point_key(p) for p in points)
        return points

    def pending(self, points: Sequence[np.ndarray]) -> None:
        self._issued += len(points)
        self._asked.update(point_key(p) for p in points)

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs in observations:
            key = point_key(obs.x)
            if key in self._asked:
                self._asked.discard(key)
            else:  # a foreign point (resume): it took one place in the sequence
                self._issued += 1
