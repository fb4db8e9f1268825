"""One trial as a run folder shows it: the record the store keeps and the exports write.

A module of its own so that ``store`` (which records trials) and ``exports`` (which writes them
out) share the type without importing each other: ``store`` imports ``exports``, never back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hypersearch.trials import COMPLETE, FAIL, PRUNED

RUNNING = "RUNNING"


@dataclass
class TrialRecord:
    """One trial as the run folder shows it."""

    number: int
    state: str
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    reason: str | None = None
    error: str | None = None
    device: str | None = None
    retried_as: int | None = None  # its worker was lost: the trial that retried it
    dropped: list[str] = field(default_factory=list)  # metrics beyond MAX_METRICS, not stored
    x: list[float] | None = None  # the unit-cube point it was asked as, when recorded
    suggestion_id: int | None = None  # the algorithm's id for it, when recorded
    order: int | None = None  # its place in the order trials finished (0, 1, …), when recorded
    steps: int | None = None  # the last step it reported (PRUNED: the step it was stopped at)
    curve: dict[int, float] = field(default_factory=dict)  # first objective's value per step

    @property
    def finished(self) -> bool:
        return self.state in (COMPLETE, FAIL, PRUNED)

    @property
    def superseded(self) -> bool:
        """Its worker was lost and a retry took its place in the budget: shown, not counted."""
        return self.retried_as is not None


def record_losses(record: TrialRecord, objectives: Mapping[str, str]) -> tuple[float, ...] | None:
    """A finished record's losses (maximized metrics negated); None unless it is complete."""
    if record.state != COMPLETE:
        return None
    return tuple(
        -record.metrics[m] if d == "maximize" else record.metrics[m] for m, d in objectives.items()
    )
