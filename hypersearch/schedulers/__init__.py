"""Early stopping: schedulers that stop unpromising trials at a reported step, one per file."""

from __future__ import annotations

from hypersearch.schedulers import asha, hyperband, median  # noqa: F401  (registers them)
from hypersearch.schedulers.base import (
    Scheduler,
    available,
    check_experiment,
    create,
    register,
    spec_of,
    validate,
)

__all__ = [
    "Scheduler",
    "available",
    "check_experiment",
    "create",
    "register",
    "spec_of",
    "validate",
]
