"""The Ray executor against a real local Ray instance (no mocks): the same results, failure
reasons and timeouts as the local executor, and no process left behind by a timed-out trial.

One Ray instance, started once for this file (bound to 127.0.0.1), serves the in-process tests
and the ``hypersearch run --ray-address`` runs; one run starts its own instance as a user's would.

Early stopping over Ray: reports reach the scheduler while trials run, stops reach the trials
(``ctx.should_stop()``; SIGTERM for a command), and a report of an attempt the driver no longer
follows is never heard.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from hypersearch.executors.base import COMPLETE, TrialRequest, TrialResult  # noqa: E402
from hypersearch.executors.ray import (  # noqa: E402
    LOCAL_OBJECT_STORE_BYTES,
    RayExecutor,
    _laptop_mode,
)
from hypersearch.executors.ray_reports import ReportRelay  # noqa: E402
from hypersearch.experiment import Budget, ObjectiveSpec  # noqa: E402
from hypersearch.store import opened  # noqa: E402
from hypersearch.trials import Report  # noqa: E402
from tests.conftest import REPO, boot_clock, pids_in, run_cli, survivors  # noqa: E402
from tests.test_early_stopping import (  # noqa: E402
    ASHA,
    MEDIAN,
    REPORTING,
    STOPPABLE,
    check_pruned_everywhere,
    check_stoppable,
    experiment,
)
from tests.test_executors import (  # noqa: E402
    Run,
    assert_failed,
    check_command_row,
    check_python_row,
    command_experiment,
    kill_strays,
    pid_files,
    python_experiment,
    read_pids,
    run_experiment,
)


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray instance for this file, on loopback as the executor starts one, with room
    for a run and an in-process test, and two pretend GPUs (Ray schedules them like real ones)."""
    with _laptop_mode():
        ray.init(
            address="local",
            num_cpus=4,
            num_gpus=2,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
    try:
        address = ray.get_runtime_context().gcs_address
        assert address.startswith("127.0.0.1:")
        yield address
    finally:
        ray.shutdown()


def rows_by_number(run: Run) -> dict[int, dict[str, str]]:
    return {int(row["number"]): row for row in run.rows}


def assert_modes_done(run: Run, modes: list[str], ok_modes: tuple[str, ...]) -> None:
    """Every trial of the budget finished, COMPLETE exactly when its mode succeeds."""
    trials = run.summary["trials"]
    assert sorted(rows_by_number(run)) == list(range(trials))
    complete = [n for n in range(trials) if modes[n % len(modes)] in ok_modes]
    assert [n for n, r in sorted(rows_by_number(run).items()) if r["state"] == COMPLETE] == complete
    assert run.summary["complete"] == len(complete)
    assert run.summary["failed"] == trials - len(complete)


# -- a synthetic run, as a user starts it: its own local Ray instance ------------------------------

SYNTHETIC = """
    name: branin-ray
    seed: 3
    objective: {synthetic: branin}
    budget: {trials: 6, parallel: 2}
"""


@pytest.fixture(scope="module")
def synthetic_ray_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("ray-synthetic")
    return run_experiment(root, SYNTHETIC, "--executor", "ray", "--parallel", "2")


@pytest.mark.slow
def test_ray_synthetic_run_reaches_its_budget(synthetic_ray_run: Run) -> None:
    run = synthetic_ray_run
    assert run.summary["trials"] == run.summary["complete"] == 6
    assert run.run_dir.name.startswith("branin-ray-random-s3-")
    for name in ("experiment.yaml", "study.db", "trials.csv", "pareto.csv", "summary.json"):
        assert (run.run_dir / name).is_file(), name
    assert [r["state"] for r in run.rows] == [COMPLETE] * 6
    assert all(float(r["value"]) >= 0.397 for r in run.rows)  # branin's minimum is 0.3979
    with opened(run.run_dir) as store:
        assert {r.device for r in store.records.values()} == {"cpu"}
    assert list((run.run_dir / "logs").glob("ray-worker-*.log"))  # the trials' output


@pytest.mark.slow
def test_ray_and_local_executors_give_the_same_trials(
    synthetic_ray_run: Run, tmp_path: Path
) -> None:
    """Same seed, same algorithm: the same configs and the same values, whatever runs them."""
    local = run_experiment(tmp_path, SYNTHETIC, "--executor", "local", "--parallel", "2")

    def table(run: Run) -> list[dict[str, str]]:  # params and metrics; not the durations
        return sorted(
            ({k: v for k, v in row.items() if k != "duration_s"} for row in run.rows),
            key=lambda row: int(row["number"]),
        )

    assert table(synthetic_ray_run) == table(local)
    assert list(synthetic_ray_run.rows[0]) == list(local.rows[0])  # the same columns


TRAINER = """
    name: digits-ray
    objective: {trainer: {dataset: digits, model: mlp, epochs: 1}}
    params:
      lr: {type: float, low: 1.0e-3, high: 0.3, log: true}
    budget: {trials: 2, parallel: 2, trial_timeout: 600}
"""


@pytest.mark.slow
def test_ray_trainer_run(ray_address: str, tmp_path: Path) -> None:
    """The built-in PyTorch trainer runs in Ray workers like in local ones (CPU here)."""
    run = run_experiment(tmp_path, TRAINER, "--executor", "ray", "--ray-address", ray_address)
    assert run.summary["complete"] == 2, run.rows
    assert all(0 < float(row["val_loss"]) < 10 for row in run.rows)
    with opened(run.run_dir) as store:
        assert {r.device for r in store.records.values()} == {"cpu"}


# -- failures, through `hypersearch run --executor ray --ray-address` ------------------------------

PY_MODES = ["raise", "hang", "suicide", "nan", "ok", "ok"]
CMD_MODES = ["ok", "exit3", "hang", "grandchild"]


def check_ray_python_row(run: Run, row: dict[str, str], mode: str) -> None:
    if mode == "suicide":  # Ray cannot say which signal killed its worker
        assert_failed(row, "worker_lost", "WorkerCrashedError", "died")
    else:
        check_python_row(run, row, mode)


@pytest.mark.slow
def test_ray_python_failures_become_fail_trials(ray_address: str, tmp_path: Path) -> None:
    try:
        run = run_experiment(
            tmp_path,
            python_experiment(tmp_path, PY_MODES, 6, 1.5),
            *("--executor", "ray", "--ray-address", ray_address),
        )
        assert_modes_done(run, PY_MODES, ("ok",))
        for number, row in rows_by_number(run).items():
            check_ray_python_row(run, row, PY_MODES[number % len(PY_MODES)])
        # the `sleep` children of the hung trial and of the one that killed its worker are gone
        children = [p for p in pid_files(run.run_dir) if p.name == "grandchild.pid"]
        assert sorted(p.parent.name for p in children) == ["1", "2"]
        assert survivors(pids_in(children), timeout=10) == []
    finally:
        kill_strays(tmp_path)


@pytest.mark.slow
def test_ray_command_timeout_kills_command_and_grandchild(ray_address: str, tmp_path: Path) -> None:
    """A hung command, and one whose grandchild keeps stdout open, time out; nothing survives.
    (The script is not named cmd.py: the CLI runs in its folder, and importing Ray imports the
    standard library's ``cmd``.)"""
    text = command_experiment(tmp_path, CMD_MODES, 4, 1.5).replace("cmd.py", "trial_cmd.py")
    (tmp_path / "cmd.py").rename(tmp_path / "trial_cmd.py")
    try:
        run = run_experiment(tmp_path, text, "--executor", "ray", "--ray-address", ray_address)
        assert_modes_done(run, CMD_MODES, ("ok",))
        for number, row in rows_by_number(run).items():
            check_command_row(run, row, CMD_MODES[number % len(CMD_MODES)])
        assert sorted(p.name for p in pid_files(run.run_dir)) == ["command.pid", "grandchild.pid"]
        assert survivors(read_pids(run.run_dir), timeout=10) == []
    finally:
        kill_strays(tmp_path)


# -- the executor in this process: slots, the driver's timeout backstop, shutdown ------------------

# Catches every exception, the timeout's included, so only the driver can stop it.
STUBBORN = """
import os, subprocess, time

def f(config, ctx):
    ctx.trial_dir.mkdir(parents=True, exist_ok=True)
    sleep = subprocess.Popen(["sleep", "60"])
    (ctx.trial_dir / "pids").write_text(f"{os.getpid()} {sleep.pid}")
    if config["mode"] == "ok":
        return 1.0
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            time.sleep(60)
        except BaseException:
            pass
"""


def wait_for_pids(path: Path, timeout: float = 600) -> dict[int, float]:
    """The two PIDs ``path`` lists once it lists them, each with the time it was written."""
    deadline = time.monotonic() + timeout
    while not path.exists() or len(path.read_text().split()) < 2:
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    written = boot_clock() - (time.time() - path.stat().st_mtime)  # both ran then
    return dict.fromkeys((int(pid) for pid in path.read_text().split()), written)


@pytest.mark.slow
def test_ray_executor_backstop_timeout_slots_and_shutdown(ray_address: str, tmp_path: Path) -> None:
    """A trial that swallows its own timeout is killed by the driver (its worker and child);
    slots fill and free; shutdown kills the trial still in flight."""
    (tmp_path / "objs_stubborn.py").write_text(STUBBORN)
    spec = ObjectiveSpec.model_validate(
        {"python": {"function": "objs_stubborn:f", "path": [str(tmp_path)]}}
    )
    executor = RayExecutor(spec, parallel=2, log_dir=tmp_path / "logs")
    try:
        assert executor.free_slots() == 2
        executor.submit(TrialRequest(0, {"mode": "stubborn"}, 1, tmp_path / "t0", timeout=0.5))
        executor.submit(TrialRequest(1, {"mode": "ok"}, 2, tmp_path / "t1"))
        assert executor.free_slots() == 0
        results = []
        deadline = time.monotonic() + 600
        while len(results) < 2 and time.monotonic() < deadline:
            results += executor.poll(1.0)
        by_number = {r.number: r for r in results}
        assert (by_number[1].state, by_number[1].metrics) == (COMPLETE, {"value": 1.0})
        assert_failed(
            {"state": by_number[0].state, "error": f"{by_number[0].reason}: {by_number[0].error}"},
            "timeout",
            "still running after 0.5s",
            "Ray worker was killed",
        )
        assert 0.5 <= by_number[0].duration_s < 10
        assert survivors(wait_for_pids(tmp_path / "t0" / "pids"), timeout=10) == []
        assert executor.free_slots() == 2

        executor.submit(TrialRequest(2, {"mode": "stubborn"}, 3, tmp_path / "t2"))
        in_flight = wait_for_pids(tmp_path / "t2" / "pids")
    finally:
        executor.shutdown()
    assert executor.free_slots() == 2
    assert survivors(in_flight, timeout=10) == []
    assert ray.is_initialized()  # the fixture's Ray instance is not this executor's to stop


# Which GPU a trial was given, as the trial itself sees it; and its worker process.
WHERE = """
import os

def f(config, ctx):
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return {"value": 0.0, "pid": os.getpid(), "visible": float(visible) if visible else -1.0}
"""


def run_trials(executor: RayExecutor, n: int, root: Path) -> list[TrialResult]:
    results: list[TrialResult] = []
    pending = list(range(n))
    deadline = time.monotonic() + 600
    while len(results) < n and time.monotonic() < deadline:
        while pending and executor.free_slots():
            number = pending.pop(0)
            executor.submit(TrialRequest(number, {}, number, root / str(number), timeout=600))
        results += executor.poll(1.0)
    assert len(results) == n, results
    return sorted(results, key=lambda r: r.number)


@pytest.mark.slow
def test_ray_gpu_trials_get_their_own_gpu(ray_address: str, tmp_path: Path) -> None:
    """A GPU trial sees only its GPU (device ``cuda:<id>``) and runs in a fresh worker; a CPU
    trial sees none, as the local executor's CPU workers."""
    (tmp_path / "objs_where.py").write_text(WHERE)
    spec = ObjectiveSpec.model_validate(
        {"python": {"function": "objs_where:f", "path": [str(tmp_path)]}}
    )
    executor = RayExecutor(spec, parallel=2, gpus_per_trial=1)
    try:
        gpu = run_trials(executor, 4, tmp_path / "gpu")
    finally:
        executor.shutdown()
    assert all(r.state == COMPLETE for r in gpu), gpu
    assert {r.device for r in gpu} <= {"cuda:0", "cuda:1"}
    assert all(r.device == f"cuda:{r.metrics['visible']:.0f}" for r in gpu)
    assert len({r.metrics["pid"] for r in gpu}) == 4  # no worker reused after a GPU trial

    executor = RayExecutor(spec, parallel=2, cpus_per_trial=0.5)
    try:
        cpu = run_trials(executor, 3, tmp_path / "cpu")
    finally:
        executor.shutdown()
    assert [(r.state, r.device, r.metrics["visible"]) for r in cpu] == [(COMPLETE, "cpu", -1)] * 3


@pytest.mark.slow
def test_ray_gpus_the_local_instance_lacks_are_an_input_error(tmp_path: Path) -> None:
    """Trials asking for GPUs that the local Ray instance lacks fail the run at once (exit 2),
    rather than waiting for a GPU that never comes."""
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine may have a GPU")
    (tmp_path / "exp.yaml").write_text(
        "objective: {synthetic: branin}\nbudget: {trials: 2, gpus_per_trial: 1}\n"
    )
    proc = run_cli(
        *("run", str(tmp_path / "exp.yaml"), "--executor", "ray", "--out", str(tmp_path / "runs"))
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: budget.gpus_per_trial: 1 GPU(s) per trial, but Ray found 0 on this machine"
    )


def test_budget_cpus_and_gpus_per_trial() -> None:
    assert (Budget().cpus_per_trial, Budget().gpus_per_trial) == (1.0, 0.0)
    assert Budget(cpus_per_trial=0.5, gpus_per_trial=0.25).gpus_per_trial == 0.25
    assert Budget(cpus_per_trial=4, gpus_per_trial=2).cpus_per_trial == 4
    bad_values = [
        {"cpus_per_trial": 0},
        {"cpus_per_trial": 2.5},  # Ray shares in fractions of one only
        {"gpus_per_trial": -1},
        {"gpus_per_trial": 1.5},
        {"gpus_per_trial": float("inf")},
    ]
    for bad in bad_values:
        with pytest.raises(ValueError):
            Budget(**bad)


@pytest.mark.parametrize(
    ("executor", "address", "error"),
    [
        ("local", "127.0.0.1:1", "--ray-address: only used with --executor ray (got 'local')"),
        (
            "ray",
            "127.0.0.1:1",
            "--ray-address: nothing answers at 127.0.0.1:1 (is `ray start --head` running ",
        ),
        (
            "ray",
            "127.0.0.1:notaport",
            "--ray-address: expected HOST:PORT, ray://HOST:PORT or auto (got '127.0.0.1:notaport')",
        ),
    ],
)
def test_bad_ray_address_is_an_input_error(
    executor: str, address: str, error: str, tmp_path: Path
) -> None:
    """One line, exit 2, and no run folder: nothing is started for a flag that cannot work."""
    proc = run_cli(
        *("run", str(REPO / "searchspaces" / "branin.yaml"), "--executor", executor),
        *("--ray-address", address, "--out", str(tmp_path)),
    )
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {error}")
    assert not any(tmp_path.iterdir())


def test_a_ray_runtime_env_path_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(
        "objective: {synthetic: branin}\nray: {runtime_env: {working_dir: no-such-folder}}\n"
    )
    proc = run_cli("run", str(tmp_path / "exp.yaml"), "--executor", "ray", "--out", str(tmp_path))
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line == (
        f"error: ray.runtime_env.working_dir: {tmp_path / 'no-such-folder'} does not exist"
    )


# Early stopping over Ray.


def run_on_ray(cli: Callable[..., Any], path: Path, out: Path, address: str) -> tuple[Path, Any]:
    result = cli(
        "run", path, "--algo", "random", "--executor", "ray", "--ray-address", address,
        "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_dir = next(out.iterdir())
    assert list((run_dir / "logs").glob("ray-worker-*.log"))  # the trials ran in Ray workers
    return run_dir, result


@pytest.mark.slow
def test_python_reports_and_stops_on_ray(
    ray_address: str,
    tmp_path: Path,
    cli: Callable[..., Any],
) -> None:
    """As with the inline and local executors: under ASHA the bad trials end PRUNED at a rung
    (step 1 or 3) with every step's value in the study, the others run all 9 steps."""
    (tmp_path / "rep.py").write_text(REPORTING)
    objective = "{python: {function: 'rep:objective', path: ['" + str(tmp_path) + "']}}"
    path = experiment(tmp_path, objective, ASHA)
    run_dir, result = run_on_ray(cli, path, tmp_path / "r", ray_address)
    table = check_pruned_everywhere(run_dir, 12)
    first_pruned = next(r for r in table if r["state"] == "PRUNED")
    assert f"trial {first_pruned['number']} PRUNED value=" in result.stderr
    for r in table:  # raised TrialPruned: its last report's metrics; returned: what it returned
        raised = r["state"] == "PRUNED" and float(r["x"]) > 0.5
        assert (float(r["aux"]) == float(r["steps"])) if raised else r["aux"] == ""


# Trial N's loss is N + 1/step: every trial is worse than all those before it. Under the median
# rule with one start-up trial, the first trial to end completes, and trials 2, 3, … (started
# only once one has ended) are worse than every finished one at step 1: stopped there. They wait
# for that stop after step 1; a trial that is never stopped would run on to its end.


@pytest.mark.slow
def test_a_command_stopped_on_ray_gets_sigterm(
    ray_address: str,
    tmp_path: Path,
    cli: Callable[..., Any],
) -> None:
    (tmp_path / "stoppable.py").write_text(STOPPABLE)
    objective = "{command: {argv: [python, stoppable.py], cwd: '" + str(tmp_path) + "'}}"
    path = experiment(tmp_path, objective, MEDIAN, trials=5)
    run_dir, _ = run_on_ray(cli, path, tmp_path / "r", ray_address)
    check_stoppable(run_dir)


@pytest.mark.slow
def test_a_report_of_an_attempt_no_longer_followed_is_not_heard(
    ray_address: str,
) -> None:
    """Trial 0's first attempt (lost, say) and its retry report at once: only the retry's
    report is heard, each gets its own verdict, and the stale attempt is told to stop."""
    relay = ReportRelay(ray.get_runtime_context().get_node_id())
    heard: list[Report] = []

    def listener(report: Report) -> bool:
        heard.append(report)
        return False

    board = relay.board()
    try:
        stale = board.report.remote(relay.attempt(), Report(0, 1, {"value": 1.0}))
        retry = relay.attempt()
        live = board.report.remote(retry, Report(0, 1, {"value": 2.0}))
        deadline = time.monotonic() + 120  # a safety net: it takes milliseconds
        while len(ray.wait([stale, live], num_returns=2, timeout=0)[0]) < 2:
            assert time.monotonic() < deadline, "the board never answered"
            ray.wait(relay.waitables(), timeout=1.0)
            relay.relay({retry}, listener)
        assert (ray.get(stale), ray.get(live)) == (True, False)
        assert heard == [Report(0, 1, {"value": 2.0})]
    finally:
        relay.close()
