"""Resume: a run killed at any point (SIGKILL, Ctrl-C, SIGTERM) continues to exactly its budget.

The driver is a real ``python -m hypersearch.cli run`` process in its own session; SIGKILL goes
to its process group and to every worker it spawned (workers lead their own process groups), as
when a machine dies. The objective is a python function that sleeps a little, records every start
(``started/<number>-<pid>``) and, for trials numbered ``hold_from`` or more, waits while the
file ``gate`` exists: so the test knows exactly which trials are finished and which are in flight
when it strikes, and nothing is left to timing luck. Odd-numbered trials that run a second time
(after a resume) take 0.5 s longer, so re-run trials come back one at a time. Every wait is a
bounded poll on something observable (trials.csv, the start markers, the process).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest

from hypersearch.processes import descendants
from tests.conftest import boot_clock, run_cli, survivors

BUDGET = 8
NEVER = 10**9
WAIT_S = 600.0  # a safety net for any one wait, not an expectation (a busy machine)

OBJECTIVE = """\
import json
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def objective(config, ctx):
    started = HERE / "started"
    started.mkdir(exist_ok=True)
    rerun = any(p.name.startswith(f"{ctx.number}-") for p in started.iterdir())
    (started / f"{ctx.number}-{os.getpid()}").touch()
    control = json.loads((HERE / "control.json").read_text())
    if ctx.number >= control["hold_from"]:
        deadline = time.monotonic() + 600  # a safety net: the test removes the gate
        while (HERE / "gate").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    time.sleep(control["sleep"])
    if rerun and ctx.number % 2:  # re-run trials finish one at a time, not in one batch
        time.sleep(0.5)
    return (config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2
"""

EXPERIMENT = """\
name: slow
seed: 0
objective: {python: {function: "slowobj:objective", path: ["."]}}
objectives: {value: minimize}
params:
  x: {type: float, low: 0.0, high: 1.0}
  y: {type: float, low: 0.0, high: 1.0}
budget: {trials: %d, parallel: 2}
algorithm: {tpe: {n_startup_trials: 3}}
"""


# -- helpers ---------------------------------------------------------------------------------------


def setup_experiment(root: Path, hold_from: int = NEVER, sleep: float = 0.1) -> Path:
    """The objective module, its control file (and the closed gate) and the experiment file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "slowobj.py").write_text(OBJECTIVE)
    control = root / ".control.json.tmp"
    control.write_text(json.dumps({"hold_from": hold_from, "sleep": sleep}))
    os.replace(control, root / "control.json")
    if hold_from < NEVER:
        (root / "gate").touch()
    path = root / "slow.yaml"
    path.write_text(EXPERIMENT % BUDGET)
    return path


def wait_for(condition: Callable[[], Any], what: str, driver: Driver | None = None) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after WAIT_S seconds, or as
    soon as ``driver`` exits (it would never come true)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        value = condition()
        if value:
            return value
        if driver is not None and driver.process.poll() is not None:
            value = condition()  # it may have come true between the check and the exit
            if value:
                return value
            raise AssertionError(f"the driver exited ({driver.process.returncode}) before {what}")
        if time.monotonic() > deadline:
            state = f"\n{driver.diagnosis()}" if driver is not None else ""
            raise AssertionError(f"timed out after {WAIT_S:.0f}s waiting for {what}{state}")
        time.sleep(0.01)


def _reset_sigint() -> None:
    # A test runner started in the background inherits SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored: give the driver the disposition a terminal user's process has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Driver:
    """``hypersearch run ARGS`` in its own session, output to files."""

    def __init__(self, root: Path, *args: str) -> None:
        self.root = root
        self.stdout_path, self.stderr_path = root / "driver.out", root / "driver.err"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hypersearch.cli", "run", *args],
                cwd=root,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=_reset_sigint,
            )

    @property
    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()

    def diagnosis(self) -> str:
        """What a failed wait needs to be understood: the trials' states, the start markers, the
        driver's processes (state and kernel wait channel), the driver's and workers' output."""
        lines = [f"starts: {starts(self.root)}"]
        for run_dir in sorted((self.root / "runs").glob("*/")):
            states = [(r["number"], r["state"], r.get("error", "")) for r in trials_csv(run_dir)]
            lines.append(f"{run_dir.name}/trials.csv: {states}")
            for log in sorted((run_dir / "logs").glob("*.log")):
                lines.append(f"{log.name}: {log.read_text(errors='replace')[-2000:]}")
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                wchan = Path(f"/proc/{pid}/wchan").read_text()
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                lines.append(f"pid {pid} {stat} {wchan}: {cmd[:120]}")
        return "\n".join([*lines, f"driver output: {self.output[-3000:]}"])

    def sigkill(self) -> None:
        """SIGKILL the driver's process group and every worker: nothing gets to clean up."""
        if self.process.poll() is not None:
            return
        workers, known = descendants(self.process.pid), boot_clock()
        for pid in [self.process.pid, *workers]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # the worker and what it started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=WAIT_S)
        wait_for(lambda: not survivors(dict.fromkeys(workers, known), 0), "the workers to go")

    def wait(self) -> int:
        try:
            return self.process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.sigkill()
            raise AssertionError(
                f"the driver did not exit in {WAIT_S:.0f}s:\n{self.output}"
            ) from None


def wait_until_held(driver: Driver, run_dir: Path, first: int) -> None:
    """Until trials ``first`` and ``first + 1`` hold at the gate with every trial below them
    finished; failing at once, with the driver's state, once that can no longer happen (the
    folder gone, a held trial finished, a later trial started)."""
    held = {first, first + 1}

    def ready() -> bool:
        started, finished = starts(driver.root).keys(), finished_numbers(trials_csv(run_dir))
        if not run_dir.is_dir() or finished & held or max(started, default=0) > first + 1:
            raise AssertionError(f"trials {sorted(held)} can no longer hold\n{driver.diagnosis()}")
        return held <= started and finished == set(range(first))

    wait_for(ready, f"trials {sorted(held)} to hold with {first} finished", driver)


@pytest.fixture
def drivers() -> Iterator[list[Driver]]:
    """Drivers a test started; any still running at the end are killed."""
    started: list[Driver] = []
    yield started
    for driver in started:
        driver.sigkill()


def run_dir_of(out: Path) -> Path | None:
    """The run folder under ``out`` once it can be resumed (its manifest run.json exists; the
    hidden folder it is built in has one a moment before it gets its name)."""
    found = [p for p in out.glob("*/run.json") if not p.parent.name.startswith(".")]
    return found[0].parent if found else None


def trials_csv(run_dir: Path) -> list[dict[str, str]]:
    try:
        with (run_dir / "trials.csv").open(newline="") as handle:
            return list(csv.DictReader(handle))
    except FileNotFoundError:
        return []


def finished_numbers(rows: list[dict[str, str]]) -> set[int]:
    return {int(r["number"]) for r in rows if r["state"] in ("COMPLETE", "FAIL")}


def starts(root: Path) -> dict[int, list[int]]:
    """Trial number -> PIDs of the workers that started it (one entry per start)."""
    found: dict[int, list[int]] = {}
    folder = root / "started"
    for marker in folder.iterdir() if folder.is_dir() else []:
        number, pid = marker.name.split("-")
        found.setdefault(int(number), []).append(int(pid))
    return found


@dataclass(frozen=True)
class Snapshot:
    """One trial as the Optuna study holds it."""

    state: str
    params: dict[str, float]
    values: tuple[float, ...] | None


def study_snapshot(run_dir: Path) -> dict[int, Snapshot]:
    """Trial number -> state, params and values, read with Optuna from the run's study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'study.db'}")
    trials = study.get_trials(deepcopy=False)
    snapshot = {
        t.number: Snapshot(t.state.name, dict(t.params), tuple(t.values) if t.values else None)
        for t in trials
    }
    assert len(snapshot) == len(trials), "a trial number occurs twice in the study"
    return snapshot


def assert_complete_run(run_dir: Path, budget: int) -> dict[int, Snapshot]:
    """Exactly ``budget`` finished trials numbered 0..budget-1, none RUNNING, in the study and in
    trials.csv alike (same states, params and values), and summary.json agrees."""
    final = study_snapshot(run_dir)
    assert sorted(final) == list(range(budget))
    assert {t.state for t in final.values()} <= {"COMPLETE", "FAIL"}, final
    rows = trials_csv(run_dir)
    numbers = [int(r["number"]) for r in rows]
    assert sorted(numbers) == list(range(budget)), numbers  # no number lost or repeated
    for row in rows:
        trial = final[int(row["number"])]
        assert row["state"] == trial.state
        assert {k: float(row[k]) for k in trial.params} == trial.params
        if trial.values is not None:
            assert (float(row["value"]),) == trial.values
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["trials"] == budget
    assert summary["complete"] + summary["failed"] == budget
    return final


def assert_unchanged(before: dict[int, Snapshot], after: dict[int, Snapshot]) -> None:
    """Every trial finished in ``before`` is in ``after`` as it was."""
    for number, trial in before.items():
        if trial.state in ("COMPLETE", "FAIL"):
            assert after[number] == trial, f"trial {number} changed: {trial} -> {after[number]}"


def resume(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli("run", "--resume", str(run_dir), *args, cwd=run_dir.parent, timeout=WAIT_S)
    assert result.returncode == 0, f"resume exited {result.returncode}:\n{result.stderr}"
    return result


# -- SIGKILL at several points, then --resume ---------------------------------------------------


@dataclass(frozen=True)
class KillCase:
    algo: str
    when: str  # "startup": once the run folder is resumable; "finished": after kill_at finished
    kill_at: int = 0
    gated: bool = False  # trials >= kill_at hold, so exactly kill_at are finished at the kill

    @property
    def id(self) -> str:
        return f"{self.algo}-{self.when}-{self.kill_at}{'-gated' if self.gated else ''}"


CASES = [
    KillCase("random", "startup"),
    KillCase("tpe", "finished", 0, gated=True),
    KillCase("random", "finished", 3, gated=True),
    KillCase("tpe", "finished", BUDGET // 2),
]


@dataclass
class Killed:
    """A run SIGKILLed at some point, then resumed to the end."""

    case: KillCase
    root: Path
    run_dir: Path
    at_kill: dict[int, Snapshot]
    csv_at_kill: list[dict[str, str]]
    starts_at_kill: dict[int, list[int]]
    resumed: subprocess.CompletedProcess[str]


def kill_and_resume(case: KillCase, root: Path) -> Killed:
    experiment = setup_experiment(root, hold_from=case.kill_at if case.gated else NEVER)
    out = root / "runs"
    driver = Driver(root, str(experiment), "--algo", case.algo, "--parallel", "2", "--out", "runs")
    try:
        run_dir = wait_for(lambda: run_dir_of(out), "a resumable run folder", driver)
        if case.gated:  # exactly kill_at trials finished, the next two hold in the workers
            wait_until_held(driver, run_dir, case.kill_at)
        elif case.when == "finished":
            wait_for(
                lambda: len(finished_numbers(trials_csv(run_dir))) >= case.kill_at,
                f"{case.kill_at} finished trials",
                driver,
            )
        driver.sigkill()
    finally:
        driver.sigkill()
    at_kill, csv_at_kill, started = study_snapshot(run_dir), trials_csv(run_dir), starts(root)
    (root / "gate").unlink(missing_ok=True)
    return Killed(case, root, run_dir, at_kill, csv_at_kill, started, resume(run_dir))


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Callable[[KillCase], Killed]:
    """Each case is killed and resumed once; several tests check the outcome."""
    cache: dict[KillCase, Killed] = {}

    def get(case: KillCase) -> Killed:
        if case not in cache:
            cache[case] = kill_and_resume(case, tmp_path_factory.mktemp(case.id))
        return cache[case]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_sigkilled_run_resumes_to_exactly_its_budget(killed: Any, case: KillCase) -> None:
    outcome = killed(case)
    final = assert_complete_run(outcome.run_dir, BUDGET)
    assert_unchanged(outcome.at_kill, final)  # nothing finished before the kill is lost
    for row in outcome.csv_at_kill:  # nor anything trials.csv showed finished at the kill
        if row["state"] in ("COMPLETE", "FAIL"):
            trial = final[int(row["number"])]
            assert trial.state == row["state"]
            assert {k: float(row[k]) for k in trial.params} == trial.params
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert summary["running"] == 0 and summary["budget"] == BUDGET
    if case.when == "finished":
        finished = {n for n, t in outcome.at_kill.items() if t.state in ("COMPLETE", "FAIL")}
        assert len(finished) >= case.kill_at
        if case.gated:
            assert finished == set(range(case.kill_at))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_trials_in_flight_at_the_kill_run_again_under_their_number(
    killed: Any, case: KillCase
) -> None:
    outcome = killed(case)
    running = {n for n, t in outcome.at_kill.items() if t.state == "RUNNING"}
    if case.gated:  # the two held trials, deterministically
        assert running == {case.kill_at, case.kill_at + 1}
    final = study_snapshot(outcome.run_dir)
    before, after = outcome.starts_at_kill, starts(outcome.root)
    for number in running:  # (the kill may have come before a worker began it)
        assert final[number].state == "COMPLETE"
        assert final[number].params == outcome.at_kill[number].params
        reruns = len(after[number]) - len(before.get(number, []))
        assert reruns == 1, f"trial {number} started {reruns} times after the resume"
        if case.gated:
            assert len(before[number]) == 1
    for number, trial in outcome.at_kill.items():  # trials finished before the kill: not re-run
        if trial.state == "COMPLETE":
            assert len(after[number]) == len(before[number]) == 1, number


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", [CASES[2], CASES[1]], ids=lambda c: c.id
)  # two trials held in flight at the kill: random after 3 finished, TPE in its start-up
def test_resume_does_not_evaluate_a_config_twice(killed: Any, case: KillCase) -> None:
    outcome = killed(case)
    final = study_snapshot(outcome.run_dir)
    seen: dict[tuple[Any, ...], int] = {}
    for number, trial in sorted(final.items()):
        config = tuple(sorted(trial.params.items()))
        assert config not in seen, f"trial {number} repeats the config of trial {seen[config]}"
        seen[config] = number


def test_run_killed_as_soon_as_its_folder_appears_can_be_resumed(
    tmp_path: Path, drivers: list[Driver]
) -> None:
    experiment = setup_experiment(tmp_path)
    out = tmp_path / "runs"
    driver = Driver(tmp_path, str(experiment), "--algo", "random", "--out", "runs")
    drivers.append(driver)

    def visible_folder() -> Path | None:
        found = [p for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []
        return found[0] if found else None

    run_dir = wait_for(visible_folder, "the run folder", driver)
    driver.sigkill()
    result = run_cli("run", "--resume", str(run_dir), "--executor", "inline", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_complete_run(run_dir, BUDGET)


# -- Ctrl-C and SIGTERM -------------------------------------------------------------------------


def interrupt(root: Path, drivers: list[Driver], signum: signal.Signals) -> tuple[Path, Any]:
    """Start a run, signal its driver while trials 0-2 are finished and 3 and 4 are in flight;
    check it exits 130 saying how to resume, with the in-flight trials left RUNNING."""
    experiment = setup_experiment(root, hold_from=3)
    out = root / "runs"
    driver = Driver(root, str(experiment), "--algo", "random", "--parallel", "2", "--out", "runs")
    drivers.append(driver)
    run_dir = wait_for(lambda: run_dir_of(out), "a resumable run folder", driver)
    wait_until_held(driver, run_dir, 3)
    workers = dict.fromkeys(starts(root)[3] + starts(root)[4], boot_clock())  # held: alive
    os.kill(driver.process.pid, signum)  # the driver alone, not its process group
    assert driver.wait() == 130, driver.output
    output = driver.output
    assert "--resume" in output and run_dir.name in output, output
    wait_for(lambda: not survivors(workers, 0), "the interrupted run's workers to exit")

    saved = study_snapshot(run_dir)
    assert {n for n, t in saved.items() if t.state == "COMPLETE"} == {0, 1, 2}
    assert {n for n, t in saved.items() if t.state == "RUNNING"} == {3, 4}
    assert finished_numbers(trials_csv(run_dir)) == {0, 1, 2}  # exports saved on the way out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["trials"], summary["running"]) == (3, 2)
    return run_dir, saved


@pytest.mark.slow
def test_ctrl_c_exits_130_and_resume_finishes_the_budget(
    tmp_path: Path, drivers: list[Driver]
) -> None:
    run_dir, saved = interrupt(tmp_path, drivers, signal.SIGINT)
    (tmp_path / "gate").unlink()
    resume(run_dir)
    final = assert_complete_run(run_dir, BUDGET)
    assert_unchanged(saved, final)
    for number in (3, 4):  # the interrupted trials ran again, under their numbers
        assert final[number].params == saved[number].params
        assert len(starts(tmp_path)[number]) == 2


@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path, drivers: list[Driver]) -> None:
    interrupt(tmp_path, drivers, signal.SIGTERM)


# -- refusals and budget changes -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "other files"])
def test_resume_of_a_folder_that_is_not_a_run_exits_2(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "not-a-run"
    if kind != "missing":
        folder.mkdir()
    if kind == "other files":
        (folder / "trials.csv").write_text("number,state\n")
        (folder / "notes.txt").write_text("hello\n")
    result = run_cli("run", "--resume", str(folder), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error:") and "--resume" in lines[0] and "not-a-run" in lines[0]
    assert not (folder / "study.db").exists()


def test_resume_with_more_trials_extends_the_budget(tmp_path: Path) -> None:
    experiment = setup_experiment(tmp_path, sleep=0.0)
    args = ("--algo", "tpe", "--trials", "4", "--executor", "inline", "--out", "runs")
    first = run_cli("run", str(experiment), *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_dir = run_dir_of(tmp_path / "runs")
    assert run_dir is not None
    before = assert_complete_run(run_dir, 4)

    resume(run_dir, "--trials", "7", "--executor", "inline")
    after = assert_complete_run(run_dir, 7)
    assert_unchanged(before, after)
    assert "trials: 7" in (run_dir / "experiment.yaml").read_text()
    assert json.loads((run_dir / "summary.json").read_text())["budget"] == 7


def test_resume_while_another_driver_runs_it_is_refused(
    tmp_path: Path, drivers: list[Driver]
) -> None:
    experiment = setup_experiment(tmp_path, hold_from=0)
    driver = Driver(
        tmp_path, str(experiment), "--algo", "random", "--parallel", "2", "--out", "runs"
    )
    drivers.append(driver)
    run_dir = wait_for(lambda: run_dir_of(tmp_path / "runs"), "a resumable run folder", driver)
    wait_for(lambda: {0, 1} <= starts(tmp_path).keys(), "trials 0 and 1 to start", driver)
    experiment_yaml = (run_dir / "experiment.yaml").read_text()

    result = run_cli("run", "--resume", str(run_dir), "--trials", "20", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert run_dir.name in lines[0] and "in use" in lines[0]
    assert driver.process.poll() is None, "the refused resume must not disturb the running one"
    assert (run_dir / "experiment.yaml").read_text() == experiment_yaml  # budget untouched
    assert set(starts(tmp_path)) == {0, 1}  # no trial was started by the refused process
