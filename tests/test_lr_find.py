"""``hypersearch lr-find``: the learning-rate range test on the built-in trainer.

Real training on scikit-learn's digits with a small mlp: the suggestion is checked against a
short grid of real trainings, the range test's steps against a trial's, and the command line's
files, narrowed experiment and exit codes as a user meets them.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import pytest

from hypersearch.errors import TrialFailure, UserInputError
from hypersearch.experiment import load_experiment, parse_experiment
from hypersearch.lr_find import lr_find, narrowed_range, plan, suggest
from hypersearch.objectives.trainer import load_data
from hypersearch.objectives.trainer.loop import train
from hypersearch.space import FloatParam

# A small mlp that learns digits in two epochs at a good lr; momentum is tuned, so lr-find takes
# the middle of its range (0.875).
MLP = """\
    name: lrf-mlp
    seed: 0
    objective:
      trainer: {dataset: digits, model: mlp, width: 64, depth: 1, epochs: 2, batch_size: 32,
                schedule: constant}
    params:
      lr:       {type: float, low: 1.0e-4, high: 10.0, log: true}
      momentum: {type: float, low: 0.8, high: 0.95}
    budget: {trials: 4}
"""
RAMP = (1e-5, 10.0, 100)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
STEEPEST = re.compile(r"suggested lr \(steepest descent of the smoothed loss\): (\S+)")
MIN_OVER_10 = re.compile(r"suggested lr \(min-loss/10\): (\S+)")


def val_loss(settings, data, lr: float) -> float:
    """A real trial's validation loss at ``lr``; inf when it diverges."""
    try:
        return train(settings.model_copy(update={"lr": lr}), data, seed=0, device="cpu")["val_loss"]
    except TrialFailure as failure:
        assert failure.reason == "non_finite"
        return math.inf


def test_suggestions_lie_where_real_training_converges(write_experiment, tmp_path: Path) -> None:
    exp = load_experiment(write_experiment(MLP))
    outcome = lr_find(exp, ramp=RAMP, device="cpu", out=tmp_path)
    suggestion = outcome.suggestions[0]
    settings = plan(exp).curves[0][1]
    data = load_data(settings)
    grid = [1e-3, 1e-2, 1e-1, 1.0]
    losses = {lr: val_loss(settings, data, lr) for lr in grid}
    converged = [lr for lr in grid if losses[lr] < 1.0]  # a guess scores ln(10) = 2.3
    assert converged, losses
    # The grid brackets the converging range: the nearest lrs around it that did not converge.
    below = max((lr for lr in grid if lr < min(converged)), default=0.0)
    above = min((lr for lr in grid if lr > max(converged)), default=math.inf)
    for lr in (suggestion.steepest, suggestion.min_over_10):
        assert below < lr < above, (lr, losses)
        assert val_loss(settings, data, lr) < 0.5, (lr, losses)
    far_above = val_loss(settings, data, 30 * suggestion.steepest)
    assert far_above > val_loss(settings, data, suggestion.steepest) + 0.5, (far_above, losses)


def test_each_step_is_a_trial_step(write_experiment) -> None:
    """A ramp that barely grows trains exactly what a constant-lr trial trains in its first
    epoch (same initial weights, batches, optimizer): the same mean training loss."""
    from hypersearch.lr_find_loop import range_test

    exp = load_experiment(write_experiment(MLP))
    settings = plan(exp).curves[0][1].model_copy(update={"lr": 0.05, "epochs": 1})
    data = load_data(settings)
    steps = math.ceil(len(data.x_train) / settings.batch_size)
    curve = range_test(
        settings, data, seed=0, device="cpu", start=0.05, end=0.05 * (1 + 1e-9), steps=steps
    )
    sizes = [settings.batch_size] * (steps - 1) + [
        len(data.x_train) - settings.batch_size * (steps - 1)
    ]
    mean = float(np.dot(curve.losses, sizes) / sum(sizes))
    assert len(curve.losses) == steps
    assert mean == pytest.approx(
        train(settings, data, seed=0, device="cpu")["train_loss"], rel=1e-5
    )


def test_suggest_finds_the_steepest_fall_and_the_minimum() -> None:
    lrs = np.geomspace(1e-6, 10, 100)
    x = np.log10(lrs)
    smoothed = 2.3 - 1.5 / (1 + np.exp(-3 * (x + 2))) + np.where(x > 0, 4 * x**2, 0)
    found = suggest(lrs.tolist(), smoothed.tolist(), skip_start=10)
    assert found.steepest == pytest.approx(1e-2, rel=0.15)  # the sigmoid falls fastest at 1e-2
    assert found.at_min == lrs[int(np.argmin(smoothed))]
    assert found.min_over_10 == pytest.approx(found.at_min / 10)
    with pytest.raises(UserInputError, match="--start: the loss diverged at step 2"):
        suggest([1.0, 2.0], [1.0, math.inf], skip_start=10)


def test_narrowed_range_follows_the_rule_and_stays_inside_the_original() -> None:
    from hypersearch.lr_find import Suggestion

    param = FloatParam(type="float", low=1e-3, high=1.0, log=True)
    low, high, remark = narrowed_range([Suggestion(0.1, 0.03, 0.3)], param)
    assert (low, high, remark) == (0.01, 0.3, None)
    low, high, _ = narrowed_range([Suggestion(0.05, 0.5, 5.0)], param)
    assert (low, high) == (0.005, 0.5)  # 10 x steepest caps the top
    low, high, _ = narrowed_range([Suggestion(0.005, 0.0004, 0.004)], param)
    assert (low, high) == (1e-3, 0.01)  # clipped below; at least 2 x steepest above
    low, high, remark = narrowed_range([Suggestion(30.0, 5.0, 50.0)], param)
    assert (low, high) == (0.1, 1.0) and "above params.lr.high" in str(remark)
    low, high, remark = narrowed_range([Suggestion(9.996, 1.0, 10.0)], param)
    assert (low, high) == (0.1, 1.0) and "above params.lr.high" in str(remark)  # never empty
    low, high, remark = narrowed_range([Suggestion(5.0, 0.1, 1.0)], param)
    assert (low, high) == (0.5, 1.0) and "above params.lr.high" in str(remark)  # said
    low, high, remark = narrowed_range([Suggestion(1e-5, 1e-7, 1e-6)], param)
    assert (low, high) == (1e-3, 1e-2) and "below params.lr.low" in str(remark)


def test_narrowing_leaves_out_initial_configs_outside_the_range(write_experiment) -> None:
    from hypersearch.lr_find import narrowed_experiment

    text = MLP + "    initial: [{lr: 0.5, momentum: 0.9}, {lr: 0.05, momentum: 0.9}]\n"
    narrowed, dropped = narrowed_experiment(load_experiment(write_experiment(text)), 0.01, 0.1)
    assert dropped == 1 and narrowed.initial == [{"lr": 0.05, "momentum": 0.9}]


def test_narrow_writes_an_experiment_that_loads(cli, write_experiment, tmp_path: Path) -> None:
    path = write_experiment(MLP)
    result = cli("lr-find", path, "--start", "1e-5", "--narrow", "--out", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    steepest = float(STEEPEST.search(result.stdout).group(1))
    (folder,) = (tmp_path / "runs").glob("lr-find-lrf-mlp-*")
    assert re.fullmatch(r"lr-find-lrf-mlp-\d{8}-\d{6}", folder.name)
    narrowed = load_experiment(folder / "experiment.narrowed.yaml")
    lr, original = narrowed.params["lr"], load_experiment(path)
    assert isinstance(lr, FloatParam) and lr.log
    assert original.params["lr"].low <= lr.low < steepest < lr.high <= original.params["lr"].high
    assert lr.high - lr.low < original.params["lr"].high - original.params["lr"].low
    dumped = narrowed.model_dump(mode="json", exclude_none=True)
    same = parse_experiment({**dumped, "params": original.space.to_dict()})
    assert same == original  # nothing but params.lr changed
    assert cli("validate", folder / "experiment.narrowed.yaml").returncode == 0
    assert f"narrowed params.lr: [{lr.low:g}, {lr.high:g}], log" in result.stdout


def test_weight_decay_values_give_one_curve_each(cli, write_experiment, tmp_path: Path) -> None:
    path = write_experiment(MLP)
    out = tmp_path / "runs"
    # the values come before EXPERIMENT: the first non-number ends the list
    result = cli("lr-find", "--weight-decay", "0", "0.1", path, "--steps", "40", "--out", out)
    assert result.returncode == 0, result.stderr
    (folder,) = out.glob("lr-find-*")
    assert (folder / "lr_find.png").stat().st_size > 10_000
    assert not (folder / "experiment.narrowed.yaml").exists()
    with (folder / "lr_find.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["curve", "step", "lr", "loss", "smoothed_loss"]
    assert sorted({r["curve"] for r in rows}) == ["weight_decay=0", "weight_decay=0.1"]
    first = [r for r in rows if r["curve"] == "weight_decay=0"]
    assert [int(r["step"]) for r in first] == list(range(1, len(first) + 1))
    assert float(first[0]["lr"]) == pytest.approx(1e-7)
    assert len(STEEPEST.findall(result.stdout)) == len(MIN_OVER_10.findall(result.stdout)) == 2
    assert "momentum=0.875 (middle of params.momentum)" in result.stdout


def test_a_curve_that_diverges_at_once_gets_no_suggestion_and_costs_the_others_nothing(
    cli, write_experiment, tmp_path: Path
) -> None:
    """A weight decay of 1e9 blows the weights up at the first step: that curve says why it has
    no suggestion; the other curve's suggestions and the narrowed range stand."""
    out = tmp_path / "runs"
    path = write_experiment(MLP)
    result = cli("lr-find", "--weight-decay", "0", "1e9", path, "--steps", "40", "--narrow",
                 "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    bad = lines.index(next(line for line in lines if line.startswith("weight_decay=1e+09: ")))
    assert lines[bad + 1].startswith("  no suggestion: the loss diverged at step 2 ")
    assert len(STEEPEST.findall(result.stdout)) == len(MIN_OVER_10.findall(result.stdout)) == 1
    (folder,) = out.glob("lr-find-*")
    steepest = float(STEEPEST.findall(result.stdout)[0])
    lr = load_experiment(folder / "experiment.narrowed.yaml").params["lr"]
    assert isinstance(lr, FloatParam) and lr.low == pytest.approx(steepest / 10, rel=0.01)
    # with no curve left to read, the test fails as one would alone: one error line, exit 2
    alone = cli("lr-find", "--weight-decay", "1e9", path, "--steps", "40", "--out", out / "x")
    assert alone.returncode == 2
    assert alone.stderr.splitlines()[-1].startswith(
        "error: --start: the loss diverged at step 2 (lr 1.6e-07), too early to suggest"
    )
    assert not (out / "x").exists()


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        (
            "objective: {python: 'math:sqrt'}\nparams: {lr: {type: float, low: 0.1, high: 1.0}}",
            [],
            "error: objective: lr-find needs the built-in trainer (got python)",
        ),
        (
            "objective: {trainer: {model: mlp}}\n"
            "params: {momentum: {type: float, low: 0.0, high: 0.9}}",
            [],
            "error: params.lr: lr-find needs a learning-rate parameter named lr",
        ),
        (
            "objective: {trainer: {model: mlp}}\n"
            "params: {lr: {type: categorical, choices: [0.01, 0.1]}}",
            ["--narrow"],
            "error: params.lr: --narrow needs a float parameter (got categorical)",
        ),
        (
            "objective: {trainer: {model: mlp}}\nparams: {lr: {type: float, low: 0.01, high: 1.0}}",
            ["--momentum", "0.9", "1.5"],
            "error: Invalid value for '--momentum': 1.5 is not in the range 0<=x<1.",
        ),
        (
            "objective: {trainer: {model: mlp}}\nparams: {lr: {type: float, low: 0.01, high: 1.0}}",
            ["--start", "1", "--end", "0.1"],
            "error: --end: must be above --start (got start 1, end 0.1)",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    cli, write_experiment, tmp_path, text, args, message
) -> None:
    result = cli("lr-find", write_experiment(text), *args, "--out", tmp_path / "runs")
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
