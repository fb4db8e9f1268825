"""What a finished run tells its caller: exit 1 when every trial failed (so ``run && deploy``
stops), the comparison's runs without a success, a best-trials table whose columns never share
a name, and metrics that are capped rather than allowed to hold the driver."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
import sqlalchemy

from hypersearch.executors.base import COMPLETE, TrialResult
from hypersearch.experiment import parse_experiment
from hypersearch.store import INFO_ATTR, MAX_METRICS, RunStore


def python_experiment(
    tmp_path: Path,
    body: str,
    params: str = "x: {type: float, low: -1, high: 1}",
    trials: int = 4,
    name: str = "outcome",
) -> Path:
    """An experiment whose python objective ``f`` is ``body``, in a module of its own (the runs
    are in this process, where a module is imported once)."""
    module = f"objective_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
    path = tmp_path / "exp.yaml"
    path.write_text(
        textwrap.dedent(f"""
            name: {name}
            objective: {{python: {{function: "{module}:f", path: [{str(tmp_path)!r}]}}}}
            params: {{{params}}}
            budget: {{trials: {trials}, parallel: 1}}
        """)
    )
    return path


def run_random(cli, path: Path, out: Path, *args: str):
    """``hypersearch run`` with random search, inline, in this process."""
    return cli("run", path, "--algo", "random", "--out", out, "--executor", "inline", *args)


ALWAYS_RAISES = """
    def f(config):
        raise RuntimeError("boom")
"""
ALWAYS_INF = """
    def f(config):
        return float("inf")
"""


@pytest.mark.parametrize(
    ("body", "first_error"),
    [
        (ALWAYS_RAISES, "RuntimeError: boom (trial 0)"),
        (ALWAYS_INF, "non_finite: non-finite objective value: value=inf (trial 0)"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_a_run_whose_every_trial_failed_exits_1(
    body: str, first_error: str, as_json: bool, tmp_path: Path, cli
) -> None:
    path = python_experiment(tmp_path, body)
    result = run_random(cli, path, tmp_path / "runs", *(["--json"] if as_json else []))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"every trial failed; first error: {first_error}", result.stderr
    if as_json:  # stdout stays the summary, and only that
        summary = json.loads(result.stdout)
        assert summary["best"] is None and summary["failed"] == 4


def test_a_run_with_one_success_exits_0(tmp_path: Path, cli) -> None:
    path = python_experiment(
        tmp_path,
        """
        def f(config):
            if config["x"] > 0:
                raise RuntimeError("boom")
            return config["x"] ** 2
        """,
    )
    result = run_random(cli, path, tmp_path / "runs", "--trials", "8")
    assert result.returncode == 0, result.stderr
    assert "every trial failed" not in result.stderr


def test_compare_names_the_runs_without_a_success(tmp_path: Path, cli) -> None:
    """An objective that fails for every seed but one: the comparison says which runs had no
    success; it exits 1 only when no run had one."""
    path = python_experiment(
        tmp_path,
        """
        def f(config, ctx):
            if ctx.seed % 3:  # ctx.seed depends on the run's seed and the trial number
                raise RuntimeError("boom")
            return config["x"] ** 2
        """,
        trials=2,
    )
    result = cli(
        "compare",
        str(path),
        "--algos",
        "random,tpe",
        "--seeds",
        "3",
        "--out",
        str(tmp_path / "runs"),
        "--executor",
        "inline",
    )
    assert result.returncode in (0, 1), result.stderr
    folder = next((tmp_path / "runs").iterdir())
    without = []
    for run_dir in sorted(p for p in folder.iterdir() if (p / "summary.json").exists()):
        if json.loads((run_dir / "summary.json").read_text())["complete"] == 0:
            without.append(run_dir.name)
    assert without, "the objective was meant to leave some run without a success"
    line = next(x for x in result.stderr.splitlines() if x.startswith("no successful trial"))
    head, names = line.split(": ", 1)
    assert head == f"no successful trial in {len(without)} run(s)"
    assert sorted(names.split(", ")) == without
    assert ("No successful trial in: ") in (folder / "results.md").read_text()
    assert result.returncode == (1 if len(without) == 6 else 0)


def test_compare_with_no_success_at_all_exits_1(tmp_path: Path, cli) -> None:
    path = python_experiment(tmp_path, ALWAYS_RAISES, trials=2)
    result = cli(
        "compare",
        str(path),
        "--algos",
        "random",
        "--seeds",
        "2",
        "--out",
        str(tmp_path / "runs"),
        "--executor",
        "inline",
    )
    assert result.returncode == 1, result.stderr
    assert "no successful trial in 2 run(s): outcome-random-s0, outcome-random-s1" in result.stderr


@pytest.mark.parametrize("param", ["s", "seconds", "duration_s"])
def test_best_trials_table_never_repeats_a_column_name(param: str, tmp_path: Path, cli) -> None:
    path = python_experiment(
        tmp_path,
        f"""
        def f(config):
            return config["{param}"] ** 2
        """,
        params=f"{param}: {{type: float, low: -1, high: 1}}",
    )
    result = run_random(cli, path, tmp_path / "runs")
    if param == "duration_s":  # a column of trials.csv: refused, with its reason
        assert result.returncode == 2 and "reserved column" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "value (min)" in line)
    names = [cell.strip() for cell in header.strip("┃│ ").split("┃")]
    assert names == ["#", "value (min)", param, "duration (s)"], names
    assert len(set(names)) == len(names)


# -- hostile metrics ------------------------------------------------------------------------------


def test_thousands_of_metrics_are_capped_and_written_in_one_transaction(tmp_path: Path) -> None:
    exp = parse_experiment(
        {
            "name": "many",
            "objective": {"synthetic": "branin"},
            "objectives": {"value": "minimize", "m9999": "maximize"},
        }
    )
    store = RunStore.create(tmp_path, "many", exp, "random", 0)
    commits = []
    sqlalchemy.event.listen(store._rdb.engine, "commit", lambda conn: commits.append(1))
    try:
        number = store.start_trial(exp.space.decode([0.3, 0.6]))
        metrics = {"value": 1.0, **{f"m{i}": float(i) for i in range(10_000)}}
        commits.clear()
        record = store.finish_trial(TrialResult(number, COMPLETE, metrics))
        assert len(commits) <= 2, f"{len(commits)} commits for one trial"
        assert len(record.dropped) == 10_000 - 1 - MAX_METRICS  # m9999 is an objective: kept
        assert record.dropped[0] == f"m{MAX_METRICS}"
        store.export(1.0, 0.1)
    finally:
        store.close()
    trial = optuna.load_study(
        study_name="many", storage=f"sqlite:///{tmp_path / 'many' / 'study.db'}"
    ).trials[0]
    stored = {k for k in trial.user_attrs if k != INFO_ATTR}
    assert stored == {"value", "m9999", *(f"m{i}" for i in range(MAX_METRICS))}
    assert trial.values == [1.0, 9999.0]
    info = trial.user_attrs[INFO_ATTR]
    assert info["dropped_metrics"]["count"] == len(record.dropped)
    header = (tmp_path / "many" / "trials.csv").read_text().splitlines()[0].split(",")
    # number,state,2 params,2 objectives,the other metrics,duration_s,error,superseded,steps
    assert len(header) == 2 + 2 + 2 + MAX_METRICS + 4


def test_a_run_warns_once_when_metrics_are_dropped(tmp_path: Path, cli) -> None:
    path = python_experiment(
        tmp_path,
        """
        def f(config):
            return {"value": config["x"] ** 2, **{f"extra{i}": float(i) for i in range(1000)}}
        """,
        trials=3,
    )
    result = run_random(cli, path, tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    warnings = [x for x in result.stderr.splitlines() if x.startswith("warning:")]
    assert warnings == [
        f"warning: trial 0 returned {1000 - MAX_METRICS} metrics beyond the {MAX_METRICS} stored "
        f"(with the objectives); dropped extra{MAX_METRICS}, extra{MAX_METRICS + 1}, "
        f"extra{MAX_METRICS + 2}, …"
    ]


# -- a lost worker's trial, counted once ----------------------------------------------------------

KILLS_ITS_WORKER_ON_TRIAL_1 = """
    import os, signal

    def f(config, ctx):
        if ctx.number == 1:  # the engine retries it once, as trial 2, on a fresh worker
            os.kill(os.getpid(), signal.SIGKILL)
        if ctx.number == 3:
            raise RuntimeError("boom")
        return config["x"] ** 2
"""


def test_a_retried_lost_worker_is_counted_alike_by_store_runs_and_compare(
    tmp_path: Path, cli
) -> None:
    """Trial 1 kills its (real, local) worker and is retried as trial 2; trial 3 fails. The
    store, ``load_run``, the compare's scores and table and its progress lines all count 4
    trials with 1 failure: the lost attempt is shown (trials.csv, ``superseded``) but counted
    nowhere."""
    from hypersearch.comparison import evaluate, open_compare
    from hypersearch.results import load_run
    from hypersearch.store import opened

    path = python_experiment(tmp_path, KILLS_ITS_WORKER_ON_TRIAL_1)
    out = tmp_path / "runs"
    result = cli("compare", path, "--algos", "random", "--seeds", "1", "--out", out)
    assert result.returncode == 0, result.stderr
    folder = next(out.iterdir())
    run_dir = folder / "outcome-random-s0"

    with opened(run_dir) as store:
        assert store.tally() == (4, 1)
        assert store.records[1].superseded and store.records[1].retried_as == 2
    run = load_run(run_dir)
    assert run.tally() == (4, 1) and run.done
    trials = run.trials.set_index("number")
    assert list(trials.index) == [0, 1, 2, 3, 4]  # every attempt is shown …
    assert trials["superseded"].tolist() == [False, True, False, False, False]
    assert trials.loc[1, "state"] == "FAIL" and trials.loc[1, "error"].startswith("worker_lost")
    assert list(run.counted["number"]) == [0, 2, 3, 4]  # … and the retry counts in its place
    assert len(run.losses()) == 4

    comparison = evaluate(open_compare(folder))
    [score] = comparison.scores
    assert len(score.curve) == 4 and score.failed == 1
    assert comparison.table.loc[0, "failed"] == 1
    assert pd.read_csv(folder / "results.csv").loc[0, "failed"] == 1
    assert "random seed 0: best value=" in result.stderr and ", 1 failed, " in result.stderr
    # summary.json's counts are of every finished trial, the lost attempt too (its contract),
    # and say how many of them a retry superseded.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["trials"], summary["failed"], summary["superseded"]) == (5, 2, 1)
