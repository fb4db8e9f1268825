"""Objectives: what one trial computes (built-in trainer, python callable, command, synthetic
function), registered by the experiment key that selects them."""

from __future__ import annotations

from typing import Any

from hypersearch.objectives import command, python, synthetic, trainer  # noqa: F401  (register)
from hypersearch.objectives.base import Objective, TrialContext, registered


def build_objective(spec: Any) -> Objective:
    """The objective for an experiment's ``objective:`` block (an ``ObjectiveSpec``)."""
    kinds = registered()
    if spec.kind not in kinds:
        raise ValueError(f"objective kind {spec.kind!r} is not available (have {list(kinds)})")
    return kinds[spec.kind](getattr(spec, spec.kind))


__all__ = ["Objective", "TrialContext", "build_objective", "registered"]
