"""Optimization algorithms, one per module, registered by name."""

from __future__ import annotations

from hypersearch.algorithms import (  # noqa: F401  (registers them)
    ga,
    pso,
    random_search,
    tpe,
)
from hypersearch.algorithms.base import (
    Algorithm,
    Observation,
    available,
    create,
    get_algorithm,
    register,
    validate_options,
)

__all__ = [
    "Algorithm",
    "Observation",
    "available",
    "create",
    "get_algorithm",
    "register",
    "validate_options",
]
