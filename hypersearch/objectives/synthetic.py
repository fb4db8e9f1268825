"""Benchmark functions with known optima, for testing and comparing algorithms.

Each function evaluates the parameter values in declaration order. Without ``params`` in the
experiment, the function's standard domain is used (``x0 … x{d-1}``). Results carry ``value``
(with optional Gaussian noise of std ``noise``, seeded per trial) and ``regret`` (the noiseless
distance to the known optimum), except multi-objective ones, which return ``f1`` and ``f2``.

Definitions and optima follow Surjanovic & Bingham, "Virtual Library of Simulation Experiments"
(sfu.ca/~ssurjano), and Zitzler, Deb & Thiele (2000) for ZDT1, except where the optimum would sit
at the centre of the box or on a grid point (sphere, ackley, rosenbrock's all-ones, ZDT1's
Pareto set on a face of the cube): those are shifted by ``offset``, a different irrational share
of the domain per coordinate, so a method that samples the centre or a regular grid first gets
no free win. Optimal values are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hypersearch.errors import ExperimentError
from hypersearch.objectives.base import Objective, TrialContext, register


def branin(x: np.ndarray) -> float:
    x1, x2 = x
    b, c, r, s, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return float((x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s)


_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann6(x: np.ndarray) -> float:
    return float(-np.sum(_H6_ALPHA * np.exp(-np.sum(_H6_A * (x - _H6_P) ** 2, axis=1))))


def offset(d: int, low: float, high: float) -> np.ndarray:
    """How far a shifted function's optimum moves per coordinate: 10-30% of the domain's
    width, by the golden-ratio sequence (irrational: never a grid point, never the centre)."""
    golden = (np.arange(1, d + 1) * 0.6180339887498949) % 1.0
    return (high - low) * (0.1 + 0.2 * golden)


def rosenbrock(x: np.ndarray) -> float:
    x = x + offset(len(x), -5.0, 10.0)  # optimum at 1 - offset instead of all ones
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def ackley(x: np.ndarray) -> float:
    d = len(x)
    x = x - offset(d, -32.768, 32.768)  # optimum at offset instead of the centre
    return float(
        -20 * math.exp(-0.2 * math.sqrt(np.sum(x**2) / d))
        - math.exp(np.sum(np.cos(2 * math.pi * x)) / d)
        + 20
        + math.e
    )


def sphere(x: np.ndarray) -> float:
    return float(np.sum((x - offset(len(x), -5.12, 5.12)) ** 2))  # optimum off the centre


def zdt1(x: np.ndarray) -> tuple[float, float]:
    """ZDT1 with its Pareto set moved off the cube's face: ``x_i = offset_i`` for i >= 1."""
    f1 = float(x[0])
    g = 1 + 9 * float(np.sum(np.abs(x[1:] - offset(len(x), 0.0, 1.0)[1:]))) / (len(x) - 1)
    return f1, g * (1 - math.sqrt(f1 / g))


@dataclass(frozen=True)
class SyntheticFunction:
    """A function, its domain per coordinate, its allowed dimensions and its known optimum."""

    fn: Callable[[np.ndarray], Any]
    bounds: tuple[float, float]
    default_dim: int
    fixed_dim: bool
    optimum: float | None  # minimum value; None for multi-objective
    min_dim: int = 1
    metrics: tuple[str, ...] = ("value",)


FUNCTIONS: dict[str, SyntheticFunction] = {
    "branin": SyntheticFunction(branin, (-5.0, 15.0), 2, True, 0.397887357729738),
    "hartmann6": SyntheticFunction(hartmann6, (0.0, 1.0), 6, True, -3.322368011391339),
    "rosenbrock": SyntheticFunction(rosenbrock, (-5.0, 10.0), 4, False, 0.0, min_dim=2),
    "ackley": SyntheticFunction(ackley, (-32.768, 32.768), 5, False, 0.0),
    "sphere": SyntheticFunction(sphere, (-5.12, 5.12), 5, False, 0.0),
    "zdt1": SyntheticFunction(zdt1, (0.0, 1.0), 6, False, None, min_dim=2, metrics=("f1", "f2")),
}
_BRANIN_BOUNDS = ((-5.0, 10.0), (0.0, 15.0))


def _lookup(name: str) -> SyntheticFunction:
    if name not in FUNCTIONS:
        raise ExperimentError(
            "objective.synthetic.function",
            f"unknown function {name!r} (choose from: {', '.join(FUNCTIONS)})",
        )
    return FUNCTIONS[name]


def dimension(spec: Any) -> int:
    return spec.dim or _lookup(spec.function).default_dim


def default_params(spec: Any) -> dict[str, dict[str, Any]]:
    """The function's standard domain as ``params`` (used when the experiment declares none)."""
    fn = _lookup(spec.function)
    bounds = _BRANIN_BOUNDS if spec.function == "branin" else [fn.bounds] * dimension(spec)
    return {f"x{i}": {"type": "float", "low": lo, "high": hi} for i, (lo, hi) in enumerate(bounds)}


def default_objectives(spec: Any) -> dict[str, str]:
    return dict.fromkeys(_lookup(spec.function).metrics, "minimize")


def check_spec(spec: Any, n_params: int) -> None:
    """The function exists and its dimension agrees with ``dim`` and with the parameter count."""
    fn = _lookup(spec.function)
    dim = dimension(spec)
    if fn.fixed_dim and dim != fn.default_dim:
        raise ExperimentError(
            "objective.synthetic.dim",
            f"{spec.function} is {fn.default_dim}-dimensional (got {dim})",
        )
    if dim < fn.min_dim:
        raise ExperimentError(
            "objective.synthetic.dim",
            f"{spec.function} needs at least {fn.min_dim} dimensions (got {dim})",
        )
    if n_params != dim:
        raise ExperimentError(
            "params", f"{spec.function} takes {dim} parameters, one per dimension (got {n_params})"
        )


@register("synthetic")
class SyntheticObjective(Objective):
    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.function = _lookup(spec.function)

    def evaluate(self, config: Mapping[str, Any], ctx: TrialContext) -> dict[str, float]:
        x = np.array([float(v) for v in config.values()])
        noise = np.random.default_rng(ctx.seed).normal(0.0, self.spec.noise, size=2)
        if self.function.optimum is None:
            f1, f2 = self.function.fn(x)
            return {"f1": f1 + float(noise[0]), "f2": f2 + float(noise[1])}
        value = self.function.fn(x)
        return {"value": value + float(noise[0]), "regret": value - self.function.optimum}
