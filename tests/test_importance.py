"""Parameter importance (``importance.csv``/``importance.png``, fANOVA) and the parallel-coordinates
picture of ``hypersearch report``, for a run and for a compare folder.

The objective's answer is known: ``|x - 0.3| + 2 |y - 0.7|`` with ``z`` declared but unused, so
y matters most, x less, z not at all. (Absolute values rather than squares: with
``(x - 0.3)² + 10 (y - 0.7)²`` x explains well under 1% of the variance, as little as an unused
parameter does, and the order of x and z would be a coin toss.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from hypersearch.experiment import load_experiment
from hypersearch.importance import importances
from hypersearch.results import load_run
from hypersearch.space import CategoricalParam
from tests.conftest import run_cli

OBJECTIVE = """
def objective(config):
    x, y, z = config["x"], config["y"], config["z"]
    return {"value": abs(x - 0.3) + 2 * abs(y - 0.7), "cost": z, "flat": 1.0}
"""


def experiment(folder: Path, objectives: str = "{value: minimize}", trials: int = 40) -> Path:
    (folder / "impobj.py").write_text(OBJECTIVE)
    path = folder / "exp.yaml"
    path.write_text(
        "name: known\n"
        "seed: 0\n"
        f"objective: {{python: {{function: 'impobj:objective', path: ['{folder}']}}}}\n"
        f"objectives: {objectives}\n"
        "params:\n"
        "  x: {type: float, low: 0.0, high: 1.0}\n"
        "  y: {type: float, low: 0.0, high: 1.0}\n"
        "  z: {type: float, low: 0.0, high: 1.0}\n"
        f"budget: {{trials: {trials}, parallel: 1}}\n"
    )
    return path


def only_dir(out: Path, pattern: str) -> Path:
    found = sorted(out.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {out}, found {found}"
    return found[0]


def assert_picture(path: Path) -> None:
    assert path.is_file(), f"{path.name} was not written"
    image = imread(path)
    height, width = image.shape[:2]
    assert width >= 500 and height >= 250, f"{path.name} is only {width}x{height}"
    assert image[..., :3].std() > 0.05  # bars, lines and text, not a blank canvas


@pytest.fixture(scope="module")
def tpe_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-trial TPE run of the known objective, as a user starts one."""
    folder = tmp_path_factory.mktemp("importance")
    result = run_cli(
        "run", str(experiment(folder)), "--algo", "tpe", "--executor", "inline",
        "--out", str(folder / "runs"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return only_dir(folder / "runs", "known-tpe-*")


def test_report_finds_the_unused_parameter_unimportant(
    tpe_run: Path, cli: Callable[..., Any]
) -> None:
    result = cli("report", tpe_run)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tpe_run / "importance.csv")
    assert list(table.columns) == ["param", "value", "evaluator", "trials"]
    assert set(table["evaluator"]) == {"fANOVA"} and set(table["trials"]) == {40}
    shares = table.set_index("param")["value"]
    assert sorted(shares.index) == ["x", "y", "z"]
    assert shares.sum() == pytest.approx(1.0)
    assert shares["y"] > shares["x"] > shares["z"]
    assert shares["z"] < 0.1
    assert list(shares.index) == ["y", "x", "z"]  # most important first
    assert "fANOVA, 40 complete trials" in result.stdout
    assert "importance.csv" in result.stdout and "parallel_coordinates.png" in result.stdout
    for name in ("importance.png", "parallel_coordinates.png", "params.png"):
        assert_picture(tpe_run / name)


def reported(tmp_path: Path, cli: Callable[..., Any], objectives: str, trials: int) -> Any:
    """A random-search run of the known objective, then ``hypersearch report`` on it: the run
    folder and the report's result."""
    exp = experiment(tmp_path, objectives, trials=trials)
    ran = cli("run", exp, "--algo", "random", "--executor", "inline", "--out", tmp_path / "runs")
    assert ran.returncode == 0, ran.stderr
    run_dir = only_dir(tmp_path / "runs", "known-random-*")
    result = cli("report", run_dir)
    assert result.returncode == 0, result.stderr
    return run_dir, result


def test_two_objectives_get_one_column_each(tmp_path: Path, cli: Callable[..., Any]) -> None:
    run_dir, _ = reported(tmp_path, cli, "{value: minimize, cost: minimize}", 30)
    table = pd.read_csv(run_dir / "importance.csv").set_index("param")
    assert list(table.columns) == ["value", "cost", "evaluator", "trials"]
    assert table["value"].sum() == pytest.approx(1.0) and table["cost"].sum() == pytest.approx(1)
    # cost is z alone; value does not depend on z at all.
    assert table["cost"].idxmax() == "z" and table.loc["z", "cost"] > 0.8
    assert table["value"].idxmin() == "z" and table.loc["y", "value"] > table.loc["x", "value"]
    for name in ("importance.png", "parallel_coordinates.png", "pareto.png"):
        assert_picture(run_dir / name)


def test_a_constant_objective_is_skipped_and_said(tmp_path: Path, cli: Callable[..., Any]) -> None:
    run_dir, result = reported(tmp_path, cli, "{value: minimize, flat: minimize}", 8)
    assert "no importance for flat: flat is the same in every complete trial" in result.stdout
    assert list(pd.read_csv(run_dir / "importance.csv").columns) == [
        "param", "value", "evaluator", "trials",
    ]  # fmt: skip


def test_too_few_trials_write_no_importance_and_say_why(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    exp = experiment(tmp_path, trials=2)
    ran = cli("run", exp, "--algo", "random", "--executor", "inline", "--out", tmp_path / "runs")
    assert ran.returncode == 0, ran.stderr
    run_dir = only_dir(tmp_path / "runs", "known-random-*")
    (run_dir / "importance.csv").write_text("stale\n")  # from an earlier report: not kept
    result = cli("report", run_dir)
    assert result.returncode == 0, result.stderr
    assert "no parameter importance: only 2 complete trials (fANOVA needs 4)" in result.stdout
    assert not (run_dir / "importance.csv").exists()
    assert not (run_dir / "importance.png").exists()
    assert_picture(run_dir / "parallel_coordinates.png")  # two trials still draw lines


def test_compare_writes_importance_per_algorithm(tmp_path: Path, cli: Callable[..., Any]) -> None:
    result = cli(
        "compare", experiment(tmp_path, trials=24), "--algos", "random,tpe", "--seeds", "1",
        "--executor", "inline", "--out", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder = only_dir(tmp_path, "compare-known-*")
    table = pd.read_csv(folder / "importance.csv")
    columns = ["algo", "objective", "param", "importance", "evaluator", "trials"]
    assert list(table.columns) == columns
    assert sorted(set(table["algo"])) == ["random", "tpe"]
    for algo, rows in table.groupby("algo"):
        pooled = pd.read_csv(folder / f"known-{algo}-s0" / "trials.csv")
        assert set(rows["trials"]) == {int((pooled["state"] == "COMPLETE").sum())}
        assert sorted(rows["param"]) == ["x", "y", "z"] and set(rows["objective"]) == {"value"}
        shares = rows.set_index("param")["importance"]
        assert shares.sum() == pytest.approx(1.0)
        assert shares.idxmax() == "y" and shares["z"] < 0.1
    assert_picture(folder / "importance.png")
    markdown = (folder / "results.md").read_text()
    assert "![importance](importance.png)" in markdown and "fANOVA" in markdown
    assert "Most important parameter for value: random y" in result.stdout
    # `report` rebuilds the same numbers from the folder.
    (folder / "importance.csv").unlink()
    again = cli("report", folder)
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(pd.read_csv(folder / "importance.csv"), table)


def test_importance_reads_categorical_and_log_values_back_from_csv(tmp_path: Path) -> None:
    """trials.csv may give ``16`` back as ``16.0`` (and a choice ``1`` next to ``0.5`` as
    ``1.0``); a log parameter is measured on its log scale, where the loss here is linear (on
    lr's own scale, where nine tenths of the range lie above 0.1, fANOVA gives lr only about
    0.65 and width a third)."""
    widths = CategoricalParam(type="categorical", choices=[8, 16, 32])
    assert [widths.index_read_back(v) for v in (16.0, "16", 16, "16.0", 17.0, "x")] == [
        1,
        1,
        1,
        1,
        None,
        None,
    ]
    mixed = CategoricalParam(type="categorical", choices=[0.5, 1, 2])
    assert [mixed.index_read_back(v) for v in (1.0, "1.0", 0.5, True)] == [1, 1, 0, None]
    flags = CategoricalParam(type="categorical", choices=[False, True])
    assert [flags.index_read_back(v) for v in ("True", True, 1.0, "1")] == [1, 1, None, None]
    names = CategoricalParam(type="categorical", choices=["tanh", "relu"])
    assert [names.index_read_back(v) for v in ("relu", "gelu", float("nan"))] == [1, None, None]
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: mixed\nobjective: {synthetic: {function: sphere, dim: 3}}\n"
        "params:\n"
        "  lr: {type: float, low: 1.0e-5, high: 1.0, log: true}\n"
        "  width: {type: categorical, choices: [8, 16, 32]}\n"
        "  noise: {type: float, low: 0.0, high: 1.0}\n"
    )
    rng = np.random.default_rng(0)
    lr = 10 ** rng.uniform(-5, 0, 60)
    width = rng.choice([8.0, 16.0, 32.0], 60)
    trials = pd.DataFrame(
        {
            "number": range(60),
            "state": "COMPLETE",
            "lr": lr,
            "width": width,
            "noise": rng.uniform(0, 1, 60),
            "value": -np.log10(lr) + 1.0 * (width == 32.0),
        }
    )
    found = importances(trials, load_experiment(path))
    shares = found.table["value"]
    assert found.trials == 60 and not found.skipped
    assert list(shares.index) == ["lr", "width", "noise"]
    assert shares["lr"] > 0.85 and shares["noise"] < 0.05


def test_parameters_that_never_varied_are_skipped_not_nan(tmp_path: Path) -> None:
    """Identical configurations (say, enqueued ones) leave fANOVA 0/0: the objective is skipped
    with a reason, never a column of NaN that the tables would choke on."""
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: same\nobjective: {synthetic: {function: sphere, dim: 2}}\n"
        "params:\n"
        "  a: {type: float, low: 0.0, high: 1.0}\n"
        "  b: {type: float, low: 0.0, high: 1.0}\n"
    )
    trials = pd.DataFrame(
        {"number": range(6), "state": "COMPLETE", "a": 0.5, "b": 0.25, "value": np.arange(6.0)}
    )
    found = importances(trials, load_experiment(path))
    assert "value" not in found.table.columns
    assert "never varied" in found.skipped["value"]


def random_run(tmp_path: Path, cli: Callable[..., Any], text: str) -> Path:
    """The run folder of an inline random-search run of the experiment ``text``."""
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    ran = cli("run", path, "--algo", "random", "--executor", "inline", "--out", tmp_path / "runs")
    assert ran.returncode == 0, ran.stderr
    return only_dir(tmp_path / "runs", "*-random-*")


def test_report_draws_a_categorical_whose_choices_read_back_as_floats(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """Choices ``[0.5, 1, 2]`` come back from trials.csv as ``1.0`` and ``2.0``: the pair plot
    and the parallel coordinates place them on their choices (the pair plot once crashed)."""
    run_dir = random_run(
        tmp_path,
        cli,
        "name: halves\nobjective: {synthetic: {function: sphere, dim: 2}}\n"
        "params:\n"
        "  x: {type: float, low: -1.0, high: 2.0}\n"
        "  scale: {type: categorical, choices: [0.5, 1, 2]}\n"
        "budget: {trials: 12}\n",
    )
    assert pd.read_csv(run_dir / "trials.csv")["scale"].dtype == float  # 1 reads back as 1.0
    result = cli("report", run_dir)
    assert result.returncode == 0, result.stderr
    for name in ("params.png", "parallel_coordinates.png"):
        assert_picture(run_dir / name)


def test_string_choices_that_look_like_numbers_read_back_as_written(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """Choices "0.10", "01" and "1" are text: read back from trials.csv they stay themselves
    (pandas would make 0.1 of the first and 1 of the last two), so every trial is counted."""
    (tmp_path / "textobj.py").write_text(
        "def f(config, ctx):\n"
        '    return {"0.10": 1.0, "0.25": 2.0, "01": 3.0, "1": 4.0}[config["c"]] + config["x"]\n'
    )
    run_dir = random_run(
        tmp_path,
        cli,
        f"name: text\nobjective: {{python: {{function: 'textobj:f', path: ['{tmp_path}']}}}}\n"
        "params:\n"
        "  x: {type: float, low: 0.0, high: 1.0}\n"
        "  c: {type: categorical, choices: ['0.10', '0.25', '01', '1']}\n"
        "budget: {trials: 16}\n",
    )
    chosen = load_run(run_dir).trials["c"].tolist()
    assert set(chosen) <= {"0.10", "0.25", "01", "1"} and len(set(chosen)) >= 3, chosen
    result = cli("report", run_dir)
    assert result.returncode == 0, result.stderr
    assert set(pd.read_csv(run_dir / "importance.csv")["trials"]) == {16}
