"""End-to-end tests of ``hypersearch run``: real processes, real run folders, real Optuna studies.

Each test runs the command line as a user would (``python -m hypersearch.cli``) and checks the
contracts of DESIGN.md: the run folder's name and files, trials.csv against the Optuna study,
summary.json, pareto.csv, reproducibility, ``--json``, ``--storage``, the default experiment and
the exit codes for bad input. Expensive runs are shared between tests through module caches.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from tests.conftest import REPO, run_cli

SEARCHSPACES = REPO / "searchspaces"
SUMMARY_KEYS = {
    "name",
    "algo",
    "seed",
    "trials",
    "complete",
    "failed",
    "best",
    "pareto_size",
    "hypervolume",
    "wall_seconds",
    "overhead_seconds",
    "versions",
}
FINISHED = ("COMPLETE", "FAIL")

# A quick synthetic experiment for the reproducibility runs: TPE leaves its random start-up
# phase after 4 trials, so the model-based proposals are compared too.
BRANIN = """\
    name: repro
    seed: 0
    objective: {synthetic: {function: branin}}
    params:
      x1: {type: float, low: -5.0, high: 10.0}
      x2: {type: float, low: 0.0, high: 15.0}
    budget: {trials: 10, parallel: 2}
    algorithm: {tpe: {n_startup_trials: 4}}
"""


# -- helpers --------------------------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def csv_header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return next(csv.reader(handle))


def only_run_dir(out: Path) -> Path:
    """The one run folder a run wrote into ``out``."""
    dirs = [p for p in out.iterdir() if p.is_dir()]
    assert len(dirs) == 1, f"expected one run folder in {out}, found {dirs}"
    return dirs[0]


def ok(result: Any) -> None:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def sqlite_url(run_dir: Path) -> str:
    return f"sqlite:///{run_dir / 'study.db'}"


def load_study(run_dir: Path, storage: str | None = None) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=run_dir.name, storage=storage or sqlite_url(run_dir))


def assert_study_matches_csv(study: optuna.Study, rows: list[dict[str, str]]) -> None:
    """Every trial of the study is the trials.csv row with its number: same state, same
    parameter values and objective values, to the last bit (the CSV holds float reprs)."""
    objectives = list(study.user_attrs["hypersearch"]["objectives"])
    by_number = {int(r["number"]): r for r in rows}
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == sorted(by_number)
    for trial in trials:
        row = by_number[trial.number]
        assert row["state"] == trial.state.name, trial.number
        assert trial.params, trial.number
        for name, value in trial.params.items():
            assert float(row[name]) == value, (trial.number, name, row[name], value)
        if trial.state.name == "COMPLETE":
            assert trial.values is not None
            for metric, value in zip(objectives, trial.values, strict=True):
                assert float(row[metric]) == value, (trial.number, metric, row[metric], value)
                assert trial.user_attrs[metric] == value


def non_dominated(points: dict[int, tuple[float, ...]]) -> set[int]:
    """Brute force: the keys whose loss vectors no other vector dominates."""

    def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    return {
        k for k, p in points.items() if not any(dominates(q, p) for q in points.values() if q != p)
    }


def hypervolume_2d(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by ``points`` (minimized) up to ``ref``, by sweeping along the first axis."""
    area, best_f2 = 0.0, ref[1]
    for f1, f2 in sorted(points):
        if f2 < best_f2:
            area += (ref[0] - f1) * (best_f2 - f2)
            best_f2 = f2
    return area


# -- shared runs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hartmann_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Any, Path]]:
    """``hypersearch run hartmann6.yaml --algo A --trials 20 --parallel 2`` (local workers), once
    per algorithm: (the finished process, the run folder)."""
    cache: dict[str, tuple[Any, Path]] = {}

    def get(algo: str) -> tuple[Any, Path]:
        if algo not in cache:
            out = tmp_path_factory.mktemp(f"hartmann-{algo}")
            result = run_cli(
                "run",
                str(SEARCHSPACES / "hartmann6.yaml"),
                *("--algo", algo, "--trials", "20", "--parallel", "2", "--out", str(out)),
            )
            ok(result)
            cache[algo] = (result, only_run_dir(out))
        return cache[algo]

    return get


@pytest.fixture(scope="module")
def inline_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str, int, str], tuple[Any, Path]]:
    """``hypersearch run repro.yaml --executor inline --json``, once per (algo, seed, tag)."""
    root = tmp_path_factory.mktemp("inline")
    experiment = root / "repro.yaml"
    experiment.write_text(textwrap.dedent(BRANIN))
    cache: dict[tuple[str, int, str], tuple[Any, Path]] = {}

    def get(algo: str, seed: int, tag: str) -> tuple[Any, Path]:
        key = (algo, seed, tag)
        if key not in cache:
            out = root / f"{algo}-{seed}-{tag}"
            result = run_cli(
                "run",
                str(experiment),
                *("--algo", algo, "--seed", str(seed), "--executor", "inline"),
                *("--out", str(out), "--json"),
            )
            ok(result)
            cache[key] = (result, only_run_dir(out))
        return cache[key]

    return get


# -- the run folder -------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["random", "tpe"])
def test_run_writes_the_run_folder(hartmann_run: Any, algo: str) -> None:
    _, run_dir = hartmann_run(algo)
    match = re.fullmatch(rf"hartmann6-{algo}-s0-(\d{{8}}-\d{{6}})", run_dir.name)
    assert match, run_dir.name
    stamp = dt.datetime.strptime(match.group(1), "%Y%m%d-%H%M%S")
    assert abs(dt.datetime.now() - stamp) < dt.timedelta(minutes=30)
    for name in ("experiment.yaml", "study.db", "trials.csv", "pareto.csv", "summary.json"):
        assert (run_dir / name).is_file(), name

    params = [f"x{i}" for i in range(6)]
    header = csv_header(run_dir / "trials.csv")
    tail = ["duration_s", "error", "superseded", "steps"]
    columns = ["number", "state", *params, "value", "regret", *tail]
    assert header == columns
    rows = read_csv(run_dir / "trials.csv")
    assert [int(r["number"]) for r in rows] == list(range(20))
    assert {r["state"] for r in rows} == {"COMPLETE"}
    assert all(r["error"] == "" for r in rows)
    assert all(float(r["duration_s"]) >= 0 for r in rows)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary.keys() >= SUMMARY_KEYS
    assert (summary["name"], summary["algo"], summary["seed"]) == ("hartmann6", algo, 0)
    assert (summary["trials"], summary["complete"], summary["failed"]) == (20, 20, 0)
    assert summary["pareto_size"] == 1
    assert summary["hypervolume"] is None  # one objective: no hypervolume
    assert summary["wall_seconds"] > 0
    assert 0 <= summary["overhead_seconds"] <= summary["wall_seconds"]
    assert {"python", "optuna", "numpy", "hypersearch"} <= summary["versions"].keys()
    assert set(summary["best"]) >= {"params", "metrics"}


@pytest.mark.parametrize("algo", ["random", "tpe"])
def test_optuna_opens_the_study_with_the_trials_of_trials_csv(hartmann_run: Any, algo: str) -> None:
    _, run_dir = hartmann_run(algo)
    study = load_study(run_dir)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 20
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert_study_matches_csv(study, read_csv(run_dir / "trials.csv"))
    rows = {int(r["number"]): r for r in read_csv(run_dir / "trials.csv")}
    for trial in trials:  # every metric, not only the objective, is kept on the trial
        assert float(rows[trial.number]["regret"]) == trial.user_attrs["regret"]


@pytest.mark.parametrize("algo", ["random", "tpe"])
def test_single_objective_pareto_csv_is_the_best_row(hartmann_run: Any, algo: str) -> None:
    _, run_dir = hartmann_run(algo)
    rows = read_csv(run_dir / "trials.csv")
    best = min(rows, key=lambda r: float(r["value"]))
    front = read_csv(run_dir / "pareto.csv")
    assert len(front) == 1
    assert int(front[0]["number"]) == int(best["number"])
    for column, value in front[0].items():
        assert float(value) == float(best[column]), column
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best"]["metrics"]["value"] == float(best["value"])
    assert summary["best"]["params"] == {f"x{i}": float(best[f"x{i}"]) for i in range(6)}


# -- reproducibility and --json -------------------------------------------------------------------


def _without_durations(run_dir: Path) -> list[dict[str, str]]:
    return [
        {k: v for k, v in r.items() if k != "duration_s"} for r in read_csv(run_dir / "trials.csv")
    ]


@pytest.mark.parametrize("algo", ["random", "tpe"])
def test_inline_runs_with_one_seed_are_identical(inline_runs: Any, algo: str) -> None:
    _, first = inline_runs(algo, 3, "a")
    _, again = inline_runs(algo, 3, "b")
    _, other = inline_runs(algo, 4, "a")
    rows = _without_durations(first)
    assert len(rows) == 10
    assert {r["state"] for r in rows} == {"COMPLETE"}
    assert rows == _without_durations(again)
    params = [(r["x1"], r["x2"]) for r in rows]
    other_params = [(r["x1"], r["x2"]) for r in _without_durations(other)]
    assert len(other_params) == 10
    assert not set(params) & set(other_params), "another seed must propose other points"
    assert first.name.startswith(f"repro-{algo}-s3-") and other.name.startswith(f"repro-{algo}-s4-")


@pytest.mark.parametrize("algo", ["random", "tpe"])
def test_json_prints_only_the_summary(inline_runs: Any, algo: str) -> None:
    result, run_dir = inline_runs(algo, 3, "a")
    summary = json.loads(result.stdout)  # the whole of stdout, nothing else
    assert summary.keys() >= SUMMARY_KEYS
    assert summary == json.loads((run_dir / "summary.json").read_text())
    assert (summary["algo"], summary["seed"], summary["trials"]) == (algo, 3, 10)


def test_tpe_run_prints_no_library_warnings(inline_runs: Any) -> None:
    # Regression: TPESampler(warn_independent_sampling=...) is deprecated in Optuna 4.9 and
    # printed a FutureWarning on every ask.
    result, _ = inline_runs("tpe", 3, "a")
    assert "Warning" not in result.stderr, result.stderr[:500]


# -- algorithms -----------------------------------------------------------------------------------


def test_algos_lists_random_and_tpe_with_descriptions() -> None:
    from hypersearch.algorithms import available

    result = run_cli("algos")
    ok(result)
    described: dict[str, str] = {}
    last = None
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line)]
        if len(cells) < 4:
            continue
        name, text = cells[1], cells[2]
        if name and name != "name":
            described[name], last = text, name
        elif not name and last is not None and text:  # a description wrapped onto a new row
            described[last] += " " + text
    for algo in ("random", "tpe"):
        assert algo in described, result.stdout
        assert described[algo] == available()[algo].description
        assert len(described[algo]) > 10


def test_unknown_algorithm_exits_2_with_one_line_listing_the_choices(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = run_cli("run", str(SEARCHSPACES / "branin.yaml"), "--algo", "nope", "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error:") and "--algo" in lines[0] and "nope" in lines[0]
    assert "random" in lines[0] and "tpe" in lines[0]
    assert not out.exists() or not any(out.iterdir()), "a rejected run must leave no run folder"


# -- which experiment -----------------------------------------------------------------------------


def test_no_experiment_uses_the_packaged_default_and_says_so(tmp_path: Path) -> None:
    args = ("--algo", "random", "--trials", "3", "--executor", "inline", "--out", "runs")
    result = run_cli("run", *args, cwd=tmp_path)
    ok(result)
    assert "packaged default" in result.stderr and "default.yaml" in result.stderr
    run_dir = only_run_dir(tmp_path / "runs")
    assert run_dir.name.startswith("digits-cnn-random-s0-")
    assert "name: digits-cnn" in (run_dir / "experiment.yaml").read_text()
    assert len(read_csv(run_dir / "trials.csv")) == 3


def test_local_hypersearch_yaml_is_used_when_present(tmp_path: Path) -> None:
    (tmp_path / "hypersearch.yaml").write_text(
        "name: localexp\nseed: 5\nobjective: {synthetic: {function: branin}}\n"
        "budget: {trials: 3, parallel: 1}\n"
    )
    result = run_cli(
        "run", "--algo", "random", "--executor", "inline", "--out", "runs", cwd=tmp_path
    )
    ok(result)
    assert "./hypersearch.yaml" in result.stderr
    assert "packaged default" not in result.stderr
    run_dir = only_run_dir(tmp_path / "runs")
    assert run_dir.name.startswith("localexp-random-s5-")
    assert len(read_csv(run_dir / "trials.csv")) == 3
    assert csv_header(run_dir / "trials.csv")[:4] == ["number", "state", "x0", "x1"]


# -- objectives: two of them, and maximized ones -------------------------------------------------


def test_two_objective_run_logs_the_pareto_front(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = run_cli(
        "run",
        str(SEARCHSPACES / "zdt1.yaml"),
        *("--algo", "random", "--trials", "12", "--executor", "inline", "--out", str(out)),
    )
    ok(result)
    run_dir = only_run_dir(out)
    rows = read_csv(run_dir / "trials.csv")
    assert len(rows) == 12
    complete = {
        int(r["number"]): (float(r["f1"]), float(r["f2"])) for r in rows if r["state"] == "COMPLETE"
    }
    assert len(complete) == 12
    front = read_csv(run_dir / "pareto.csv")
    numbers = [int(r["number"]) for r in front]
    assert len(numbers) > 1
    assert len(set(numbers)) == len(numbers)
    assert set(numbers) == non_dominated(complete)
    for row in front:
        assert (float(row["f1"]), float(row["f2"])) == complete[int(row["number"])]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["pareto_size"] == len(front)
    hv = summary["hypervolume"]
    assert isinstance(hv, float) and math.isfinite(hv) and hv > 0
    # Reference point (pareto.py): the worst value of each objective plus 10% of its range.
    values = list(complete.values())
    worst = [max(v[i] for v in values) for i in range(2)]
    best = [min(v[i] for v in values) for i in range(2)]
    ref = (worst[0] + 0.1 * (worst[0] - best[0]), worst[1] + 0.1 * (worst[1] - best[1]))
    assert hv == pytest.approx(hypervolume_2d(values, ref), rel=1e-9)

    study = load_study(run_dir)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert {t.number for t in study.best_trials} == set(numbers)


def test_maximized_objective_reports_the_largest_value_as_best(
    tmp_path: Path, write_experiment: Any
) -> None:
    (tmp_path / "scoreobj.py").write_text(
        "def score(config):\n"
        "    x = config['x']\n"
        "    return {'score': 1.0 - (x - 0.7) ** 2, 'aux': x}\n"
    )
    experiment = write_experiment(
        """\
        name: maxi
        objective: {python: {function: "scoreobj:score", path: ["."]}}
        objectives: {score: maximize}
        params:
          x: {type: float, low: 0.0, high: 1.0}
        budget: {trials: 8, parallel: 1}
        """
    )
    out = tmp_path / "runs"
    args = ("--algo", "random", "--executor", "inline", "--out", str(out))
    result = run_cli("run", str(experiment), *args)
    ok(result)
    run_dir = only_run_dir(out)
    rows = read_csv(run_dir / "trials.csv")
    assert csv_header(run_dir / "trials.csv") == [
        "number",
        "state",
        "x",
        "score",
        "aux",
        "duration_s",
        "error",
        "superseded",
        "steps",
    ]
    scores = {int(r["number"]): float(r["score"]) for r in rows}
    assert len(scores) == 8 and len(set(scores.values())) > 1
    best_number = max(scores, key=scores.__getitem__)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best"]["metrics"]["score"] == max(scores.values())
    assert summary["best"]["metrics"]["score"] != min(scores.values())
    by_number = {int(r["number"]): r for r in rows}
    assert summary["best"]["params"]["x"] == float(by_number[best_number]["x"])
    front = read_csv(run_dir / "pareto.csv")
    assert [int(r["number"]) for r in front] == [best_number]

    study = load_study(run_dir)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.best_trial.number == best_number
    assert study.best_value == max(scores.values())  # stored as is, not negated
    assert_study_matches_csv(study, rows)


# -- storage --------------------------------------------------------------------------------------


def test_storage_url_puts_the_study_in_that_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    out = tmp_path / "runs"
    result = run_cli(
        "run",
        str(SEARCHSPACES / "branin.yaml"),
        *("--algo", "random", "--trials", "5", "--executor", "inline"),
        *("--out", str(out), "--storage", url),
    )
    ok(result)
    run_dir = only_run_dir(out)
    assert (tmp_path / "other.db").is_file()
    assert not (run_dir / "study.db").exists()
    study = load_study(run_dir, storage=url)
    assert len(study.get_trials(deepcopy=False)) == 5
    assert_study_matches_csv(study, read_csv(run_dir / "trials.csv"))
    assert json.loads((run_dir / "summary.json").read_text())["trials"] == 5


# -- executors ------------------------------------------------------------------------------------


def test_ray_executor_without_ray_is_a_one_line_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the `ray` extra, `--executor ray` says how to install it (and creates nothing)."""
    import sys

    from hypersearch.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    args = ["run", str(SEARCHSPACES / "branin.yaml"), "--executor", "ray", "--out", str(tmp_path)]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        'error: --executor: ray is not installed (pip install "hypersearch[ray]")'
    ]
    assert not any(tmp_path.iterdir())
