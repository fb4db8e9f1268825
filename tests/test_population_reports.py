"""Population members report and stop one by one: each member reports every epoch it trains
under its own trial number; a member the scheduler stopped leaves the stacked model and is
PRUNED at that step, while the others train on exactly as if nobody had been stopped."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from hypersearch.engine import run
from hypersearch.executors.base import execute
from hypersearch.experiment import parse_experiment
from hypersearch.objectives.trainer import TrainerObjective, loop, population
from hypersearch.objectives.trainer.data import Dataset, load_dataset
from hypersearch.objectives.trainer.population import train_population
from hypersearch.objectives.trainer.settings import TrainerSpec
from hypersearch.objectives.trainer.stacked import StackedBatchNorm
from hypersearch.trials import COMPLETE, PRUNED, PopulationRequest, Report, TrialRequest

RTOL = 1e-9  # float64 on the CPU, as in test_population.py
MEMBERS = [
    {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
    {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.05},
    {"lr": 0.2, "momentum": 0.5, "weight_decay": 0.0, "nesterov": True},
    {"lr": 0.02, "momentum": 0.9, "weight_decay": 1e-3},
]
SEEDS = [11, 22, 33, 44]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> Dataset:
    return load_dataset("digits", max_train=200)


def spec(**settings: Any) -> TrainerSpec:
    base = {"model": "mlp", "width": 8, "depth": 2, "epochs": 3, "batch_size": 32, "max_train": 200}
    return TrainerSpec(**(base | settings))


def epochs(trial_dir: Path) -> list[dict[str, float]]:
    with (trial_dir / "epochs.csv").open(newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


class StopAt:
    """A real ``Channel``: keeps every report, and stops trial ``n`` once it reports step
    ``stops[n]`` (as a scheduler answering that report would)."""

    def __init__(self, stops: dict[int, int]) -> None:
        self.stops = stops
        self.reports: list[Report] = []
        self._stopped: set[int] = set()

    def report(self, report: Report) -> None:
        self.reports.append(report)
        if report.step >= self.stops.get(report.number, report.step + 1):
            self._stopped.add(report.number)

    def stopped(self, number: int) -> bool:
        return number in self._stopped

    def steps(self, number: int) -> list[int]:
        return [r.step for r in self.reports if r.number == number]


def hearing(channel: StopAt, number: int) -> Callable[[int, dict[str, float]], bool]:
    """An ``epoch_done`` for member ``number``, as the trainer objective builds it."""

    def epoch_done(epoch: int, metrics: dict[str, float]) -> bool:
        channel.report(Report(number, epoch, metrics))
        return channel.stopped(number)

    return epoch_done


@pytest.mark.parametrize("case", ["mlp", "cnn", "mlp-fp16-scaler"])
def test_stopped_members_leave_and_the_others_train_on_undisturbed(
    case: str, data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if case.endswith("scaler"):  # the per-member loss scales (fp16 on CUDA), forced on the CPU

        def with_scaler(device: torch.device, enabled: bool) -> tuple[Any, Any]:
            return torch.autocast("cpu", enabled=False), torch.amp.GradScaler("cpu")

        monkeypatch.setattr(population, "_autocast", with_scaler)
    members = [spec(model=case.split("-")[0], **hp) for hp in MEMBERS]
    runs = {}
    for name, stops in [("nobody", {}), ("some", {1: 1, 2: 2})]:
        channel = StopAt(stops)
        dirs = [tmp_path / name / str(i) for i in range(4)]
        outcomes = train_population(
            members,
            data,
            seeds=SEEDS,
            device="cpu",
            trial_dirs=list(dirs),
            dtype=torch.float64,
            epoch_done=[hearing(channel, i) for i in range(4)],
        )
        runs[name] = (channel, dirs, outcomes)
    (everyone, all_dirs, full), (stopping, dirs, outcomes) = runs["nobody"], runs["some"]
    reached = {0: 3, 1: 1, 2: 2, 3: 3}
    for i in range(4):
        assert everyone.steps(i) == [1, 2, 3]
        assert stopping.steps(i) == list(range(1, reached[i] + 1))  # trained no further
        got, want = outcomes[i], full[i]
        assert isinstance(got, dict) and isinstance(want, dict)
        assert got["epochs_run"] == reached[i] and len(epochs(dirs[i])) == reached[i]
        # every epoch a member trained is the one it trains when nobody is stopped
        for g, w in zip(epochs(dirs[i]), epochs(all_dirs[i]), strict=False):
            assert g["val_accuracy"] == w["val_accuracy"]
            assert g["val_loss"] == pytest.approx(w["val_loss"], rel=RTOL, abs=0)
            assert g["train_loss"] == pytest.approx(w["train_loss"], rel=RTOL, abs=0)
        if reached[i] == 3:  # the members left running end exactly where they would have
            for metric in ("val_loss", "train_loss", "val_accuracy", "train_flops"):
                assert got[metric] == pytest.approx(want[metric], rel=RTOL, abs=0), (i, metric)
        else:  # a stopped member's metrics are its last epoch's, as its reports say
            last = next(r for r in reversed(stopping.reports) if r.number == i)
            assert last.metrics == {k: got[k] for k in loop.REPORTED}
            assert got["train_flops"] == loop.training_flops(members[i], data, reached[i])


def test_the_stack_shrinks_to_the_members_left(data: Dataset) -> None:
    """Stopped members cost nothing: their rows leave the parameters and the optimizer."""
    members = [spec(model="cnn", epochs=3, **hp) for hp in MEMBERS]
    channel = StopAt({0: 1, 2: 1, 1: 2, 3: 2})
    done = [hearing(channel, i) for i in range(4)]
    state = population._Run(members, data, SEEDS, "cpu", None, torch.float32, done)
    losses = state.train_epoch(0)
    assert losses is not None and state.end_epoch(0, *losses)
    assert state.slots == [1, 3]
    assert state.store.flat.shape[0] == state.optimizer.buffer.shape[0] == 2
    assert state.optimizer.momentum.flatten().tolist() == pytest.approx([0.0, 0.9])
    norms = [m for m in state.model.modules() if isinstance(m, StackedBatchNorm)]
    assert norms and all(m.running_mean.shape[0] == m.running_var.shape[0] == 2 for m in norms)
    losses = state.train_epoch(1)
    assert losses is not None and losses[0].shape == (2,)
    assert not state.end_epoch(1, *losses)  # all stopped: the call returns after 2 of 3 epochs
    assert state.slots == []
    outcomes = state.outcomes()
    assert [o["epochs_run"] for o in outcomes if isinstance(o, dict)] == [1, 2, 1, 2]


def test_execute_records_stopped_members_pruned_at_their_step(tmp_path: Path) -> None:
    """Through the executor's ``execute`` (what the inline executor and every local worker
    run): one channel hears every member under its own number; the stopped are PRUNED."""
    objective = TrainerObjective(spec(dataset="digits"))
    requests = [
        TrialRequest(10 + i, dict(hp), SEEDS[i], tmp_path / str(10 + i))
        for i, hp in enumerate(MEMBERS)
    ]
    channel = StopAt({11: 1, 13: 2})
    result = execute(objective, PopulationRequest.of(requests), "cpu", channel=channel)
    by_number = {m.number: m for m in result.members}
    assert sorted(by_number) == [10, 11, 12, 13]
    for number, (state, step) in {10: (COMPLETE, 3), 11: (PRUNED, 1), 12: (COMPLETE, 3)}.items():
        member = by_number[number]
        assert (member.state, member.step) == (state, step), number
        assert channel.steps(number) == list(range(1, step + 1))
        assert member.metrics["epochs_run"] == step
    pruned = by_number[13]
    assert (pruned.state, pruned.step, pruned.reason) == (PRUNED, 2, "pruned")
    assert pruned.error == "stopped at step 2"
    assert pruned.metrics["val_loss"] == next(
        r.metrics["val_loss"] for r in channel.reports if (r.number, r.step) == (13, 2)
    )


def test_a_scheduler_prunes_population_members_through_the_local_executor(
    tmp_path: Path,
) -> None:
    """End to end: ``--population on`` with ASHA; the members' reports cross the worker's
    socket one by one, and a pruned member shows PRUNED in trials.csv at the step it reached."""
    exp = parse_experiment(
        {
            "name": "pop-stop",
            "objective": {
                "trainer": {
                    "dataset": "digits",
                    "model": "mlp",
                    "width": 16,
                    "depth": 1,
                    "epochs": 3,
                    "batch_size": 32,
                    "max_train": 200,
                }
            },
            "params": {"lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True}},
            "budget": {"trials": 4, "parallel": 1, "population_size": 4},
            "scheduler": {"asha": {"min_step": 1, "reduction_factor": 2}},
        }
    )
    result = run(exp, algo="random", executor="local", out=tmp_path, population="on")
    with (result.run_dir / "trials.csv").open() as handle:
        table = list(csv.DictReader(handle))
    study = optuna.load_study(
        study_name=result.run_dir.name, storage=f"sqlite:///{result.run_dir}/study.db"
    )
    assert [t.user_attrs["hypersearch"].get("population") for t in study.trials] == [4] * 4
    states = [r["state"] for r in table]
    assert "PRUNED" in states and "COMPLETE" in states, states
    with sqlite3.connect(result.run_dir / "study.db") as db:
        curves = db.execute(
            "SELECT t.number, v.step FROM trial_intermediate_values v "
            "JOIN trials t ON t.trial_id = v.trial_id"
        ).fetchall()
    for r in table:
        steps, number = int(r["steps"]), int(r["number"])
        assert r["state"] == ("COMPLETE" if steps == 3 else "PRUNED"), r
        assert float(r["epochs_run"]) == steps
        assert sorted(s for n, s in curves if n == number) == list(range(1, steps + 1))
        assert len(epochs(result.run_dir / "trials" / r["number"])) == steps
    # Each member is charged the population's time by the steps it trained.
    per_step = {float(r["duration_s"]) / int(r["steps"]) for r in table}
    assert max(per_step) == pytest.approx(min(per_step), rel=1e-6)
