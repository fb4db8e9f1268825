"""What flows between the engine, the dispatch policy and the executors: a trial to run
(``TrialRequest``, or a ``PopulationRequest`` trained as one), and what came of it
(``TrialResult``). Plain data, imported by every side without importing any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

COMPLETE, FAIL, PRUNED = "COMPLETE", "FAIL", "PRUNED"


@dataclass(frozen=True)
class TrialRequest:
    """One trial to run: its number in the study, its config and where it may write files."""

    number: int
    config: dict[str, Any]
    seed: int
    trial_dir: Path
    timeout: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # e.g. a smaller batch after an OOM


@dataclass(frozen=True)
class PopulationRequest(TrialRequest):
    """Several trials trained together as one stacked model (the built-in trainer's population
    training). Executors treat it as one trial: one slot, one timeout (the members' timeouts
    added up), one result; ``number`` is its first member's number. Its result carries one
    result per member, or, if the population as a whole failed (timeout, lost worker, out of
    memory), none: the runner then decides for the members."""

    members: tuple[TrialRequest, ...] = ()

    @classmethod
    def of(cls, members: list[TrialRequest]) -> PopulationRequest:
        first = members[0]
        timeouts = [m.timeout for m in members]
        timeout = None if None in timeouts else float(sum(t for t in timeouts if t is not None))
        return cls(
            first.number,
            {},
            first.seed,
            first.trial_dir.parent,
            timeout,
            dict(first.overrides),
            tuple(members),
        )


@dataclass(frozen=True)
class TrialResult:
    """What came of a trial. ``reason`` and ``error`` are set for failures."""

    number: int
    state: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    reason: str | None = None
    duration_s: float = 0.0
    device: str = "cpu"
    traceback: str | None = None
    members: tuple[TrialResult, ...] = ()  # a population's results, one per member
    step: int | None = None  # the last step the trial reported (PRUNED: where it stopped)

    @classmethod
    def failed(cls, request: TrialRequest, reason: str, error: str, **kw: Any) -> TrialResult:
        return cls(request.number, FAIL, error=error, reason=reason, **kw)


@dataclass(frozen=True)
class Report:
    """An intermediate result: trial ``number``'s metrics at ``step`` (e.g. an epoch)."""

    number: int
    step: int
    metrics: dict[str, float]


class Channel(Protocol):
    """How a running trial talks to the driver: its reports go out, a stop comes back."""

    def report(self, report: Report) -> None: ...
    def stopped(self, number: int) -> bool: ...
