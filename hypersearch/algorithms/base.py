"""The algorithm interface every optimizer implements, and the name → class registry.

Algorithms work in the unit cube: ``ask`` proposes points, ``tell`` reports losses (always
minimized; ``None`` for a failed trial). ``tell`` accepts any subset in any order, including
points the algorithm never asked: that is how resume and warm start work (a fresh algorithm is
told every finished observation).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ValidationError

from hypersearch.errors import ExperimentError, UnknownAlgorithmError, format_validation_error
from hypersearch.space import SearchSpace, StrictModel


@dataclass(frozen=True)
class Observation:
    """A finished trial as the algorithm sees it: a unit-cube point and its losses."""

    x: np.ndarray
    losses: tuple[float, ...] | None  # None: the trial failed

    @property
    def failed(self) -> bool:
        return self.losses is None


class NoOptions(StrictModel):
    """Options model for algorithms without settings: anything given is an error."""


class Algorithm(abc.ABC):
    """Base class. Subclasses set ``name``, ``description`` and an ``Options`` pydantic model."""

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
        self.options = parse_options(type(self), options)
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def ask(self, n: int) -> list[np.ndarray]:
        """Up to ``n`` new points in [0, 1]^d; fewer (even none) while waiting for results."""

    @abc.abstractmethod
    def tell(self, observations: Sequence[Observation]) -> None:
        """Learn from finished trials (any subset, any order, asked or not)."""

    def pending(self, points: Sequence[np.ndarray]) -> None:  # noqa: B027  (optional hook)
        """Points in flight that this instance did not ask (a resumed run re-runs the trials
        a kill cut off): count them as asked, so the next asks neither repeat them nor differ
        from what the uninterrupted run would have asked. Their results arrive by ``tell``."""


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
    """A hashable identity for a point (algorithms match told points to their own asks)."""
    return np.asarray(x, dtype=float).tobytes()
