"""Executors: where trials run (in the driver, in local worker processes, on Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypersearch.errors import UserInputError
from hypersearch.executors.base import COMPLETE, FAIL, Executor, TrialRequest, TrialResult

EXECUTORS = ("inline", "local")


def make_executor(
    kind: str, objective_spec: Any, parallel: int, log_dir: Path | None = None
) -> Executor:
    """Build an executor by name (``--executor``)."""
    if kind == "inline":
        from hypersearch.executors.inline import InlineExecutor

        return InlineExecutor(objective_spec, parallel)
    if kind == "local":
        from hypersearch.executors.local import LocalExecutor

        return LocalExecutor(objective_spec, parallel, log_dir=log_dir)
    raise UserInputError(
        f"--executor: unknown executor {kind!r} (choose from: {', '.join(EXECUTORS)})"
    )


__all__ = [
    "COMPLETE",
    "EXECUTORS",
    "FAIL",
    "Executor",
    "TrialRequest",
    "TrialResult",
    "make_executor",
]
