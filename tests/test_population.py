"""Population training: k members trained as one stacked model compute what k single trials
compute (float64, to a tight tolerance), a diverging member fails alone without disturbing the
others, and the population batch counts for (simulated) out-of-memory errors."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from hypersearch.errors import TrialFailure
from hypersearch.objectives.trainer import loop, population
from hypersearch.objectives.trainer.data import Dataset, load_dataset
from hypersearch.objectives.trainer.loop import SIMULATE_OOM_ENV, train
from hypersearch.objectives.trainer.population import population_key, train_population
from hypersearch.objectives.trainer.settings import TrainerSpec

# Both trainers run in float64 and differ only in the order of floating-point operations
# (batched matmuls and grouped convolutions instead of single ones, SGD's update as tensor ops,
# per-member reductions), i.e. by ~1e-16 relative per step. A few epochs of SGD amplify that by
# orders of magnitude at most (measured: all within 1e-15 here), while any real difference
# (another batch, a wrong lr at one step, a missing weight decay, a shared BatchNorm statistic)
# moves the losses by more than 1e-4. 1e-9 sits safely between the two.
RTOL = 1e-9
DIVERGING = {"lr": 1e300, "momentum": 0.9, "weight_decay": 0.0}  # NaN within epoch 1
# Finite but huge losses: caught at the end of epoch 1 (train_loss > divergence_factor x first).
BLOWING_UP = {"lr": 1e100, "momentum": 0.9, "weight_decay": 0.0}
HEALTHY = [
    {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
    {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.05},
    {"lr": 0.2, "momentum": 0.5, "weight_decay": 0.0, "nesterov": True},
    {"lr": 0.02, "momentum": 0.9, "weight_decay": 1e-3},
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> Dataset:
    # 400 rows at batch 32: 13 steps an epoch, so the NaN check (every 10 steps) fires mid-epoch
    # and the others train 3 more steps beside the masked member.
    return load_dataset("digits", max_train=400)


def spec(**settings: Any) -> TrainerSpec:
    return TrainerSpec(**({"width": 8, "depth": 2, "epochs": 3, "batch_size": 32} | settings))


def single(settings: TrainerSpec, data: Dataset, seed: int, trial_dir: Path) -> Any:
    """``train()``'s metrics, or its TrialFailure."""
    try:
        return train(
            settings, data, seed=seed, device="cpu", trial_dir=trial_dir, dtype=torch.float64
        )
    except TrialFailure as failure:
        return failure


def epochs(trial_dir: Path) -> list[dict[str, float]]:
    path = trial_dir / "epochs.csv"
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def assert_same_run(
    got: dict[str, float], want: dict[str, float], got_dir: Path, want_dir: Path
) -> None:
    """Same metrics and per-epoch history, up to RTOL (train_seconds and seconds aside)."""
    for name in ("val_loss", "val_accuracy", "train_loss"):
        assert got[name] == pytest.approx(want[name], rel=RTOL, abs=0), name
    for name in ("epochs_run", "n_params", "used_batch_size", "used_grad_accum"):
        assert got[name] == want[name], name
    got_epochs, want_epochs = epochs(got_dir), epochs(want_dir)
    assert len(got_epochs) == len(want_epochs) == want["epochs_run"]
    for g, w in zip(got_epochs, want_epochs, strict=True):
        assert g["epoch"] == w["epoch"] and g["val_accuracy"] == w["val_accuracy"]
        assert g["train_loss"] == pytest.approx(w["train_loss"], rel=RTOL, abs=0)
        assert g["val_loss"] == pytest.approx(w["val_loss"], rel=RTOL, abs=0)


def check_against_singles(
    members: list[TrainerSpec], seeds: list[int], data: Dataset, tmp_path: Path
) -> list[Any]:
    dirs = [tmp_path / f"population-{i}" for i in range(len(members))]
    results = train_population(
        members, data, seeds=seeds, device="cpu", trial_dirs=dirs, dtype=torch.float64
    )
    for i, (member, seed, result) in enumerate(zip(members, seeds, results, strict=True)):
        want = single(member, data, seed, tmp_path / f"single-{i}")
        if isinstance(want, TrialFailure):
            assert isinstance(result, TrialFailure), (i, result)
            assert (result.reason, str(result)) == (want.reason, str(want))
        else:
            assert isinstance(result, dict), (i, result)
            assert_same_run(result, want, dirs[i], tmp_path / f"single-{i}")
        # a failed member's epochs.csv holds what the single trial's holds: its finished epochs
        assert len(epochs(dirs[i])) == len(epochs(tmp_path / f"single-{i}"))
    return results


@pytest.mark.parametrize(
    ("model", "extra"),
    [("mlp", {}), ("cnn", {"batch_size": 16, "grad_accum": 2}), ("resnet", {"epochs": 2})],
)
def test_members_compute_what_their_single_trials_compute(
    model: str, extra: dict[str, Any], data: Dataset, tmp_path: Path
) -> None:
    members = [spec(model=model, **extra, **hp) for hp in [*HEALTHY[:2], DIVERGING, *HEALTHY[2:]]]
    results = check_against_singles(members, [11, 22, 33, 44, 55], data, tmp_path)
    failure = results[2]
    assert isinstance(failure, TrialFailure) and failure.reason == "non_finite"
    assert str(failure).startswith("loss became nan at epoch 1, step 10")  # the in-step check
    assert all(
        isinstance(r, dict) and r["val_accuracy"] > 0.1 for i, r in enumerate(results) if i != 2
    )


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle"])
def test_every_schedule_gives_each_member_its_single_trials_rates(
    schedule: str, data: Dataset, tmp_path: Path
) -> None:
    members = [spec(model="mlp", schedule=schedule, **hp) for hp in HEALTHY[:3]]
    total = 7
    rates = population._Rates(members, total).take(total)
    for i, member in enumerate(members):  # what train()'s optimizer holds at each step
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=member.lr)
        scheduler = loop._scheduler(member, optimizer, total)
        expected = []
        for _ in range(total):
            expected.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        assert rates[:, i].tolist() == expected
    check_against_singles(members, [1, 2, 3], data, tmp_path)


def test_a_diverging_member_leaves_the_others_exactly_unchanged(
    data: Dataset, tmp_path: Path
) -> None:
    """Nothing mixes members, so their results do not depend on who else is in the population:
    bit for bit here (one thread, the CPU's kernels compute each member's rows alike)."""
    cases = [("mlp", DIVERGING, "loss became nan", 0), ("cnn", BLOWING_UP, "training diverged", 1)]
    for model, diverging, message, epochs_written in cases:
        members = [spec(model=model, epochs=2, **hp) for hp in HEALTHY[:2]]
        seeds = [5, 6]
        alone = train_population(members, data, seeds=seeds, device="cpu", dtype=torch.float64)
        dirs = [tmp_path / model / str(i) for i in range(3)]
        mixed = train_population(
            [members[0], spec(model=model, epochs=2, **diverging), members[1]],
            data,
            seeds=[seeds[0], 7, seeds[1]],
            device="cpu",
            trial_dirs=dirs,
            dtype=torch.float64,
        )
        failure = mixed[1]
        assert isinstance(failure, TrialFailure) and failure.reason == "non_finite"
        assert str(failure).startswith(f"{message} at epoch 1")
        assert len(epochs(dirs[1])) == epochs_written
        for got, want in zip([mixed[0], mixed[2]], alone, strict=True):
            assert isinstance(got, dict) and isinstance(want, dict)
            got.pop("train_seconds"), want.pop("train_seconds")
            assert got == want
            assert got["epochs_run"] == 2 and math.isfinite(got["val_loss"])


def test_members_must_share_every_setting_but_the_per_member_ones(data: Dataset) -> None:
    a, b = spec(model="mlp", lr=0.1, momentum=0.0), spec(model="mlp", lr=0.3, nesterov=True)
    assert population_key(a) == population_key(b)
    for other in (spec(model="mlp", width=16), spec(model="mlp", schedule="cosine")):
        assert population_key(other) != population_key(a)
        with pytest.raises(ValueError, match="differs from member 0"):
            train_population([a, other], data, seeds=[0, 1], device="cpu")
    with pytest.raises(ValueError, match="seeds"):
        train_population([a, b], data, seeds=[0], device="cpu")


def test_simulated_out_of_memory_counts_the_whole_population_batch(
    data: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIMULATE_OOM_ENV, "100")
    member = spec(model="mlp", epochs=1)  # batch 32: one trial fits, 4 x 32 = 128 does not
    with pytest.raises(torch.cuda.OutOfMemoryError, match="4 x 32"):
        train_population([member] * 4, data, seeds=[0, 1, 2, 3], device="cpu")
    assert all(
        isinstance(r, dict)
        for r in train_population([member] * 3, data, seeds=[0, 1, 2], device="cpu")
    )


def test_fp16_loss_scaling_is_per_member(
    data: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GradScaler path (fp16 on CUDA), forced on the CPU: each member keeps its own scale and
    skips only its own steps, so it still matches a single trial with a GradScaler."""

    def with_scaler(device: torch.device, enabled: bool) -> tuple[Any, torch.amp.GradScaler]:
        return torch.autocast("cpu", enabled=False), torch.amp.GradScaler("cpu")

    monkeypatch.setattr(loop, "_autocast", with_scaler)
    monkeypatch.setattr(population, "_autocast", with_scaler)
    members = [spec(model="mlp", epochs=2, **hp) for hp in [HEALTHY[0], DIVERGING, HEALTHY[1]]]
    results = check_against_singles(members, [3, 4, 5], data, tmp_path)
    assert isinstance(results[1], TrialFailure) and isinstance(results[0], dict)


def test_dropout_members_draw_their_own_masks_and_train(data: Dataset) -> None:
    """With dropout the masks come from one generator, so only the statistics match train()."""
    members = [spec(model="mlp", dropout=0.3, epochs=1)] * 2
    results = train_population(members, data, seeds=[1, 1], device="cpu")
    assert all(isinstance(r, dict) and math.isfinite(r["val_loss"]) for r in results)
    assert results[0]["train_loss"] != results[1]["train_loss"]  # same seed, other masks


def test_train_flops_is_a_members_own_cost_the_same_alone_or_in_a_population(
    data: Dataset, tmp_path: Path
) -> None:
    """``train_flops`` (the default experiment's cost objective) of a member is exactly what its
    trial reports alone, whatever the population's size; and it grows with the network."""
    configs = [spec(**HEALTHY[i]) for i in range(3)]
    seeds = [11, 12, 13]
    together = train_population(configs, data, seeds=seeds, device="cpu", dtype=torch.float64)
    for settings, seed, member in zip(configs, seeds, together, strict=True):
        alone = single(settings, data, seed, tmp_path / str(seed))
        assert member["train_flops"] == alone["train_flops"]
    pair = train_population(configs[:2], data, seeds=seeds[:2], device="cpu")
    assert [m["train_flops"] for m in pair] == [m["train_flops"] for m in together[:2]]
    wider = single(spec(**HEALTHY[0], width=16), data, 11, tmp_path / "wide")
    assert wider["train_flops"] > 2 * together[0]["train_flops"]  # conv flops ~ width^2
    # forward and backward over every training row, every epoch
    per_row = together[0]["train_flops"] / (len(data.x_train) * configs[0].epochs)
    assert per_row == loop.training_flops(configs[0], data, 1) / len(data.x_train)
