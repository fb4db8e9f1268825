"""Early stopping end to end: every report path (python objective in process and in a worker,
command lines, the built-in trainer), PRUNED everywhere a trial shows (the study, trials.csv,
summary.json, the progress line), resume, and bad scheduler input."""

from __future__ import annotations

import csv
import json
import sqlite3
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hypersearch.engine import run as run_engine
from hypersearch.errors import ExperimentError
from hypersearch.experiment import parse_experiment

# Losses fall with the step; trials with x far from 0.3 are worse at every step. Under ASHA
# (min_step 1, eta 3) rung 0 is step 1, rung 1 is step 3.
REPORTING = """
import hypersearch

def objective(config, ctx):
    loss = 0.0
    for step in range(1, 10):
        loss = (config["x"] - 0.3) ** 2 + 1.0 / step
        ctx.report(step, {"value": loss, "aux": step})
        if ctx.should_stop():
            if config["x"] > 0.5:
                raise hypersearch.TrialPruned()
            return {"value": loss}  # returning the latest metrics: pruned just the same
    return {"value": loss}
"""

# Trial k reports k + 1/step. Under the median rule (one completed trial is enough), trials
# 2, 3, 4 are stopped at their first report whatever the timing: a slot is free only once trial
# 0 or 1 completed, and their losses are below 2 + 1. They then wait for SIGTERM (120 s at most).
STOPPABLE = """
import json, os, pathlib, signal, sys, time
number = int(os.environ["HYPERSEARCH_TRIAL"])
folder = pathlib.Path(os.environ["HYPERSEARCH_TRIAL_DIR"])
folder.mkdir(parents=True, exist_ok=True)

def stopped(signum, frame):
    (folder / "got-sigterm").touch()
    sys.exit(0)

signal.signal(signal.SIGTERM, stopped)
for step in range(1, 4):
    print(json.dumps({"step": step, "value": number + 1.0 / step}), flush=True)
    print(json.dumps({"step": step, "note": "a log line, not a report"}), flush=True)
    if number >= 2:
        time.sleep(120)
(folder / "ran-to-the-end").touch()
print(json.dumps({"value": number + 1.0 / 3}))
"""
MEDIAN = "{median: {startup_trials: 1, min_trials: 1}}"
ASHA = "{asha: {min_step: 1, max_step: 9, reduction_factor: 3}}"  # rungs at steps 1 and 3


def experiment(tmp_path: Path, objective: str, scheduler: str, trials: int = 12) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            name: stop
            objective: {objective}
            params:
              x: {{type: float, low: 0.0, high: 1.0}}
            budget: {{trials: {trials}, parallel: 2}}
            scheduler: {scheduler}
            """
        )
    )
    return path


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


def intermediate(run_dir: Path) -> dict[int, dict[int, float]]:
    """trial number -> step -> value, as Optuna stored them (what optuna-dashboard draws)."""
    with sqlite3.connect(run_dir / "study.db") as db:
        found = db.execute(
            "SELECT t.number, v.step, v.intermediate_value FROM trial_intermediate_values v "
            "JOIN trials t ON t.trial_id = v.trial_id"
        ).fetchall()
    curves: dict[int, dict[int, float]] = {}
    for number, step, value in found:
        curves.setdefault(number, {})[step] = value
    return curves


def check_pruned_everywhere(run_dir: Path, trials: int) -> list[dict[str, str]]:
    """Pruned trials look pruned in trials.csv, the study and summary.json; their steps are
    where ASHA stops (rung 0 at step 1, rung 1 at step 3), the others ran all 9."""
    table = rows(run_dir)
    assert len(table) == trials
    pruned = [r for r in table if r["state"] == "PRUNED"]
    complete = [r for r in table if r["state"] == "COMPLETE"]
    assert pruned and complete and len(pruned) + len(complete) == trials
    assert {r["steps"] for r in pruned} <= {"1", "3"}
    assert {r["steps"] for r in complete} == {"9"}
    curves = intermediate(run_dir)
    for r in table:
        assert sorted(curves[int(r["number"])]) == list(range(1, int(r["steps"]) + 1))
    with sqlite3.connect(run_dir / "study.db") as db:
        states = dict(db.execute("SELECT state, count(*) FROM trials GROUP BY state").fetchall())
    assert states == {"PRUNED": len(pruned), "COMPLETE": len(complete)}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["pruned"], summary["complete"]) == (len(pruned), len(complete))
    assert summary["steps"] == sum(int(r["steps"]) for r in table)
    return table


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_python_reports_and_stops(tmp_path: Path, executor: str, cli: Callable[..., Any]) -> None:
    (tmp_path / "rep.py").write_text(REPORTING)
    objective = "{python: {function: 'rep:objective', path: ['" + str(tmp_path) + "']}}"
    path = experiment(tmp_path, objective, ASHA)
    result = cli("run", path, "--algo", "random", "--executor", executor, "--out", tmp_path / "r")
    assert result.returncode == 0, result.stderr
    run_dir = next((tmp_path / "r").iterdir())
    table = check_pruned_everywhere(run_dir, 12)
    first_pruned = next(r for r in table if r["state"] == "PRUNED")
    assert f"trial {first_pruned['number']} PRUNED value=" in result.stderr
    assert " pruned of 12" in result.stdout
    # A trial that raised TrialPruned keeps its last report's metrics; one that returned keeps
    # what it returned.
    for r in table:
        raised = r["state"] == "PRUNED" and float(r["x"]) > 0.5
        assert (float(r["aux"]) == float(r["steps"])) if raised else r["aux"] == ""


def test_command_step_lines_are_reports_and_a_stopped_command_ends(tmp_path: Path) -> None:
    (tmp_path / "stoppable.py").write_text(STOPPABLE)
    objective = "{command: {argv: [python, stoppable.py], cwd: '" + str(tmp_path) + "'}}"
    path = experiment(tmp_path, objective, MEDIAN, trials=5)
    result = run_engine(path, algo="random", executor="local", out=tmp_path / "r")
    check_stoppable(result.run_dir)


def check_stoppable(run_dir: Path) -> None:
    """Trials 2-4 stopped at their first report, by SIGTERM, in their wait; a complete one ran
    its 3 steps; every curve is every step reached (log lines are not reports)."""
    table = {int(r["number"]): r for r in rows(run_dir)}
    curves = intermediate(run_dir)
    assert sorted(table) == list(range(5))
    assert "COMPLETE" in {table[0]["state"], table[1]["state"]}
    for number, r in table.items():
        folder = run_dir / "trials" / str(number)
        assert sorted(curves[number]) == list(range(1, int(r["steps"]) + 1))
        if r["state"] == "COMPLETE":
            assert r["steps"] == "3" and (folder / "ran-to-the-end").exists()
        if number >= 2:
            assert (r["state"], r["steps"]) == ("PRUNED", "1"), r
            assert (folder / "got-sigterm").exists()
            assert not (folder / "ran-to-the-end").exists()


def test_the_trainer_reports_every_epoch(tmp_path: Path) -> None:
    exp = parse_experiment(
        {
            "name": "stop-trainer",
            "objective": {"trainer": {"dataset": "digits", "model": "mlp", "epochs": 3}},
            "params": {"lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True}},
            "budget": {"trials": 6, "parallel": 1},
            "scheduler": {"asha": {"min_step": 1, "reduction_factor": 2}},
        }
    )
    assert exp.scheduler_spec() == ("asha", {"max_step": 3, "min_step": 1, "reduction_factor": 2})
    result = run_engine(exp, algo="random", executor="inline", out=tmp_path)
    table = rows(result.run_dir)
    curves = intermediate(result.run_dir)
    for r in table:
        steps = int(r["steps"])
        assert sorted(curves[int(r["number"])]) == list(range(1, steps + 1))
        assert float(r["epochs_run"]) == steps
        assert r["state"] == ("COMPLETE" if steps == 3 else "PRUNED")
    assert any(r["state"] == "PRUNED" for r in table)
    # Each report's value is the epoch's val_loss, as epochs.csv has it.
    for r in table:
        with (result.run_dir / "trials" / r["number"] / "epochs.csv").open() as handle:
            epochs = {int(e["epoch"]): float(e["val_loss"]) for e in csv.DictReader(handle)}
        assert curves[int(r["number"])] == pytest.approx(epochs)


def test_resume_keeps_pruned_trials_and_goes_on(tmp_path: Path) -> None:
    (tmp_path / "rep.py").write_text(REPORTING)
    objective = "{python: {function: 'rep:objective', path: ['" + str(tmp_path) + "']}}"
    path = experiment(tmp_path, objective, ASHA, trials=8)
    first = run_engine(path, algo="tpe", executor="inline", out=tmp_path / "r")
    before = rows(first.run_dir)
    again = run_engine(None, resume=first.run_dir, trials=14, executor="inline")
    after = rows(again.run_dir)
    assert after[: len(before)] == before  # nothing finished is lost or changed
    assert len(after) == 14
    check_pruned_everywhere(again.run_dir, 14)


def test_pruned_trials_are_told_as_stopped_not_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The algorithm sees a pruned trial with its step and no final losses."""
    from hypersearch import algorithms
    from hypersearch.algorithms import Observation

    told: list[Observation] = []
    create = algorithms.create

    def spied(*args: Any, **kwargs: Any) -> Any:
        algorithm = create(*args, **kwargs)
        tell = algorithm.tell
        algorithm.tell = lambda observations: (told.extend(observations), tell(observations))
        return algorithm

    monkeypatch.setattr(algorithms, "create", spied)
    (tmp_path / "rep.py").write_text(REPORTING)
    objective = "{python: {function: 'rep:objective', path: ['" + str(tmp_path) + "']}}"
    path = experiment(tmp_path, objective, ASHA)
    result = run_engine(path, algo="random", executor="inline", out=tmp_path / "r")
    table = {int(r["number"]): r for r in rows(result.run_dir)}
    assert len(told) == 12
    for obs in told:
        r = table[obs.id]
        if r["state"] == "PRUNED":
            assert obs.losses is None and obs.step == int(r["steps"])
        else:
            assert obs.losses == (float(r["value"]),) and obs.step is None


def test_bad_scheduler_input_is_one_line(tmp_path: Path, cli: Callable[..., Any]) -> None:
    (tmp_path / "rep.py").write_text(REPORTING)
    objective = "{python: {function: 'rep:objective', path: ['" + str(tmp_path) + "']}}"
    cases = {
        "ashaa": "scheduler: unknown scheduler 'ashaa'",
        "hyperband": "scheduler.hyperband.max_step: required field is missing",
        "{asha: {reduction_factor: 1}}": "scheduler.asha.reduction_factor",
        "{asha: {}, median: {}}": "scheduler: must name one scheduler",
    }
    for given, message in cases.items():
        result = cli("validate", experiment(tmp_path, objective, given))
        assert result.returncode == 2, (given, result.stdout)
        assert message.lower() in result.stderr.lower(), (given, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(ExperimentError):
        parse_experiment({"objective": {"synthetic": {"function": "branin"}}, "scheduler": 3})
    with pytest.raises(ExperimentError, match="judges the first objective, train_seconds"):
        parse_experiment(
            {
                "objective": {"trainer": {"dataset": "digits"}},
                "objectives": {"train_seconds": "minimize", "val_loss": "minimize"},
                "params": {"lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}},
                "scheduler": "asha",
            }
        )


def test_the_scheduler_flag_replaces_the_files(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """``--scheduler median`` on a file that says none: the median rule stops trials (after
    its 5 start-up trials), deterministically in process."""
    (tmp_path / "rep.py").write_text(REPORTING)
    objective = "{python: {function: 'rep:objective', path: ['" + str(tmp_path) + "']}}"
    path = experiment(tmp_path, objective, "none")
    out = tmp_path / "r"
    args = ("--algo", "random", "--executor", "inline", "--out", out, "--json")
    result = cli("run", path, "--scheduler", "median", *args)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    table = rows(Path(summary["run_dir"]))
    assert summary["pruned"] > 0
    assert all(r["state"] == "COMPLETE" for r in table[:5])  # the start-up trials
    plain = json.loads(cli("run", path, *args).stdout)
    assert plain["pruned"] == 0 and plain["steps"] == 12 * 9


def test_compare_runs_every_algorithm_under_the_same_scheduler(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    (tmp_path / "rep.py").write_text(REPORTING)
    objective = "{python: {function: 'rep:objective', path: ['" + str(tmp_path) + "']}}"
    path = experiment(tmp_path, objective, "none", trials=10)
    out = tmp_path / "c"
    args = ("--algos", "random,tpe", "--seeds", "1", "--executor", "inline", "--out", out)
    result = cli("compare", path, "--scheduler", "asha", *args)
    assert result.returncode == 0, result.stderr
    folder = next(out.iterdir())
    runs = sorted(p for p in folder.iterdir() if (p / "summary.json").is_file())
    assert [p.name for p in runs] == ["stop-random-s0", "stop-tpe-s0"]
    for run_dir in runs:
        assert "scheduler: asha" in (run_dir / "experiment.yaml").read_text()
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["pruned"] > 0 and summary["trials"] == 10
        assert summary["complete"] + summary["pruned"] == 10
    assert (folder / "results.csv").is_file()
