"""The tables a person reads: a run's best trials (or Pareto front), its parameter importance,
and a comparison's results table, for a terminal (rich) and as Markdown, with what the results
table's columns mean (and what the importance files found, from ``notes["importance"]``).

``report`` prints and writes them; this module only renders (it reads a run's exports and a
comparison's :class:`~hypersearch.stats.Results`, and imports neither ``report`` nor
``comparison``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from hypersearch import pareto
from hypersearch.importance import EVALUATOR, MAX_TRIALS, Importance
from hypersearch.results import COMPLETE, RunData
from hypersearch.stats import Results


def num(value: Any, digits: int = 6) -> str:
    """A number as a table shows it: ``digits`` significant digits; anything else as text."""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def best_trials_table(run: RunData, limit: int = 5) -> Table:
    """The Pareto front (several objectives) or the ``limit`` best trials (one objective)."""
    objectives = run.objectives
    finished = run.counted
    complete = finished[finished["state"] == COMPLETE]
    losses = pareto.to_losses(complete[list(objectives)].to_numpy(dtype=float), run.directions)
    order: np.ndarray | list[int] = (
        np.lexsort((complete["number"].to_numpy(), *losses.T[::-1])) if len(losses) else []
    )
    ranked = complete.iloc[order]
    if len(objectives) > 1:
        front = ranked[ranked["pareto_rank"] == 1]
        rows, title = front.head(20), f"Pareto front ({len(front)} trials)"
    else:
        rows = ranked.head(limit)
        title = f"Best {len(rows)} of {len(finished)} trials"
    table = Table(title=title, title_justify="left")
    # Objective values never shrink; parameters give way first on a narrow terminal.
    table.add_column("#", justify="right", no_wrap=True)
    for metric, direction in objectives.items():
        table.add_column(
            f"{metric} ({'max' if direction == 'maximize' else 'min'})",
            justify="right",
            style="bold",
            no_wrap=True,
        )
    for name in run.experiment.params:
        table.add_column(name, justify="right", overflow="ellipsis")
    # Parameter names are identifiers, so this header never collides with one.
    table.add_column("duration (s)", justify="right", no_wrap=True)
    for _, row in rows.iterrows():
        seconds = "" if pd.isna(row["duration_s"]) else f"{row['duration_s']:.2f}"
        table.add_row(
            str(row["number"]),
            *(num(row[m]) for m in objectives),
            *(num(row[p], 3) for p in run.experiment.params),
            seconds,
        )
    return table


# Which way is better for each column of the results table: -1 lower, +1 higher, 0 by the score.
_BETTER = {
    "auc": 0,
    "trials_to_target": -1,
    "hypervolume_median": 1,
    "failed": -1,
    "steps": -1,
    "wall_s": -1,
    "overhead_ms_per_trial": -1,
    "mean_rank": -1,
}


def has_steps(table: pd.DataFrame) -> bool:
    """Whether any run of the comparison reported steps (else its steps columns are empty)."""
    return "steps" in table and bool(table["steps"].notna().any())


def _best_in(table: pd.DataFrame, column: str, better: int) -> set[int]:
    values = pd.to_numeric(table[column], errors="coerce")
    finite = values[np.isfinite(values)]
    if finite.empty or better == 0:
        return set()
    target = finite.min() if better < 0 else finite.max()
    return set(finite.index[finite == target])


def results_rich_table(results: Results) -> Table:
    """The results table for a terminal; each column's best value in bold green."""
    table, notes = results.table, results.notes
    score_better = -1 if notes["score_direction"] == "minimize" else 1
    primary_better = -1 if notes["primary_direction"] == "minimize" else 1
    better = {**_BETTER, "auc": score_better, "best_median": primary_better}
    best = {
        column: _best_in(table, column, way) for column, way in better.items() if column in table
    }
    multi = "hypervolume_median" in table
    out = Table(
        title=f"{notes['experiment']}: {notes['runs_finished']}/{notes['runs_planned']} runs, "
        f"{notes['budget']} each",
        title_justify="left",
    )
    primary = f"{notes['primary']} ({'min' if primary_better < 0 else 'max'})"
    columns = [
        ("algo", "algo"),
        ("best_median", f"best {primary}\nmedian [IQR]"),
        ("best_mean", "mean ± std"),
        ("auc", f"AUC\n{notes['score']}"),
        ("trials_to_target", "trials to\ntarget"),
    ]
    if multi:
        columns.append(("hypervolume_median", "hypervolume\nmedian"))
    columns.append(("failed", "failed"))
    if has_steps(table):
        columns += [("pruned", "pruned"), ("steps", "steps\nper run")]
    columns += [
        ("wall_s", "wall s"),
        ("overhead_ms_per_trial", "overhead\nms/trial"),
        ("mean_rank", "mean\nrank"),
        ("vs_random", "vs random\n(p)"),
        ("vs_best", "vs best\n(p)"),
    ]
    for key, header in columns:
        out.add_column(header, justify="left" if key == "algo" else "right", no_wrap=True)
    for i, row in table.iterrows():
        cells = []
        for key, _ in columns:
            text = _cell(row, key, notes["trials"])
            cells.append(f"[bold green]{text}[/]" if i in best.get(key, ()) else text)
        out.add_row(*cells)
    return out


def _cell(row: pd.Series, key: str, trials: int | None) -> str:
    if key == "best_median":
        return f"{num(row['best_median'], 4)} [{num(row['best_q1'], 4)}, {num(row['best_q3'], 4)}]"
    if key == "best_mean":
        return f"{num(row['best_mean'], 4)} ± {num(row['best_std'], 3)}"
    if key == "trials_to_target":
        value = row["trials_to_target"]
        never = f">{trials}" if trials is not None else "never"
        shown = never if value == float("inf") else num(value, 4)
        return f"{shown} ({row['reached_target']})"
    if key in ("vs_random", "vs_best"):
        p = row[f"p_vs_{key[3:]}"]
        return row[key] if pd.isna(p) else f"{row[key]} ({p:.3g})"
    if key in ("failed", "pruned", "algo"):
        return str(row[key])
    return num(row[key], 6 if key == "steps" else 4)


def describe(results: Results) -> list[str]:
    """What the columns mean, for results.md and the terminal."""
    notes = results.notes
    score = notes["score"]
    way = "lower" if notes["score_direction"] == "minimize" else "higher"
    what = "hypervolume of all objectives" if score == "hypervolume" else f"best {score}"
    seeds = notes["seeds"]
    lines = [
        f"Score for ranks, tests, AUC and target: {what} ({way} is better).",
        f"best_*: the best {notes['primary']} a run found; median, quartiles, mean ± std "
        "over seeds.",
        "auc: area under the best-so-far curve divided by the trials (the mean best-so-far "
        "score); before a run's first success it counts as the worst score seen.",
        f"trials_to_target: median trials until the best so far reached {num(notes['target'], 6)} "
        f"({notes['target_source']}); reached_target: runs that did.",
        "p_vs_random, p_vs_best: paired Wilcoxon signed-rank test (SciPy, two-sided) on the "
        f"final score over {seeds} shared seeds; significant below {notes['alpha']}, no "
        f"correction for multiple comparisons. With {seeds} seeds the smallest possible p is "
        f"{num(notes['smallest_possible_p'], 3)}.",
        "wall_s: median wall time of a run; overhead_ms_per_trial: the engine's own time (ask, "
        "tell, storage) per trial, median over runs; failed: failed trials over all seeds.",
    ]
    if has_steps(results.table):
        lines.append(
            "steps: median steps (epochs) a run trained, the sum of its trials' last reported "
            "steps (a trial that reported none counts 0); pruned: trials a scheduler stopped, "
            "over all seeds."
        )
    if notes.get("runs_without_success"):
        lines.append(
            "No successful trial in: " + ", ".join(notes["runs_without_success"]) + " (these runs "
            "rank last)."
        )
    if notes.get("reference_point"):
        ref = ", ".join(f"{m}={num(v, 6)}" for m, v in notes["reference_point"].items())
        lines.append(f"Hypervolume reference point (shared by every run): {ref}.")
    return lines + list(notes.get("importance") or [])


def results_markdown(results: Results, plots: list[Path]) -> str:
    notes = results.notes
    table = results.table.to_markdown(index=False, floatfmt=".4g") if len(results.table) else ""
    head = [
        f"# Comparison on `{notes['experiment']}`",
        "",
        f"{', '.join(notes['algos'])}; seeds {notes['planned_seeds']} shared by every algorithm; "
        f"{notes['budget']} per run; {notes['runs_finished']} of {notes['runs_planned']} "
        f"runs finished. Best algorithm (lowest mean rank): **{notes['best_algo']}**.",
        "",
        table or "_No run has finished yet._",
        "",
        *(f"- {line}" for line in describe(results)),
        "",
    ]
    head += [f"![{path.stem.replace('_', ' ')}]({path.name})" for path in plots]
    return "\n".join(head) + "\n"


# -- parameter importance ------------------------------------------------------------------------


def importance_table(found: Importance) -> Table:
    """A run's parameter importances: a row per parameter, a column per objective (no title:
    a narrow table would wrap it; ``report`` prints one line above it)."""
    table = Table()
    table.add_column("parameter", no_wrap=True)
    for metric in found.table.columns:
        table.add_column(metric, justify="right", no_wrap=True)
    for param, row in found.table.iterrows():
        table.add_row(str(param), *(f"{share:.3f}" for share in row))
    return table


def importance_lines(found: Mapping[str, Importance], files: list[str]) -> list[str]:
    """What a comparison's importance files hold and found, for results.md and the terminal:
    the most important parameter per algorithm and objective, and why one has none."""
    lines = []
    if files:
        lines.append(
            f"Parameter importance ({', '.join(files)}): {EVALUATOR} on each algorithm's "
            "complete trials, all seeds pooled; a parameter's share of the variance of an "
            f"objective it explains alone (sums to 1 per algorithm and objective; above "
            f"{MAX_TRIALS} trials a seeded random sample)."
        )
    metrics = list(dict.fromkeys(m for f in found.values() for m in f.table.columns))
    for metric in metrics:
        top = [
            f"{algo} {f.table[metric].idxmax()} ({f.table[metric].max():.2f})"
            for algo, f in found.items()
            if metric in f.table
        ]
        lines.append(f"Most important parameter for {metric}: {', '.join(top)}.")
    for algo, f in found.items():
        reasons = list(dict.fromkeys(f.skipped.values()))
        if reasons:
            what = "" if f.empty else f" for {', '.join(f.skipped)}"
            lines.append(f"No parameter importance{what} for {algo}: {'; '.join(reasons)}.")
    return lines
