"""What a person sees: live progress during a run, the best trials after it, and the results
table of a comparison (terminal and Markdown).

``comparison`` computes a :class:`~hypersearch.comparison.Comparison`; this module renders it
and writes the compare folder's results.csv and results.md (``write_comparison``, with the
plots from ``plots``). ``compare`` (which is ``hypersearch.compare``) runs a comparison and
writes those files, as ``hypersearch compare`` does. Counts are the store's: a lost trial whose
retry took its place is shown in trials.csv but counted nowhere here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from hypersearch import pareto
from hypersearch.comparison import Comparison, evaluate, is_compare_dir, open_compare
from hypersearch.comparison import compare as run_comparison
from hypersearch.engine import RunResult
from hypersearch.errors import UserInputError
from hypersearch.results import COMPLETE, PRUNED, RunData, is_run_dir, load_run
from hypersearch.stats import Results
from hypersearch.store import MAX_METRICS, RunStore, TrialRecord

P = ParamSpec("P")


def say(console: Console, text: str) -> None:
    """A plain line: no rich markup or highlighting (paths and values print as they are), and
    never wrapped inside a word."""
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def _files(*files: str | Path) -> str:
    return ", ".join(Path(f).name for f in files)


def _num(value: Any, digits: int = 6) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


class RunProgress:
    """Live bar (done/failed, best so far, elapsed, ETA) on a terminal; one line per trial else;
    with ``quiet`` (``--json``) only warnings."""

    def __init__(self, store: RunStore, console: Console, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.budget = store.experiment.budget.trials
        self.primary = next(iter(store.experiment.objectives))
        self.done, self.failed = store.tally()
        self._warned_dropped = False
        self._bar: Progress | None = None
        if console.is_terminal and not quiet:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("failed {task.fields[failed]}"),
                TextColumn("best {task.fields[best]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task = self._bar.add_task(
                f"{store.experiment.name} · {store.algo}",
                total=self.budget,
                completed=self.done,
                failed=self.failed,
                best=self._best(store),
            )

    def _best(self, store: RunStore) -> str:
        best = store.best()
        return "-" if best is None else f"{self.primary}={_num(best.metrics[self.primary])}"

    def __enter__(self) -> RunProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def trial_finished(self, record: TrialRecord, store: RunStore) -> None:
        if not record.superseded:  # a lost trial's retry counts in its place, as in the budget
            self.done += 1
            self.failed += record.state == "FAIL"
        if record.dropped and not self._warned_dropped:  # once per run: it is in every trial
            self._warned_dropped = True
            shown = ", ".join(record.dropped[:3]) + (", …" if len(record.dropped) > 3 else "")
            say(
                self.console,
                f"warning: trial {record.number} returned {len(record.dropped)} metrics beyond "
                f"the {MAX_METRICS} stored (with the objectives); dropped {shown}",
            )
        if self.quiet:
            return
        best = self._best(store)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, failed=self.failed, best=best)
            return
        outcome = (
            f"{self.primary}={_num(record.metrics.get(self.primary))}"
            if record.state in ("COMPLETE", "PRUNED")
            else str(record.error)
        )
        if record.state == "PRUNED":
            outcome += f" at step {record.steps}"
        say(
            self.console,
            f"trial {record.number} {record.state} {outcome} · best {best} · "
            f"{self.done}/{self.budget} done, {self.failed} failed",
        )


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
            *(_num(row[m]) for m in objectives),
            *(_num(row[p], 3) for p in run.experiment.params),
            seconds,
        )
    return table


def every_trial_failed(run: RunData) -> str | None:
    """``every trial failed; first error: …`` when a run finished trials and none succeeded."""
    finished = run.counted
    if finished.empty or finished["state"].isin([COMPLETE, PRUNED]).any():
        return None
    first = finished.iloc[0]
    error = str(first["error"]).removeprefix("exception: ")
    return f"every trial failed; first error: {error} (trial {first['number']})"


def print_run_end(console: Console, run: RunData, interrupted: bool) -> None:
    summary = run.summary
    console.print(best_trials_table(run))
    hv = summary.get("hypervolume")
    counted, failed = run.tally()
    pruned = int((run.counted["state"] == PRUNED).sum())
    stopped = f", {pruned} pruned" if pruned else ""
    say(
        console,
        f"{counted - failed - pruned} complete, {failed} failed{stopped} of "
        f"{summary['budget']} · {summary['wall_seconds']:.1f}s wall, "
        f"{summary['overhead_seconds']:.1f}s engine overhead"
        + (f" · hypervolume {hv:.6g}" if hv is not None else ""),
    )
    say(console, f"run folder: {run.run_dir} (plots: hypersearch report {run.run_dir})")
    if interrupted or not run.done:
        say(console, f"interrupted; continue with: hypersearch run --resume {run.run_dir}")


# -- comparisons ---------------------------------------------------------------------------------

# Which way is better for each column of the results table: -1 lower, +1 higher, 0 by the score.
_BETTER = {
    "auc": 0,
    "trials_to_target": -1,
    "hypervolume_median": 1,
    "failed": -1,
    "wall_s": -1,
    "overhead_ms_per_trial": -1,
    "mean_rank": -1,
}


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
        f"{notes['trials']} trials each",
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
    columns += [
        ("failed", "failed"),
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


def _cell(row: pd.Series, key: str, trials: int) -> str:
    if key == "best_median":
        return (
            f"{_num(row['best_median'], 4)} [{_num(row['best_q1'], 4)}, {_num(row['best_q3'], 4)}]"
        )
    if key == "best_mean":
        return f"{_num(row['best_mean'], 4)} ± {_num(row['best_std'], 3)}"
    if key == "trials_to_target":
        value = row["trials_to_target"]
        shown = f">{trials}" if value == float("inf") else _num(value, 4)
        return f"{shown} ({row['reached_target']})"
    if key in ("vs_random", "vs_best"):
        p = row[f"p_vs_{key[3:]}"]
        return row[key] if pd.isna(p) else f"{row[key]} ({p:.3g})"
    if key in ("failed", "algo"):
        return str(row[key])
    return _num(row[key], 4)


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
        f"trials_to_target: median trials until the best so far reached {_num(notes['target'], 6)} "
        f"({notes['target_source']}); reached_target: runs that did.",
        "p_vs_random, p_vs_best: paired Wilcoxon signed-rank test (SciPy, two-sided) on the "
        f"final score over {seeds} shared seeds; significant below {notes['alpha']}, no "
        f"correction for multiple comparisons. With {seeds} seeds the smallest possible p is "
        f"{_num(notes['smallest_possible_p'], 3)}.",
        "wall_s: median wall time of a run; overhead_ms_per_trial: the engine's own time (ask, "
        "tell, storage) per trial, median over runs; failed: failed trials over all seeds.",
    ]
    if notes.get("runs_without_success"):
        lines.append(
            "No successful trial in: " + ", ".join(notes["runs_without_success"]) + " (these runs "
            "rank last)."
        )
    if notes.get("reference_point"):
        ref = ", ".join(f"{m}={_num(v, 6)}" for m, v in notes["reference_point"].items())
        lines.append(f"Hypervolume reference point (shared by every run): {ref}.")
    return lines


def results_markdown(results: Results, plots: list[Path]) -> str:
    notes = results.notes
    table = results.table.to_markdown(index=False, floatfmt=".4g") if len(results.table) else ""
    head = [
        f"# Comparison on `{notes['experiment']}`",
        "",
        f"{', '.join(notes['algos'])}; seeds {notes['planned_seeds']} shared by every algorithm; "
        f"{notes['trials']} trials per run; {notes['runs_finished']} of {notes['runs_planned']} "
        f"runs finished. Best algorithm (lowest mean rank): **{notes['best_algo']}**.",
        "",
        table or "_No run has finished yet._",
        "",
        *(f"- {line}" for line in describe(results)),
        "",
    ]
    head += [f"![{path.stem.replace('_', ' ')}]({path.name})" for path in plots]
    return "\n".join(head) + "\n"


class CompareLines:
    """A line as each run of a compare starts and ends (on stderr; each run's trials are quiet)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def run_started(self, index: int, total: int, algo: str, seed: int) -> None:
        say(self.console, f"[{index}/{total}] {algo} seed {seed} …")

    def run_finished(self, index: int, total: int, result: RunResult) -> None:
        summary = result.summary
        _, failed = load_run(result.run_dir).tally()  # summary.json counts superseded trials
        best = summary.get("best") or {}
        metrics = best.get("metrics") or {}
        primary = next(iter(summary.get("objectives") or {}), None)
        shown = f"{primary}={_num(metrics.get(primary))}" if primary in metrics else "no success"
        hv = summary.get("hypervolume")
        say(
            self.console,
            f"[{index}/{total}] {summary['algo']} seed {summary['seed']}: best {shown}"
            + (f", hypervolume {hv:.6g}" if hv is not None else "")
            + f", {failed} failed, {summary['wall_seconds']:.1f}s"
            + (" (interrupted)" if result.interrupted else ""),
        )


def print_results(console: Console, results: Results, folder: Path, plots: list[Path]) -> None:
    console.print(results_rich_table(results))
    for line in describe(results):
        say(console, f"· {line}")
    say(console, f"compare folder: {folder} ({_files('results.csv', 'results.md', *plots)})")


def print_compare_end(console: Console, comparison: Comparison) -> None:
    """After ``hypersearch compare``: the results table, what it means, and what is left."""
    _print_compare(console, comparison.results, comparison.compare_dir)


def _print_compare(console: Console, results: Results, folder: Path) -> None:
    print_results(console, results, folder, sorted(folder.glob("*.png")))
    left = results.notes["runs_planned"] - results.notes["runs_finished"]
    if left:
        say(
            console,
            f"{left} of {results.notes['runs_planned']} runs not finished; continue with: "
            f"hypersearch compare --resume {folder}",
        )


def write_comparison(comparison: Comparison) -> list[Path]:
    """Write the compare folder's ``results.csv``, plots and ``results.md`` (which shows the
    plots); returns the plots written."""
    from hypersearch import plots  # matplotlib: only for those who draw

    folder = comparison.folder
    comparison.table.to_csv(folder.path / "results.csv", index=False)
    written = plots.compare_plots(
        folder.path,
        folder.experiment,
        folder.algos,
        comparison.runs,
        comparison.scores,
        comparison.results,
    )
    (folder.path / "results.md").write_text(results_markdown(comparison.results, written))
    return written


def _writing_results(run: Callable[P, Comparison]) -> Callable[P, Comparison]:
    """``run`` (``comparison.compare``), then ``write_comparison`` on what it returns."""

    @functools.wraps(run)
    def compare(*args: P.args, **kwargs: P.kwargs) -> Comparison:
        comparison = run(*args, **kwargs)
        write_comparison(comparison)
        return comparison

    return compare


# ``hypersearch.compare``: ``comparison.compare``'s arguments and result, and the compare folder's
# results.csv, results.md and plots written on the way out (interrupted or not), as by the CLI.
compare = _writing_results(run_comparison)


def report(path: Path, console: Console) -> None:
    """``hypersearch report``: rebuild a run's or a compare's tables and plots from its files
    (works while it is still running: it reads only the atomically rewritten exports)."""
    from hypersearch import plots

    if is_compare_dir(path):
        comparison = evaluate(open_compare(path))
        write_comparison(comparison)
        _print_compare(console, comparison.results, path)
        return
    if not is_run_dir(path):
        raise UserInputError(
            f"FOLDER: {path} is neither a run folder (run.json) nor a compare folder (compare.json)"
        )
    run = load_run(path)
    written = plots.run_plots(run)
    if run.summary.get("complete") is None:
        say(console, f"{path}: no trial has finished yet")
        return
    console.print(best_trials_table(run))
    state = (
        "finished"
        if run.done
        else (
            f"in progress or interrupted: {run.tally()[0]}/{run.experiment.budget.trials} "
            f"finished, {run.running_count} running"
        )
    )
    say(console, f"{run.algo} seed {run.seed}: {state}")
    say(
        console,
        f"run folder: {path} ({_files('trials.csv', 'pareto.csv', 'summary.json', *written)})",
    )
