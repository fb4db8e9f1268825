"""Warm starts (``warm_start=`` / ``--warm-start``) and enqueued configs (``initial:``,
``--enqueue``): real runs of the Branin function with the inline executor."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from hypersearch.engine import run
from hypersearch.errors import UserInputError
from hypersearch.store import opened
from hypersearch.warm_start import WARM_CSV, waiting
from tests.conftest import REPO

BRANIN = REPO / "searchspaces" / "branin.yaml"
BRANIN_X2 = {"type": "float", "low": 0.0, "high": 15.0}
SOURCE_TRIALS = 12  # past every start-up phase on two parameters (GA: 8, TPE: 10, PSO: 8)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def points(run_dir: Path) -> list[tuple[float, float]]:
    """(x1, x2) of every trial, in trial order."""
    return [(float(r["x1"]), float(r["x2"])) for r in rows(run_dir / "trials.csv")]


def experiment(folder: Path, name: str, **changes: Any) -> Path:
    """Branin's experiment file with top-level fields (or ``x1_high``) changed."""
    data = yaml.safe_load(BRANIN.read_text())
    if "x1_high" in changes:
        data["params"]["x1"]["high"] = changes.pop("x1_high")
    data.update(changes)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def go(exp: Path, out: Path, algo: str = "tpe", **options: Any) -> Path:
    """One run, one trial at a time (so the order of asks is the whole story); its folder."""
    options = {"trials": 4, "parallel": 1, "executor": "inline", "out": out, **options}
    return run(exp, algo=algo, **options).run_dir


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An earlier run: random search, 12 complete trials."""
    out = tmp_path_factory.mktemp("source")
    return go(BRANIN, out, "random", trials=SOURCE_TRIALS, name="source")


def test_warm_trials_are_told_not_run(source: Path, tmp_path: Path) -> None:
    run_dir = go(BRANIN, tmp_path, warm_start=[str(source)])
    trials = rows(run_dir / "trials.csv")
    assert [int(r["number"]) for r in trials] == [0, 1, 2, 3]  # this run's own, nothing more
    warm, earlier = rows(run_dir / WARM_CSV), rows(source / "trials.csv")
    assert len(warm) == SOURCE_TRIALS
    for copied, original in zip(warm, earlier, strict=True):
        assert copied["source"] == str(source.resolve()) and copied["number"] == original["number"]
        assert [float(copied[k]) for k in ("x1", "x2", "value")] == [
            float(original[k]) for k in ("x1", "x2", "value")
        ]
        assert copied["skipped"] == ""
    assert not {p for p in points(run_dir)} & {(float(r["x1"]), float(r["x2"])) for r in warm}
    summary = json.loads((run_dir / "summary.json").read_text())
    runs = [str(source.resolve())]
    assert summary["warm_start"] == {"runs": runs, "told": SOURCE_TRIALS, "skipped": 0}
    assert (summary["trials"], summary["budget"]) == (4, 4)  # warm trials are not in the budget
    cold = json.loads((go(BRANIN, tmp_path / "cold") / "summary.json").read_text())
    assert set(summary) == set(cold) | {"warm_start"}  # every other key as before


@pytest.mark.parametrize("algo", ["tpe", "rf", "ga", "pso", "astar", "random"])
def test_a_warm_start_changes_what_a_learning_algorithm_asks(
    algo: str, source: Path, tmp_path: Path
) -> None:
    """The first points asked differ from a cold run's with the same seed; random search learns
    from no result, so it asks the same (as Optuna's RandomSampler would)."""
    warm = points(go(BRANIN, tmp_path / "warm", algo, trials=2, warm_start=[str(source)]))
    cold = points(go(BRANIN, tmp_path / "cold", algo, trials=2))
    assert (warm == cold) == (algo == "random"), (warm, cold)


def test_a_comma_separated_list_and_skipped_trials(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], cli: Any
) -> None:
    narrow = experiment(tmp_path, "narrow", x1_high=2.0)
    outside = sum(float(r["x1"]) > 2.0 for r in rows(source / "trials.csv"))
    assert 0 < outside < SOURCE_TRIALS  # the random source is spread over the whole range
    twin = shutil.copytree(source, tmp_path / "twin")
    capsys.readouterr()
    run_dir = go(narrow, tmp_path, trials=1, warm_start=[f"{source},{twin}"])
    told = 2 * (SOURCE_TRIALS - outside)
    assert capsys.readouterr().err.strip().splitlines() == [
        f"warm start: {told} trials from 2 runs told ({2 * outside} skipped: out of bounds or "
        "unreadable; see warm_start.csv)"
    ]
    warm = rows(run_dir / WARM_CSV)
    assert [r["source"] for r in warm] == [str(source.resolve())] * 12 + [str(twin)] * 12
    for row in warm:
        assert bool(row["skipped"]) == (float(row["x1"]) > 2.0)
        assert not row["skipped"] or row["skipped"].startswith("x1: must be in [-5, 2]")
    summary = json.loads((run_dir / "summary.json").read_text())["warm_start"]
    assert (summary["told"], summary["skipped"]) == (told, 2 * outside)
    reported = cli("report", run_dir)  # says it too, and lists the file
    assert reported.returncode == 0, reported.stderr
    assert f"warm start: {told} trials from 2 runs told ({2 * outside} skipped" in reported.stdout
    assert "warm_start.csv" in reported.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"objectives": {"value": "maximize"}}, "objectives.value: minimize there, maximize here"),
        (
            {"params": {"x1": {"type": "float", "low": 0, "high": 1}, "x3": BRANIN_X2}},
            "params.x3: a parameter of this run only (a warm start needs the same parameter names)",
        ),
    ],
    ids=["direction", "params"],
)
def test_an_incompatible_run_is_refused_naming_it_and_the_field(
    change: dict[str, Any], field: str, source: Path, tmp_path: Path
) -> None:
    other = experiment(tmp_path, "other", **change)
    with pytest.raises(UserInputError) as err:
        go(other, tmp_path / "runs", warm_start=[str(source)])
    assert str(err.value) == f"--warm-start: {source}: {field}"
    assert not (tmp_path / "runs").exists()  # refused before the run folder is made
    for folder in (tmp_path, tmp_path / "missing"):  # not a run; no such folder (in a list)
        with pytest.raises(UserInputError, match=r"^--warm-start: .* not a hypersearch run folder"):
            go(BRANIN, tmp_path / "runs", warm_start=[f"{source},{folder}"])
    with pytest.raises(UserInputError, match=r"^--warm-start: .* is given twice"):
        go(BRANIN, tmp_path / "runs", warm_start=[str(source), f"{source}/"])


def test_a_resumed_warm_start_asks_what_the_uninterrupted_run_asks(
    source: Path, tmp_path: Path
) -> None:
    """Stopped by its budget, resumed for more trials after the earlier run's folder is gone:
    the trials are those of one uninterrupted warm-started run (and not a cold run's)."""
    copy = shutil.copytree(source, tmp_path / "earlier")
    stopped = go(BRANIN, tmp_path / "a", warm_start=[str(copy)], trials=3)
    shutil.rmtree(copy)  # the run folder's warm_start.csv is all a resume needs
    run(resume=stopped, trials=7, executor="inline")
    whole = go(BRANIN, tmp_path / "b", warm_start=[str(source)], trials=7)
    assert points(stopped) == points(whole)
    assert points(go(BRANIN, tmp_path / "c", trials=7))[3:] != points(whole)[3:]
    summary = json.loads((stopped / "summary.json").read_text())
    assert summary["warm_start"]["told"] == SOURCE_TRIALS and summary["trials"] == 7
    with pytest.raises(UserInputError, match=r"^--warm-start: a resumed run keeps its own"):
        run(resume=stopped, warm_start=[str(source)], executor="inline")


CONFIGS = [{"x1": -3.0, "x2": 12.5}, {"x1": 9.0, "x2": 2.25}, {"x1": 3.14159, "x2": 2.275}]


def test_initial_configs_run_first_then_the_algorithm_takes_over(tmp_path: Path) -> None:
    exp = experiment(tmp_path, "initial", initial=CONFIGS)
    run_dir = go(exp, tmp_path, trials=5, parallel=2)
    assert points(run_dir)[:3] == [(c["x1"], c["x2"]) for c in CONFIGS]
    assert not set(points(run_dir)[3:]) & {(c["x1"], c["x2"]) for c in CONFIGS}
    assert all(r["state"] == "COMPLETE" for r in rows(run_dir / "trials.csv"))


def test_enqueued_configs_survive_a_resume_and_run_once(tmp_path: Path) -> None:
    exp = experiment(tmp_path, "initial", initial=CONFIGS[:1])
    enqueue = tmp_path / "more.yaml"
    enqueue.write_text(yaml.safe_dump(CONFIGS[1:]))
    run_dir = go(exp, tmp_path / "runs", trials=2, enqueue=enqueue)
    saved = yaml.safe_load((run_dir / "experiment.yaml").read_text())
    assert saved["initial"] == CONFIGS  # the file joined initial:, so a resume needs no file
    enqueue.unlink()
    run(resume=run_dir, trials=5, executor="inline")
    got = points(run_dir)
    assert got[:3] == [(c["x1"], c["x2"]) for c in CONFIGS]
    assert len(got) == 5 and len(set(got)) == 5  # none of them ran twice


def test_a_bad_enqueue_file_is_one_line_naming_the_entry(tmp_path: Path) -> None:
    enqueue = tmp_path / "bad.yaml"
    enqueue.write_text("- {x1: 1, x2: 2}\n- {x1: 1, x2: 99}\n")
    with pytest.raises(UserInputError) as err:
        go(BRANIN, tmp_path / "runs", enqueue=enqueue)
    assert str(err.value) == f"--enqueue: {enqueue}[1].x2: must be in [0, 15] (got 99)"
    enqueue.write_text("{x1: 1, x2: 2}\n")
    with pytest.raises(UserInputError, match=r"must hold a YAML list of configs"):
        go(BRANIN, tmp_path / "runs", enqueue=enqueue)
    assert not (tmp_path / "runs").exists()


def test_a_bad_initial_entry_exits_2_with_one_line(tmp_path: Path, cli: Any) -> None:
    exp = experiment(tmp_path, "bad", initial=[CONFIGS[0], {"x1": 1, "x2": "far"}])
    result = cli("run", exp, "--executor", "inline", "--out", tmp_path / "runs")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: initial[1].x2: must be a number (got the string 'far')"
    ]
    assert not (tmp_path / "runs").exists()


def test_an_enqueued_trial_cut_off_by_a_kill_runs_again_under_its_number(tmp_path: Path) -> None:
    """Trial 1 (the second config) was RUNNING when the driver died: the resume runs it again as
    trial 1, then the third config, and never starts either a second time."""
    run_dir = go(experiment(tmp_path, "initial", initial=CONFIGS), tmp_path / "runs", trials=1)
    with opened(run_dir) as store:  # what a kill leaves: the trial created, never finished
        suggestion, config = waiting(store)[0]
        assert store.start_trial(config, suggestion.x, suggestion.id) == 1
    run(resume=run_dir, trials=4, executor="inline")
    trials = rows(run_dir / "trials.csv")
    assert [r["state"] for r in trials] == ["COMPLETE"] * 4
    assert points(run_dir)[:3] == [(c["x1"], c["x2"]) for c in CONFIGS]
    assert len(set(points(run_dir))) == 4


MIXED_OBJECTIVE = """
def objective(config):
    if config["depth"] == 4:
        raise RuntimeError("too deep")
    loss = abs(config["lr"] - 0.01) * 10 + config["width"] / 32 + config["depth"] / 10
    return {"loss": loss, "acc": 1.0 - loss / 4}
"""


def test_failed_trials_categoricals_ints_and_maximized_metrics(tmp_path: Path) -> None:
    """A source run with failures, a numeric categorical, an int and a maximized objective:
    failures are not warm data, values read back from trials.csv keep their types, and a
    maximized metric is told negated, as the engine tells its own trials."""
    from hypersearch.warm_start import observations

    (tmp_path / "mixedobj.py").write_text(MIXED_OBJECTIVE)
    data = {
        "name": "mixed",
        "seed": 3,
        "objective": {"python": {"function": "mixedobj:objective", "path": [str(tmp_path)]}},
        "objectives": {"loss": "minimize", "acc": "maximize"},
        "params": {
            "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
            "width": {"type": "categorical", "choices": [8, 16, 32]},
            "depth": {"type": "int", "low": 1, "high": 4},
        },
    }
    exp = tmp_path / "mixed.yaml"
    exp.write_text(yaml.safe_dump(data, sort_keys=False))  # objectives in this order
    source = go(exp, tmp_path / "source", "random", trials=16)
    earlier = rows(source / "trials.csv")
    complete = [r for r in earlier if r["state"] == "COMPLETE"]
    assert 0 < len(complete) < len(earlier)  # some failed (depth 4): the check needs both
    run_dir = go(exp, tmp_path / "warm", "random", trials=1, warm_start=[str(source)])
    warm = rows(run_dir / WARM_CSV)
    assert [r["number"] for r in warm] == [r["number"] for r in complete]
    assert all(r["skipped"] == "" for r in warm)
    with opened(run_dir) as store:
        told = observations(store)
        space = store.experiment.space
    assert len(told) == len(complete)
    for obs, row in zip(told, complete, strict=True):
        config = space.decode(obs.x)
        assert config["width"] == int(float(row["width"])) and isinstance(config["width"], int)
        assert config["depth"] == int(float(row["depth"]))
        assert obs.losses == pytest.approx((float(row["loss"]), -float(row["acc"])))
