"""Tree-structured Parzen estimator: Optuna's TPESampler driven through ask/tell.

An in-memory Optuna study holds the history on the *native* distributions (log floats, ints,
categoricals), so TPE models them as Optuna does; we translate to and from the unit cube at the
boundary. Multivariate TPE; parallel asks use Optuna's constant liar (trials in flight count as
bad results, so a batch spreads out). The study holds the finished and in-flight trials in id
order (TPE weighs trials by their order): asks append in that order and own results are told in
place; a foreign trial or one declared pending has the study rebuilt, sorted, at the next ask.
The sampler is re-seeded from (seed, history size) at every ask, so a fresh instance told the
same trials, in whatever order they finished, proposes the same points (resume == no kill).

Pruned trials: in the mirror as Optuna has them, state PRUNED with the curve as intermediate
values (and, as ``Study.tell`` records it, the last report as value), so TPE ranks them as
Optuna 5's ``_split_trials`` does: they count toward ``n_startup_trials`` and gamma(n); the good
group takes the best complete trials first and, only when gamma(n) exceeds their number,
pruned ones by (latest reported step, later first; then the value there, lower first; NaN
last; no report after all); every other pruned trial joins the bad group (a failed trial joins
neither). With several objectives Optuna allows no reports (its TPE would fail on them, asking
``study.direction``): pruned trials carry none, still count, and rank after every complete
trial, among themselves in trial order.

Reference: Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011;
Falkner et al., BOHB (multivariate KDE), ICML 2018.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

import numpy as np
import optuna
from pydantic import Field

from hypersearch.algorithms.base import Algorithm, Observation, Suggestion, register
from hypersearch.space import SearchSpace, StrictModel


class TPEOptions(StrictModel):
    n_startup_trials: Annotated[int, Field(ge=0)] = 10
    n_ei_candidates: Annotated[int, Field(ge=1)] = 24
    multivariate: bool = True
    constant_liar: bool = True


@register
class TPE(Algorithm):
    name = "tpe"
    description = "Optuna's TPE (multivariate, constant liar): the model-based baseline"
    Options: ClassVar[type[StrictModel]] = TPEOptions

    def __init__(self, space: SearchSpace, n_objectives: int, *, seed: int, **options: Any):
        super().__init__(space, n_objectives, seed=seed, **options)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._distributions = space.distributions()
        self._finished: dict[int, optuna.trial.FrozenTrial] = {}  # told trials by id
        self._study: optuna.Study | None = None  # None: to be rebuilt in id order
        self._number: dict[int, int] = {}  # id in flight -> its trial number in the study
        self._storage = optuna.storages.InMemoryStorage()  # the study's (to report into)

    def _rebuilt(self) -> optuna.Study:
        """An in-memory study of every finished and in-flight trial, in id order."""
        running = optuna.trial.TrialState.RUNNING
        trials = self._finished | {
            id_: optuna.trial.create_trial(
                params=self.space.decode(x), distributions=self._distributions, state=running
            )
            for id_, x in self.in_flight.items()
        }
        self._storage = optuna.storages.InMemoryStorage()
        study = optuna.create_study(
            storage=self._storage, directions=["minimize"] * self.n_objectives
        )
        ids = sorted(trials)
        study.add_trials([trials[id_] for id_ in ids])
        self._number = {id_: n for n, id_ in enumerate(ids) if id_ in self.in_flight}
        return study

    def _seed(self, history: int) -> int:
        """The sampler's seed at an ask: a function of the run seed and the history size."""
        return int(np.random.SeedSequence([self.seed, history]).generate_state(1)[0])

    def _sampler(self, history: int) -> optuna.samplers.BaseSampler:
        seed = self._seed(history)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=self.options.multivariate,
                constant_liar=self.options.constant_liar,
                n_startup_trials=self.options.n_startup_trials,
                n_ei_candidates=self.options.n_ei_candidates,
            )

    def ask(self, n: int) -> list[Suggestion]:
        if n <= 0:
            return []
        if self._study is None:
            self._study = self._rebuilt()
        study = self._study
        suggestions = []
        for _ in range(n):
            study.sampler = self._sampler(len(study.get_trials(deepcopy=False)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trial = study.ask(self._distributions)
            suggestion = self.issue(self.space.encode(trial.params))
            self._number[suggestion.id] = trial.number
            suggestions.append(suggestion)
        return suggestions

    def pending(self, suggestions: Sequence[Suggestion]) -> None:
        super().pending(suggestions)
        self._study = None  # their place in id order may be anywhere

    def tell(self, observations: Sequence[Observation]) -> None:
        for obs, _ in self.arrivals(observations):
            failed = obs.failed or not all(np.isfinite(v) for v in obs.losses or ())
            values = None if failed else list(obs.losses or ())
            state = optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE
            reports = self._reports(obs) if obs.pruned else {}
            if obs.pruned:
                state = optuna.trial.TrialState.PRUNED
            self._finished[obs.id] = optuna.trial.create_trial(
                params=self.space.decode(obs.x),
                distributions=self._distributions,
                values=_pruned_values(reports) if obs.pruned else values,
                state=state,
                intermediate_values=reports,
            )
            number = self._number.pop(obs.id, None)
            if self._study is not None and number is not None:  # in place: the order holds
                self._report(number, reports)
                self._study.tell(number, values, state=state)
            else:
                self._study = None  # a foreign trial: rebuild in id order

    def _reports(self, obs: Observation) -> dict[int, float]:
        """A pruned trial's curve as Optuna intermediate values; none with several objectives
        (Optuna allows no reports there, and its TPE ranks pruned trials by them)."""
        if self.n_objectives > 1:
            return {}
        return {int(step): float(value) for step, value in sorted(obs.curve.items())}

    def _report(self, number: int, reports: dict[int, float]) -> None:
        """Write intermediate values into the mirror's trial ``number`` (still running)."""
        if reports and self._study is not None:
            study_id = self._storage.get_study_id_from_name(self._study.study_name)
            trial_id = self._storage.get_trial_id_from_study_id_trial_number(study_id, number)
            for step, value in reports.items():
                self._storage.set_trial_intermediate_value(trial_id, step, value)


def _pruned_values(reports: dict[int, float]) -> list[float] | None:
    """What ``Study.tell`` records as a pruned trial's value: its last report unless NaN."""
    if not reports or math.isnan(reports[max(reports)]):
        return None
    return [reports[max(reports)]]
