"""Every exception hypersearch raises on purpose, in one place.

Errors meant for users carry the field path, the rule and the offending value in one line, so the
CLI can print ``error: <message>`` and exit 2 without a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
from collections.abc import Callable, Iterator
from pathlib import Path
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


class NameTaken(HypersearchError):
    """A run's name is already taken (its folder, or its study in a shared storage): try the
    next free one."""


class AlgorithmError(HypersearchError):
    """An algorithm broke its contract (e.g. asked nothing while no trial is in flight)."""


class TrialPruned(HypersearchError):
    """Raised by an objective that saw ``ctx.should_stop()``: the trial is recorded PRUNED with
    its last reported metrics (returning them instead is the same)."""


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
    elif kind in _TYPE_RULES:
        message = f"must be {_TYPE_RULES[kind]} (got {_described(value)})"
    else:
        msg = first["msg"].removeprefix("Value error, ")
        message = f"{msg[:1].lower()}{msg[1:]} (got {_short(value)})"
    return ExperimentError(path, " ".join(message.split()))


# Pydantic's type errors, as the rule they break (values are taken as YAML typed them).
_TYPE_RULES = {
    "float_type": "a number",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _described(value: Any) -> str:
    """A value as the user wrote it in YAML: the string '1e-3', true, 3, a list."""
    if isinstance(value, str):
        return f"the string {_short(value)}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "nothing (null)"
    return _short(value)


# Discriminated-union tags that pydantic inserts into error locations (params.lr.float.low).
_UNION_TAGS = frozenset({"float", "int", "categorical"})


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- low-level errors as one-line user errors --------------------------------------------------


@contextlib.contextmanager
def user_errors(
    field: str, target: str | Path | None = None, *, writing: bool = False
) -> Iterator[None]:
    """Turn the file, text-decoding and database errors raised inside into one-line
    ``UserInputError``s that name ``field`` (a flag such as ``--out``, or a path) and
    ``target`` (the file, folder or database URL it concerns; a URL shows without its password).

    This is the one place where such errors become messages, so that every call site that reads
    an experiment, creates a folder or opens a study says the same thing the same way.
    """
    try:
        yield
    except HypersearchError:
        raise
    except Exception as err:
        message = describe(err, target, writing=writing)
        if message is None:
            raise
        raise UserInputError(f"{field}: {message}") from None


def describe(err: BaseException, target: str | Path | None, *, writing: bool) -> str | None:
    """One line for a file, decoding or database error (or one that wraps such an error, as
    Optuna's storage errors do); None for anything else (a bug, which keeps its traceback)."""
    shown = None if target is None else _shown(str(target))
    seen: BaseException | None = err
    while seen is not None:
        message = _describe_one(seen, shown, writing) or _describe_registered(seen, shown)
        if message is not None:
            return message
        seen = seen.__cause__
    return None


# -- wording registered by other modules ---------------------------------------------------------

# hypersearch.database words database errors and masks the passwords of URLs. It imports this
# module, so it registers both here when it is imported, rather than being imported back. Code
# that can meet a database error or names a database URL has imported it (it opens storages).
Describer = Callable[[BaseException, str | None], str | None]
_describers: list[Describer] = []
_masks: list[Callable[[str], str]] = []


def register_wording(describe: Describer, mask: Callable[[str], str] | None = None) -> None:
    """Have ``user_errors`` also word the errors that ``describe`` knows (it is given the error
    and the shown target, and returns None for any other error), after the file and decoding
    errors, and show every target through ``mask``."""
    if describe not in _describers:
        _describers.append(describe)
    if mask is not None and mask not in _masks:
        _masks.append(mask)


def _shown(target: str) -> str:
    for mask in _masks:
        target = mask(target)
    return target


def _describe_registered(err: BaseException, target: str | None) -> str | None:
    for describe_more in _describers:
        message = describe_more(err, target)
        if message is not None:
            return message
    return None


def _describe_one(err: BaseException, target: str | None, writing: bool) -> str | None:
    if isinstance(err, UnicodeDecodeError):
        return (
            f"{target or 'the file'} is not UTF-8 text (byte {err.object[err.start]:#04x} at "
            f"position {err.start}: a binary file, or another encoding such as UTF-16)"
        )
    if isinstance(err, json.JSONDecodeError):
        return f"{target or 'the file'} is not valid JSON ({err.msg} at line {err.lineno})"
    if isinstance(err, OSError) and err.errno is not None:
        return _os_error(err, target, writing)
    return None


def _os_error(err: OSError, target: str | None, writing: bool) -> str:
    where = err.filename if target is None else target
    reason = err.strerror or type(err).__name__
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
        return f"{where} is not {'writable' if writing else 'readable'} ({reason})"
    if err.errno in (errno.ENOTDIR, errno.EEXIST) and writing:
        return f"{where} is not writable (not a folder)"
    if err.errno == errno.ENOENT:
        return f"{where} does not exist"
    if err.errno == errno.EISDIR:
        return f"{where} is a folder, not a file"
    return f"{where}: {reason}"
