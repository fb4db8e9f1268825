"""Early stopping: schedulers that stop unpromising trials at a reported step, one per file."""

from __future__ import annotations

from hypersearch.schedulers import asha, hyperband, median  # noqa: F401  (registers them)
from hypersearch.schedulers.base import Scheduler, available, create, register, validate

create_scheduler = create

__all__ = ["Scheduler", "available", "create", "create_scheduler", "register", "validate"]
