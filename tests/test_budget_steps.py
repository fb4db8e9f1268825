"""``budget.steps``: the run ends once the trials together trained that many steps (no trial
starts after; those in flight run on), pruned and failed trials included, across a resume."""

from __future__ import annotations

import csv
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hypersearch.engine import run as run_engine
from hypersearch.errors import ExperimentError
from hypersearch.experiment import parse_experiment

# Reports steps 1..5 (stopped earlier under a scheduler); x > 0.9 fails before any report.
STEPPING = """
def objective(config, ctx):
    if config["x"] > 0.9:
        raise RuntimeError("fails before its first step")
    loss = 0.0
    for step in range(1, 6):
        loss = (config["x"] - 0.3) ** 2 + 1.0 / step
        ctx.report(step, {"value": loss})
        if ctx.should_stop():
            break
    return {"value": loss}
"""


def experiment(tmp_path: Path, budget: str, scheduler: str = "none", file: str = "exp") -> Path:
    (tmp_path / "stepping.py").write_text(STEPPING)
    path = tmp_path / f"{file}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            name: steps
            objective: {{python: {{function: 'stepping:objective', path: ['{tmp_path}']}}}}
            params:
              x: {{type: float, low: 0.0, high: 1.0}}
            budget: {budget}
            scheduler: {scheduler}
            """
        )
    )
    return path


def trained(run_dir: Path) -> list[int]:
    """Steps each trial trained, in trial order (a trial without reports: 0)."""
    with (run_dir / "trials.csv").open() as handle:
        return [int(r["steps"] or 0) for r in csv.DictReader(handle)]


def check_spent(run_dir: Path, budget: int) -> list[int]:
    """The trials reached the budget, and the last one started before it was reached (a
    finished trial without reports counts as one step)."""
    steps = [max(s, 1) for s in trained(run_dir)]
    assert sum(steps) >= budget
    assert sum(steps[:-1]) < budget  # parallel 1: every earlier trial had finished
    return steps


def test_steps_alone_bound_the_run(tmp_path: Path) -> None:
    path = experiment(tmp_path, "{steps: 12}")
    result = run_engine(path, algo="random", executor="inline", out=tmp_path / "r")
    steps = check_spent(result.run_dir, 12)
    assert len(steps) < 40  # not the default trial count
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["steps"] == sum(trained(result.run_dir))


def test_pruned_trials_use_fewer_steps_so_more_trials_fit(tmp_path: Path) -> None:
    asha = "{asha: {min_step: 1, max_step: 5, reduction_factor: 3}}"
    plain = run_engine(
        experiment(tmp_path, "{steps: 40}", file="plain"),
        algo="random",
        executor="inline",
        seed=3,
        out=tmp_path / "r1",
    )
    stopped = run_engine(
        experiment(tmp_path, "{steps: 40}", asha, file="asha"),
        algo="random",
        executor="inline",
        seed=3,
        out=tmp_path / "r2",
    )
    check_spent(plain.run_dir, 40)
    check_spent(stopped.run_dir, 40)
    assert stopped.summary["pruned"] > 0
    assert len(trained(stopped.run_dir)) > len(trained(plain.run_dir))


def test_trials_and_steps_whichever_comes_first(tmp_path: Path) -> None:
    result = run_engine(
        experiment(tmp_path, "{trials: 3, steps: 1000}"),
        algo="random",
        executor="inline",
        out=tmp_path / "r",
    )
    assert len(trained(result.run_dir)) == 3


def test_failed_trials_count_as_one_step_so_the_run_ends(tmp_path: Path) -> None:
    path = experiment(tmp_path, "{steps: 4}")
    text = path.read_text().replace("low: 0.0", "low: 0.95")  # every trial fails at once
    path.write_text(text)
    result = run_engine(path, algo="random", executor="inline", out=tmp_path / "r")
    assert trained(result.run_dir) == [0, 0, 0, 0]
    assert result.summary["failed"] == 4


def test_resume_with_more_steps_goes_on(tmp_path: Path, cli: Callable[..., Any]) -> None:
    first = run_engine(
        experiment(tmp_path, "{steps: 10}"), algo="random", executor="inline", out=tmp_path / "r"
    )
    before = trained(first.run_dir)
    result = cli("run", "--resume", first.run_dir, "--steps", "25", "--executor", "inline")
    assert result.returncode == 0, result.stderr
    after = trained(first.run_dir)
    assert after[: len(before)] == before and len(after) > len(before)
    check_spent(first.run_dir, 25)


def test_steps_on_the_command_line_replace_the_default_trial_count(tmp_path: Path) -> None:
    path = experiment(tmp_path, "{parallel: 1}")
    result = run_engine(path, algo="random", executor="inline", steps=250, out=tmp_path / "r")
    check_spent(result.run_dir, 250)
    assert len(trained(result.run_dir)) > 40  # at most 5 steps a trial; not the default 40 trials


@pytest.mark.parametrize(
    ("budget", "field"), [("{trials: null}", "budget.trials"), ("{steps: 0}", "budget.steps")]
)
def test_a_budget_without_bounds_is_refused(budget: str, field: str) -> None:
    data = {
        "objective": {"synthetic": {"function": "sphere"}},
        "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "budget": __import__("yaml").safe_load(budget),
    }
    with pytest.raises(ExperimentError, match=field):
        parse_experiment(data)


def test_steps_on_the_command_line_replace_the_files_trial_count(tmp_path: Path) -> None:
    path = experiment(tmp_path, "{trials: 3, parallel: 1}")
    result = run_engine(path, algo="random", executor="inline", steps=30, out=tmp_path / "r")
    check_spent(result.run_dir, 30)
    assert len(trained(result.run_dir)) > 3


def test_trials_in_flight_keep_their_steps_so_the_budget_is_not_overshot(tmp_path: Path) -> None:
    """Four workers, 8 steps, trials of at most 5: starting four at once could train 20; a trial
    starts only while the steps left exceed what the trials in flight may still train, so the
    run ends below the budget plus one trial."""
    asha = "{asha: {min_step: 1, max_step: 5, reduction_factor: 3}}"
    path = experiment(tmp_path, "{steps: 8, parallel: 4}", asha)
    result = run_engine(path, algo="random", executor="local", out=tmp_path / "r")
    steps = [max(s, 1) for s in trained(result.run_dir)]
    assert 8 <= sum(steps) < 8 + 5
