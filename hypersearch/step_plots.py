"""Pictures of steps (epochs), for runs whose trials report them: a run's learning curves, and a
comparison's best so far against the steps trained (what early stopping saves is steps, so a
pruning algorithm is judged per step as well as per trial).

Run folder: ``learning_curves.png`` (the first objective at each reported step, one line per
trial: complete trials solid, pruned ones faded with an ✕ where they were stopped, the best
trial highlighted), drawn from ``curves.csv``. Compare folder: ``best_so_far_steps.png``. Both
are skipped, not drawn empty, when no trial reported a step. ``plots`` calls this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hypersearch.plot_style import (
    finish_best_so_far,
    label,
    log_ok,
    quartiles,
    run_title,
    save,
    score_sign,
)
from hypersearch.results import COMPLETE, FAIL, PRUNED, RunData
from hypersearch.stats import RunScore

# How a trial's learning curve is drawn, by its state: complete trials solid, stopped and failed
# ones faded into the background, the best trial on top of them all.
STYLES: dict[str, dict[str, Any]] = {
    COMPLETE: {"color": "C0", "alpha": 0.75, "lw": 1.3, "zorder": 3},
    PRUNED: {"color": "0.45", "alpha": 0.3, "lw": 0.9, "zorder": 2},
    FAIL: {"color": "C1", "alpha": 0.35, "lw": 0.9, "ls": ":", "zorder": 2},
    "best": {"color": "C3", "alpha": 1.0, "lw": 2.4, "zorder": 5},
}
NAMES = {COMPLETE: "complete", PRUNED: "pruned (✕ where stopped)", FAIL: "failed"}


# -- one run -------------------------------------------------------------------------------------


def learning_curves_plot(run: RunData, path: Path) -> Path | None:
    """Write ``learning_curves.png``; None (nothing written) when no trial reported a step."""
    fig = learning_curves_figure(run)
    return None if fig is None else save(fig, path)


def learning_curves_figure(run: RunData) -> Figure | None:
    """The counted trials' learning curves (``curves.csv``), one line per trial whose ``gid`` is
    ``STATE:number``; None when none has a curve."""
    primary, direction = next(iter(run.objectives.items()))
    states = run.counted.set_index("number")["state"]
    curves = run.curves()
    curves = curves[curves["number"].isin(states.index)]
    if curves.empty:
        return None
    best = _best_number(run)
    fig = Figure(figsize=(7.5, 4.6))
    ax = fig.subplots()
    drawn: dict[str, int] = {}
    for number, rows in curves.sort_values(["number", "step"]).groupby("number"):
        state = str(states[number])
        style = STYLES["best" if number == best else state if state in STYLES else FAIL]
        steps, values = rows["step"].to_numpy(), rows[primary].to_numpy(dtype=float)
        marks: dict[str, Any] = {"marker": "o", "ms": 3} if len(steps) == 1 else {}
        if state == PRUNED:
            marks = {"marker": "x", "ms": 5, "markevery": [len(steps) - 1]}
        (line,) = ax.plot(steps, values, **style, **marks)
        line.set_gid(f"{state}:{number}")
        drawn[state] = drawn.get(state, 0) + 1
    for state in (COMPLETE, PRUNED, FAIL):
        if drawn.get(state):
            mark: dict[str, Any] = {"marker": "x", "ms": 5} if state == PRUNED else {}
            ax.plot([], [], **STYLES[state], **mark, label=f"{NAMES[state]} ({drawn[state]})")
    if best is not None and best in set(curves["number"]):
        value = float(run.counted.set_index("number").at[best, primary])
        ax.plot([], [], **STYLES["best"], label=f"best: trial {best} ({primary} = {value:.4g})")
    if log_ok(curves[primary].to_numpy(dtype=float)):
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step (as reported; epoch for the built-in trainer)")
    ax.set_ylabel(label(primary, direction))
    ax.set_title(run_title(run, f"learning curves ({primary} per step)"))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def _best_number(run: RunData) -> int | None:
    """The complete trial with the best first objective (the lowest number among equals)."""
    primary, direction = next(iter(run.objectives.items()))
    complete = run.counted[run.counted["state"] == COMPLETE]
    values = complete[primary].to_numpy(dtype=float) * (-1.0 if direction == "maximize" else 1.0)
    if not np.isfinite(values).any():
        return None
    return int(complete["number"].to_numpy()[np.nanargmin(values)])


# -- a comparison --------------------------------------------------------------------------------


def best_at_steps(curve: np.ndarray, steps: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A run's best so far at each number of steps trained in ``grid``: the curve's value after
    the last trial (in trial order) whose cumulative steps are within it; NaN before any, the
    final value past the run's end."""
    trained = np.cumsum(steps)
    index = np.searchsorted(trained, grid, side="right") - 1
    values = np.asarray(curve, dtype=float)[np.clip(index, 0, None)]
    return np.where(index >= 0, values, np.nan)


def best_so_far_steps_plot(
    runs: Sequence[RunData],
    scored: Sequence[RunScore],
    algos: list[str],
    colors: dict[str, str],
    notes: dict[str, Any],
    title: str,
    path: Path,
) -> Path | None:
    """Median best-so-far curve per algorithm against the steps trained (cumulative over the
    trials in trial order), with the quartile band over seeds, up to the most steps one of its
    seeds trained: a seed that trained fewer keeps its final best from where it ended (what it
    found with the steps it took). None when no run reported steps."""
    finished = {(run.algo, run.seed): run for run in runs if run.done}
    sign = score_sign(notes)
    fig = Figure(figsize=(7.5, 4.6))
    ax = fig.subplots()
    shown = []
    for algo in algos:
        pairs = [
            (s.curve, run.steps())
            for s in scored
            if s.algo == algo and (run := finished.get((s.algo, s.seed))) and run.reported_steps
        ]
        pairs = [(c, steps) for c, steps in pairs if len(c) == len(steps) and steps.sum() > 0]
        if not pairs:
            continue
        end = max(steps.sum() for _, steps in pairs)
        grid = np.unique(np.concatenate([np.cumsum(steps) for _, steps in pairs]))
        grid = grid[(grid > 0) & (grid <= end)]
        stacked = sign * np.vstack([best_at_steps(c, steps, grid) for c, steps in pairs])
        q1, med, q3 = quartiles(stacked)
        ax.step(grid, med, where="post", color=colors[algo], lw=2, label=f"{algo} (median)")
        ax.fill_between(grid, q1, q3, step="post", color=colors[algo], alpha=0.15, lw=0)
        shown.append(stacked.ravel())
    if not shown:
        return None
    texts = (
        "quartiles over seeds (an ended seed keeps its best)",
        "steps trained (cumulative over trials, in trial order)",
        title + ": best so far against steps trained",
    )
    finish_best_so_far(fig, ax, notes, np.concatenate(shown), texts)
    return save(fig, path)
