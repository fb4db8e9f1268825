"""What a trial runs: ``Objective.evaluate(config, ctx) -> {metric: value}``.

Objectives are built inside the worker that runs them (from the picklable ``ObjectiveSpec``), so
user code, subprocesses and CUDA live in workers, never in the driver.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from hypersearch.errors import TrialFailure
from hypersearch.trials import Channel, Report, TrialRequest, TrialResult


@dataclass(frozen=True)
class TrialContext:
    """What a trial may know about itself besides its config, and how it reports: ``report``
    an intermediate result at a step, ``should_stop`` once the scheduler stopped the trial."""

    number: int
    seed: int
    device: str
    trial_dir: Path
    timeout: float | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)  # settings forced by the executor
    channel: Channel | None = None  # to the driver (None: reports are only kept here)
    reports: list[Report] = field(default_factory=list)  # what this trial reported, in order

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record ``metrics`` at ``step`` (an int, increasing: e.g. the epoch); the scheduler
        judges it at once."""
        if isinstance(step, bool) or not isinstance(step, int):
            raise TrialFailure("exception", f"report step must be an int (got {step!r})")
        if self.reports and step <= self.reports[-1].step:
            raise TrialFailure(
                "exception",
                f"report steps must increase (got {step} after {self.reports[-1].step})",
            )
        report = Report(self.number, step, as_metrics(metrics, "report"))
        self.reports.append(report)
        if self.channel is not None:
            self.channel.report(report)

    def should_stop(self) -> bool:
        """True once the scheduler stopped this trial: return the latest metrics, or raise
        ``hypersearch.TrialPruned``; either way the trial is recorded PRUNED."""
        return self.channel is not None and self.channel.stopped(self.number)


def trial_seed(run_seed: int, number: int) -> int:
    """A trial's seed: a function of the run seed and the trial number (not completion order)."""
    return int(np.random.SeedSequence([run_seed, number]).generate_state(1)[0])


class Objective(abc.ABC):
    """Subclasses register under their experiment key with ``@register(kind)``."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    @abc.abstractmethod
    def evaluate(self, config: Mapping[str, Any], ctx: TrialContext) -> dict[str, float]:
        """Score one config; raise (or :class:`TrialFailure`) to fail the trial."""

    def evaluate_population(
        self, configs: list[Mapping[str, Any]], contexts: list[TrialContext]
    ) -> list[dict[str, float] | TrialFailure]:
        """Score several configs at once (the built-in trainer trains them as one stacked model);
        a member's failure is returned, not raised. Only objectives that can do better than one
        at a time override it; the engine groups trials only for those."""
        raise NotImplementedError(f"{type(self).__name__} does not train populations")

    def check(self) -> None:  # noqa: B027  (optional hook)
        """Fail fast in the driver on a broken setup (e.g. an unimportable function)."""

    def dispatch_policy(self, population: int) -> DispatchPolicy:
        """How this objective's trials are dispatched; ``population`` > 1 only for objectives
        that override ``evaluate_population``."""
        return DispatchPolicy()


ObjectiveT = TypeVar("ObjectiveT", bound=Objective)


def as_metrics(value: Any, source: str) -> dict[str, float]:
    """Normalize what an objective returned: a number is ``{"value": x}``; a mapping is kept."""
    if isinstance(value, Mapping):
        items = dict(value)
    elif isinstance(value, bool) or value is None:
        raise TrialFailure("exception", f"{source} returned {value!r}, not a number or mapping")
    else:
        items = {"value": value}
    metrics: dict[str, float] = {}
    for key, item in items.items():
        try:
            metrics[str(key)] = float(item)
        except (TypeError, ValueError):
            raise TrialFailure(
                "exception", f"{source} returned metric {key!r} = {item!r}, which is not a number"
            ) from None
    return metrics


def check_objectives(metrics: Mapping[str, float], objectives: Mapping[str, str]) -> None:
    """Every optimized metric must be present and finite, or the trial fails."""
    missing = [m for m in objectives if m not in metrics]
    if missing:
        raise TrialFailure(
            "exception",
            f"missing objective metric(s) {', '.join(missing)}; got {', '.join(metrics) or 'none'}",
        )
    bad = {m: metrics[m] for m in objectives if not math.isfinite(metrics[m])}
    if bad:
        shown = ", ".join(f"{m}={v}" for m, v in bad.items())
        raise TrialFailure("non_finite", f"non-finite objective value: {shown}")


_REGISTRY: dict[str, type[Objective]] = {}


def register(kind: str) -> Callable[[type[ObjectiveT]], type[ObjectiveT]]:
    """Class decorator adding an objective under ``kind``, the experiment's ``objective:``
    key; the class is built from that block (``cls(spec.<kind>)``). A kind is never taken
    twice."""

    def add(cls: type[ObjectiveT]) -> type[ObjectiveT]:
        taken = _REGISTRY.get(kind)
        if taken is not None and taken is not cls:
            raise ValueError(f"objective kind {kind!r} is already registered by {taken!r}")
        _REGISTRY[kind] = cls
        return cls

    return add


def registered() -> dict[str, type[Objective]]:
    """Registered objective classes by kind (``hypersearch.objectives`` registers the
    built-in ones on import)."""
    return dict(_REGISTRY)


class DispatchPolicy:
    """How an objective's trials are dispatched (``hypersearch.runner`` asks it): which trials
    may be trained together as one population, whether a failed attempt is run again under the
    same number (the trainer halves its batch after running out of memory), and whether a
    failure is retried once as a new trial (a lost worker, by default).

    The default runs every trial alone and retries only lost workers; the built-in trainer
    provides its own (``objectives/trainer/policy.py``)."""

    population = 1  # the most trials one slot trains together

    def group_key(self, request: TrialRequest) -> Hashable:
        """Trials with equal keys may share a slot as one population."""
        return request.number

    def run_again(self, request: TrialRequest, result: TrialResult) -> dict[str, Any] | None:
        """Overrides to run this failed attempt again under the same number, or None."""
        return None

    def final(
        self, request: TrialRequest, result: TrialResult, earlier: list[TrialRequest]
    ) -> tuple[TrialResult, dict[str, Any]]:
        """The result as recorded, and what the record adds, after ``earlier`` attempts were
        run again."""
        return result, {}

    def retry_as_new_trial(self, result: TrialResult) -> bool:
        """Run the trial's config once more under a new number (the original is superseded)."""
        return result.reason == "worker_lost"
