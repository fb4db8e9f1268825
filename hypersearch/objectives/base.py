"""What a trial runs: ``Objective.evaluate(config, ctx) -> {metric: value}``.

Objectives are built inside the worker that runs them (from the picklable ``ObjectiveSpec``), so
user code, subprocesses and CUDA live in workers, never in the driver.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hypersearch.errors import TrialFailure


@dataclass(frozen=True)
class TrialContext:
    """What a trial may know about itself besides its config."""

    number: int
    seed: int
    device: str
    trial_dir: Path
    timeout: float | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)  # settings forced by the executor


def trial_seed(run_seed: int, number: int) -> int:
    """A trial's seed: a function of the run seed and the trial number (not completion order)."""
    return int(np.random.SeedSequence([run_seed, number]).generate_state(1)[0])


class Objective(abc.ABC):
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


def build_objective(spec: Any) -> Objective:
    """The objective for an experiment's ``objective:`` block."""
    kind = spec.kind
    if kind == "synthetic":
        from hypersearch.objectives.synthetic import SyntheticObjective

        return SyntheticObjective(spec.synthetic)
    if kind == "python":
        from hypersearch.objectives.python import PythonObjective

        return PythonObjective(spec.python)
    if kind == "command":
        from hypersearch.objectives.command import CommandObjective

        return CommandObjective(spec.command)
    if kind == "trainer":
        from hypersearch.objectives.trainer import TrainerObjective

        return TrainerObjective(spec.trainer)
    raise ValueError(f"objective kind {kind!r} is not available")
