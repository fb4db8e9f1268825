"""Every exception hypersearch raises on purpose, in one place.

Errors meant for users carry the field path, the rule and the offending value in one line, so the
CLI can print ``error: <message>`` and exit 2 without a traceback.
"""

from __future__ import annotations

from typing import Any


class HypersearchError(Exception):
    """Base class: anything hypersearch raises deliberately."""


class UserInputError(HypersearchError):
    """Bad input from the user (experiment file, command-line flag). The CLI exits with 2."""


class ExperimentError(UserInputError):
    """An experiment file or mapping that breaks the schema; ``field`` is its dotted path."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.rule = message
        super().__init__(f"{field}: {message}" if field else message)


class UnknownAlgorithmError(UserInputError):
    """An algorithm name that is not registered."""


class RunFolderError(UserInputError):
    """A run folder that cannot be resumed or reported (missing, or not a hypersearch run)."""


class AlgorithmError(HypersearchError):
    """An algorithm broke its contract (e.g. asked nothing while no trial is in flight)."""


class TrialFailure(HypersearchError):
    """Raised inside a worker to fail one trial with a reason (never stops the run).

    Reasons: ``exception``, ``timeout``, ``worker_lost``, ``oom``, ``non_finite``.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def format_validation_error(err: Any, prefix: str = "") -> ExperimentError:
    """Turn the first error of a pydantic ``ValidationError`` into a one-line ExperimentError.

    The path joins ``prefix``, pydantic's location (minus union tags) and, for our own rules,
    the sub-field the rule is about; the message ends with the offending value.
    """
    first = err.errors()[0]
    loc = ([prefix] if prefix else []) + [str(p) for p in first["loc"]]
    if "params" in loc:  # drop the union tag pydantic puts after the name: params.lr.float.low
        tag_at = loc.index("params") + 2
        if len(loc) > tag_at and loc[tag_at] in _UNION_TAGS:
            del loc[tag_at]
    ctx = first.get("ctx") or {}
    if ctx.get("field"):
        loc.append(str(ctx["field"]))
    path = ".".join(loc)
    kind, value = first["type"], first.get("input")
    if kind == "hypersearch_rule":
        message = first["msg"]
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "union_tag_invalid":
        message = f"unknown type {ctx.get('tag')!r} (choose from: {ctx.get('expected_tags')})"
        path = f"{path}.type"
    elif kind == "union_tag_not_found":
        message = "required field is missing"
        path = f"{path}.type"
    else:
        msg = first["msg"].removeprefix("Value error, ")
        message = f"{msg[:1].lower()}{msg[1:]} (got {_short(value)})"
    return ExperimentError(path, " ".join(message.split()))


# Discriminated-union tags that pydantic inserts into error locations (params.lr.float.low).
_UNION_TAGS = frozenset({"float", "int", "categorical"})


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
