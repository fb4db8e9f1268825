"""Drive an algorithm on a synthetic function without the engine: for quality tests and the
quality benchmark (the same loop in both, so the benchmark measures what the tests assert).

Points are asked in batches of ``batch`` (as with ``parallel: batch``) and told all at once.
"""

from __future__ import annotations

import numpy as np

from hypersearch import pareto
from hypersearch.algorithms import Observation, create
from hypersearch.experiment import parse_experiment
from hypersearch.objectives.synthetic import FUNCTIONS


def evaluations(
    algo: str,
    function: str,
    seed: int,
    trials: int = 64,
    batch: int = 8,
    dim: int | None = None,
    noise: float = 0.0,
) -> np.ndarray:
    """The noiseless values of every trial, in order: shape (trials, n_objectives). With
    ``noise``, the algorithm is told the values plus Gaussian noise of that std (seeded)."""
    spec = {"function": function} | ({"dim": dim} if dim else {})
    exp = parse_experiment({"objective": {"synthetic": spec}})
    space, f = exp.space, FUNCTIONS[function]
    algorithm = create(algo, space, len(exp.objectives), seed=seed, options=exp.algorithm.get(algo))
    values: list[tuple[float, ...]] = []
    draws = np.random.default_rng([seed, 7919])
    while len(values) < trials:
        points = algorithm.ask(min(batch, trials - len(values)))
        if not points:
            raise RuntimeError(f"{algo} asked nothing with nothing in flight")
        told = []
        for x in points:
            result = f.fn(np.array(list(space.decode(x).values()), dtype=float))
            losses = tuple(result) if isinstance(result, tuple) else (result,)
            noisy = tuple(v + noise * draws.standard_normal() for v in losses) if noise else losses
            told.append(Observation(x, noisy))
            values.append(losses)
        algorithm.tell(told)
    return np.array(values)


def final_regret(
    algo: str,
    function: str,
    seed: int,
    trials: int = 64,
    batch: int = 8,
    dim: int | None = None,
    noise: float = 0.0,
) -> float:
    """Best noiseless value among the trials minus the known optimum (under ``noise`` the
    algorithm only ever sees noisy values)."""
    values = evaluations(algo, function, seed, trials, batch, dim, noise)
    optimum = FUNCTIONS[function].optimum
    assert optimum is not None
    return float(values[:, 0].min() - optimum)


def final_hypervolume(
    algo: str,
    function: str,
    seed: int,
    reference: tuple[float, ...],
    trials: int = 64,
    batch: int = 8,
    dim: int | None = None,
) -> float:
    """Hypervolume of all evaluated points up to a fixed reference point (comparable across
    algorithms, unlike the run folder's data-derived reference)."""
    values = evaluations(algo, function, seed, trials, batch, dim)
    return pareto.hypervolume(values, np.asarray(reference))
