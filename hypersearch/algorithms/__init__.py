"""Optimization algorithms, one per module, registered by name."""

from __future__ import annotations

from hypersearch.algorithms import (  # noqa: F401  (registers them)
    astar,
    ga,
    gp,
    pso,
    random_search,
    rf,
    tpe,
)
from hypersearch.algorithms.base import (
    Algorithm,
    Observation,
    Suggestion,
    available,
    create,
    get_algorithm,
    register,
    validate_options,
)

__all__ = [
    "Algorithm",
    "Observation",
    "Suggestion",
    "available",
    "create",
    "get_algorithm",
    "register",
    "validate_options",
]
