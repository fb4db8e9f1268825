"""Hyperband (Li et al., JMLR 2018) with asynchronous successive halving in each bracket, as
Optuna's ``HyperbandPruner``: brackets ``s = 0 … ⌊log_eta(max_step / min_step)⌋``, bracket ``s``
first judging trials at ``min_step * eta**s`` (later brackets give more steps before a first
cut, which protects slow starters); a trial's bracket is a hash of its number, weighted by the
brackets' trial budgets (Optuna's rule).

Each bracket is a successive-halving scheduler with its own mirror of its own trials, where
Optuna's pruner filters every trial of the study at each decision to find a bracket's: that
crossed the millisecond per report at 1000 trials; this stays at the cost of one ASHA on a
bracket's share of them.
"""

from __future__ import annotations

import binascii
import math
from typing import Annotated

import optuna
from pydantic import Field, model_validator

from hypersearch.schedulers.base import Scheduler, register
from hypersearch.space import StrictModel, rule_error


class HyperbandOptions(StrictModel):
    min_step: Annotated[int, Field(ge=1)] = 1
    max_step: Annotated[int, Field(ge=1)]  # the steps a full trial runs (e.g. its epochs)
    reduction_factor: Annotated[int, Field(ge=2)] = 3

    @model_validator(mode="after")
    def _ordered(self) -> HyperbandOptions:
        if self.max_step < self.min_step:
            raise rule_error("max_step", f"must be >= min_step ({self.min_step})")
        return self


class _Bracket(Scheduler):
    """Successive halving that first judges at ``min_step * eta**rate``."""

    name = "hyperband-bracket"

    def __init__(self, min_step: int, reduction_factor: int, rate: int) -> None:
        self.min_step, self.reduction_factor, self.rate = min_step, reduction_factor, rate
        super().__init__()

    def pruner(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=self.min_step,
            reduction_factor=self.reduction_factor,
            min_early_stopping_rate=self.rate,
        )


@register
class Hyperband(Scheduler):
    name = "hyperband"
    description = "Hyperband: brackets of asynchronous successive halving"
    Options = HyperbandOptions

    def __init__(self, **options: object) -> None:
        super().__init__(**options)
        o = self.options
        n = 1  # brackets s with min_step * eta**s <= max_step (integers: no log round-off)
        while o.min_step * o.reduction_factor**n <= o.max_step:
            n += 1
        self._brackets = [_Bracket(o.min_step, o.reduction_factor, s) for s in range(n)]
        # Trials per bracket as in Hyperband's Algorithm 1 (Optuna's allocation).
        self._budgets = [
            math.ceil(n * o.reduction_factor ** (n - 1 - s) / (n - s)) for s in range(n)
        ]

    def bracket(self, number: int) -> int:
        """The bracket of trial ``number``: a hash of it, weighted by the brackets' budgets."""
        left = binascii.crc32(f"hyperband_{number}".encode()) % sum(self._budgets)
        for s, budget in enumerate(self._budgets):
            left -= budget
            if left < 0:
                return s
        raise AssertionError("unreachable: the budgets add up to the modulus")

    def report(self, number: int, step: int, loss: float) -> bool:
        """At ``max_step`` a trial has run its course: no decision (the last bracket runs
        every trial to the end, as Hyperband's most conservative bracket does)."""
        if step >= self.options.max_step:
            return False
        return self._brackets[self.bracket(number)].report(number, step, loss)

    def finished(self, number: int, state: str, loss: float | None = None) -> None:
        self._brackets[self.bracket(number)].finished(number, state, loss)
