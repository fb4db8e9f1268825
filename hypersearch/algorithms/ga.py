"""Genetic algorithm on the unit cube, built on DEAP's operators, its offspring pre-screened
by a random-forest surrogate.

Real-valued genomes in [0, 1]^d (the space decodes ints and categoricals). Parents are chosen by
binary tournament, recombined by bounded simulated binary crossover (Deb & Agrawal 1995) and
perturbed by bounded polynomial mutation (Deb & Goyal 1996). Survivors are chosen elitist
(μ+λ): the best ``population`` of parents and offspring, or, with several objectives, NSGA-II's
non-dominated sorting and crowding distance (Deb et al. 2002), whose crowded comparison
(front rank, then crowding) is also what the parent tournament compares. The first generation
is a scrambled Sobol sample, seeded as rf's initial design.

Why a surrogate (Jin 2011, pre-screening; ``ga_screen``): with budgets of tens of trials a GA has a
handful of generations, and most offspring are spent where the history already says nothing good is.
From generation 1 on, each generation makes ``candidates`` (16) times as many offspring as it asks,
with the same selection, crossover and mutation, and asks those with the best log EI under a forest
fit on the ranks of every told loss (ParEGO-scalarized with several objectives; failed and pruned
trials count as failures), kept apart from one another and from every told point. The forest is
refit, and the generation's offspring re-screened, whenever results arrived since the last ask
(``surrogate.fitted``: per ask up to 64 told, then per 1/64th growth): asked two at a time, a
generation's later offspring learn from its first. Selection, survivors and NSGA-II are unchanged:
the model only picks which offspring get a trial. ``surrogate: false`` is the plain GA.

Measured (30 seeds, median final regret, lower is better; zdt1: hypervolume at (1.1, 11),
higher is better), before (plain GA, Latin hypercube start) → now, against tpe and rf measured
in the same run:

============  ==================  ==============  =============
64 by 8       before → now        tpe             rf
============  ==================  ==============  =============
hartmann6     0.97 → 0.41         0.44            0.57
rosenbrock-4  350 → 164           97              654
ackley-5      16.7 → 11.1         10.6            14.6
hartmann6+N   1.38 → 0.54         0.63            0.81
zdt1 (HV)     10.6 → 11.1         10.9            10.8
32 by 2       before → now        tpe             rf
hartmann6     1.92 → 1.21         1.06            1.13
rosenbrock-4  1910 → 661          398             1430
ackley-5      18.2 → 16.5         14.3            17.2
hartmann6+N   1.91 → 1.58         1.00            1.30
zdt1 (HV)     9.93 → 10.6         10.6            10.6
============  ==================  ==============  =============

(N: told values with Gaussian noise of std 0.3.) Then, on the quality suite's tune half
(``benchmarks/quality.py``, 9 tasks, 10 seeds, Bayesmark's score): re-screening at each ask
took 32 by 2 from 13.5 to 24.0 and, with ranks in place of log-costs, to 28.4 (64 by 8: 50.3,
52.7, 50.6; ranks alone 17.1 and 50.5). Not adopted, measured:
widening mutation (eta halved, rate doubled) after a generation without improvement (hartmann6
0.57, rosenbrock 335) or narrowing it (no change); 4 to 32 candidates measured alike; the Sobol
start measured like the Latin hypercube one (hartmann6 0.36 and 0.40 over 60 seeds).

Why the state is rebuilt from the history: resume must ask what the uninterrupted run would have
asked. Generation ``k`` is defined by the told history alone: its parents are the survivors of the
first ``k * population`` told observations (in telling order; foreign points from a warm start or
resume take a place like any other), its offspring are drawn from a generator seeded by (seed, k),
and the forest that screens them is fit on (a prefix of) the told history. ``ask`` hands out
offspring not yet evaluated nor in flight, at most ``population`` per generation, so it returns
fewer (even none) while a generation's results are outstanding: the generation barrier.
DEAP draws from the global ``random`` module; every DEAP call runs with ``random`` seeded from
our own generator and the global state restored after.

Pruned trials rank below every finished trial and above every failed one, among themselves by
the step reached (later first), then their last reported loss: when a generation closes, each
pruned individual of the pool gets, on every objective, a loss in (2e299, 9e299) by that rank.
Survivor selection, tournaments and NSGA-II (where every finished trial dominates it) keep a
pruned parent only when too few trials finished.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import numpy as np
from deap import base, tools
from pydantic import Field, model_validator

from hypersearch.algorithms.base import Algorithm, Observation, Suggestion, register
from hypersearch.algorithms.ga_screen import prescreen
from hypersearch.algorithms.pruned import pruned_fractions, pruned_key
from hypersearch.algorithms.surrogate import fitted, sobol_design
from hypersearch.space import SearchSpace, StrictModel

FAILED = 1e300  # a failed (or non-finite) trial's loss on every objective: worst, never NaN
_LIMIT = 1e299  # finite losses are clipped below FAILED so that failures always rank last
PRUNED_LOW, PRUNED_HIGH = 2e299, 9e299  # pruned trials: between _LIMIT and FAILED, by rank
_VARIATION_ROUNDS = 16  # offspring rounds tried per generation before falling back to uniform
_UNIFORM_ROUNDS = 16  # then uniform rounds; past those the space is taken as exhausted


def default_population(dim: int) -> int:
    """CMA-ES's 4 + 3 ln d (Hansen 2016) to the nearest multiple of 4, at least 8.

    Small on purpose: budgets of tens of trials leave a large population too few generations
    (measured: 8 beats 12 on hartmann6 with 64 trials). The floor of 8 keeps tournaments
    meaningful; a multiple of 4 fills crossover pairs and whole batches at the usual
    parallelism of 2, 4 or 8 trials (the engine asks for its free slots, so a population that
    is a multiple of ``parallel`` never leaves a slot idle at the generation barrier).
    """
    return max(8, 4 * round((4 + 3 * math.log(max(dim, 1))) / 4))


class GAOptions(StrictModel):
    population: Annotated[int, Field(ge=4, le=100_000)] | None = None  # None: default_population
    crossover: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9  # probability per pair
    mutation: Annotated[float, Field(ge=0.0, le=1.0)] | None = None  # per gene; None: 1/d
    eta_crossover: Annotated[float, Field(gt=0.0, le=1000.0)] = 5.0  # SBX index: wide children
    eta_mutation: Annotated[float, Field(gt=0.0, le=1000.0)] = 20.0  # polynomial mutation index
    tournament: Annotated[int, Field(ge=1, le=100)] = 2
    surrogate: bool = True  # pre-screen offspring with the random forest (False: plain GA)
    candidates: Annotated[int, Field(ge=1, le=256)] = 16  # offspring made per one asked

    @model_validator(mode="after")
    def _tournament_fits(self) -> GAOptions:
        if self.population is not None and self.tournament > self.population:
            raise ValueError(
                f"tournament ({self.tournament}) must not exceed population ({self.population})"
            )
        return self


@contextlib.contextmanager
def isolated_random(seed: int) -> Iterator[None]:
    """Run DEAP with ``random`` seeded by us; restore the global random and numpy states."""
    saved, saved_np = random.getstate(), np.random.get_state()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved)
        np.random.set_state(saved_np)


class _Individual(list):
    """A genome (list of genes in [0, 1]) with a DEAP fitness."""

    fitness: base.Fitness
    pruned: tuple[float, float] | None = None  # a pruned trial's rank key (pruned.pruned_key)
    told: tuple[float, ...] | None = None  # the losses as told (None: failed or pruned)
    key: bytes = b""  # the configuration it ran (GeneticAlgorithm._key)


def _fitness_class(n_objectives: int) -> type[base.Fitness]:
    return type("Fitness", (base.Fitness,), {"weights": (-1.0,) * n_objectives})


class _Rank(base.Fitness):
    """NSGA-II crowded comparison as a fitness: lower front first, then larger crowding."""

    weights = (-1.0, 1.0)


@register
class GeneticAlgorithm(Algorithm):
    name = "ga"
    description = "Genetic algorithm (DEAP): SBX, polynomial mutation, (μ+λ) / NSGA-II survivors"
    batch_friendly = True
    Options = GAOptions

    def __init__(self, space: SearchSpace, n_objectives: int, *, seed: int, **options: Any):
        super().__init__(space, n_objectives, seed=seed, **options)
        self.population_size: int = self.options.population or default_population(space.dim)
        self.mutation_rate: float = (
            self.options.mutation if self.options.mutation is not None else 1.0 / space.dim
        )
        self._fitness = _fitness_class(n_objectives)
        self._variation_rounds = max(_VARIATION_ROUNDS, self.options.candidates)
        self._history: list[_Individual] = []  # every told observation, in telling order
        self._evaluated: set[bytes] = set()  # configurations run (a GA never repeats one)
        self._generation = 0
        self._parents: list[_Individual] = []  # survivors of history[: generation * population]
        self._rounds: list[list[np.ndarray]] = []  # this generation's offspring, by round
        # this generation's offspring, most promising first, and how many told points the
        # forest that ordered them was fit on
        self._screened: tuple[int, list[np.ndarray]] | None = None

    # --- public interface -------------------------------------------------------------------

    def ask(self, n: int) -> list[Suggestion]:
        told_here = len(self._history) - self._generation * self.population_size
        quota = min(n, self.population_size - told_here - len(self.in_flight))
        suggestions: list[Suggestion] = []
        if quota <= 0:
            return suggestions
        taken = self._evaluated | {self._key(x) for x in self.in_flight.values()}
        for x in self._candidates():
            key = self._key(x)
            if key in taken:
                continue
            taken.add(key)
            suggestions.append(self.issue(x))
            if len(suggestions) == quota:
                break
        if not suggestions and not self.in_flight:  # every configuration has been run: repeat
            rng = np.random.default_rng([self.seed, len(self._history)])
            suggestions.append(self.issue(self._snap(rng.random(self.space.dim))))
        return suggestions

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs, _ in self.arrivals(observations):  # foreign points take a place like any other
            individual = _Individual(np.clip(np.asarray(obs.x, dtype=float), 0.0, 1.0).tolist())
            individual.fitness = self._fitness(self._losses(obs))
            individual.told = None if obs.losses is None else tuple(map(float, obs.losses))
            if obs.pruned:
                individual.pruned = pruned_key(obs)
            individual.key = self._key(obs.x)
            self._history.append(individual)
            self._evaluated.add(individual.key)
        while len(self._history) >= (self._generation + 1) * self.population_size:
            self._advance()

    # --- generations ------------------------------------------------------------------------

    def _advance(self) -> None:
        """Close generation k: (μ+λ) survivors of the parents and the k-th slice of history."""
        size, k = self.population_size, self._generation
        pool = self._parents + self._history[k * size : (k + 1) * size]
        self._rank_pruned(pool)
        with isolated_random(self._seed_for(k, -1)):
            if self.n_objectives == 1:
                self._parents = tools.selBest(pool, size)
            else:
                self._parents = tools.selNSGA2(pool, size)
        self._generation += 1
        self._rounds, self._screened = [], None

    def _rank_pruned(self, pool: list[_Individual]) -> None:
        """Pruned individuals get a loss on every objective above any finished one's and
        below a failure's, in the order of step reached then last loss: below every finished
        trial (dominated by each, with several objectives), above every failed one."""
        stopped = [ind for ind in pool if ind.pruned is not None]
        places = pruned_fractions([ind.pruned for ind in stopped if ind.pruned is not None])
        for ind, place in zip(stopped, places, strict=True):
            value = PRUNED_LOW + (PRUNED_HIGH - PRUNED_LOW) * float(place)
            ind.fitness = self._fitness((value,) * self.n_objectives)

    def _candidates(self) -> Iterator[np.ndarray]:
        """The current generation's offspring in a fixed order, extended round by round:
        offspring of the parents first (the first ``candidates`` rounds screened by the
        surrogate, most promising first), then uniform points (ints and categoricals can make
        many offspring decode to configurations already run)."""
        first = 0
        if self.options.surrogate and self._generation > 0:
            told = max(self._generation * self.population_size, fitted(len(self._history)))
            if self._screened is None or self._screened[0] != told:
                self._screened = (told, self._screen(told))
            yield from self._screened[1]
            first = self.options.candidates
        for r in range(first, self._variation_rounds + _UNIFORM_ROUNDS):
            while r >= len(self._rounds):
                self._rounds.append(self._offspring(len(self._rounds)))
            yield from self._rounds[r]

    def _screen(self, upto: int) -> list[np.ndarray]:
        """``candidates`` rounds of offspring, those of the told history left out, ordered by
        the surrogate's log EI (fit on the first ``upto`` told: a function of the history,
        what resume replays) with a minimum spacing between the first few."""
        told = self._history[:upto]
        rounds = range(self.options.candidates)
        while len(self._rounds) < len(rounds):
            self._rounds.append(self._offspring(len(self._rounds)))
        seen = {ind.key for ind in told}
        pool: list[np.ndarray] = []
        for x in (x for r in rounds for x in self._rounds[r]):
            key = np.round(x, 9).tobytes()  # offspring are snapped already: _key without a snap
            if key not in seen:
                seen.add(key)
                pool.append(x)
        if not pool:
            return pool
        losses = [None if ind.pruned is not None else ind.told for ind in told]
        seed = self._seed_for(self._generation, upto, screening=True)
        return prescreen(pool, np.array(told, dtype=float), losses, seed, self.population_size)

    def _offspring(self, r: int) -> list[np.ndarray]:
        size, dim = self.population_size, self.space.dim
        if self._generation == 0 or r >= self._variation_rounds:
            rng = np.random.default_rng([self.seed, self._generation, r])
            if r == 0 and self._generation == 0:  # a scrambled Sobol initial population
                raw = sobol_design(dim, size, self.seed)
            else:
                raw = rng.random((size, dim))
            return [self._snap(x) for x in raw]
        with isolated_random(self._seed_for(self._generation, r)):
            chosen = tools.selTournament(self._ranked(), size, self.options.tournament)
            children = [_Individual(np.clip(ind.genome, 0.0, 1.0).tolist()) for ind in chosen]
            for a, b in zip(children[::2], children[1::2], strict=False):
                if random.random() < self.options.crossover:
                    tools.cxSimulatedBinaryBounded(a, b, self.options.eta_crossover, 0.0, 1.0)
            for i, child in enumerate(children):
                children[i] = _Individual(np.clip(child, 0.0, 1.0).tolist())
                tools.mutPolynomialBounded(
                    children[i], self.options.eta_mutation, 0.0, 1.0, self.mutation_rate
                )
        return [self._snap(np.asarray(child, dtype=float)) for child in children]

    def _ranked(self) -> list[Any]:
        """Parents wrapped with the fitness the tournament compares (DEAP compares wvalues)."""
        parents = self._parents
        if self.n_objectives == 1:
            ranks = [(0, 0.0)] * len(parents)
        else:
            fronts = tools.sortNondominated(parents, len(parents))
            ranks = [(0, 0.0)] * len(parents)
            index = {id(ind): i for i, ind in enumerate(parents)}
            for level, front in enumerate(fronts):
                tools.emo.assignCrowdingDist(front)
                for ind in front:
                    ranks[index[id(ind)]] = (level, ind.fitness.crowding_dist)
        wrapped = []
        for ind, (level, crowding) in zip(parents, ranks, strict=True):
            proxy = _Proxy(ind)
            proxy.fitness = (
                ind.fitness if self.n_objectives == 1 else _Rank((float(level), float(crowding)))
            )
            wrapped.append(proxy)
        return wrapped

    # --- helpers ----------------------------------------------------------------------------

    def _seed_for(self, generation: int, r: int, screening: bool = False) -> int:
        entropy = [self.seed, generation, r + 1] + ([1] if screening else [])
        state = np.random.SeedSequence(entropy).generate_state(1)
        return int(state[0])

    def _losses(self, obs: Observation) -> tuple[float, ...]:
        if obs.losses is None:
            return (FAILED,) * self.n_objectives
        values = np.asarray(obs.losses, dtype=float)
        values = np.where(np.isfinite(values), np.clip(values, -_LIMIT, _LIMIT), FAILED)
        return tuple(float(v) for v in values)

    def _snap(self, x: np.ndarray) -> np.ndarray:
        """The point the space actually runs (ints rounded, categoricals bucketed)."""
        return self.space.encode(self.space.decode(np.clip(x, 0.0, 1.0)))

    def _key(self, x: np.ndarray) -> bytes:
        """The configuration a point runs, up to decoding round-off (never run one twice)."""
        return np.round(self._snap(np.asarray(x, dtype=float)), 9).tobytes()


class _Proxy:
    """A parent as the tournament sees it: its genome and a selection fitness."""

    __slots__ = ("fitness", "genome")

    def __init__(self, individual: _Individual) -> None:
        self.genome = np.asarray(individual, dtype=float)
        self.fitness: Any = None
