"""Processes never outlive their run: a driver killed with SIGKILL takes its workers and what
their trials started along, and a resumed run never shares a trial's folder with a process of
the run it resumes."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from hypersearch import engine, resume
from hypersearch.errors import TrialFailure
from hypersearch.executors.base import TrialRequest
from hypersearch.experiment import ObjectiveSpec
from hypersearch.processes import TRIAL_LOCK, descendants, holding_trial_dir, trial_dir_free
from tests.conftest import REPO, boot_clock, kill_ours, pids_in, survivors

# Each trial writes its worker's PID and its `sleep` child's, then waits far past any test.
HANGING = """
import os, subprocess, time

def f(config, ctx):
    ctx.trial_dir.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(["sleep", "600"])
    for name, pid in (("worker", os.getpid()), ("child", child.pid)):
        (ctx.trial_dir / (name + ".tmp")).write_text(str(pid))
        os.replace(ctx.trial_dir / (name + ".tmp"), ctx.trial_dir / (name + ".pid"))
    time.sleep(600)
    return config["x"]
"""


def _experiment(root: Path, body: str, trials: int = 4, parallel: int = 2) -> Path:
    (root / "hanging.py").write_text(textwrap.dedent(body))
    path = root / "exp.yaml"
    path.write_text(
        textwrap.dedent(f"""
            name: orphans
            objective: {{python: {{function: "hanging:f", path: [{str(root)!r}]}}}}
            params: {{x: {{type: float, low: -1, high: 1}}}}
            budget: {{trials: {trials}, parallel: {parallel}}}
        """)
    )
    return path


def _wait_for_files(folder: Path, pattern: str, count: int, driver: subprocess.Popen) -> list[Path]:
    deadline = time.monotonic() + 300
    while len(found := sorted(folder.rglob(pattern))) < count:
        assert driver.poll() is None, "the driver ended early"
        assert time.monotonic() < deadline, f"only {found} after 300 s"
        time.sleep(0.05)
    return found


def _start(path: Path, out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hypersearch.cli",
            "run",
            str(path),
            "--algo",
            "random",
            "--out",
            str(out),
            "--json",
            *args,
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_sigkill_of_the_driver_takes_its_workers_and_their_children(tmp_path: Path) -> None:
    driver = _start(_experiment(tmp_path, HANGING), tmp_path / "runs")
    try:
        pids = pids_in(_wait_for_files(tmp_path, "*.pid", 4, driver))
        workers = dict.fromkeys(descendants(driver.pid), boot_clock())
        assert set(pids) <= set(workers), "the trials run below the driver"
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        # A bound for a busy machine; without this fix they would run for 600 s.
        assert survivors(workers, timeout=30) == []
    finally:
        kill_ours(pids_in(tmp_path.rglob("*.pid")))


def _worker(driver_pid: int) -> tuple[socket.socket, subprocess.Popen]:
    """A worker process as the local executor starts one (its own group), and our end of its
    socket; ``driver_pid`` is who it takes for its driver."""
    ours, theirs = socket.socketpair()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hypersearch.executors.worker",
            str(theirs.fileno()),
            "cpu",
            str(driver_pid),
        ],
        pass_fds=[theirs.fileno()],
        process_group=0,
    )
    theirs.close()
    return ours, worker


def test_a_worker_whose_driver_is_gone_exits_at_once() -> None:
    """The race the parent-death signal cannot cover: the driver died before the worker asked
    for the signal. The worker sees that its parent is not its driver (a process that has
    ended) and kills itself."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    ours, worker = _worker(gone.pid)
    try:
        assert worker.wait(timeout=300) == -signal.SIGKILL
    finally:
        ours.close()


def test_a_worker_in_a_trial_dies_when_its_driver_closes_the_socket(tmp_path: Path) -> None:
    """A worker busy in a trial (and the `sleep` its trial started) is killed when the socket to
    its driver closes, as the kernel closes it when the driver dies: the watching thread, not
    the parent-death signal (its parent, this test, lives on)."""
    (tmp_path / "hanging.py").write_text(textwrap.dedent(HANGING))
    spec = ObjectiveSpec.model_validate(
        {"python": {"function": "hanging:f", "path": [str(tmp_path)]}}
    )
    ours, worker = _worker(os.getpid())
    conn = Connection(ours.detach())
    try:
        conn.send(spec.model_dump(mode="json"))
        (tmp_path / "trials").mkdir()
        conn.send(TrialRequest(0, {"x": 0.1}, 1, tmp_path / "trials" / "0"))
        assert conn.recv() == "started"
        child = tmp_path / "trials" / "0" / "child.pid"
        deadline = time.monotonic() + 300
        while not child.exists():
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.05)
        sleep_pid = pids_in([child])
    finally:
        conn.close()
    assert worker.wait(timeout=300) == -signal.SIGKILL
    assert survivors(sleep_pid, timeout=30) == []


def test_a_held_trial_folder_is_not_shared(tmp_path: Path) -> None:
    folder = tmp_path / "trials" / "3"
    (tmp_path / "trials").mkdir()
    with holding_trial_dir(folder):
        assert (folder / TRIAL_LOCK).exists()
        assert not trial_dir_free(folder, 0.0)
        in_use = pytest.raises(TrialFailure, match="in use by another process")
        with in_use as failure, holding_trial_dir(folder):
            pass
        assert failure.value.reason == "worker_lost"
    assert trial_dir_free(folder, 0.0)
    assert trial_dir_free(tmp_path / "trials" / "never-ran", 0.0)
    elsewhere = tmp_path / "not-a-run" / "trials" / "0"  # e.g. a Ray node without the folder
    with holding_trial_dir(elsewhere):
        assert not elsewhere.exists()  # unguarded, and nothing made on that machine


STRAY = """
import fcntl, os, sys, time
handle = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(handle, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""

QUICK = """
import os

def f(config, ctx):
    ctx.trial_dir.mkdir(parents=True, exist_ok=True)
    (ctx.trial_dir / f"ran-{os.getpid()}").write_text("x")
    return config["x"] ** 2
"""


@pytest.mark.slow
def test_resume_never_shares_a_trial_folder_with_a_stray_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed with trials running; one of them is still held by a stray process (a node
    the driver's death did not reach). The resume gives that trial a new number instead of
    running it again in the same folder; the others run again in place."""
    out = tmp_path / "runs"
    driver = _start(_experiment(tmp_path, HANGING), out)
    try:
        _wait_for_files(tmp_path, "*.pid", 4, driver)
        workers = dict.fromkeys(descendants(driver.pid), boot_clock())
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        assert survivors(workers, timeout=30) == []  # they let go of their folders
    finally:
        kill_ours(pids_in(tmp_path.rglob("*.pid")))
    [run_dir] = list(out.iterdir())
    cut_off = sorted(int(p.parent.name) for p in run_dir.glob("trials/*/worker.pid"))
    assert len(cut_off) == 2
    held = cut_off[0]
    (tmp_path / "hanging.py").write_text(textwrap.dedent(QUICK))
    stray = subprocess.Popen(
        [sys.executable, "-c", STRAY, str(run_dir / "trials" / str(held) / TRIAL_LOCK)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert stray.stdout is not None and stray.stdout.readline() == "held\n"
        # The stray outlives any wait: a short one keeps the test quick.
        monkeypatch.setattr(resume, "ORPHAN_WAIT_S", 0.5)
        result = engine.run(resume=run_dir, executor="local")
    finally:
        stray.kill()
        stray.wait()
    trials = {t["number"]: t for t in _trials(run_dir)}
    lost = trials[held]
    assert lost["state"] == "FAIL" and lost["error"].startswith("worker_lost: still running")
    retry = lost["info"]["retried_as"]
    assert trials[retry]["info"]["retry_of"] == held and trials[retry]["state"] == "COMPLETE"
    assert trials[retry]["params"] == lost["params"]
    assert not list((run_dir / "trials" / str(held)).glob("ran-*")), "the folder was shared"
    assert list((run_dir / "trials" / str(retry)).glob("ran-*"))
    other = cut_off[1]  # free: run again in place, under its own number
    assert trials[other]["state"] == "COMPLETE"
    assert list((run_dir / "trials" / str(other)).glob("ran-*"))
    assert result.summary["complete"] == 4 and result.summary["trials"] == 5


def _trials(run_dir: Path) -> list[dict]:
    import optuna

    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'study.db'}")
    rows = []
    for t in study.trials:
        info = t.user_attrs.get("hypersearch", {})
        error = f"{info.get('reason')}: {info.get('error')}" if t.state.name == "FAIL" else None
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "params": t.params,
                "info": info,
                "error": error,
            }
        )
    return rows


def test_the_lock_outlives_nothing(tmp_path: Path) -> None:
    """A folder held by a process that died is free at once (the kernel drops the lock)."""
    folder = tmp_path / "t"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", STRAY, str(folder / TRIAL_LOCK)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    assert not trial_dir_free(folder, 0.0)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert trial_dir_free(folder, 0.0)
    handle = os.open(folder / TRIAL_LOCK, os.O_RDONLY)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(handle)
