"""Learning curves and steps in what a person reads: ``curves.csv`` in a run folder, the
``learning_curves.png`` of ``hypersearch report``, and the ``pruned``/``steps`` columns and the
best-so-far-against-steps figure of ``hypersearch compare``.

Expected values are recomputed here from the run folders' own trials.csv and from the objective's
formula, not from the code under test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

import hypersearch
from hypersearch.engine import run as run_engine
from hypersearch.results import load_run
from hypersearch.step_plots import STYLES, best_at_steps, learning_curves_figure

# Losses fall with the step; trials far from x = 0.3 are worse at every step, so ASHA (rungs at
# steps 1 and 3) stops most of them.
REPORTING = """
import hypersearch

def objective(config, ctx):
    for step in range(1, 10):
        loss = (config["x"] - 0.3) ** 2 + 1.0 / step
        ctx.report(step, {"value": loss})
        if ctx.should_stop():
            raise hypersearch.TrialPruned()
    return {"value": loss}
"""
ASHA = "{asha: {min_step: 1, max_step: 9, reduction_factor: 3}}"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def write_experiment(folder: Path, scheduler: str | None = ASHA, trials: int = 12) -> Path:
    """The reporting objective under ``scheduler``; without one, branin (which reports nothing)."""
    (folder / "rep.py").write_text(REPORTING)
    if scheduler:
        objective = "{python: {function: 'rep:objective', path: ['" + str(folder) + "']}}"
        params = "  x: {type: float, low: 0.0, high: 1.0}"
    else:
        objective = "{synthetic: {function: branin}}"
        params = (
            "  x1: {type: float, low: -5.0, high: 10.0}\n  x2: {type: float, low: 0.0, high: 15.0}"
        )
    lines = [
        "name: curves",
        f"objective: {objective}",
        "params:",
        params,
        f"budget: {{trials: {trials}, parallel: 1}}",
        *([f"scheduler: {scheduler}"] if scheduler else []),
    ]
    path = folder / "exp.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def reporting_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("curves")
    result = run_engine(write_experiment(folder), algo="random", executor="inline", out=folder)
    return result.run_dir


def test_curves_csv_has_every_report_with_its_trials_state(reporting_run: Path) -> None:
    trials = pd.read_csv(reporting_run / "trials.csv").set_index("number")
    curves = pd.read_csv(reporting_run / "curves.csv")
    assert list(curves.columns) == ["number", "state", "step", "value"]
    assert {"PRUNED", "COMPLETE"} <= set(curves["state"])
    for number, trial in trials.iterrows():
        rows = curves[curves["number"] == number]
        assert list(rows["step"]) == list(range(1, int(trial["steps"]) + 1))
        assert set(rows["state"]) == {trial["state"]}
        expected = (trial["x"] - 0.3) ** 2 + 1.0 / rows["step"].to_numpy()
        assert rows["value"].to_numpy() == pytest.approx(expected)
    assert len(curves) == trials["steps"].sum()


def test_report_draws_the_learning_curves(reporting_run: Path, cli: Callable[..., Any]) -> None:
    (reporting_run / "learning_curves.png").unlink(missing_ok=True)
    result = cli("report", reporting_run)
    assert result.returncode == 0, result.stderr
    assert "curves.csv" in result.stdout and "learning_curves.png" in result.stdout
    image = imread(reporting_run / "learning_curves.png")
    height, width = image.shape[:2]
    assert width >= 500 and height >= 300
    assert image[..., :3].std() > 0.05  # lines and text, not a blank canvas


def test_pruned_curves_are_faded_and_the_best_trial_stands_out(reporting_run: Path) -> None:
    run = load_run(reporting_run)
    trials = run.trials.set_index("number")
    complete = trials[trials["state"] == "COMPLETE"]
    best = int(complete["value"].idxmin())
    fig = learning_curves_figure(run)
    assert fig is not None
    lines = {line.get_gid(): line for line in fig.axes[0].get_lines() if line.get_gid()}
    assert set(lines) == {f"{state}:{number}" for number, state in trials["state"].items()}
    for gid, line in lines.items():
        state, number = gid.split(":")
        steps = int(trials.at[int(number), "steps"])
        assert list(line.get_xdata()) == list(range(1, steps + 1))
        if int(number) == best:
            assert line.get_color() == STYLES["best"]["color"]
            assert line.get_linewidth() > max(s["lw"] for k, s in STYLES.items() if k != "best")
        elif state == "PRUNED":
            assert line.get_alpha() < STYLES["COMPLETE"]["alpha"]
            assert line.get_color() != STYLES["COMPLETE"]["color"]
        else:
            assert line.get_alpha() == STYLES["COMPLETE"]["alpha"]
    legend = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    pruned = int((trials["state"] == "PRUNED").sum())
    assert f"pruned (✕ where stopped) ({pruned})" in legend
    assert any(text.startswith(f"best: trial {best} ") for text in legend)


def test_a_run_without_reports_has_no_curves(tmp_path: Path, cli: Callable[..., Any]) -> None:
    path = write_experiment(tmp_path, scheduler=None, trials=3)
    result = run_engine(path, algo="random", executor="inline", out=tmp_path / "r")
    assert not (result.run_dir / "curves.csv").exists()
    assert cli("report", result.run_dir).returncode == 0
    assert (result.run_dir / "history.png").is_file()
    assert not (result.run_dir / "learning_curves.png").exists()  # no empty picture
    run = load_run(result.run_dir)
    assert not run.reported_steps and run.curves().empty
    assert learning_curves_figure(run) is None


def test_best_at_steps_holds_each_trials_best_until_the_next() -> None:
    curve = np.array([np.nan, 2.0, 2.0, 1.0])  # trial 1 failed, then 2, 2 (no better), 1
    steps = np.array([2, 0, 3, 1])  # trained 2, 2, 5, 6 steps in all after each trial
    grid = np.array([1, 2, 4, 5, 6, 10])
    # At 1 step no trial has ended; at 2 trials 1 and 2 have (the second trained none); past the
    # end the run keeps its final best.
    expected = [np.nan, 2.0, 2.0, 2.0, 1.0, 1.0]
    np.testing.assert_array_equal(best_at_steps(curve, steps, grid), expected)


def run_steps(run_dir: Path) -> tuple[int, int]:
    """Steps a run trained and trials it had pruned, from its trials.csv alone: the counted
    (finished, not superseded) trials' steps, a trial without steps counting 0."""
    trials = pd.read_csv(run_dir / "trials.csv")
    counted = trials[trials["state"].isin(FINISHED) & ~trials["superseded"].astype(bool)]
    return int(counted["steps"].fillna(0).sum()), int((counted["state"] == "PRUNED").sum())


def test_compare_tables_and_draws_steps(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, trials=6)
    comparison = hypersearch.compare(
        path, algos=["random", "tpe"], seeds=2, executor="inline", out=tmp_path / "c"
    )
    folder = comparison.compare_dir
    table = pd.read_csv(folder / "results.csv").set_index("algo")
    columns = list(table.columns)
    assert columns.index("pruned") == columns.index("failed") + 1
    assert columns.index("steps") == columns.index("pruned") + 1
    for algo in ("random", "tpe"):
        counts = [run_steps(folder / f"curves-{algo}-s{seed}") for seed in range(2)]
        assert table.at[algo, "steps"] == np.median([steps for steps, _ in counts])
        assert table.at[algo, "pruned"] == sum(pruned for _, pruned in counts)
    assert table["pruned"].sum() > 0
    image = imread(folder / "best_so_far_steps.png")
    assert image.shape[1] >= 500 and image[..., :3].std() > 0.05
    assert "![best so far steps](best_so_far_steps.png)" in (folder / "results.md").read_text()


def test_compare_without_reports_has_no_steps(tmp_path: Path) -> None:
    path = write_experiment(tmp_path, scheduler=None, trials=3)
    comparison = hypersearch.compare(
        path, algos=["random"], seeds=1, executor="inline", out=tmp_path / "c"
    )
    table = pd.read_csv(comparison.compare_dir / "results.csv")
    assert table["steps"].isna().all() and (table["pruned"] == 0).all()
    assert (comparison.compare_dir / "best_so_far.png").is_file()
    assert not (comparison.compare_dir / "best_so_far_steps.png").exists()
    assert "steps:" not in (comparison.compare_dir / "results.md").read_text()
