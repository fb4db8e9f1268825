"""Search-space parameters and the map between configs and the unit cube.

Algorithms only ever see points in [0, 1]^d; this module owns every transform. A point decodes
to exactly one config (values clipped, ints rounded, categoricals bucketed), and every valid
config encodes to the centre of its bucket, so ``decode(encode(config)) == config`` holds exactly
for ints, categoricals and stepped floats, and to float rounding (1e-12 relative) for continuous
floats.

    >>> space = SearchSpace.from_dict({"lr": {"type": "float", "low": 1e-4, "high": 1,
    ...                                       "log": True}})
    >>> space.decode(space.encode({"lr": 0.01}))["lr"]  # doctest: +ELLIPSIS
    0.01...
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hypersearch.errors import ExperimentError, format_validation_error

if TYPE_CHECKING:
    import optuna.distributions as od

PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def fmt(value: Any) -> str:
    """Format a value for an error message the way the user wrote it (0 not 0.0, 1e-06)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def rule_error(field: str | None, message: str) -> PydanticCustomError:
    """A validation error about ``field`` (a sub-field of the model that raises it)."""
    return PydanticCustomError(
        "hypersearch_rule",
        message.replace("{", "{{").replace("}", "}}"),
        {"field": field} if field else None,
    )


class StrictModel(BaseModel):
    """Base for schema models: unknown keys are rejected with a did-you-mean hint, and values
    are taken as YAML typed them (a quoted "1e-3" is a string, not a number; "yes" is not a
    boolean); only an integer is also a valid float."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = set(cls.model_fields)
            for key in data:
                if key not in known:
                    close = difflib.get_close_matches(str(key), sorted(known), n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    raise rule_error(
                        str(key), f"unknown field{hint}; allowed: {', '.join(sorted(known))}"
                    )
            data = {key: _plain(value) for key, value in data.items()}
        return data


def _plain(value: Any) -> Any:
    """What the Python API may pass where YAML gives plain values: tuples become lists, paths
    strings, numpy scalars Python numbers (strictness is about YAML's strings, not these)."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


class FloatParam(StrictModel):
    """A real-valued parameter, optionally on a log scale or a grid of ``step``."""

    type: Literal["float"]
    low: FiniteFloat
    high: FiniteFloat
    log: bool = False
    step: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        _check_bounds(self.low, self.high)
        if self.log and self.low <= 0:
            raise rule_error("low", f"must be > 0 when log is true (got {fmt(self.low)})")
        if self.step is not None:
            if self.log:
                raise rule_error(
                    "step", f"cannot be combined with log (got step={fmt(self.step)}, log=true)"
                )
            # Optuna's rule, in decimal arithmetic: 0.7 - 0.1 is a multiple of 0.2
            if (Decimal(str(self.high)) - Decimal(str(self.low))) % Decimal(str(self.step)):
                raise rule_error(
                    "step",
                    f"high - low must be a multiple of step (got low="
                    f"{fmt(self.low)}, high={fmt(self.high)}, step="
                    f"{fmt(self.step)})",
                )
        return self

    def _n_cells(self) -> int:
        assert self.step is not None
        span = Decimal(str(self.high)) - Decimal(str(self.low))
        return int(span / Decimal(str(self.step))) + 1

    def encode(self, value: Any) -> float:
        v = float(value)
        if self.step is not None:
            return (round((v - self.low) / self.step) + 0.5) / self._n_cells()
        if self.high == self.low:
            return 0.5
        if self._log_span():
            return (math.log(v) - math.log(self.low)) / self._log_span()
        return (v - self.low) / (self.high - self.low)

    def _log_span(self) -> float:
        """log(high) - log(low) on a log scale; 0 (use the linear scale) when not log or when
        the bounds are so close that their logarithms are the same float."""
        return math.log(self.high) - math.log(self.low) if self.log else 0.0

    def decode(self, u: float) -> float:
        if self.step is not None:
            return self._grid(min(int(u * self._n_cells()), self._n_cells() - 1))
        if self._log_span():
            value = math.exp(math.log(self.low) + u * self._log_span())
        else:
            value = self.low + u * (self.high - self.low)
        return min(max(value, self.low), self.high)

    def _grid(self, index: int) -> float:
        """Grid point ``index`` in decimal arithmetic, as Optuna computes it (0.3, not
        0.30000000000000004; the last point is exactly ``high``)."""
        assert self.step is not None
        return float(Decimal(str(self.low)) + index * Decimal(str(self.step)))

    def to_optuna(self) -> od.BaseDistribution:
        high = self.high if self.step is None else self._grid(self._n_cells() - 1)
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, high, log=self.log, step=self.step)


class IntParam(StrictModel):
    """An integer parameter; on a log scale every integer gets an equal share of log-space."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_bounds(self.low, self.high)
        if self.log and self.low < 1:
            raise rule_error("low", f"must be >= 1 when log is true (got {fmt(self.low)})")
        if self.log and self.step != 1:
            raise rule_error(
                "step", f"cannot be combined with log (got step={self.step}, log=true)"
            )
        if (self.high - self.low) % self.step:
            raise rule_error(
                "step",
                f"high - low must be a multiple of step (got low={self.low}"
                f", high={self.high}, step={self.step})",
            )
        return self

    def _log_edges(self) -> tuple[float, float]:
        return math.log(self.low - 0.5), math.log(self.high + 0.5)

    def encode(self, value: Any) -> float:
        v = int(value)
        if self.log:
            lo, hi = self._log_edges()
            centre = 0.5 * (math.log(v - 0.5) + math.log(v + 0.5))
            return (centre - lo) / (hi - lo)
        n = (self.high - self.low) // self.step + 1
        return ((v - self.low) // self.step + 0.5) / n

    def decode(self, u: float) -> int:
        if self.log:
            lo, hi = self._log_edges()
            value = round(math.exp(lo + u * (hi - lo)))
        else:
            n = (self.high - self.low) // self.step + 1
            value = self.low + min(int(u * n), n - 1) * self.step
        return int(min(max(value, self.low), self.high))

    def to_optuna(self) -> od.BaseDistribution:
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, log=self.log, step=self.step)


Choice = bool | int | float | str
StrictChoice = StrictBool | StrictInt | StrictFloat | StrictStr


class CategoricalParam(StrictModel):
    """One of a list of choices of a single type (all strings, all numbers or all booleans)."""

    type: Literal["categorical"]
    choices: list[Annotated[StrictChoice, Field(union_mode="left_to_right")]]

    @model_validator(mode="after")
    def _check(self) -> CategoricalParam:
        if not self.choices:
            raise rule_error("choices", "must not be empty")
        kinds = {_choice_kind(c) for c in self.choices}
        if len(kinds) > 1:
            first = {k: next(c for c in self.choices if _choice_kind(c) == k) for k in kinds}
            shown = " and ".join(f"{k} {fmt(v)}" for k, v in sorted(first.items()))
            raise rule_error("choices", f"must all be of one type (got {shown})")
        if any(isinstance(c, float) and not math.isfinite(c) for c in self.choices):
            raise rule_error("choices", f"must be finite numbers (got {self.choices})")
        if len(set(self.choices)) != len(self.choices):
            raise rule_error("choices", f"must be distinct (got {self.choices})")
        return self

    def encode(self, value: Any) -> float:
        for i, choice in enumerate(self.choices):
            if choice == value and _choice_kind(choice) == _choice_kind(value):
                return (i + 0.5) / len(self.choices)
        raise ValueError(f"{value!r} is not one of {self.choices}")

    def decode(self, u: float) -> Choice:
        n = len(self.choices)
        return self.choices[min(int(u * n), n - 1)]

    def index_read_back(self, value: Any) -> int | None:
        """Which choice a value read back from a CSV file is, as text or as pandas typed it
        (``"16"``, ``16.0`` and ``16`` are the choice 16; ``"True"`` is True); None for none."""
        text = str(value)
        for i, choice in enumerate(self.choices):
            if str(choice) == text:
                return i
        if isinstance(value, bool):
            return None  # True is not the choice 1
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        for i, choice in enumerate(self.choices):
            if _choice_kind(choice) == "number" and choice == number:
                return i
        return None

    def to_optuna(self) -> od.BaseDistribution:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(self.choices)


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]
PARAM_TYPES = ("float", "int", "categorical")


def _choice_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _check_bounds(low: float, high: float) -> None:
    if low > high:
        raise rule_error("low", f"must be <= high (got low={fmt(low)}, high={fmt(high)})")


class SearchSpace:
    """Ordered parameters; ``encode``/``decode`` map configs to and from the unit cube."""

    _adapter: ClassVar[TypeAdapter[dict[str, Param]]] = TypeAdapter(dict[str, Param])

    def __init__(self, params: Mapping[str, FloatParam | IntParam | CategoricalParam]) -> None:
        if not params:
            raise ExperimentError("params", "must declare at least one parameter")
        for name in params:
            if not PARAM_NAME.match(name):
                raise ExperimentError(
                    f"params.{name}", f"names must match [A-Za-z_][A-Za-z0-9_]* (got {name!r})"
                )
        self.params = dict(params)
        self.names = list(params)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SearchSpace:
        """Validate a ``params:`` mapping (as written in YAML) and build the space."""
        try:
            return cls(cls._adapter.validate_python(dict(raw)))
        except ValidationError as err:
            raise format_validation_error(err, prefix="params") from None

    @property
    def dim(self) -> int:
        return len(self.names)

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """The centre of ``config``'s cell in the unit cube."""
        return np.array([self.params[n].encode(config[n]) for n in self.names], dtype=float)

    def decode(self, x: Sequence[float] | np.ndarray) -> dict[str, Any]:
        """The config of a unit-cube point; coordinates outside [0, 1] are clipped."""
        x = np.asarray(x, dtype=float)
        if x.shape != (self.dim,) or not np.all(np.isfinite(x)):
            raise ValueError(f"expected {self.dim} finite coordinates, got {x!r}")
        u = np.clip(x, 0.0, 1.0)
        return {n: self.params[n].decode(float(ui)) for n, ui in zip(self.names, u, strict=True)}

    def distributions(self) -> dict[str, od.BaseDistribution]:
        """Optuna distributions, so a study shows the parameters with their real ranges."""
        return {n: p.to_optuna() for n, p in self.params.items()}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {
            n: p.model_dump(exclude_defaults=True) | {"type": p.type}
            for n, p in self.params.items()
        }

    def __repr__(self) -> str:
        return f"SearchSpace({', '.join(self.names)})"
