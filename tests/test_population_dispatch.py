"""Population dispatch: the engine groups compatible built-in-trainer trials into populations
trained as one stacked model, each member still its own trial in the store; a population that
runs out of memory is split in two until it fits; ``--population off`` trains one at a time.

The numerical equivalence of population and single-trial training is tested in
test_population.py; here it is the dispatch: grouping, the store, the executors, the ladder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from hypersearch.engine import run
from hypersearch.experiment import parse_experiment
from hypersearch.objectives.trainer.loop import SIMULATE_OOM_ENV
from tests.conftest import run_cli


def experiment(trials: int = 8, parallel: int = 1, population_size: int = 8, **extra: Any) -> Any:
    """A small mlp on digits; lr, momentum and weight decay vary per trial (per member)."""
    return parse_experiment(
        {
            "name": "pop",
            "objective": {
                "trainer": {
                    "dataset": "digits",
                    "model": "mlp",
                    "width": 16,
                    "depth": 1,
                    "epochs": 1,
                    "batch_size": 32,
                    "max_train": 200,
                    **extra,
                }
            },
            "objectives": {"val_loss": "minimize"},
            "params": {
                "lr": {"type": "float", "low": 1e-3, "high": 0.3, "log": True},
                "momentum": {"type": "float", "low": 0.0, "high": 0.9},
                "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
            },
            "budget": {"trials": trials, "parallel": parallel, "population_size": population_size},
        }
    )


def info(run_dir: Path) -> dict[int, dict[str, Any]]:
    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir}/study.db")
    return {t.number: t.user_attrs["hypersearch"] for t in study.trials}


def trials(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "trials.csv").sort_values("number").reset_index(drop=True)


@pytest.mark.parametrize("executor", ["inline", "local", "ray"])
def test_asked_batch_is_trained_as_populations_each_member_its_own_trial(
    tmp_path: Path, executor: str
) -> None:
    if executor == "ray":
        pytest.importorskip("ray")
    result = run(
        experiment(trials=8, parallel=2, population_size=8),
        algo="random",
        executor=executor,
        out=tmp_path,
        gpus=[],  # CPU slots: with a GPU, local gives one slot per GPU, whatever ``parallel``
    )
    table = trials(result.run_dir)
    assert (table["state"] == "COMPLETE").all() and len(table) == 8
    attrs = info(result.run_dir)
    # 8 trials asked at once, 2 slots: two populations of 4 (spread over the free slots).
    assert sorted(a["population"] for a in attrs.values()) == [4] * 8
    # Each member's duration is its share of its population's time, not the whole of it.
    assert table["duration_s"].gt(0).all()
    assert table["val_loss"].nunique() == 8  # each member trained with its own settings


def test_population_off_trains_one_trial_at_a_time(tmp_path: Path) -> None:
    result = run(
        experiment(trials=4, parallel=2),
        algo="random",
        executor="inline",
        out=tmp_path,
        population="off",
    )
    assert all("population" not in a for a in info(result.run_dir).values())
    assert (trials(result.run_dir)["state"] == "COMPLETE").all()


def test_population_and_single_trials_give_the_same_results(tmp_path: Path) -> None:
    """Same run seed, same trials: each member's metrics match its one-at-a-time twin (float32
    on CPU: the same arithmetic in a different order, so close but not bit-identical)."""
    together = run(
        experiment(trials=6, parallel=1, population_size=6),
        algo="random",
        executor="inline",
        out=tmp_path / "together",
    )
    alone = run(
        experiment(trials=6, parallel=1),
        algo="random",
        executor="inline",
        out=tmp_path / "alone",
        population="off",
    )
    a, b = trials(together.run_dir), trials(alone.run_dir)
    pd.testing.assert_frame_equal(a[["number", "lr", "momentum"]], b[["number", "lr", "momentum"]])
    np.testing.assert_allclose(a["val_loss"], b["val_loss"], rtol=2e-3)
    # The cost objective means one thing in both modes: each member's own operations, exactly.
    assert (info(together.run_dir)[0]["population"], "population") == (6, "population")
    assert a["train_flops"].tolist() == b["train_flops"].tolist()
    assert a["train_flops"].min() > 0


def test_model_based_algorithms_keep_one_trial_per_slot_unless_asked(tmp_path: Path) -> None:
    auto = run(experiment(trials=4, parallel=2), algo="tpe", executor="inline", out=tmp_path / "a")
    assert all("population" not in a for a in info(auto.run_dir).values())
    forced = run(
        experiment(trials=4, parallel=1, population_size=4),
        algo="tpe",
        executor="inline",
        out=tmp_path / "b",
        population="on",
    )
    assert [a.get("population") for a in info(forced.run_dir).values()] == [4] * 4


def test_a_population_too_big_for_memory_is_split_until_it_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The trainer's test hook raises torch's real out-of-memory error when members × batch
    # exceeds the limit: 8 × 32 and 4 × 32 do not fit in 100, 2 × 32 does.
    monkeypatch.setenv(SIMULATE_OOM_ENV, "100")
    result = run(
        experiment(trials=8, parallel=1, population_size=8),
        algo="random",
        executor="inline",
        out=tmp_path,
    )
    table = trials(result.run_dir)
    assert (table["state"] == "COMPLETE").all() and len(table) == 8  # same trials, not new ones
    for number, attrs in info(result.run_dir).items():
        assert attrs["population_oom"] == [8, 4], number
        assert attrs["population"] == 2
        assert "oom_ladder" not in attrs  # the batch size was never cut


def test_cli_population_flag(tmp_path: Path) -> None:
    bad = run_cli(
        "run", "searchspaces/branin.yaml", "--population", "sometimes", "--out", str(tmp_path)
    )
    assert bad.returncode == 2 and "--population" in bad.stderr
    assert not list(tmp_path.iterdir())


def test_compare_trains_every_algorithm_alike(tmp_path: Path) -> None:
    import hypersearch
    from hypersearch.errors import UserInputError

    with pytest.raises(UserInputError, match="--population"):
        hypersearch.compare(experiment(), algos=["random"], population="auto", out=tmp_path)
    table = hypersearch.compare(
        experiment(trials=4, population_size=4),
        algos=["random", "tpe"],
        seeds=1,
        executor="inline",
        out=tmp_path,
        population="on",
    )
    for run_dir in Path(table.compare_dir).glob("pop-*"):
        assert [a.get("population") for a in info(run_dir).values()] == [4] * 4, run_dir.name
