"""Tree-structured Parzen estimator: Optuna's TPESampler driven through ask/tell.

An in-memory Optuna study holds the history on the *native* distributions (log floats, ints,
categoricals), so TPE models them as Optuna does; we translate to and from the unit cube at the
boundary. Multivariate TPE; parallel asks use Optuna's constant liar (trials in flight count as
bad results, so a batch spreads out). The sampler is re-seeded from (seed, history size) at every
ask, so a fresh instance told the same history proposes the same points (resume == no kill).

Reference: Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011;
Falkner et al., BOHB (multivariate KDE), ICML 2018.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Annotated

import numpy as np
import optuna
from pydantic import Field

from hypersearch.algorithms.base import Algorithm, Observation, point_key, register
from hypersearch.space import StrictModel


class TPEOptions(StrictModel):
    n_startup_trials: Annotated[int, Field(ge=0)] = 10
    n_ei_candidates: Annotated[int, Field(ge=1)] = 24
    multivariate: bool = True
    constant_liar: bool = True


@register
class TPE(Algorithm):
    name = "tpe"
    description = "Optuna's TPE (multivariate, constant liar): the model-based baseline"
    Options = TPEOptions

    def __init__(self, space, n_objectives, *, seed, **options):  # type: ignore[no-untyped-def]
        super().__init__(space, n_objectives, seed=seed, **options)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._distributions = space.distributions()
        self._study = optuna.create_study(directions=["minimize"] * n_objectives)
        self._pending: dict[bytes, list[int]] = {}  # point -> numbers of running trials

    def _sampler(self) -> optuna.samplers.TPESampler:
        history = len(self._study.get_trials(deepcopy=False))
        seed = int(np.random.SeedSequence([self.seed, history]).generate_state(1)[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=self.options.multivariate,
                constant_liar=self.options.constant_liar,
                n_startup_trials=self.options.n_startup_trials,
                n_ei_candidates=self.options.n_ei_candidates,
            )

    def ask(self, n: int) -> list[np.ndarray]:
        points = []
        for _ in range(n):
            self._study.sampler = self._sampler()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trial = self._study.ask(self._distributions)
            x = self.space.encode(trial.params)
            self._pending.setdefault(point_key(x), []).append(trial.number)
            points.append(x)
        return points

    def pending(self, points: Sequence[np.ndarray]) -> None:
        for x in points:  # running trials in our study: counted in the history, and lied about
            self._study.enqueue_trial(self.space.decode(x))
            self._study.sampler = self._sampler()
            trial = self._study.ask(self._distributions)
            self._pending.setdefault(point_key(x), []).append(trial.number)

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs in observations:
            numbers = self._pending.get(point_key(obs.x))
            state = optuna.trial.TrialState.FAIL if obs.failed else optuna.trial.TrialState.COMPLETE
            values = None if obs.failed else list(obs.losses or ())
            if numbers:
                self._study.tell(numbers.pop(0), values, state=state)
                if not numbers:
                    del self._pending[point_key(obs.x)]
            else:  # a point we never asked: add it as a finished trial
                self._study.add_trial(
                    optuna.trial.create_trial(
                        params=self.space.decode(obs.x),
                        distributions=self._distributions,
                        values=values,
                        state=state,
                    )
                )
