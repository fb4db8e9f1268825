"""Early stopping: schedulers that stop unpromising trials at a reported step, one per file."""

from __future__ import annotations

from hypersearch.schedulers import asha, hyperband, median  # noqa: F401  (registers them)
from hypersearch.schedulers.base import Scheduler, available, create, register

__all__ = ["Scheduler", "available", "create", "register"]
