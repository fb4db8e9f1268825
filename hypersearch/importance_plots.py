"""Pictures of parameter importance (``importance``'s numbers), ``importance.png``.

Run folder: a horizontal bar per parameter, most important on top, one bar per objective in
each group for several. Compare folder: a panel per objective, each parameter's bars side by side
for the algorithms (their colours as in the comparison's other pictures), so whether algorithms
agree on what matters shows at once. The evaluator and the trials it saw are in the title.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hypersearch.experiment import Experiment
from hypersearch.importance import EVALUATOR, Importance
from hypersearch.plot_style import run_title, save
from hypersearch.results import RunData

XLABEL = f"importance ({EVALUATOR}: share of the objective's variance a parameter explains alone)"


def _bars(
    ax: Axes, params: list[str], series: Sequence[tuple[str, pd.Series, str]], legend: bool
) -> None:
    """Grouped horizontal bars: a group per parameter (first on top), a bar per series."""
    height = 0.8 / len(series)
    rows = np.arange(len(params))
    for k, (name, shares, color) in enumerate(series):
        y = rows - 0.4 + height * (k + 0.5)
        values = shares.reindex(params).to_numpy(dtype=float)
        ax.barh(y, np.nan_to_num(values), height=height * 0.92, color=color, label=name)
        for yi, v in zip(y, values, strict=True):
            if np.isfinite(v):
                ax.text(v + 0.01, yi, f"{v:.2f}", va="center", fontsize=8)
    ax.set_yticks(rows, params)
    ax.set_ylim(len(params) - 0.5, -0.5)  # first on top (idempotent, unlike invert_yaxis)
    ax.set_xlim(0, 1.08)
    ax.grid(alpha=0.3, axis="x")
    if legend:
        ax.legend(loc="lower right", fontsize=8)


def run_importance_plot(run: RunData, importance: Importance, path: Path) -> Path:
    """A run's importances: a bar per parameter (and objective)."""
    table = importance.table
    params = list(table.index)
    series = [(m, table[m], f"C{i}") for i, m in enumerate(table.columns)]
    fig = Figure(figsize=(7.5, 1.3 + 0.32 * len(params) * len(series) + 0.3 * len(params)))
    ax = fig.subplots()
    _bars(ax, params, series, legend=len(series) > 1)
    ax.set_xlabel(XLABEL)
    ax.set_ylabel("parameter")
    what = f"parameter importance ({importance.where()})"
    if len(series) == 1:
        what = f"importance for {table.columns[0]} ({importance.where()})"
    ax.set_title(run_title(run, what), fontsize=10)
    return save(fig, path)


def compare_importance_plot(
    experiment: Experiment,
    algos: Sequence[str],
    found: Mapping[str, Importance],
    path: Path,
) -> Path | None:
    """A comparison's importances per algorithm (all seeds pooled): a panel per objective;
    None (nothing written) when no algorithm has one. ``algos`` in the planned order keeps each
    algorithm's colour."""
    colors = {a: f"C{i % 10}" for i, a in enumerate(algos)}
    metrics = [m for m in experiment.objectives if any(m in f.table for f in found.values())]
    if not metrics:
        return None
    params = list(experiment.params)
    shown = [a for a in algos if a in found and not found[a].empty]
    height = 1.5 + 0.22 * len(params) * len(shown) + 0.25 * len(params)
    fig = Figure(figsize=(6.5 * len(metrics) + 0.5, height), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics), sharey=True)).ravel()
    for k, (ax, metric) in enumerate(zip(axes, metrics, strict=True)):
        series = [
            (f"{a} ({found[a].trials} trials)", found[a].table[metric], colors[a])
            for a in shown
            if metric in found[a].table
        ]
        _bars(ax, params, series, legend=k == len(metrics) - 1)
        ax.set_xlabel(f"importance for {metric} ({EVALUATOR} share)")
        if k == 0:
            ax.set_ylabel("parameter")
    fig.suptitle(
        f"{experiment.name}: parameter importance per algorithm "
        f"({EVALUATOR}, each algorithm's trials over all seeds pooled)",
        fontsize=11,
    )
    return save(fig, path)
