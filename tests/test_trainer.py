"""The built-in trainer: it learns, reproduces itself, fails diverging runs early, and the engine
retries out-of-memory trials with smaller batches and lost workers once."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from hypersearch.engine import run
from hypersearch.errors import ExperimentError, TrialFailure, UserInputError
from hypersearch.experiment import parse_experiment
from hypersearch.objectives.trainer.data import load_dataset
from hypersearch.objectives.trainer.loop import SIMULATE_OOM_ENV, train
from hypersearch.objectives.trainer.settings import TrainerSpec
from tests.conftest import run_cli


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "trials.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def info(run_dir: Path) -> dict[int, dict]:
    """Every trial's user attrs, by number, straight from the Optuna study."""
    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir}/study.db")
    return {t.number: t.user_attrs for t in study.trials}


@pytest.mark.parametrize("model", ["mlp", "cnn", "resnet"])
def test_trainer_learns_digits_and_reproduces_itself(model: str) -> None:
    data = load_dataset("digits")
    settings = TrainerSpec(model=model, width=16, epochs=4, lr=0.1)
    first = train(settings, data, seed=3, device="cpu")
    assert first["val_accuracy"] > 0.9, first
    assert first["epochs_run"] == 4 and first["n_params"] > 0
    assert first["val_loss"] < 0.5 and first["train_loss"] < 1.0
    again = train(settings, data, seed=3, device="cpu")
    assert again["val_loss"] == first["val_loss"]  # same seed, same run
    other = train(settings, data, seed=4, device="cpu")
    assert other["val_loss"] != first["val_loss"]


def test_onecycle_and_cosine_schedules_and_grad_accumulation_train() -> None:
    data = load_dataset("digits")
    for schedule in ("constant", "cosine", "onecycle"):
        metrics = train(
            TrainerSpec(model="mlp", epochs=3, schedule=schedule, lr=0.1),
            data,
            seed=0,
            device="cpu",
        )
        assert metrics["val_accuracy"] > 0.85, (schedule, metrics)
    accumulated = train(
        TrainerSpec(model="mlp", epochs=3, batch_size=16, grad_accum=4), data, seed=0, device="cpu"
    )
    assert (accumulated["used_batch_size"], accumulated["used_grad_accum"]) == (16, 4)
    assert accumulated["val_accuracy"] > 0.85


def test_diverging_learning_rate_fails_early_as_non_finite(tmp_path: Path) -> None:
    data = load_dataset("digits")
    with pytest.raises(TrialFailure) as failure:
        train(
            TrainerSpec(model="mlp", lr=50.0, epochs=10),
            data,
            seed=0,
            device="cpu",
            trial_dir=tmp_path,
        )
    assert failure.value.reason == "non_finite"
    epochs = list(csv.DictReader((tmp_path / "epochs.csv").open()))
    assert len(epochs) < 10, "a diverging run must stop early"


def trainer_experiment(
    tmp_path: Path, *, trials: int = 3, parallel: int = 1, **trainer: object
) -> Path:
    body = {"dataset": "digits", "model": "mlp", "width": 16, "epochs": 2, **trainer}
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: tr\nseed: 0\n"
        f"objective: {{trainer: {json.dumps(body)}}}\n"
        "objectives: {val_loss: minimize}\n"
        "params:\n  lr: {type: float, low: 0.01, high: 0.3, log: true}\n"
        f"budget: {{trials: {trials}, parallel: {parallel}, trial_timeout: 600}}\n"
    )
    return path


def tiny_dataset(tmp_path: Path) -> str:
    """A 256-sample, 8-feature npz dataset: it loads without importing scikit-learn (digits
    does, ~1 s), which matters where every attempt is a fresh worker."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 8)).astype(np.float32)
    np.savez(tmp_path / "tiny.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    return f"npz:{tmp_path / 'tiny.npz'}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("oom_above", "state", "ladder"),
    [
        (8, "FAIL", [64, 32, 16]),  # every size runs out of memory: oom at the floor
        (16, "COMPLETE", [64, 32]),  # 16 fits: the trial completes with batch 16, accumulation 4
    ],
)
def test_out_of_memory_ladder_halves_the_batch_down_to_the_floor(
    tmp_path: Path, oom_above: int, state: str, ladder: list[int]
) -> None:
    """Every step is a real retry through the executor, which recycles a worker after an
    out-of-memory error: the fresh workers' imports (torch, ~1.5 s each) are this test's time,
    training a fraction of a second. Two trials side by side: each keeps its own ladder."""
    exp = trainer_experiment(
        tmp_path,
        trials=2,
        parallel=2,
        dataset=tiny_dataset(tmp_path),
        batch_size=64,
        min_batch_size=16,
    )
    result = run_cli(
        "run",
        str(exp),
        "--algo",
        "random",
        "--out",
        str(tmp_path / "runs"),
        env={SIMULATE_OOM_ENV: str(oom_above)},
    )
    assert result.returncode == (1 if state == "FAIL" else 0), result.stderr  # 1: all failed
    run_dir = next((tmp_path / "runs").iterdir())
    rows = read_rows(run_dir)
    assert [r["state"] for r in rows] == [state] * 2
    attrs = info(run_dir)
    for row in rows:
        trial = attrs[int(row["number"])]
        assert trial["hypersearch"]["oom_ladder"] == ladder
        if state == "FAIL":
            assert row["error"].startswith("oom: ") and "[64, 32, 16]" in row["error"]
        else:
            assert (trial["used_batch_size"], trial["used_grad_accum"]) == (16, 4)


@pytest.mark.slow
def test_sigkilled_worker_fails_worker_lost_is_retried_once_and_the_run_completes(
    tmp_path: Path,
) -> None:
    """A python objective that SIGKILLs its own worker on its first call in that worker."""
    (tmp_path / "killer.py").write_text(
        "import os, signal\n"
        "def f(config, ctx):\n"
        "    marker = ctx.trial_dir.parent / 'killed-once'\n"
        "    if ctx.number == 1 and not marker.exists():\n"
        "        marker.write_text('x')\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return config['x'] ** 2\n"
    )
    (tmp_path / "exp.yaml").write_text(
        "name: lost\nobjective: {python: {function: 'killer:f', path: ['.']}}\n"
        "params: {x: {type: float, low: -1, high: 1}}\nbudget: {trials: 5, parallel: 2}\n"
    )
    result = run_cli(
        "run", str(tmp_path / "exp.yaml"), "--algo", "random", "--out", str(tmp_path / "runs")
    )
    assert result.returncode == 0, result.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    rows = {int(r["number"]): r for r in read_rows(run_dir)}
    # The lost trial's retry takes its place: 5 counted trials plus the lost attempt.
    assert len(rows) == 6 and sorted(rows) == list(range(6))
    assert rows[1]["state"] == "FAIL" and rows[1]["error"].startswith("worker_lost: ")
    links = {n: a["hypersearch"] for n, a in info(run_dir).items()}
    retry = links[1]["retried_as"]
    assert links[retry]["retry_of"] == 1
    assert rows[retry]["state"] == "COMPLETE" and rows[retry]["x"] == rows[1]["x"]
    assert [n for n, a in links.items() if a.get("retry_of") is not None] == [retry]  # once
    assert "retry_of" not in rows[0] and "retried_as" not in rows[0]  # not metric columns
    # The progress lines count what the budget counts: never "6/5 done".
    done = [line.split(" done")[0].rsplit(" ", 1)[1] for line in result.stderr.splitlines()]
    done = [d for d in done if "/" in d]
    assert done[-1] == "5/5" and all(int(d.split("/")[0]) <= 5 for d in done), done


def test_driver_never_imports_torch(tmp_path: Path) -> None:
    """The driver process runs a trainer experiment without importing torch (so no CUDA state);
    the workers do the training."""
    script = tmp_path / "drive.py"
    script.write_text(
        "import sys\nimport hypersearch\n"
        f"r = hypersearch.run({str(trainer_experiment(tmp_path))!r}, algo='random', trials=2, "
        f"out={str(tmp_path / 'runs')!r})\n"
        "assert r.summary['complete'] == 2, r.summary\n"
        "print('torch' in sys.modules)\n"
    )
    import subprocess

    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
        },
    )
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            {"params": {"learning_rate": {"type": "float", "low": 0.01, "high": 1}}},
            "params.learning_rate: the built-in trainer has no tunable setting of this name",
        ),
        (
            {"objectives": {"accuracy": "maximize"}},
            "objectives.accuracy: the built-in trainer reports no such metric",
        ),
        (
            {"objective": {"trainer": {"dataset": "imagenet"}}},
            "objective.trainer.dataset: unknown dataset 'imagenet'",
        ),
        ({"objective": {"trainer": {"model": "vgg"}}}, "objective.trainer.model: input should be"),
    ],
)
def test_trainer_settings_are_validated(patch: dict, message: str) -> None:
    base = {
        "objective": {"trainer": {"dataset": "digits"}},
        "params": {"lr": {"type": "float", "low": 0.01, "high": 1, "log": True}},
    }
    with pytest.raises(ExperimentError) as err:
        parse_experiment(base | patch)
    assert str(err.value).startswith(message), str(err.value)


def test_parameters_override_the_fixed_settings() -> None:
    from hypersearch.objectives.trainer import TrainerObjective

    exp = parse_experiment(
        {
            "objective": {"trainer": {"lr": 0.5, "batch_size": 32}},
            "params": {"lr": {"type": "float", "low": 0.01, "high": 1}},
        }
    )
    objective = TrainerObjective(exp.objective.trainer)
    settings = objective.settings({"lr": 0.02}, {"batch_size": 16, "grad_accum": 2})
    assert (settings.lr, settings.batch_size, settings.grad_accum) == (0.02, 16, 2)
    assert exp.objective.trainer.lr == 0.5  # the experiment itself is untouched


def test_the_default_experiment_is_real_training() -> None:
    from hypersearch.experiment import default_experiment_path, load_experiment

    exp = load_experiment(default_experiment_path()[0])
    assert exp.objective.kind == "trainer" and exp.objective.trainer.model == "cnn"
    assert exp.objective.trainer.dataset == "digits"
    assert {"lr", "weight_decay", "momentum", "width"} <= set(exp.params)
    # the cost objective means the same whether trials train alone or in populations
    assert list(exp.objectives) == ["val_loss", "train_flops"]


def test_run_api_returns_device_of_every_trial(tmp_path: Path) -> None:
    result = run(
        trainer_experiment(tmp_path),
        algo="random",
        trials=2,
        executor="inline",
        out=tmp_path / "runs",
    )
    assert result.summary["complete"] == 2
    attrs = info(result.run_dir)
    assert {a["hypersearch"]["device"] for a in attrs.values()} == {"cpu"}


# -- device pinning (fake GPU lists: the pinning is what is tested, the trials run on the CPU) --

PIN_OBJECTIVE = """\
import json, os, time
def f(config, ctx):
    start = time.time()
    time.sleep(0.3)
    (ctx.trial_dir / "pin.json").write_text(json.dumps({
        "device": ctx.device, "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "start": start, "end": time.time()}))
    return config["x"]
"""


def pinned_run(tmp_path: Path, *flags: str, env: dict[str, str]) -> list[dict]:
    (tmp_path / "pin.py").write_text(PIN_OBJECTIVE)
    (tmp_path / "exp.yaml").write_text(
        "name: pin\nobjective: {python: {function: 'pin:f', path: ['.']}}\n"
        "params: {x: {type: float, low: 0, high: 1}}\nbudget: {trials: 12, parallel: 1}\n"
    )
    result = run_cli(
        "run",
        str(tmp_path / "exp.yaml"),
        "--algo",
        "random",
        "--out",
        str(tmp_path / "runs"),
        *flags,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    pins = [json.loads(p.read_text()) for p in sorted((run_dir / "trials").glob("*/pin.json"))]
    assert len(pins) == 12
    shown = {device: sorted(numbers) for device, numbers in summary["devices"].items()}
    assert sum(len(n) for n in shown.values()) == 12
    return pins, shown


def max_overlap(pins: list[dict], device: str) -> int:
    """The most trials that ran at the same moment on ``device``."""
    events = sorted(
        [(p["start"], 1) for p in pins if p["device"] == device]
        + [(p["end"], -1) for p in pins if p["device"] == device]
    )
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "visible", "per_gpu"),
    [
        ((), "0,1", 1),  # every GPU found, one trial each
        (("--gpus", "2,5"), "0,1,2,3,4,5", 1),  # the GPUs chosen
        (("--trials-per-gpu", "2"), "3", 2),  # two small trials share one GPU
    ],
)
def test_workers_are_pinned_and_never_share_a_gpu_unless_allowed(
    tmp_path: Path, flags: tuple[str, ...], visible: str, per_gpu: int
) -> None:
    pins, shown = pinned_run(tmp_path, *flags, env={"CUDA_VISIBLE_DEVICES": visible})
    expected = flags[1].split(",") if flags[:1] == ("--gpus",) else visible.split(",")
    assert {p["visible"] for p in pins} <= set(expected)
    for pin in pins:
        assert pin["device"] == f"cuda:{pin['visible']}"  # pinned before the worker started
    for gpu in expected:
        assert max_overlap(pins, f"cuda:{gpu}") <= per_gpu
    assert set(shown) <= {f"cuda:{g}" for g in expected}
    if per_gpu == 1 and len(expected) > 1:
        assert len(shown) == len(expected)  # every chosen GPU was used


def test_without_gpus_workers_run_on_the_cpu_with_a_share_of_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hypersearch.devices import discover_gpus, parse_gpus, plan_slots

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the test session sets 1
    slots = plan_slots([], parallel=2, cpu_count=8)
    assert [s.device for s in slots] == ["cpu", "cpu"]
    assert all(s.env["CUDA_VISIBLE_DEVICES"] == "" for s in slots)
    assert slots[0].env["OMP_NUM_THREADS"] == "4"  # 8 cores, 2 workers
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert plan_slots([], parallel=2, cpu_count=8)[0].env["OMP_NUM_THREADS"] == "3"  # user's
    spread = plan_slots(["0", "1"], trials_per_gpu=2)
    assert [s.device for s in spread] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert parse_gpus("0,2") == ["0", "2"] and parse_gpus("none") == []
    with pytest.raises(UserInputError):
        parse_gpus("zero")
    os.environ["CUDA_VISIBLE_DEVICES"], saved = "1,-1,2", os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        assert discover_gpus() == ["1"]  # CUDA hides what follows an invalid entry
    finally:
        if saved is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


def test_a_worker_is_recycled_after_a_cuda_error(tmp_path: Path) -> None:
    """A CUDA error can leave the CUDA context broken: the next trial gets a fresh worker."""
    from hypersearch.executors.base import TrialRequest
    from hypersearch.executors.local import LocalExecutor

    (tmp_path / "cuda_err.py").write_text(
        "import os\n"
        "def f(config):\n"
        "    if config['x'] > 0.5:\n"
        "        raise RuntimeError('CUDA error: device-side assert triggered')\n"
        "    return os.getpid()\n"
    )
    exp = parse_experiment(
        {
            "objective": {"python": {"function": "cuda_err:f", "path": [str(tmp_path)]}},
            "params": {"x": {"type": "float", "low": 0, "high": 1}},
        }
    )
    executor = LocalExecutor(exp.objective, 1)
    try:
        pids = []
        for number, x in enumerate([0.1, 0.2, 0.9, 0.1]):
            executor.submit(TrialRequest(number, {"x": x}, 0, tmp_path / str(number)))
            (result,) = executor.poll(60)
            pids.append(result.metrics.get("value"))
        assert pids[0] == pids[1]  # workers are reused across trials
        assert pids[2] is None and pids[3] != pids[1]  # ...but not after a CUDA error
    finally:
        executor.shutdown()
