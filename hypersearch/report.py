"""What a person sees: live progress during a run, the best trials after it, and the results
table of a comparison (terminal and Markdown; the tables themselves are ``tables``'s).

Parameter importance (``importance``, fANOVA) is written by ``report`` for a run and with a
comparison's results (at the end of ``compare`` and by ``report``), never after each trial:
one fit takes about a second. A run's own end writes no pictures, so neither importance.

``comparison`` computes a :class:`~hypersearch.comparison.Comparison`; this module prints it
and writes the compare folder's results.csv and results.md (``write_comparison``, with the
plots from ``plots``). ``compare`` (which is ``hypersearch.compare``) runs a comparison and
writes those files, as ``hypersearch compare`` does. Counts are the store's: a lost trial whose
retry took its place is shown in trials.csv but counted nowhere here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from hypersearch import importance, warm_start
from hypersearch.comparison import Comparison, evaluate, is_compare_dir, open_compare
from hypersearch.comparison import compare as run_comparison
from hypersearch.engine import RunResult
from hypersearch.errors import UserInputError
from hypersearch.experiment import budget_words
from hypersearch.exports import CURVES, WARM_CSV
from hypersearch.results import COMPLETE, PRUNED, RunData, is_run_dir, load_run
from hypersearch.stats import Results
from hypersearch.store import MAX_METRICS, RunStore, TrialRecord
from hypersearch.tables import (
    best_trials_table,
    describe,
    importance_lines,
    importance_table,
    num,
    results_markdown,
    results_rich_table,
)

P = ParamSpec("P")


def say(console: Console, text: str) -> None:
    """A plain line: no rich markup or highlighting (paths and values print as they are), and
    never wrapped inside a word."""
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def _files(*files: str | Path) -> str:
    return ", ".join(Path(f).name for f in files)


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
        return "-" if best is None else f"{self.primary}={num(best.metrics[self.primary])}"

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
            f"{self.primary}={num(record.metrics.get(self.primary))}"
            if record.state in ("COMPLETE", "PRUNED")
            else str(record.error)
        )
        if record.state == "PRUNED":
            outcome += f" at step {record.steps}"
        say(
            self.console,
            f"trial {record.number} {record.state} {outcome} · best {best} · "
            f"{self.done}{'' if self.budget is None else f'/{self.budget}'} done, "
            f"{self.failed} failed",
        )


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
        f"{budget_words(run.experiment.budget)} · {summary['wall_seconds']:.1f}s wall, "
        f"{summary['overhead_seconds']:.1f}s engine overhead"
        + (f" · hypervolume {hv:.6g}" if hv is not None else ""),
    )
    say(console, f"run folder: {run.run_dir} (plots: hypersearch report {run.run_dir})")
    if interrupted or not run.done:
        say(console, f"interrupted; continue with: hypersearch run --resume {run.run_dir}")


# -- comparisons ---------------------------------------------------------------------------------


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
        shown = f"{primary}={num(metrics.get(primary))}" if primary in metrics else "no success"
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
    tables = ["results.csv", "results.md"]
    tables += [importance.FILE] if (folder / importance.FILE).is_file() else []
    say(console, f"compare folder: {folder} ({_files(*tables, *plots)})")


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
    written += _compare_importance(comparison)
    (folder.path / "results.md").write_text(results_markdown(comparison.results, written))
    return written


def _compare_importance(comparison: Comparison) -> list[Path]:
    """Write (or, where no algorithm has one, remove) the compare folder's importance.csv and
    importance.png; what they found goes to the results' notes (results.md, the terminal).
    Returns the picture written."""
    from hypersearch import importance_plots  # matplotlib: only for those who draw

    folder = comparison.folder
    found = importance.pooled_importance(folder.experiment, folder.algos, comparison.runs)
    csv_path, png = folder.path / importance.FILE, folder.path / importance.PICTURE
    picture = importance_plots.compare_importance_plot(folder.experiment, folder.algos, found, png)
    if picture is not None:  # some algorithm has importances
        importance.write_pooled_csv(found, csv_path)
    else:
        csv_path.unlink(missing_ok=True)
        png.unlink(missing_ok=True)
    files = [importance.FILE, importance.PICTURE] if picture is not None else []
    comparison.results.notes["importance"] = importance_lines(found, files)
    return [picture] if picture is not None else []


def _run_importance(run: RunData, console: Console) -> list[Path]:
    """Write (or, without enough trials, remove) a run's importance.csv and importance.png, and
    print the table or why there is none. Returns the files written."""
    from hypersearch import importance_plots

    found = importance.run_importance(run)
    csv_path, png = run.run_dir / importance.FILE, run.run_dir / importance.PICTURE
    reasons = list(dict.fromkeys(found.skipped.values()))
    if found.empty:
        csv_path.unlink(missing_ok=True)
        png.unlink(missing_ok=True)
        say(console, f"no parameter importance: {'; '.join(reasons)}")
        return []
    say(
        console,
        f"Parameter importance ({found.where()}; a parameter's share of the variance it "
        "explains alone):",
    )
    console.print(importance_table(found))
    if reasons:
        say(console, f"no importance for {', '.join(found.skipped)}: {'; '.join(reasons)}")
    return [
        importance.write_run_csv(found, csv_path),
        importance_plots.run_importance_plot(run, found, png),
    ]


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
    written += _run_importance(run, console)
    state = (
        "finished"
        if run.done
        else (
            f"in progress or interrupted: {run.tally()[0]} finished of "
            f"{budget_words(run.experiment.budget)}, {run.running_count} running"
        )
    )
    say(console, f"{run.algo} seed {run.seed}: {state}")
    warm = run.summary.get("warm_start")
    if warm:
        say(console, warm_start.described(warm["told"], warm["skipped"], len(warm["runs"])))
    exports = ["trials.csv", "pareto.csv", "summary.json"]
    exports += [name for name in (CURVES, WARM_CSV) if (path / name).is_file()]
    say(console, f"run folder: {path} ({_files(*exports, *written)})")
