"""The algorithm interface every optimizer implements, and the name → class registry.

Algorithms work in the unit cube. ``ask`` proposes suggestions, each a point with an id;
``tell`` reports observations by id (losses always minimized; ``None`` for a failed trial).
One id follows a trial from ask to tell, so no algorithm has to recognise a told point by
comparing vectors. ``tell`` accepts any subset in any order, including ids the algorithm never
issued: that is how resume and warm start work (a fresh algorithm is told every finished
observation; those ids are *foreign* to it).

The base class keeps the id bookkeeping: ``issue`` makes a suggestion under a fresh id (one
past the largest id issued, told or pending so far, unless the algorithm picks a later one),
``arrivals`` lists told observations with whether each was this instance's own, ``in_flight``
holds the ids issued (or declared ``pending``) and not yet told. The engine keeps each trial's
id and point in the study, so a resumed run tells a fresh instance the very ids it would have
seen.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ValidationError

from hypersearch.errors import ExperimentError, UnknownAlgorithmError, format_validation_error
from hypersearch.space import SearchSpace, StrictModel


@dataclass(frozen=True)
class Suggestion:
    """A point to evaluate, under the id its observation will come back with."""

    id: int
    x: np.ndarray


@dataclass(frozen=True)
class Observation:
    """A finished trial as the algorithm sees it: its id, unit-cube point and losses.

    ``losses`` is None for a failed trial; ``step`` is set when a scheduler stopped the trial
    early at that step (``losses`` is then None too: the trial has no final result, so no
    algorithm can mistake it for a finished one). ``curve`` is the first objective as a loss
    at every step the trial reported (any state; empty when it reported nothing): what an
    algorithm may learn from a pruned trial."""

    id: int
    x: np.ndarray
    losses: tuple[float, ...] | None
    step: int | None = None
    curve: Mapping[int, float] = field(default_factory=dict)

    @property
    def pruned(self) -> bool:
        return self.step is not None

    @property
    def failed(self) -> bool:
        return self.losses is None


class NoOptions(StrictModel):
    """Options model for algorithms without settings: anything given is an error."""


class Algorithm(abc.ABC):
    """Base class. Subclasses set ``name``, ``description`` and an ``Options`` pydantic model,
    and implement ``ask`` (making suggestions with ``issue``) and ``tell`` (walking
    ``arrivals``)."""

    name: ClassVar[str]
    description: ClassVar[str]
    # Proposes whole generations or swarms: asking for many points at once costs it nothing, so
    # the engine may ask for enough to train populations (model-based methods lose information
    # with every point proposed before earlier results are in, so they keep this False).
    batch_friendly: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, space: SearchSpace, n_objectives: int, *, seed: int, **options: Any):
        self.space = space
        self.n_objectives = n_objectives
        self.seed = seed
        self.options: Any = parse_options(type(self), options)
        self.rng = np.random.default_rng(seed)
        self.in_flight: dict[int, np.ndarray] = {}  # issued or pending, not yet told
        self._next_id = 0

    @abc.abstractmethod
    def ask(self, n: int) -> list[Suggestion]:
        """Up to ``n`` new suggestions in [0, 1]^d; fewer (even none) while waiting for
        results."""

    @abc.abstractmethod
    def tell(self, observations: Sequence[Observation]) -> None:
        """Learn from finished trials (any subset, any order, asked or foreign)."""

    def pending(self, suggestions: Sequence[Suggestion]) -> None:
        """Trials in flight that this instance did not ask (a resumed run re-runs the trials a
        kill cut off; a lost worker's retry): count them as asked, so the next asks neither
        repeat them nor differ from what the uninterrupted run would have asked. Their results
        arrive by ``tell``. Subclasses that count asks extend this (and call it)."""
        for suggestion in suggestions:
            self._saw(suggestion.id)
            self.in_flight[suggestion.id] = np.asarray(suggestion.x, dtype=float)

    # --- id bookkeeping for subclasses ------------------------------------------------------

    def issue(self, x: np.ndarray, id_: int | None = None) -> Suggestion:
        """A suggestion of ``x`` under a fresh id (``next_id``, or a later ``id_``), put in
        flight."""
        if id_ is not None and id_ < self._next_id:
            raise ValueError(f"id {id_} is not fresh (the next free id is {self._next_id})")
        suggestion = Suggestion(self._next_id if id_ is None else id_, np.asarray(x, dtype=float))
        self._next_id = suggestion.id + 1
        self.in_flight[suggestion.id] = suggestion.x
        return suggestion

    @property
    def next_id(self) -> int:
        """The id the next suggestion will get."""
        return self._next_id

    def arrivals(self, observations: Sequence[Observation]) -> list[tuple[Observation, bool]]:
        """Each observation with whether it is this instance's own (issued or pending and not
        yet told), all taken out of flight; a foreign id is never issued afterwards."""
        arrived = []
        for obs in observations:
            self._saw(obs.id)
            arrived.append((obs, self.in_flight.pop(obs.id, None) is not None))
        return arrived

    def _saw(self, id_: int) -> None:
        self._next_id = max(self._next_id, int(id_) + 1)


_REGISTRY: dict[str, type[Algorithm]] = {}


def register(cls: type[Algorithm]) -> type[Algorithm]:
    """Class decorator adding an algorithm under ``cls.name``; a name is never taken twice."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(
            f"algorithm name {cls.name!r} is already registered by "
            f"{_REGISTRY[cls.name].__module__}.{_REGISTRY[cls.name].__qualname__}"
        )
    _REGISTRY[cls.name] = cls
    return cls


def available() -> dict[str, type[Algorithm]]:
    """Registered algorithms by name, in registration order."""
    return dict(_REGISTRY)


def get_algorithm(name: str) -> type[Algorithm]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownAlgorithmError(
            f"--algo: unknown algorithm {name!r} (choose from: {', '.join(_REGISTRY)})"
        ) from None


def parse_options(
    cls: type[Algorithm], options: Mapping[str, Any], field: str | None = None
) -> BaseModel:
    try:
        return cls.Options.model_validate(dict(options))
    except ValidationError as err:
        raise format_validation_error(err, prefix=field or f"algorithm.{cls.name}") from None


def validate_options(name: str, options: Any, field: str) -> None:
    """Check an experiment's ``algorithm.<name>`` block without building the algorithm."""
    if name not in _REGISTRY:
        raise ExperimentError(field, f"unknown algorithm (choose from: {', '.join(_REGISTRY)})")
    if not isinstance(options, Mapping):
        raise ExperimentError(field, f"must be a mapping of options (got {options!r})")
    parse_options(_REGISTRY[name], options, field)


def create(
    name: str,
    space: SearchSpace,
    n_objectives: int,
    *,
    seed: int,
    options: Mapping[str, Any] | None = None,
) -> Algorithm:
    """Build a registered algorithm by name."""
    return get_algorithm(name)(space, n_objectives, seed=seed, **dict(options or {}))


def point_key(x: np.ndarray) -> bytes:
    """A hashable key of a point's exact coordinates (to avoid proposing one twice; trials
    are identified by id, never by their point)."""
    return np.asarray(x, dtype=float).tobytes()
