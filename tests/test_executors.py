"""Executors under failure: whatever an objective does, its trial ends COMPLETE or FAIL.

Objectives that raise, return NaN or inf, print garbage, exit non-zero, hang past the trial
timeout (also through a grandchild that keeps stdout open) or kill their own worker each become a
FAIL trial whose ``error`` column in trials.csv reads ``reason: message``, and the run still
reaches its full budget. After a timeout no process the trial started survives.

The objectives pick their behaviour from the trial number (``MODES[number % len(MODES)]``), so
every mode occurs in every run and every row of trials.csv is checked against its mode. Runs are
real ``hypersearch run`` processes; the local executor's workers are real processes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hypersearch.executors.base import COMPLETE, FAIL, TrialRequest, execute
from hypersearch.executors.local import LocalExecutor
from hypersearch.experiment import ObjectiveSpec
from hypersearch.objectives import build_objective
from hypersearch.objectives.base import trial_seed
from tests.conftest import boot_clock, kill_ours, pids_in, run_cli, survivors

SEED = 0

# -- processes -------------------------------------------------------------------------------------


def pid_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.pid"))


def read_pids(root: Path) -> dict[int, float]:
    """PID -> when it was written, for every pid file a trial wrote under ``root``."""
    return pids_in(pid_files(root))


def kill_strays(root: Path) -> None:
    """Clean up after a test: SIGKILL every process whose PID a trial wrote under ``root`` (if
    that PID has not gone to another process since)."""
    kill_ours(read_pids(root))


def wait_for(path: Path, timeout: float = 600.0) -> Path:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path


# -- runs ------------------------------------------------------------------------------------------


class Run:
    """The outcome of one ``hypersearch run --json``: summary and trials.csv rows."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        self.summary: dict[str, Any] = json.loads(proc.stdout)
        self.run_dir = Path(self.summary["run_dir"])
        with (self.run_dir / "trials.csv").open(newline="") as handle:
            self.rows = list(csv.DictReader(handle))


def run_experiment(root: Path, text: str, *args: str, env: dict[str, str] | None = None) -> Run:
    """Write ``root/exp.yaml`` and run it with random search, output under ``root/runs``."""
    (root / "exp.yaml").write_text(textwrap.dedent(text))
    out = str(root / "runs")
    args = ("run", str(root / "exp.yaml"), "--algo", "random", "--out", out, "--json", *args)
    proc = run_cli(*args, cwd=root, env=env)
    return Run(proc)


def assert_budget(run: Run, trials: int, complete: int, retries: int = 0) -> None:
    """The run finished its whole budget: rows, summary counts, nothing left RUNNING. A trial
    whose worker was lost is retried once under a new number; the retry takes its budget place,
    so the run has ``retries`` more rows than its budget."""
    rows = trials + retries
    assert sorted(int(r["number"]) for r in run.rows) == list(range(rows))
    assert run.summary["trials"] == rows and run.summary["budget"] == trials
    assert run.summary["complete"] == complete
    assert run.summary["failed"] == rows - complete
    assert [r["state"] for r in run.rows].count("COMPLETE") == complete
    assert [r["state"] for r in run.rows].count("FAIL") == rows - complete


def check_rows(run: Run, modes: list[str], check: Callable[..., None]) -> None:
    for row in run.rows:
        check(run, row, modes[int(row["number"]) % len(modes)])


def assert_failed(row: dict[str, str], reason: str, *fragments: str) -> None:
    """A FAIL row whose error reads ``reason: message`` with each fragment in the message."""
    assert row["state"] == "FAIL", row
    assert row["error"].startswith(f"{reason}: "), row
    for fragment in fragments:
        assert fragment in row["error"], (fragment, row)


# -- the objectives --------------------------------------------------------------------------------

# f(config, ctx). "hang" and "suicide" first start a grandchild `sleep` that inherits stdout and
# the process group, and write its PID (and their own) under the trial's folder.
PY_OBJECTIVE = """
import json, math, os, signal, subprocess, sys, time

MODES = {modes!r}


def _pid(ctx, name, pid):
    ctx.trial_dir.mkdir(parents=True, exist_ok=True)
    tmp = ctx.trial_dir / (name + ".tmp")
    tmp.write_text(str(pid))
    os.replace(tmp, ctx.trial_dir / name)


def _grandchild(ctx, quiet=False):
    _pid(ctx, "worker.pid", os.getpid())
    if quiet:  # holds none of the driver's pipes, and would outlive any test
        devnull = subprocess.DEVNULL
        child = subprocess.Popen(["sleep", "600"], stdout=devnull, stderr=devnull)
    else:
        child = subprocess.Popen(["sleep", "60"])
    _pid(ctx, "grandchild.pid", child.pid)


def f(config, ctx):
    mode = MODES[ctx.number % len(MODES)]
    if mode == "raise":
        raise ValueError(f"boom {{ctx.number}}")
    if mode == "nan":
        return float("nan")
    if mode == "inf":
        return {{"value": -math.inf, "other": 1.0}}
    if mode == "hang":
        _grandchild(ctx)
        time.sleep(60)
    if mode == "orphan":
        _grandchild(ctx, quiet=True)
        time.sleep(60)
    if mode == "sleep":
        time.sleep(60)
    if mode == "suicide":
        _grandchild(ctx)
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "exit":
        sys.exit(3)
    (ctx.trial_dir / "ctx.json").write_text(json.dumps({{
        "number": ctx.number, "seed": ctx.seed, "trial_dir": str(ctx.trial_dir),
        "device": ctx.device, "pid": os.getpid(),
    }}))
    return {{"value": config["x"], "ctx_number": ctx.number, "ctx_seed": ctx.seed}}
"""

# `python cmd.py {trial} {trial_dir}`: a script whose behaviour follows the trial number.
CMD_OBJECTIVE = """
import json, os, subprocess, sys, time

MODES = {modes!r}
number, trial_dir = int(sys.argv[1]), sys.argv[2]
mode = MODES[number % len(MODES)]


def write_pid(name, pid):
    with open(os.path.join(trial_dir, name + ".tmp"), "w") as handle:
        handle.write(str(pid))
    os.replace(os.path.join(trial_dir, name + ".tmp"), os.path.join(trial_dir, name))


print("some chatter before the metrics")
if mode == "ok":
    print(json.dumps({{"value": number / 10, "extra": 42}}))
elif mode == "number":
    print("0.25")
elif mode == "exit3":
    sys.stderr.write("early-stderr-" + "x" * 3000 + "\\n")  # beyond the tail kept in the error
    sys.stderr.write(f"boom-stderr-{{number}}\\n")
    sys.exit(3)
elif mode == "nan":
    print("nan")
elif mode == "inf":
    print('{{"value": Infinity}}')
elif mode == "garbage":
    print("garbage here")
elif mode == "missing":
    print('{{"other": 1}}')
elif mode == "hang":
    write_pid("command.pid", os.getpid())
    time.sleep(60)
elif mode == "grandchild":
    # Like `sh -c "sleep 60 & echo 1"`: the command exits at once, but its child keeps stdout.
    write_pid("grandchild.pid", subprocess.Popen(["sleep", "60"]).pid)
    print("1", flush=True)
"""


def python_experiment(root: Path, modes: list[str], trials: int, timeout: float) -> str:
    (root / "objs.py").write_text(PY_OBJECTIVE.format(modes=modes))
    return f"""
        name: py-failures
        seed: {SEED}
        objective:
          python: {{function: "objs:f", path: ["."]}}
        params:
          x: {{type: float, low: 0.0, high: 1.0}}
        budget: {{trials: {trials}, parallel: 2, trial_timeout: {timeout}}}
    """


def command_experiment(root: Path, modes: list[str], trials: int, timeout: float) -> str:
    (root / "cmd.py").write_text(CMD_OBJECTIVE.format(modes=modes))
    return f"""
        name: cmd-failures
        seed: {SEED}
        objective:
          command: {{argv: [python, cmd.py, "{{trial}}", "{{trial_dir}}"], cwd: "."}}
        params:
          x: {{type: float, low: 0.0, high: 1.0}}
        budget: {{trials: {trials}, parallel: 2, trial_timeout: {timeout}}}
    """


def check_python_row(run: Run, row: dict[str, str], mode: str) -> None:
    number = int(row["number"])
    if mode == "ok":
        assert (row["state"], row["error"]) == ("COMPLETE", ""), row
        assert float(row["value"]) == float(row["x"])
        assert int(float(row["ctx_number"])) == number
        assert int(float(row["ctx_seed"])) == trial_seed(SEED, number)
        trial_dir = run.run_dir / "trials" / str(number)
        ctx = json.loads((trial_dir / "ctx.json").read_text())
        assert (ctx["number"], ctx["seed"], ctx["trial_dir"]) == (
            number,
            trial_seed(SEED, number),
            str(trial_dir),
        )
    elif mode == "raise":
        assert_failed(row, "exception", f"ValueError: boom {number}")
    elif mode == "nan":
        assert_failed(row, "non_finite", "value=nan")
    elif mode == "inf":
        assert_failed(row, "non_finite", "value=-inf")
    elif mode in ("hang", "orphan", "sleep"):
        assert_failed(row, "timeout", "still running after 1")
    elif mode == "suicide":
        assert_failed(row, "worker_lost", "SIGKILL")
    else:  # pragma: no cover
        raise AssertionError(mode)


def check_command_row(run: Run, row: dict[str, str], mode: str) -> None:
    number = int(row["number"])
    if mode == "ok":
        assert (row["state"], row["error"]) == ("COMPLETE", ""), row
        assert float(row["value"]) == pytest.approx(number / 10)
        assert float(row["extra"]) == 42
    elif mode == "number":
        assert (row["state"], row["error"]) == ("COMPLETE", ""), row
        assert float(row["value"]) == 0.25
    elif mode == "exit3":
        assert_failed(row, "exception", "status 3", "stderr", f"boom-stderr-{number}")
        assert "early-stderr" not in row["error"]  # only the tail of a long stderr
    elif mode == "nan":
        assert_failed(row, "non_finite", "value=nan")
    elif mode == "inf":
        assert_failed(row, "non_finite", "value=inf")
    elif mode == "garbage":
        assert_failed(row, "exception", "not a JSON object or a number", "garbage here")
    elif mode == "missing":
        assert_failed(row, "exception", "missing objective metric", "value", "other")
    elif mode in ("hang", "grandchild"):
        assert_failed(row, "timeout", "still running after 1")
    else:  # pragma: no cover
        raise AssertionError(mode)


# -- local executor (the default): real worker processes -------------------------------------------

LOCAL_PY_MODES = ["raise", "hang", "suicide", "nan", "inf", "ok", "ok"]
# "hang" and "grandchild" come last and next to each other, so their timeouts overlap.
LOCAL_CMD_MODES = [
    "ok",
    "number",
    "exit3",
    "nan",
    "inf",
    "garbage",
    "missing",
    "hang",
    "grandchild",
]


@pytest.fixture(scope="module")
def local_python_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("local-python")
    try:
        yield run_experiment(root, python_experiment(root, LOCAL_PY_MODES, 7, 1.5))
    finally:
        kill_strays(root)


@pytest.fixture(scope="module")
def local_command_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("local-command")
    try:
        yield run_experiment(root, command_experiment(root, LOCAL_CMD_MODES, 9, 1.5))
    finally:
        kill_strays(root)


@pytest.mark.slow
def test_local_python_failures_become_fail_trials(local_python_run: Run) -> None:
    run = local_python_run
    # one trial kills its worker: it is retried once, as trial 7 (whose mode is number 7's)
    assert_budget(run, trials=7, complete=2, retries=1)
    check_rows(run, LOCAL_PY_MODES, check_python_row)
    # the last trials ran on replacement workers, not on the ones that hung or died
    lost = set(read_pids(run.run_dir))
    ran = {json.loads(p.read_text())["pid"] for p in run.run_dir.glob("trials/*/ctx.json")}
    assert len(ran) >= 1
    assert not ran & lost


@pytest.mark.slow
def test_local_python_timeout_and_worker_loss_leave_no_process(local_python_run: Run) -> None:
    """The timed-out worker, the one that killed itself, and their `sleep` children are gone."""
    run_dir = local_python_run.run_dir
    names = [p.relative_to(run_dir).as_posix() for p in pid_files(run_dir)]
    assert names == [
        "trials/1/grandchild.pid",
        "trials/1/worker.pid",
        "trials/2/grandchild.pid",
        "trials/2/worker.pid",
    ]
    assert survivors(read_pids(local_python_run.run_dir)) == []


@pytest.mark.slow
def test_local_command_failures_become_fail_trials(local_command_run: Run) -> None:
    assert_budget(local_command_run, trials=9, complete=2)
    check_rows(local_command_run, LOCAL_CMD_MODES, check_command_row)


@pytest.mark.slow
def test_local_command_timeout_kills_command_and_grandchild(local_command_run: Run) -> None:
    names = [p.name for p in pid_files(local_command_run.run_dir)]
    assert names == ["command.pid", "grandchild.pid"]
    assert survivors(read_pids(local_command_run.run_dir)) == []


@pytest.mark.slow
def test_local_executor_slots_results_and_shutdown(tmp_path: Path) -> None:
    """LocalExecutor driven directly: slots fill and free; shutdown with a trial in flight kills
    its worker and that worker's children, and stops the idle worker."""
    (tmp_path / "objs_shutdown.py").write_text(PY_OBJECTIVE.format(modes=["ok", "hang"]))
    spec = ObjectiveSpec.model_validate(
        {"python": {"function": "objs_shutdown:f", "path": [str(tmp_path)]}}
    )
    executor = LocalExecutor(spec, parallel=2)
    try:
        assert executor.free_slots() == 2
        executor.submit(TrialRequest(0, {"x": 0.5}, 7, tmp_path / "t0"))
        executor.submit(TrialRequest(1, {"x": 0.5}, 7, tmp_path / "t1"))
        assert executor.free_slots() == 0
        results = []
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:
            results += executor.poll(1.0)
        assert [(r.number, r.state, r.metrics["value"]) for r in results] == [(0, COMPLETE, 0.5)]
        assert executor.free_slots() == 1
        wait_for(tmp_path / "t1" / "grandchild.pid")
        idle = json.loads((tmp_path / "t0" / "ctx.json").read_text())["pid"]
        pids = {**read_pids(tmp_path), idle: boot_clock()}
        assert len(pids) == 3  # busy worker, its sleep, idle worker
        executor.shutdown()
        assert survivors(pids) == []
    finally:
        executor.shutdown()  # again, if the test failed before; a no-op otherwise
        kill_strays(tmp_path)


NICE_OBJECTIVE = """\
import os


def f(config):
    return {"value": config["x"], "nice": float(os.nice(0))}
"""


def test_local_workers_run_nicer_than_the_driver(tmp_path: Path) -> None:
    """Workers yield the CPU to the driver (WORKER_NICE), so a busy machine does not delay
    recording results and dispatching the next trial."""
    from hypersearch.executors.local import WORKER_NICE

    (tmp_path / "objs_nice.py").write_text(NICE_OBJECTIVE)
    spec = ObjectiveSpec.model_validate(
        {"python": {"function": "objs_nice:f", "path": [str(tmp_path)]}}
    )
    executor = LocalExecutor(spec, parallel=1)
    try:
        executor.submit(TrialRequest(0, {"x": 0.5}, 7, tmp_path / "t0"))
        results = []
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:
            results += executor.poll(1.0)
    finally:
        executor.shutdown()
    assert results[0].metrics["nice"] == min(os.nice(0) + WORKER_NICE, 19)


# -- inline executor: trials run in the driver, one at a time -----------------------------------

# "orphan": a grandchild started by a python objective running in the driver, which holds none
# of the driver's pipes, so nothing but the executor's clean-up after the timeout ends it.
INLINE_PY_MODES = ["raise", "nan", "inf", "orphan", "ok"]
INLINE_CMD_MODES = ["ok", "exit3", "nan", "hang", "grandchild", "garbage"]


@pytest.fixture(scope="module")
def inline_command_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("inline-command")
    try:
        yield run_experiment(
            root, command_experiment(root, INLINE_CMD_MODES, 6, 1), "--executor", "inline"
        )
    finally:
        kill_strays(root)


@pytest.fixture(scope="module")
def inline_python_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("inline-python")
    try:
        yield run_experiment(
            root, python_experiment(root, INLINE_PY_MODES, 5, 1), "--executor", "inline"
        )
    finally:
        kill_strays(root)


@pytest.mark.slow
def test_inline_python_failures_become_fail_trials(inline_python_run: Run) -> None:
    assert_budget(inline_python_run, trials=5, complete=1)
    check_rows(inline_python_run, INLINE_PY_MODES, check_python_row)


@pytest.mark.slow
def test_inline_python_timeout_kills_what_the_trial_started(inline_python_run: Run) -> None:
    """The python objective runs in the driver: after its timeout, the `sleep` it started is
    killed too (the driver lives on, so its group cannot be killed as a worker's is)."""
    names = [p.name for p in pid_files(inline_python_run.run_dir)]
    assert names == ["grandchild.pid", "worker.pid"]
    assert survivors(pids_in([inline_python_run.run_dir / "trials/3/grandchild.pid"])) == []


@pytest.mark.slow
def test_inline_command_failures_become_fail_trials(inline_command_run: Run) -> None:
    assert_budget(inline_command_run, trials=6, complete=1)
    check_rows(inline_command_run, INLINE_CMD_MODES, check_command_row)


@pytest.mark.slow
def test_inline_command_timeout_kills_command_and_grandchild(inline_command_run: Run) -> None:
    names = [p.name for p in pid_files(inline_command_run.run_dir)]
    assert names == ["command.pid", "grandchild.pid"]
    assert survivors(read_pids(inline_command_run.run_dir)) == []


def test_objective_calling_sys_exit_fails_only_its_trial(tmp_path: Path) -> None:
    """What the inline executor does with each trial: ``execute`` it in the driver process."""
    (tmp_path / "objs_exit.py").write_text(PY_OBJECTIVE.format(modes=["exit"]))
    spec = ObjectiveSpec.model_validate(
        {"python": {"function": "objs_exit:f", "path": [str(tmp_path)]}}
    )
    try:
        result = execute(build_objective(spec), TrialRequest(0, {"x": 0.5}, 7, tmp_path), "cpu")
    finally:
        sys.modules.pop("objs_exit", None)
        with contextlib.suppress(ValueError):
            sys.path.remove(str(tmp_path))
    assert (result.state, result.reason) == (FAIL, "exception")
    assert "SystemExit" in (result.error or "")


# -- the timeout clock -----------------------------------------------------------------------------

# sitecustomize.py for new interpreters: importing hypersearch.experiment (which a worker does to
# build its objective, before it takes its first trial) takes 1.5 s longer, as importing torch may.
SLOW_WORKER_START = """
import time

class _Slow:
    def find_spec(self, name, path=None, target=None):
        if name == "hypersearch.experiment":
            time.sleep(1.5)
        return None

import sys
sys.meta_path.insert(0, _Slow())
"""


@pytest.mark.slow
def test_local_trial_timeout_does_not_count_worker_startup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial that returns at once is not 'still running after 0.1s' because its worker took
    1.5 s to start."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_WORKER_START)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    )
    (tmp_path / "objs_quick.py").write_text(PY_OBJECTIVE.format(modes=["ok"]))
    spec = ObjectiveSpec.model_validate(
        {"python": {"function": "objs_quick:f", "path": [str(tmp_path)]}}
    )
    executor = LocalExecutor(spec, parallel=1)
    try:
        executor.submit(TrialRequest(0, {"x": 0.5}, 7, tmp_path / "t0", timeout=0.1))
        results = []
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:
            results += executor.poll(1.0)
    finally:
        executor.shutdown()
    assert [(r.state, r.error) for r in results] == [(COMPLETE, None)]
