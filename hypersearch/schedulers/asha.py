"""Asynchronous successive halving (Li et al., "A System for Massively Parallel Hyperparameter
Tuning", MLSys 2020), as Optuna's ``SuccessiveHalvingPruner``: rungs at steps
``min_step * reduction_factor**k``; a trial reaching a rung continues only if its loss is in
the best ``1 / reduction_factor`` of the losses recorded at that rung so far (the first trials
at a rung continue if they are the best yet). No trial waits for another."""

from __future__ import annotations

from typing import Annotated

import optuna
from pydantic import Field, model_validator

from hypersearch.schedulers.base import Scheduler, register
from hypersearch.space import StrictModel, rule_error


class ASHAOptions(StrictModel):
    min_step: Annotated[int, Field(ge=1)] = 1  # the first rung
    max_step: Annotated[int, Field(ge=1)] | None = None  # no rung beyond it (None: no limit)
    reduction_factor: Annotated[int, Field(ge=2)] = 3  # eta: keep 1/eta at each rung

    @model_validator(mode="after")
    def _ordered(self) -> ASHAOptions:
        if self.max_step is not None and self.max_step < self.min_step:
            raise rule_error("max_step", f"must be >= min_step ({self.min_step})")
        return self


@register
class ASHA(Scheduler):
    name = "asha"
    description = "asynchronous successive halving: keep the best 1/eta at each rung"
    Options = ASHAOptions

    def pruner(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=self.options.min_step,
            reduction_factor=self.options.reduction_factor,
        )

    def report(self, number: int, step: int, loss: float) -> bool:
        """At ``max_step`` a trial has run its course: from there on it is no longer judged."""
        limit = self.options.max_step
        if limit is not None and step >= limit:
            return False
        return super().report(number, step, loss)
