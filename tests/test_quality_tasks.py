"""The quality benchmark's tasks and score (``benchmarks/quality_tasks.py``, ``quality.py``):
every task evaluates, the stated optima are true optima placed off the centre and off any grid,
both halves mix every kind, and the score maps random's median to 0 and the optimum to 100."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
quality_tasks = importlib.import_module("quality_tasks")
quality = importlib.import_module("quality")
TASKS = quality_tasks.TASKS
KNOWN = [name for name, task in TASKS.items() if task.optimum is not None]


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_builds_and_evaluates_to_a_finite_loss(name: str) -> None:
    task = TASKS[name]
    space = task.space
    assert space.dim >= 4
    config = space.decode(np.random.default_rng(1).uniform(0.3, 0.7, space.dim))
    value = task.fn(config)
    assert isinstance(value, float) and math.isfinite(value), value
    noisy = [task.objective(config, np.random.default_rng(s)) for s in (0, 1)]
    assert (noisy[0] != noisy[1]) == (task.noise > 0), noisy


@pytest.mark.parametrize("name", KNOWN)
def test_the_stated_optimum_is_attained_and_beats_its_neighbours_and_random_points(
    name: str,
) -> None:
    task = TASKS[name]
    space, best = task.space, dict(task.optimum_config)
    round_trip = space.decode(space.encode(best))  # a config the space can express
    for key, value in best.items():
        assert round_trip[key] == (value if isinstance(value, str) else pytest.approx(value))
    assert task.fn(best) == pytest.approx(task.optimum, rel=1e-12, abs=1e-12)
    rng = np.random.default_rng(0)
    u = space.encode(best)
    for _ in range(300):  # near the optimum, and anywhere
        near = space.decode(np.clip(u + rng.normal(0, 0.01, space.dim), 0, 1))
        anywhere = space.decode(rng.random(space.dim))
        assert task.fn(near) >= task.optimum - 1e-12, near
        assert task.fn(anywhere) >= task.optimum - 1e-12, anywhere


@pytest.mark.parametrize("name", [n for n in KNOWN if TASKS[n].kind == "synthetic"])
def test_synthetic_optima_are_neither_the_centre_nor_a_grid_point(name: str) -> None:
    u = TASKS[name].space.encode(TASKS[name].optimum_config)
    assert np.all((u > 0.1) & (u < 0.9)), u  # inside the box
    assert np.max(np.abs(u - 0.5)) > 0.1, u
    for n in range(2, 33):  # no grid of step 1/n holds it
        assert not np.all(np.abs(u * n - np.round(u * n)) < 1e-6), (n, u)


def test_both_halves_have_six_tasks_or_more_of_every_kind() -> None:
    assert len(TASKS) >= 12
    for half in quality_tasks.HALVES:
        tasks = [t for t in TASKS.values() if t.half == half]
        assert len(tasks) >= 6, half
        assert {t.kind for t in tasks} == set(quality_tasks.KINDS), half
        assert any(t.noise > 0 for t in tasks), half


def _job(algo: str, seed: int) -> object:
    return quality.Job(quality.Config(algo, algo), "v", "levy4", seed, 8, 2)


def test_score_is_0_at_random_median_100_at_the_optimum_and_clipped_at_minus_100() -> None:
    opt = TASKS["levy4"].optimum
    records = {
        _job("optuna-random", s): {"values": [5.0, b, None]} for s, b in enumerate([1, 2, 3])
    }
    for seed, best in enumerate([opt, 2.0, 2.5]):
        records[_job("ga", seed)] = {"values": [None, best + 1, best]}
    records[_job("pso", 0)] = {"values": [None, None]}  # every trial failed: the worst run
    scores = quality.score_setting(records, {"levy4": opt}, 8, 2)
    gap = 2.0 - opt
    assert scores[("ga", "levy4", 0)] == pytest.approx(100.0)
    assert scores[("ga", "levy4", 1)] == pytest.approx(0.0)
    assert scores[("ga", "levy4", 2)] == pytest.approx(100 * (1 - (2.5 - opt) / gap))  # -25
    assert scores[("optuna-random", "levy4", 1)] == pytest.approx(0.0)
    assert scores[("pso", "levy4", 0)] == scores[("optuna-random", "levy4", 2)]  # best 3: -50
    assert scores[("pso", "levy4", 0)] == pytest.approx(-50.0)
    mean = np.mean([100.0, 0.0, scores[("ga", "levy4", 2)]])
    assert quality.summary(scores, "ga", ["levy4"], [0, 1, 2]).startswith(f"{mean:.1f} ± ")
    assert quality.normalized_score(3.9, 0.0, 2.0) == pytest.approx(-95.0)
    assert quality.normalized_score(9.0, 0.0, 2.0) == -100.0  # one run weighs at most this
    assert math.isnan(quality.normalized_score(1.0, 1.0, 1.0))  # random already optimal


def test_configs_parse_labels_and_json_options() -> None:
    specs = quality.split_top_level('ga,plain=ga:{"surrogate": false, "x": [1, 2]},optuna-tpe')
    configs = [quality.parse_config(s) for s in specs]
    assert [c.label for c in configs] == ["ga", "plain", "optuna-tpe"]
    assert configs[1].options == {"surrogate": False, "x": [1, 2]} and configs[2].anchor
