"""Objectives: what one trial computes (synthetic function, python callable, command)."""

from __future__ import annotations

from hypersearch.objectives.base import Objective, TrialContext, build_objective

__all__ = ["Objective", "TrialContext", "build_objective"]
