"""The median stopping rule (Golovin et al., "Google Vizier", KDD 2017), as Optuna's
``MedianPruner``: a trial stops at a step when its loss there is worse than the median of the
finished trials' losses at that step."""

from __future__ import annotations

from typing import Annotated

import optuna
from pydantic import Field

from hypersearch.schedulers.base import Scheduler, register
from hypersearch.space import StrictModel


class MedianOptions(StrictModel):
    startup_trials: Annotated[int, Field(ge=0)] = 5  # finished trials before anything stops
    warmup_steps: Annotated[int, Field(ge=0)] = 0  # steps a trial runs before it can stop
    interval_steps: Annotated[int, Field(ge=1)] = 1  # judge every this many steps
    min_trials: Annotated[int, Field(ge=1)] = 1  # trials reported at a step to judge it


@register
class Median(Scheduler):
    name = "median"
    description = "stop a trial worse than the median of finished trials at the same step"
    Options = MedianOptions

    def pruner(self) -> optuna.pruners.BasePruner:
        o = self.options
        return optuna.pruners.MedianPruner(
            n_startup_trials=o.startup_trials,
            n_warmup_steps=o.warmup_steps,
            interval_steps=o.interval_steps,
            n_min_trials=o.min_trials,
        )
