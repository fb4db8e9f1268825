"""The built-in trainer's dispatch policy: populations of trials that share their settings
but the tuned ones, and the out-of-memory batch ladder (half the batch, twice the gradient
accumulation: the same effective batch, down to ``min_batch_size``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from hypersearch.objectives.base import DispatchPolicy
from hypersearch.objectives.trainer.settings import TrainerSpec, population_key
from hypersearch.trials import TrialRequest, TrialResult

Settings = Callable[[Mapping[str, Any], Mapping[str, Any]], TrainerSpec]


class TrainerPolicy(DispatchPolicy):
    def __init__(self, spec: TrainerSpec, settings: Settings, population: int) -> None:
        self.spec = spec
        self.settings = settings  # a trial's settings from its config and overrides
        self.population = population

    def group_key(self, request: TrialRequest) -> Hashable:
        return population_key(self.settings(request.config, request.overrides))

    def batch(self, request: TrialRequest) -> int:
        """The batch size an attempt ran with."""
        default = request.config.get("batch_size", self.spec.batch_size)
        return int(request.overrides.get("batch_size", default))

    def run_again(self, request: TrialRequest, result: TrialResult) -> dict[str, Any] | None:
        """After an out-of-memory error: half the batch and twice the accumulation."""
        batch = self.batch(request)
        if result.reason != "oom" or batch // 2 < self.spec.min_batch_size:
            return None
        accum = int(request.overrides.get("grad_accum", self.spec.grad_accum))
        return {**request.overrides, "batch_size": batch // 2, "grad_accum": accum * 2}

    def final(
        self, request: TrialRequest, result: TrialResult, earlier: list[TrialRequest]
    ) -> tuple[TrialResult, dict[str, Any]]:
        """Record the batch sizes that ran out of memory (and say so in a final OOM error)."""
        ladder = [self.batch(r) for r in earlier]
        if result.reason == "oom":
            ladder.append(self.batch(request))
            error = f"{result.error} (batch sizes tried: {ladder})"
            result = dataclasses.replace(result, error=error)
        return result, ({"oom_ladder": ladder} if ladder else {})
