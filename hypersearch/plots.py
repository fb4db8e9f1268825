"""Plots of runs and comparisons (matplotlib, PNG).

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot: no global state, no GUI
backend, safe to call from any thread or a headless server.

Run folder: ``history.png`` (objective per trial and best so far), ``params.png`` (pairs of
parameters coloured by the objective, log axes where the space is log),
``parallel_coordinates.png`` (``parallel_plot``: the best trials over the rest), for several
objectives ``pareto.png``, and when trials reported steps ``learning_curves.png``. Compare
folder: ``best_so_far.png`` (median and quartile band over seeds per algorithm), when trials
reported steps ``best_so_far_steps.png`` (the same against steps trained), ``final_scores.png``
and, for several objectives, ``pareto_fronts.png``. The pictures of steps are ``step_plots``'s.

A run's plots show the trials that count (``RunData.counted``): a lost trial whose retry took
its place is left out, as it is of the budget. This module reads runs (``results``) and scores
(``stats``); it imports neither ``comparison`` nor ``report``, which call it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from hypersearch import parallel_plot, pareto, step_plots
from hypersearch.experiment import Experiment
from hypersearch.plot_style import (
    finish_best_so_far,
    label,
    log_ok,
    quartiles,
    run_title,
    save,
    score_sign,
)
from hypersearch.results import COMPLETE, FAIL, RunData
from hypersearch.space import CategoricalParam, FloatParam, IntParam
from hypersearch.stats import Results, RunScore

# -- one run -------------------------------------------------------------------------------------


def run_plots(run: RunData, out_dir: Path | None = None) -> list[Path]:
    """Write the run's plots into ``out_dir`` (default: the run folder); returns their paths."""
    out_dir = run.run_dir if out_dir is None else out_dir
    if run.counted.empty:
        return []
    written = [history_plot(run, out_dir / "history.png"), params_plot(run, out_dir / "params.png")]
    lines = parallel_plot.parallel_coordinates_plot(run, out_dir / "parallel_coordinates.png")
    written += [lines] if lines is not None else []
    if len(run.objectives) > 1:
        written.append(pareto_plot(run, out_dir / "pareto.png"))
    curves = step_plots.learning_curves_plot(run, out_dir / "learning_curves.png")
    return written + ([curves] if curves is not None else [])


def history_plot(run: RunData, path: Path) -> Path:
    primary, direction = next(iter(run.objectives.items()))
    finished = run.counted
    numbers = finished["number"].to_numpy()
    values = finished[primary].to_numpy(dtype=float)
    failed = (finished["state"] == FAIL).to_numpy()
    sign = -1.0 if direction == "maximize" else 1.0
    best = sign * np.fmin.accumulate(sign * np.where(failed, np.nan, values))

    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    ax.scatter(numbers[~failed], values[~failed], s=18, alpha=0.7, label="trial")
    ax.step(numbers, best, where="post", color="C3", lw=2, label="best so far")
    if failed.any():
        for x in numbers[failed]:
            ax.axvline(x, color="0.6", lw=0.8, ls=":")
        ax.plot([], [], color="0.6", ls=":", label=f"failed trial ({failed.sum()})")
    if log_ok(values):
        ax.set_yscale("log")
    ax.set_xlabel("trial number")
    ax.set_ylabel(label(primary, direction))
    ax.set_title(run_title(run, f"{primary} per trial"))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return save(fig, path)


def _axis_values(run: RunData, name: str, frame: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
    """Numeric positions of a parameter's values (categories: their index) and tick labels."""
    param = run.experiment.space.params[name]
    if isinstance(param, CategoricalParam):
        index = [param.index_read_back(v) for v in frame]
        positions = np.array([np.nan if i is None else i for i in index], dtype=float)
        return positions, [str(c) for c in param.choices]
    return np.asarray(frame, dtype=float), None


def _is_log(run: RunData, name: str) -> bool:
    param = run.experiment.space.params[name]
    return isinstance(param, FloatParam | IntParam) and bool(param.log)


def params_plot(run: RunData, path: Path, max_params: int = 4) -> Path:
    """Each pair of the first ``max_params`` parameters, coloured by the primary objective (one
    parameter: the objective against it). Failed trials are grey crosses."""
    primary, direction = next(iter(run.objectives.items()))
    finished = run.counted
    ok = (finished["state"] == COMPLETE).to_numpy()
    names = list(run.experiment.params)[:max_params]
    objective = finished[primary].to_numpy(dtype=float)
    pairs: list[tuple[str, str | None]] = (
        list(itertools.combinations(names, 2)) if len(names) > 1 else [(names[0], None)]
    )
    cols = min(3, len(pairs))
    rows = int(np.ceil(len(pairs) / cols))
    fig = Figure(figsize=(4.4 * cols + 1.2, 3.8 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    cmap = "viridis_r" if direction == "minimize" else "viridis"
    finite = objective[ok & np.isfinite(objective)]
    vmin, vmax = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    color_log = log_ok(finite)
    norm = None
    if color_log:
        from matplotlib.colors import LogNorm

        norm = LogNorm(vmin, vmax)
    mappable = None
    for ax, (x_name, y_name) in zip(axes, pairs, strict=False):
        x, x_ticks = _axis_values(run, x_name, finished[x_name].to_numpy())
        if y_name is None:
            y, y_ticks, y_label = objective, None, label(primary, direction)
        else:
            y, y_ticks = _axis_values(run, y_name, finished[y_name].to_numpy())
            y_label = y_name
        kwargs = {"norm": norm} if norm is not None else {"vmin": vmin, "vmax": vmax}
        mappable = ax.scatter(
            x[ok], y[ok], c=objective[ok], cmap=cmap, s=24, edgecolors="k", linewidths=0.3, **kwargs
        )
        if (~ok).any() and y_name is not None:
            ax.scatter(x[~ok], y[~ok], marker="x", color="0.5", s=24, label="failed")
            ax.legend(loc="best", fontsize=8)
        _set_axis(ax.set_xscale, ax.set_xticks, x_ticks, _is_log(run, x_name))
        if y_name is not None:
            _set_axis(ax.set_yscale, ax.set_yticks, y_ticks, _is_log(run, y_name))
        elif log_ok(y):
            ax.set_yscale("log")
        ax.set_xlabel(x_name + (" (log scale)" if _is_log(run, x_name) else ""))
        ax.set_ylabel(y_label + (" (log scale)" if y_name and _is_log(run, y_name) else ""))
        ax.grid(alpha=0.3)
    for ax in axes[len(pairs) :]:
        ax.set_visible(False)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes[: len(pairs)].tolist(), label=label(primary, direction))
    fig.suptitle(run_title(run, "parameters, coloured by " + primary))
    return save(fig, path)


def _set_axis(
    set_scale: Callable[[str], object],
    set_ticks: Callable[[range, list[str]], object],
    ticks: list[str] | None,
    log: bool,
) -> None:
    """Categorical parameters get their choices as ticks; log parameters a log axis."""
    if ticks is not None:
        set_ticks(range(len(ticks)), ticks)
    elif log:
        set_scale("log")


def pareto_plot(run: RunData, path: Path) -> Path:
    """All complete trials in the plane of the first two objectives, the front highlighted."""
    (m1, d1), (m2, d2) = list(run.objectives.items())[:2]
    complete = run.counted[run.counted["state"] == COMPLETE]
    x, y = complete[m1].to_numpy(dtype=float), complete[m2].to_numpy(dtype=float)
    on_front = (complete["pareto_rank"] == 1).to_numpy()
    fig = Figure(figsize=(6.5, 4.8))
    ax = fig.subplots()
    ax.scatter(x[~on_front], y[~on_front], s=16, color="0.6", label="dominated trial")
    order = np.argsort(x[on_front])
    ax.step(x[on_front][order], y[on_front][order], where="post", color="C3", lw=1.5)
    ax.scatter(x[on_front], y[on_front], s=30, color="C3", label=f"Pareto front ({on_front.sum()})")
    ax.set_xlabel(label(m1, d1))
    ax.set_ylabel(label(m2, d2))
    # A front is read at its low end: spread it out once values span a decade (train_flops
    # across network widths, losses from a good trial to a diverging one).
    if log_ok(x, span=10):
        ax.set_xscale("log")
    if log_ok(y, span=10):
        ax.set_yscale("log")
    ax.set_title(run_title(run, "Pareto front"))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return save(fig, path)


# -- a comparison --------------------------------------------------------------------------------


def compare_plots(
    out_dir: Path,
    experiment: Experiment,
    algos: Sequence[str],
    runs: Sequence[RunData],
    scored: Sequence[RunScore],
    results: Results,
) -> list[Path]:
    """Write a comparison's plots into ``out_dir`` (its folder): ``algos`` in the planned order
    (colours stay with an algorithm however many finished), ``runs`` the runs read, ``scored``
    the finished ones' scores; returns the paths (none without a finished run)."""
    if not scored:
        return []
    notes = results.notes
    shown = [a for a in algos if any(s.algo == a for s in scored)]
    colors = {a: f"C{i % 10}" for i, a in enumerate(algos)}
    title = f"{experiment.name}: {len(shown)} algorithms × {notes['seeds']} seeds"
    written = [_best_so_far_plot(scored, shown, colors, notes, title, out_dir / "best_so_far.png")]
    by_steps = step_plots.best_so_far_steps_plot(
        runs, scored, shown, colors, notes, title, out_dir / "best_so_far_steps.png"
    )
    written += [by_steps] if by_steps is not None else []
    written.append(_finals_plot(scored, shown, colors, notes, title, out_dir / "final_scores.png"))
    if len(experiment.objectives) > 1:
        path = out_dir / "pareto_fronts.png"
        written.append(_fronts_plot(experiment, runs, shown, colors, title, path))
    return written


def _best_so_far_plot(
    scored: Sequence[RunScore],
    algos: list[str],
    colors: dict[str, str],
    notes: dict[str, Any],
    title: str,
    path: Path,
) -> Path:
    """Median best-so-far curve per algorithm, with the quartile band over seeds."""
    sign = score_sign(notes)
    fig = Figure(figsize=(7.5, 4.6))
    ax = fig.subplots()
    for algo in algos:
        curves = [s.curve for s in scored if s.algo == algo]
        length = min(len(c) for c in curves)
        stacked = sign * np.vstack([c[:length] for c in curves])
        q1, med, q3 = quartiles(stacked)
        trials = np.arange(1, length + 1)
        ax.plot(trials, med, color=colors[algo], lw=2, label=f"{algo} (median)")
        ax.fill_between(trials, q1, q3, color=colors[algo], alpha=0.15, lw=0)
    shown = np.concatenate([sign * s.curve for s in scored])
    texts = ("quartiles over seeds", "trials (count)", title + ": best so far")
    finish_best_so_far(fig, ax, notes, shown, texts)
    return save(fig, path)


def _finals_plot(
    scored: Sequence[RunScore],
    algos: list[str],
    colors: dict[str, str],
    notes: dict[str, Any],
    title: str,
    path: Path,
) -> Path:
    """Each algorithm's final scores over seeds: a box, and a dot per seed."""
    sign, score, direction = score_sign(notes), notes["score"], notes["score_direction"]
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    finals = [[sign * s.final for s in scored if s.algo == a] for a in algos]
    ax.boxplot(finals, tick_labels=algos, showfliers=False, medianprops={"color": "k"})
    for i, values in enumerate(finals, start=1):
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(i + jitter, values, color=[colors[algos[i - 1]]], s=22, zorder=3)
    ax.set_xlabel("algorithm (one dot per seed)")
    ax.set_ylabel(
        "final "
        + (
            "hypervolume (objective units²) ↑ better"
            if score == "hypervolume"
            else label(score, direction)
        )
    )
    ax.set_title(title + ": final result")
    ax.grid(alpha=0.3, axis="y")
    return save(fig, path)


def _fronts_plot(
    experiment: Experiment,
    runs: Sequence[RunData],
    algos: list[str],
    colors: dict[str, str],
    title: str,
    path: Path,
) -> Path:
    """Each algorithm's front over all its seeds' trials, overlaid."""
    (m1, d1), (m2, d2) = list(experiment.objectives.items())[:2]
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in (d1, d2)])
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    for algo in algos:
        losses = np.vstack([r.losses()[:, :2] for r in runs if r.algo == algo and r.done])
        losses = losses[np.all(np.isfinite(losses), axis=1)]
        if not len(losses):
            continue
        front = losses[pareto.front_mask(losses)] * signs
        front = front[np.argsort(front[:, 0])]
        ax.step(front[:, 0], front[:, 1], where="post", color=colors[algo], lw=1.5)
        ax.scatter(front[:, 0], front[:, 1], color=colors[algo], s=18, label=algo)
    ax.set_xlabel(label(m1, d1))
    ax.set_ylabel(label(m2, d2))
    ax.set_title(title + ": Pareto fronts (all seeds pooled)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return save(fig, path)
