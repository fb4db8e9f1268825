"""Gaussian-process Bayesian optimisation: Optuna's GPSampler, as an anchor beside ``tpe``.

The same in-memory Optuna mirror as ``tpe`` (native distributions, trials in id order, a sampler
re-seeded from the history size at every ask, so a resumed run asks what the uninterrupted one
would), with Optuna's ``GPSampler`` (a Matérn-5/2 GP, log expected improvement, optimised by
L-BFGS from many starts; several objectives: log expected hypervolume improvement). It is here
so that ``hypersearch compare --algos ga,pso,rf,astar,tpe,gp`` shows a user the strongest
standard Bayesian optimiser on their own problem. Trials in flight are running trials to it (it
has no constant liar), so a batch asked at once may cluster. Pruned trials: Optuna's GPSampler
models complete trials only; pruned ones only keep their points from being proposed again.
Its cost grows with the cube of the history: fine for tens to a few hundred trials.

Reference: Snoek et al., "Practical Bayesian Optimization of Machine Learning Algorithms",
NeurIPS 2012; Optuna's ``optuna.samplers.GPSampler``.
"""

from __future__ import annotations

import warnings
from typing import Annotated

import optuna
from pydantic import Field

from hypersearch.algorithms.base import register
from hypersearch.algorithms.tpe import TPE
from hypersearch.space import StrictModel


class GPOptions(StrictModel):
    n_startup_trials: Annotated[int, Field(ge=0)] = 10
    deterministic_objective: bool = False  # True: no observation noise is modelled


@register
class GP(TPE):
    name = "gp"
    description = "Optuna's GPSampler (Gaussian process, log EI): the strongest standard anchor"
    Options = GPOptions

    def _sampler(self, history: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(
                seed=self._seed(history),
                n_startup_trials=self.options.n_startup_trials,
                deterministic_objective=self.options.deterministic_objective,
            )
