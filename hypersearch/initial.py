"""Configurations a run evaluates before its algorithm's own: ``initial:`` in the experiment and
``--enqueue FILE.yaml`` (as Optuna's ``enqueue_trial``), and the value checks warm starts share.

A config names every parameter, each value inside its parameter's domain as the experiment
declares it: within ``[low, high]``, on the ``step`` grid, an integer for an ``int`` parameter,
one of the ``choices`` (of the same type) for a categorical one. A missing parameter is an error
rather than something sampled: every value of an enqueued trial is the user's. Values come back
normalized (a float parameter's ``1`` is ``1.0``), in the space's order.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypersearch.errors import ExperimentError, UserInputError, user_errors
from hypersearch.safe_yaml import read_yaml
from hypersearch.space import CategoricalParam, FloatParam, IntParam, SearchSpace, fmt

ParamSpec = FloatParam | IntParam | CategoricalParam


def check_value(param: ParamSpec, value: Any) -> Any:
    """``value`` normalized for ``param``; a ``ValueError`` naming the rule when it is outside
    the parameter's domain."""
    if isinstance(param, CategoricalParam):
        try:
            return param.decode(param.encode(value))  # the choice itself (1 for 1.0)
        except ValueError:
            raise ValueError(f"must be one of {param.choices} (got {fmt(value)})") from None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(param, IntParam) and not (number and isinstance(value, int)):
        raise ValueError(f"must be an integer (got {_shown(value)})")
    if not number:
        raise ValueError(f"must be a number (got {_shown(value)})")
    if not math.isfinite(value):
        raise ValueError(f"must be finite (got {_shown(value)})")
    if not param.low <= value <= param.high:
        raise ValueError(f"must be in [{fmt(param.low)}, {fmt(param.high)}] (got {fmt(value)})")
    step = param.step
    if step is not None and (Decimal(str(value)) - Decimal(str(param.low))) % Decimal(str(step)):
        raise ValueError(
            f"must be on the grid low + k * step (low={fmt(param.low)}, "
            f"step={fmt(step)}; got {fmt(value)})"
        )
    return int(value) if isinstance(param, IntParam) else float(value)


def _shown(value: Any) -> str:
    """As YAML typed it: the string '1e-3', true, 3.0 (a float, where an integer is due)."""
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "nothing (null)"
    return fmt(value) if isinstance(value, bool) else repr(value)


def check_config(space: SearchSpace, config: Any, field: str) -> dict[str, Any]:
    """A config naming every parameter of ``space`` with a value in its domain, normalized;
    otherwise an ``ExperimentError`` about ``field`` (``initial[1]``) or ``field.<name>``."""
    if not isinstance(config, Mapping):
        raise ExperimentError(
            field, f"must be a mapping of parameter values (got {type(config).__name__})"
        )
    for name in config:
        if name not in space.params:
            close = difflib.get_close_matches(str(name), space.names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ExperimentError(
                f"{field}.{name}", f"not a parameter ({hint}params: {', '.join(space.names)})"
            )
    missing = [name for name in space.names if name not in config]
    if missing:
        raise ExperimentError(
            field, f"every parameter needs a value (missing: {', '.join(missing)})"
        )
    checked = {}
    for name, param in space.params.items():
        try:
            checked[name] = check_value(param, config[name])
        except ValueError as err:
            raise ExperimentError(f"{field}.{name}", str(err)) from None
    return checked


def check_initial(space: SearchSpace, configs: list[Any], field: str = "initial") -> list[dict]:
    """Every config of an ``initial:`` list checked and normalized (errors name ``initial[i]``)."""
    return [check_config(space, c, f"{field}[{i}]") for i, c in enumerate(configs)]


def load_enqueued(path: str | Path, space: SearchSpace) -> list[dict[str, Any]]:
    """The configs of an ``--enqueue`` file (a YAML list of configs), checked as ``initial:``."""
    with user_errors("--enqueue", path):
        text = Path(path).read_bytes().decode("utf-8-sig")
    data = read_yaml(text, source=f"--enqueue: {path}")
    if not isinstance(data, list):
        raise UserInputError(
            f"--enqueue: {path} must hold a YAML list of configs (got {type(data).__name__})"
        )
    return check_initial(space, data, field=f"--enqueue: {path}")


def enqueued_id(index: int, count: int) -> int:
    """The id enqueued config ``index`` of ``count`` carries to the algorithm: negative, so it
    never collides with an id the algorithm issues, and in enqueue order (-count … -1)."""
    return index - count
