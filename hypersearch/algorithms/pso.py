"""Particle swarm optimization: pyswarms' backend driven one particle at a time.

The swarm follows Kennedy & Eberhart (1995) with Clerc & Kennedy's (2002) constriction
coefficients (w = 0.7298, c1 = c2 = 1.49618) in [0, 1]^d, with pyswarms' star (global best) or
ring (k nearest neighbours) topology, 'reflective' boundary handling and velocity clamping.

Asynchronous PSO: a particle moves as soon as its own result is in, using the current
neighbourhood best, so workers never wait for a whole sweep. The suggestion of id ``k`` is
particle ``k mod swarm_size``'s position, and the result of id ``k`` moves that particle
(which adopts the evaluated point as its position), whatever order results arrive in. A
particle is never out twice: ``ask`` skips the ids of particles still in flight (a slow trial
holds back only its own particle, never a worker). Every random
draw comes from ``np.random`` seeded by (seed, number of results told), so the state is a
function of the seed and the ordered history: a fresh instance told the history (ids it never
issued, which move the same particles) asks the same points.

Noise: a particle's best value is the *mean* of the results it obtained within
``revisit_radius`` of its best position (re-evaluation by revisiting). A lucky draw is averaged
away as the particle comes back near it, instead of freezing the swarm on it forever; on a
noiseless function nearby values agree, so little is lost.

Several objectives: decomposition as in MOEA/D (Zhang & Li 2007). Particle i carries a weight
vector w_i spread over the simplex and minimizes the augmented Chebyshev scalarization
``max_j w_ij |f_j - z_j| / r_j + rho * sum_j w_ij |f_j - z_j| / r_j`` (z: best observed per
objective, r: observed range), and its neighbourhood best is judged by its own weights, so the
swarm spreads along the front rather than chasing the first objective.

Failed (or non-finite) results never become personal bests and are given the worst finite cost,
so no NaN or inf reaches pyswarms. pyswarms draws from the global ``np.random`` and configures
the root logger on import; both are isolated here.

Pruned trials never become, nor displace, the personal best of a particle with a finished
result; a particle without one remembers its best pruned point (later step, then lower last
loss) rather than where it is, and the neighbourhood best ranks such particles after every
finished best and before particles with no best at all.
"""

from __future__ import annotations

import logging.config
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, Literal
from unittest import mock

import numpy as np
from pydantic import Field, model_validator

from hypersearch.algorithms.base import Algorithm, Observation, Suggestion, register
from hypersearch.algorithms.pruned import pruned_fractions, pruned_key
from hypersearch.space import SearchSpace, StrictModel, rule_error

RHO = 0.05  # augmentation of the Chebyshev scalarization (keeps weakly dominated points out)


class PSOOptions(StrictModel):
    swarm_size: Annotated[int, Field(ge=2, le=10_000)] | None = None  # None: 8 + d
    topology: Literal["star", "ring"] = "star"
    w: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.7298  # Clerc & Kennedy constriction
    c1: Annotated[float, Field(ge=0.0, le=4.0)] = 1.49618
    c2: Annotated[float, Field(ge=0.0, le=4.0)] = 1.49618
    k: Annotated[int, Field(ge=1)] = 3  # ring: neighbours, the particle included
    p: Literal[1, 2] = 2  # ring: Minkowski norm for the neighbour search
    velocity_clamp: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5  # max |v| per coordinate
    revisit_radius: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05  # per coordinate, RMS

    @model_validator(mode="after")
    def _k_fits(self) -> PSOOptions:
        ring = self.topology == "ring"
        if ring and self.swarm_size is not None and self.k > self.swarm_size:
            raise rule_error("k", f"must be <= swarm_size ({self.swarm_size}) (got {self.k})")
        return self


@contextmanager
def _global_rng(seed_words: Sequence[int]) -> Iterator[None]:
    """Seed the global ``np.random`` for a pyswarms call, then put both global states back."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(int(np.random.SeedSequence(list(seed_words)).generate_state(1)[0]))
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _pyswarms() -> Any:
    """Import pyswarms without letting its Reporter reconfigure the root logger (and write
    ./report.log), which it does on import and whenever a topology or handler is built."""
    with mock.patch.object(logging.config, "dictConfig"):
        import pyswarms.backend as backend
        from pyswarms.backend.handlers import BoundaryHandler, VelocityHandler
        from pyswarms.backend.topology import Ring, Star
    return backend, BoundaryHandler, VelocityHandler, Ring, Star


def _weights(n: int, m: int, seed: int) -> np.ndarray:
    """One weight vector per particle: evenly spaced for two objectives, else Dirichlet."""
    if m == 1:
        return np.ones((n, 1))
    if m == 2:
        t = np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])
        return np.column_stack([t, 1.0 - t])
    return np.random.default_rng([seed, 2]).dirichlet(np.ones(m), size=n)


@register
class PSO(Algorithm):
    name = "pso"
    description = "Particle swarm (pyswarms backend, constriction, asynchronous, star or ring)"
    batch_friendly = True
    Options = PSOOptions

    def __init__(self, space: SearchSpace, n_objectives: int, *, seed: int, **options: Any):
        super().__init__(space, n_objectives, seed=seed, **options)
        o = self.options
        d = space.dim
        self.size = o.swarm_size or 8 + d
        backend, BoundaryHandler, VelocityHandler, Ring, Star = _pyswarms()
        self._ops = backend.operators
        self._Swarm = backend.swarms.Swarm
        with mock.patch.object(logging.config, "dictConfig"):
            self._topology = Ring(static=False) if o.topology == "ring" else Star()
            self._bh = BoundaryHandler(strategy="reflective")
            self._vh = VelocityHandler(strategy="unmodified")
        self._bounds = (np.zeros(d), np.ones(d))
        self._clamp = (-o.velocity_clamp, o.velocity_clamp)
        self._k = min(o.k, self.size)
        # Latin hypercube start (even coverage for small budgets), drawn from our own RNG.
        from scipy.stats import qmc  # lazily: scipy.stats is slow to import

        init = qmc.LatinHypercube(d, rng=self.rng).random(self.size)
        with _global_rng([seed, 0]):
            self.swarm = backend.generators.create_swarm(
                n_particles=self.size,
                dimensions=d,
                options={"w": o.w, "c1": o.c1, "c2": o.c2},
                bounds=self._bounds,
                init_pos=init,
                clamp=self._clamp,
            )
        self.swarm.pbest_pos = self.swarm.position.copy()
        self._best_losses = np.zeros((self.size, n_objectives))  # personal-best losses (mean)
        self._best_count = np.zeros(self.size, dtype=int)  # results averaged; 0: no best yet
        # Without a finished best: the rank key of its best pruned point (None: none either).
        self._pruned_best: list[tuple[float, float] | None] = [None] * self.size
        self._weights = _weights(self.size, n_objectives, seed)
        self._ideal = np.full(n_objectives, np.inf)
        self._worst = np.full(n_objectives, -np.inf)
        self._told = 0  # results told: seeds the random draws of the next move

    # -- ask / tell ---------------------------------------------------------------------------

    def particle(self, id_: int) -> int:
        """The particle that suggests (and is moved by the result of) id ``id_``."""
        return id_ % self.size

    def ask(self, n: int) -> list[Suggestion]:
        """Up to ``n`` particles not in flight, in id order (skipping busy particles' ids)."""
        busy = {self.particle(id_) for id_ in self.in_flight}
        suggestions: list[Suggestion] = []
        id_ = self.next_id
        while len(suggestions) < n and len(busy) < self.size:
            i = self.particle(id_)
            if i not in busy:
                busy.add(i)
                position = np.clip(self.swarm.position[i], 0.0, 1.0).copy()
                suggestions.append(self.issue(position, id_))
            id_ += 1
        return suggestions

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs, _ in self.arrivals(observations):  # a foreign id takes its particle's turn
            self._update(self.particle(obs.id), self._told, obs)
            self._told += 1

    # -- the swarm ----------------------------------------------------------------------------

    def _update(self, i: int, index: int, obs: Observation) -> None:
        x = np.clip(np.asarray(obs.x, dtype=float), 0.0, 1.0)
        self.swarm.position[i] = x
        losses = None if obs.losses is None else np.asarray(obs.losses, dtype=float)
        if (
            losses is not None
            and losses.shape == (self.n_objectives,)
            and np.all(np.isfinite(losses))
        ):
            self._ideal = np.minimum(self._ideal, losses)
            self._worst = np.maximum(self._worst, losses)
            self._personal_best(i, x, losses)
        elif self._best_count[i]:
            pass  # a finished best stays: nothing pruned or failed displaces it
        elif obs.pruned:
            key, held = pruned_key(obs), self._pruned_best[i]
            if held is None or key < held:  # got further, or as far with a lower loss
                self.swarm.pbest_pos[i], self._pruned_best[i] = x, key
        elif self._pruned_best[i] is None:
            self.swarm.pbest_pos[i] = x  # no best yet: its only memory is where it is
        self._move(i, index)

    def _personal_best(self, i: int, x: np.ndarray, losses: np.ndarray) -> None:
        """Improve, or average in a revisit near the best (noise: a lucky draw fades)."""
        n = self._best_count[i]
        if n == 0:
            self.swarm.pbest_pos[i], self._best_losses[i], self._best_count[i] = x, losses, 1
            return
        better = self._cost(losses, i) < self._cost(self._best_losses[i], i)
        distance = np.sqrt(np.mean((x - self.swarm.pbest_pos[i]) ** 2))
        if distance <= self.options.revisit_radius:
            self._best_losses[i] = (n * self._best_losses[i] + losses) / (n + 1)
            self._best_count[i] = n + 1
            if better:
                self.swarm.pbest_pos[i] = x
        elif better:
            self.swarm.pbest_pos[i], self._best_losses[i], self._best_count[i] = x, losses, 1

    def _cost(self, losses: np.ndarray, i: int) -> float:
        """Particle ``i``'s scalar loss: the loss itself, or its augmented Chebyshev value."""
        if self.n_objectives == 1:
            return float(losses[0])
        scale = np.maximum(self._worst - self._ideal, 1e-12)
        terms = self._weights[i] * np.abs(losses - self._ideal) / scale
        return float(terms.max() + RHO * terms.sum())

    def _move(self, i: int, index: int) -> None:
        """One constricted velocity and position update of particle ``i`` (pyswarms)."""
        costs = np.array(
            [
                self._cost(self._best_losses[j], i) if self._best_count[j] else np.nan
                for j in range(self.size)
            ]
        )
        valid = np.isfinite(costs)
        worst = costs[valid].max() + 1.0 if valid.any() else 0.0
        swarm = self.swarm
        swarm.pbest_cost = np.where(valid, costs, worst)  # failures rank worst, never NaN
        held = {j: k for j, k in enumerate(self._pruned_best) if k is not None and not valid[j]}
        if held:  # pruned bests: after every finished best, before particles without a best
            swarm.pbest_cost[~valid] = worst + 1.0
            swarm.pbest_cost[list(held)] = worst + pruned_fractions(list(held.values()))
        swarm.best_cost = np.inf
        with _global_rng([self.seed, 1, index]):
            if self.options.topology == "ring":
                best_pos, _ = self._topology.compute_gbest(swarm, p=self.options.p, k=self._k)
                best = best_pos[i]
            else:
                best, _ = self._topology.compute_gbest(swarm)
            one = self._Swarm(
                position=swarm.position[i : i + 1].copy(),
                velocity=swarm.velocity[i : i + 1].copy(),
                options=swarm.options,
            )
            one.pbest_pos = swarm.pbest_pos[i : i + 1].copy()
            one.best_pos = np.asarray(best, dtype=float)[None, :]
            one.velocity = self._ops.compute_velocity(one, self._clamp, self._vh, self._bounds)
            one.position = self._ops.compute_position(one, self._bounds, self._bh)
        swarm.velocity[i] = one.velocity[0]
        swarm.position[i] = np.clip(one.position[0], 0.0, 1.0)
