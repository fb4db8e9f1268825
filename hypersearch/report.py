"""What a person sees: live progress during a run and the table of best trials after it."""

from __future__ import annotations

import math
from typing import Any

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

from hypersearch.store import RunStore, TrialRecord


def _num(value: Any, digits: int = 6) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


class RunProgress:
    """Live bar (done/failed, best so far, elapsed, ETA) on a terminal; one line per trial else."""

    def __init__(self, store: RunStore, console: Console) -> None:
        self.console = console
        self.budget = store.experiment.budget.trials
        self.primary = next(iter(store.experiment.objectives))
        self.failed = sum(r.state == "FAIL" for r in store.finished())
        self.done = len(store.finished())
        self._bar: Progress | None = None
        if console.is_terminal:
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
        self.done += 1
        self.failed += record.state == "FAIL"
        best = self._best(store)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, failed=self.failed, best=best)
            return
        outcome = (
            f"{self.primary}={_num(record.metrics.get(self.primary))}"
            if record.state == "COMPLETE"
            else record.error
        )
        self.console.print(
            f"trial {record.number} {record.state} {outcome} · best {best} · "
            f"{self.done}/{self.budget} done, {self.failed} failed",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def best_trials_table(store: RunStore, limit: int = 5) -> Table:
    """The Pareto front (several objectives) or the ``limit`` best trials (one objective)."""
    objectives = store.experiment.objectives
    multi = len(objectives) > 1
    if multi:
        rows = store.front()[:20]
        title = f"Pareto front ({len(store.front())} trials)"
    else:
        complete = [r for r in store.finished() if r.state == "COMPLETE"]
        rows = sorted(complete, key=lambda r: (store.losses(r), r.number))[:limit]
        title = f"Best {len(rows)} of {len(store.finished())} trials"
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
    for name in store.experiment.params:
        table.add_column(name, justify="right", overflow="ellipsis")
    table.add_column("s", justify="right", no_wrap=True)
    for record in rows:
        seconds = "" if record.duration_s is None else f"{record.duration_s:.2f}"
        table.add_row(
            str(record.number),
            *(_num(record.metrics[m]) for m in objectives),
            *(_num(record.params[p], 3) for p in store.experiment.params),
            seconds,
        )
    return table


def print_run_end(
    console: Console, store: RunStore, summary: dict[str, Any], interrupted: bool
) -> None:
    console.print(best_trials_table(store))
    hv = summary.get("hypervolume")
    console.print(
        f"{summary['complete']} complete, {summary['failed']} failed of "
        f"{summary['budget']} · {summary['wall_seconds']:.1f}s wall, "
        f"{summary['overhead_seconds']:.1f}s engine overhead"
        + (f" · hypervolume {hv:.6g}" if hv is not None else ""),
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"run folder: {summary['run_dir']}", highlight=False, soft_wrap=True)
    if interrupted or summary["trials"] < summary["budget"]:
        console.print(
            f"interrupted; continue with: hypersearch run --resume {summary['run_dir']}",
            highlight=False,
            soft_wrap=True,
        )
