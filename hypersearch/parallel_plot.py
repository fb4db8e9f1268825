"""A run's parallel-coordinates picture, ``parallel_coordinates.png``: one vertical axis per
parameter and then per objective, one line per complete trial. The best trials (the best 20% for
one objective, the Pareto front for several) are coloured by the first objective over the others
in grey, so where good settings lie, and which parameters they agree on, shows at a glance.

Parameter axes span the search space (not only the values tried), so a cluster near a bound
reads as one: log parameters on a log scale, categorical ones as evenly spaced choices.
Objective axes span the values seen (on a log scale where they span two decades). Drawn with
matplotlib like the other pictures of a run (``plots`` calls this module).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hypersearch.plot_style import label, log_ok, run_title, save
from hypersearch.results import COMPLETE, RunData
from hypersearch.space import CategoricalParam

BEST_SHARE = 0.2  # one objective: the best fifth of the complete trials is coloured
TICKS = 5  # per numeric axis, evenly spaced from bottom to top


class Axis:
    """One vertical axis: where each trial's value sits in [0, 1], and its tick labels."""

    def __init__(self, title: str, positions: np.ndarray, ticks: list[tuple[float, str]]) -> None:
        self.title = title
        self.positions = positions
        self.ticks = ticks


def _numeric_axis(title: str, values: np.ndarray, low: float, high: float, log: bool) -> Axis:
    """Values placed between ``low`` and ``high`` (on a log scale with ``log``)."""
    scale = np.log10 if log else np.asarray
    lo, hi = float(scale(low)), float(scale(high))
    span = hi - lo
    if span <= 0:
        return Axis(title, np.full(len(values), 0.5), [(0.5, f"{low:.3g}")])
    positions = (scale(np.clip(values, low, high)) - lo) / span
    ticks = [((t - lo) / span, f"{10**t if log else t:.3g}") for t in _tick_values(lo, hi, log)]
    return Axis(title, positions, ticks)


def _tick_values(lo: float, hi: float, log: bool) -> list[float]:
    """Round values (decades on a log axis that spans two) and both ends, in axis units."""
    if log and hi - lo >= 2:
        step = max(1, math.ceil((math.floor(hi) - math.ceil(lo)) / 5))
        inner = list(np.arange(math.ceil(lo), math.floor(hi) + 1, step, dtype=float))
    else:
        located = MaxNLocator(nbins=4).tick_values(10**lo if log else lo, 10**hi if log else hi)
        inner = [math.log10(v) if log else float(v) for v in located if not log or v > 0]
    near = 0.08 * (hi - lo)  # an end this close to a round value replaces it
    inner = [v for v in inner if lo + near <= v <= hi - near]
    return [lo, *inner, hi]


def _param_axis(run: RunData, name: str, values: pd.Series) -> Axis:
    param = run.experiment.space.params[name]
    if isinstance(param, CategoricalParam):
        choices = list(param.choices)
        step = 1.0 / (len(choices) - 1) if len(choices) > 1 else 0.0
        base = 0.0 if len(choices) > 1 else 0.5
        index = [param.index_read_back(v) for v in values]
        positions = np.array([np.nan if i is None else base + i * step for i in index])
        return Axis(name, positions, [(base + i * step, str(c)) for i, c in enumerate(choices)])
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    title = name + ("\n(log scale)" if param.log else "")
    return _numeric_axis(title, numbers, float(param.low), float(param.high), bool(param.log))


def _objective_axis(metric: str, direction: str, values: np.ndarray) -> Axis:
    log = log_ok(values)
    title = label(metric, direction).replace(" (", "\n(", 1) + ("\n(log scale)" if log else "")
    return _numeric_axis(title, values, float(values.min()), float(values.max()), log)


def best_mask(run: RunData, complete: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Which complete trials are drawn in colour, and what to call them."""
    if len(run.objectives) > 1:
        front = (complete["pareto_rank"] == 1).to_numpy()
        return front, f"Pareto front ({int(front.sum())} trials)"
    primary = next(iter(run.objectives))
    losses = complete[primary].to_numpy(dtype=float) * (
        -1.0 if run.directions[0] == "maximize" else 1.0
    )
    count = max(1, math.ceil(BEST_SHARE * len(losses)))
    best = np.zeros(len(losses), dtype=bool)
    best[np.argsort(losses, kind="stable")[:count]] = True
    return best, f"best {BEST_SHARE:.0%} ({count} trials)"


def parallel_coordinates_plot(run: RunData, path: Path) -> Path | None:
    """Write ``parallel_coordinates.png``; None (nothing written) under two complete trials."""
    objectives = list(run.objectives)
    complete = run.counted[run.counted["state"] == COMPLETE]
    values = complete[objectives].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    complete = complete[np.all(np.isfinite(values), axis=1)]
    if len(complete) < 2:
        return None
    axes = [_param_axis(run, n, complete[n]) for n in run.experiment.params]
    axes += [
        _objective_axis(m, d, complete[m].to_numpy(dtype=float)) for m, d in run.objectives.items()
    ]
    best, best_name = best_mask(run, complete)
    primary, direction = next(iter(run.objectives.items()))
    colour_by = complete[primary].to_numpy(dtype=float)
    lines = np.column_stack([a.positions for a in axes])
    xs = np.arange(len(axes))

    fig = Figure(figsize=(max(7.0, 1.45 * len(axes) + 2.5), 5.2), layout="constrained")
    ax = fig.subplots()
    for row in lines[~best]:
        ax.plot(xs, row, color="0.72", lw=0.8, alpha=0.6, zorder=1)
    ax.plot([], [], color="0.72", lw=1.5, label=f"other complete trials ({int((~best).sum())})")
    finite = colour_by[best]
    norm = LogNorm(finite.min(), finite.max()) if log_ok(finite) else Normalize(*_span(finite))
    # As in params.png: the better end of viridis is yellow.
    cmap: Colormap = colormaps["viridis_r" if direction == "minimize" else "viridis"]
    sign = -1.0 if direction == "maximize" else 1.0
    for i in np.argsort(-sign * colour_by, kind="stable"):  # worst first: the best on top
        if best[i]:
            ax.plot(xs, lines[i], color=cmap(norm(colour_by[i])), lw=1.8, alpha=0.95, zorder=3)
    ax.plot([], [], color=cmap(0.5), lw=2, label=best_name)
    _draw_axes(ax, axes)
    mappable = ax.scatter([], [], c=[], cmap=cmap, norm=norm)
    fig.colorbar(mappable, ax=ax, label=label(primary, direction), pad=0.02)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=9, frameon=False)
    what = "Pareto front" if len(objectives) > 1 else f"best {BEST_SHARE:.0%} of trials"
    ax.set_title(run_title(run, f"parallel coordinates, {what} coloured by {primary}"))
    return save(fig, path)


def _span(values: np.ndarray) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    return (low - 0.5, high + 0.5) if low == high else (low, high)


def _draw_axes(ax: Axes, axes: list[Axis]) -> None:
    """The vertical axes with their tick labels, titles below, and no frame."""
    for x, axis in enumerate(axes):
        ax.axvline(x, color="0.25", lw=1.0, zorder=2)
        for y, text in axis.ticks:
            ax.plot([x - 0.03, x], [y, y], color="0.25", lw=1.0, zorder=2)
            ax.text(
                x - 0.05,
                y,
                text,
                ha="right",
                va="center",
                fontsize=8,
                zorder=4,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5},
            )
    ax.set_xticks(range(len(axes)), [a.title for a in axes], fontsize=9)
    ax.set_xlim(-0.45, len(axes) - 0.9)
    ax.set_ylim(-0.04, 1.04)
    ax.set_yticks([])
    for side in ("left", "right", "top", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="x", length=0)
