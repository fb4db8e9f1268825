"""Particle swarm optimization: pyswarms' backend driven one particle at a time, each move
pre-screened by the shared random-forest surrogate.

The swarm follows Kennedy & Eberhart (1995) with Clerc & Kennedy's (2002) constriction
coefficients (w = 0.7298, c1 = c2 = 1.49618) in [0, 1]^d, with pyswarms' star (global best) or
ring (k nearest neighbours) topology, 'reflective' boundary handling and velocity clamping. The
initial swarm is a scrambled Sobol sample seeded as rf's design (balanced for 8 particles; it
scored as the Latin hypercube it replaces, +0.3 +- 5.5 points).

Surrogate-assisted moves (pre-screening: Jin 2011; Regis, "Particle swarm with radial basis
function surrogates for expensive black-box optimization", 2014): a particle about to move
draws ``candidates`` (32) velocity updates with pyswarms, each with its own r1, r2, plus half as
many Gaussian points (std ``local``, 0.1) around its neighbourhood best, as Regis adds; the
forest scores them (log EI; ``pso_screen.py``: ranks, refits, diversity) and the particle takes
the most promising whose configuration was neither run nor in flight. The candidates are drawn
at the ask, from the particle's latest result with the neighbourhood best as it is then (drawn
when the result came in, as the plain swarm's move is, they scored 9 points lower).
``surrogate: false`` is the plain swarm: it asks ``swarm.position``, the move made when the
result came in. Median regret over 20 seeds, 64 trials in batches of 8 | 32 in batches of 2
(zdt1: hypervolume, higher is better), before (8 + d particles, Latin hypercube start) →
plain → now, with tpe and rf on the same seeds:

    hartmann6     0.88 → 0.57 → 0.35 (tpe 0.37, rf 0.54) | 1.57 → 1.38 → 0.92 (1.04, 1.13)
    rosenbrock-4  339 → 79 → 56 (98, 652)                 | 1390 → 626 → 324 (363, 1238)
    ackley-5      15.2 → 12.9 → 10.3 (10.6, 14.8)         | 18.5 → 17.6 → 15.6 (14.4, 17.1)
    hartmann6+0.3 1.04 → 0.86 → 0.50 (0.66, 0.87)         | 1.54 → 1.51 → 1.07 (0.98, 1.30)
    zdt1 HV       10.70 → 10.85 → 10.97 (10.90, 10.83)    | 9.97 → 10.44 → 10.77 (10.61, 10.65)

Points: Bayesmark's normalized score (0: random search's median regret, 100: the optimum),
averaged over tasks. Eight particles by default (was 8 + d): screened, a small swarm whose
particles move more often wins (five tasks, both budgets, 24 seeds: 6, 8, 10, 14 particles 58,
55, 52, 46 points; so too at d = 10 and 128 trials), and 8 is the smallest that fills a batch
of 8.

Asynchronous PSO: a particle moves as soon as its own result is in, using the current
neighbourhood best, so workers never wait for a whole sweep. The suggestion of id ``k`` is
particle ``k mod swarm_size``'s, and the result of id ``k`` moves that particle (which adopts
the evaluated point as its position), whatever order results arrive in. A particle is never out
twice: ``ask`` skips the ids of particles still in flight. Its velocity is the move that took it
to its latest result (clamped; at its first, pyswarms' initial draw), known from the history
alone, whichever candidate was asked. Every random draw comes from
``np.random`` seeded by (seed, index of the particle's latest result), the forest by (seed,
points it is fit on), so a fresh instance told the history (ids it never issued move the same
particles) and the points in flight asks the same points.

Noise: a particle's best value is the *mean* of the results it obtained within
``revisit_radius`` of its best position (re-evaluation by revisiting), so a lucky draw is
averaged away as the particle comes back near it instead of freezing the swarm on it.

Several objectives: decomposition as in MOEA/D (Zhang & Li 2007). Particle i carries a weight
vector w_i spread over the simplex and minimizes the augmented Chebyshev scalarization
``max_j w_ij |f_j - z_j| / r_j + rho * sum_j w_ij |f_j - z_j| / r_j`` (z: best observed per
objective, r: observed range); its neighbourhood best is judged by its own weights, so the swarm
spreads along the front. The forest screens by a ParEGO scalarization (``surrogate.screen``).

Failed (or non-finite) results never become personal bests and are given the worst finite cost,
so no NaN or inf reaches pyswarms. pyswarms draws from the global ``np.random`` and configures
the root logger on import; both are isolated here.

Pruned trials never become, nor displace, the personal best of a particle with a finished
result; a particle without one remembers its best pruned point (later step, then lower last
loss), and the neighbourhood best ranks such particles after every finished best and before
particles with no best at all. The forest counts them as failed.
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

from hypersearch.algorithms.base import Algorithm, Observation, Suggestion, point_key, register
from hypersearch.algorithms.pruned import pruned_fractions, pruned_key
from hypersearch.algorithms.pso_screen import Screen, pick
from hypersearch.algorithms.surrogate import Scorer, sobol_design
from hypersearch.space import SearchSpace, StrictModel, rule_error

RHO = 0.05  # augmentation of the Chebyshev scalarization (keeps weakly dominated points out)


class PSOOptions(StrictModel):
    swarm_size: Annotated[int, Field(ge=2, le=10_000)] = 8
    topology: Literal["star", "ring"] = "star"
    w: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.7298  # Clerc & Kennedy constriction
    c1: Annotated[float, Field(ge=0.0, le=4.0)] = 1.49618
    c2: Annotated[float, Field(ge=0.0, le=4.0)] = 1.49618
    k: Annotated[int, Field(ge=1)] = 3  # ring: neighbours, the particle included
    p: Literal[1, 2] = 2  # ring: Minkowski norm for the neighbour search
    velocity_clamp: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5  # max |v| per coordinate
    revisit_radius: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05  # per coordinate, RMS
    surrogate: bool = True  # pre-screen candidate moves with a random forest
    candidates: Annotated[int, Field(ge=1, le=10_000)] = 32  # PSO moves drawn per particle
    local: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1  # std of candidates near the best

    @model_validator(mode="after")
    def _k_fits(self) -> PSOOptions:
        ring = self.topology == "ring"
        if ring and self.k > self.swarm_size:
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
    description = "Particle swarm (pyswarms, constriction, asynchronous, surrogate-screened moves)"
    batch_friendly = True
    Options = PSOOptions

    def __init__(self, space: SearchSpace, n_objectives: int, *, seed: int, **options: Any):
        super().__init__(space, n_objectives, seed=seed, **options)
        o = self.options
        d = space.dim
        self.size = o.swarm_size
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
        init = sobol_design(d, self.size, seed)
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
        self.swarm.pbest_cost = np.zeros(self.size)
        self._best_losses = np.zeros((self.size, n_objectives))  # personal-best losses (mean)
        self._best_count = np.zeros(self.size, dtype=int)  # results averaged; 0: no best yet
        # Without a finished best: the rank key of its best pruned point (None: none either).
        self._pruned_best: list[tuple[float, float] | None] = [None] * self.size
        self._weights = _weights(self.size, n_objectives, seed)
        self._ideal = np.full(n_objectives, np.inf)
        self._worst = np.full(n_objectives, -np.inf)
        self._told = 0  # results told: seeds the random draws of the next move
        # Where each particle is (its latest result), the velocity that took it there, and the
        # index of that result (-1: none yet; it waits at its initial position).
        self._at = self.swarm.position.copy()
        self._velocity = self.swarm.velocity.copy()
        self._index = np.full(self.size, -1)
        self.screen = Screen(d, seed)  # every told point, and the forest fit on them
        self._run: set[bytes] = set()  # the configurations told (their snapped points' keys)

    # -- ask / tell ---------------------------------------------------------------------------

    def particle(self, id_: int) -> int:
        """The particle that suggests (and is moved by the result of) id ``id_``."""
        return id_ % self.size

    def ask(self, n: int) -> list[Suggestion]:
        """Up to ``n`` particles not in flight, in id order (skipping busy particles' ids),
        each at its next point (``_next``); the forest is fit at most once per call."""
        busy = {self.particle(id_) for id_ in self.in_flight}
        chosen: list[tuple[int, int]] = []
        id_ = self.next_id
        while len(chosen) < n and len(busy) < self.size:
            i = self.particle(id_)
            if i not in busy:
                busy.add(i)
                chosen.append((id_, i))
            id_ += 1
        screened = self.options.surrogate and any(self._index[i] >= 0 for _, i in chosen)
        scorer = self.screen.scorer() if screened else None
        taken = self._run | {point_key(self._snap(x)) for x in self.in_flight.values()}
        suggestions = []
        for id_, i in chosen:
            x = self._next(i, scorer, taken)
            taken.add(point_key(self._snap(x)))
            suggestions.append(self.issue(x, id_))
        return suggestions

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs, _ in self.arrivals(observations):  # a foreign id takes its particle's turn
            x = np.clip(np.asarray(obs.x, dtype=float), 0.0, 1.0)
            i = self.particle(obs.id)
            if self._index[i] >= 0:  # the move that got it here (its first: pyswarms' draw)
                self._velocity[i] = np.clip(x - self._at[i], *self._clamp)
            self._at[i], self._index[i] = x, self._told
            self._update(i, x, obs)
            self._rank(i)
            moves, velocities = self._moves(i, 1, [self.seed, 1, self._told])
            self.swarm.position[i], self.swarm.velocity[i] = moves[0], velocities[0]
            self._told += 1
            self.screen.add(x, obs.losses)
            self._run.add(point_key(self._snap(x)))

    def _snap(self, x: np.ndarray) -> np.ndarray:
        """The cube point of the configuration ``x`` decodes to: what gets run."""
        return np.asarray(self.space.encode(self.space.decode(x)), dtype=float)

    # -- the swarm ----------------------------------------------------------------------------

    def _update(self, i: int, x: np.ndarray, obs: Observation) -> None:
        """Particle ``i`` is at ``x`` now: its personal best may change."""
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

    def _rank(self, i: int) -> None:
        """Personal-best costs as particle ``i`` judges them, into ``swarm.pbest_cost``."""
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

    def _moves(self, i: int, k: int, seed_words: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``k`` constricted velocity and position updates of particle ``i`` from where it is
        (pyswarms), each with its own random draws, and with ``k > 1`` half as many Gaussian
        points around its neighbourhood best (Regis 2014): the positions, and the velocities
        of the pyswarms updates (the first ``k`` rows)."""
        swarm, o = self.swarm, self.options
        with _global_rng(seed_words):
            if o.topology == "ring":
                best_pos, _ = self._topology.compute_gbest(swarm, p=o.p, k=self._k)
                best = np.asarray(best_pos[i], dtype=float)
            else:
                best = np.asarray(self._topology.compute_gbest(swarm)[0], dtype=float)
            many = self._Swarm(
                position=np.repeat(self._at[i : i + 1], k, axis=0),
                velocity=np.repeat(self._velocity[i : i + 1], k, axis=0),
                options=swarm.options,
            )
            many.pbest_pos = np.repeat(swarm.pbest_pos[i : i + 1], k, axis=0)
            many.best_pos = np.repeat(best[None, :], k, axis=0)
            velocities = self._ops.compute_velocity(many, self._clamp, self._vh, self._bounds)
            many.velocity = velocities
            moves = np.clip(self._ops.compute_position(many, self._bounds, self._bh), 0.0, 1.0)
            if o.local > 0 and k > 1:
                near = best + o.local * np.random.standard_normal((k // 2, self.space.dim))
                near = np.clip(self._bh(near, self._bounds), 0.0, 1.0)
                moves = np.vstack([moves, near])
        return moves, velocities

    # -- the surrogate ------------------------------------------------------------------------

    def _next(self, i: int, scorer: Scorer | None, taken: set[bytes]) -> np.ndarray:
        """Particle ``i``'s next point: its initial one, its plain move, or with the surrogate
        the most promising of its candidate moves (drawn now, from the neighbourhood best as
        it is now) that runs a configuration neither run nor in flight."""
        if scorer is None or self._index[i] < 0:
            return np.clip(self.swarm.position[i], 0.0, 1.0).copy()
        self._rank(i)
        moves, _ = self._moves(i, self.options.candidates, [self.seed, 4, int(self._index[i])])
        return moves[pick(scorer(moves), lambda j: point_key(self._snap(moves[j])) not in taken)]
