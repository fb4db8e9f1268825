"""A user's Python function as the objective: ``"package.module:function"``.

The function is called as ``f(config)`` or, if it takes a second positional argument,
``f(config, ctx)``; it returns a number (the metric ``value``) or a mapping of metrics.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hypersearch.errors import ExperimentError
from hypersearch.objectives.base import Objective, TrialContext, as_metrics, register

FIELD = "objective.python.function"


@register("python")
class PythonObjective(Objective):
    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self._fn: Callable[..., Any] | None = None
        self._wants_ctx = False

    def _load(self) -> Callable[..., Any]:
        if self._fn is not None:
            return self._fn
        for folder in reversed(self.spec.path):
            if folder not in sys.path:
                sys.path.insert(0, folder)
        module_name, attr = self.spec.function.split(":")
        _forget_if_elsewhere(module_name, self.spec.path)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            raise ExperimentError(
                FIELD,
                f"cannot import module {module_name!r} ({err}; searched "
                f"{', '.join(self.spec.path) or 'sys.path'})",
            ) from None
        except Exception as err:
            raise ExperimentError(
                FIELD, f"importing {module_name!r} raised {type(err).__name__}: {err}"
            ) from None
        fn = getattr(module, attr, None)
        if not callable(fn):
            raise ExperimentError(FIELD, f"module {module_name!r} has no function {attr!r}")
        self._fn, self._wants_ctx = fn, _takes_two_args(fn)
        return fn

    def check(self) -> None:
        self._load()

    def evaluate(self, config: Mapping[str, Any], ctx: TrialContext) -> dict[str, float]:
        fn = self._load()
        ctx.trial_dir.mkdir(parents=True, exist_ok=True)
        result = fn(dict(config), ctx) if self._wants_ctx else fn(dict(config))
        return as_metrics(result, f"{self.spec.function}()")


def _takes_two_args(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2


def _forget_if_elsewhere(module_name: str, path: list[str]) -> None:
    """A module of that name imported earlier in this process from outside ``path`` (another
    experiment's ``objective.py``) is imported again from ``path``."""
    top = module_name.split(".")[0]
    loaded = sys.modules.get(top)
    where = getattr(loaded, "__file__", None)
    if loaded is None or not path or where is None:
        return
    folders = [Path(p).resolve() for p in path]
    if not any(Path(where).resolve().is_relative_to(f) for f in folders):
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
