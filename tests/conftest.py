"""Shared fixtures: experiment files written to a temp folder, and a CLI runner in a subprocess."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# The suite runs on two pytest-xdist workers (``-n 2`` in pyproject.toml), a file at a time each
# so module fixtures are built once; the files that start Ray share one worker (two Ray
# instances would compete for ports and memory) and go first, being the longest share. Two
# workers on two cores: torch's default of a thread per core in each process (GP fits here,
# trainings in workers) would oversubscribe them, so one thread each.
RAY_FILES = {"test_executor_ray.py", "test_ray_cluster.py", "test_population_dispatch.py"}
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in RAY_FILES)  # stable: files stay whole


@pytest.hookimpl(optionalhook=True)  # known to pytest only where xdist is installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scheduling by scope, the scope being the file (or "ray" for the Ray files)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return "ray" if Path(file).name in RAY_FILES else file

    return ByFile(config, log)


@pytest.fixture
def write_experiment(tmp_path: Path):
    """Write YAML text (dedented) to tmp_path/<name>.yaml and return the path."""

    def write(text: str, name: str = "exp") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return write


# A safety net against a hang, not an expectation: generous, so a loaded machine never meets it.
CLI_TIMEOUT_S = 600


def run_cli(
    *args: str,
    cwd: Path | None = None,
    timeout: float = CLI_TIMEOUT_S,
    env: dict[str, str] | None = None,
    unprivileged: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``hypersearch ARGS`` as a user would: a real process, its exit code and output.
    ``unprivileged``: without root's power to write where file permissions forbid it."""
    return subprocess.run(
        [sys.executable, "-m", "hypersearch.cli", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
        preexec_fn=drop_file_privileges if unprivileged else None,
    )


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``hypersearch ARGS`` in this process (``cli.main``, as the console script calls it): its
    exit code and output, like ``run_cli`` but without a new interpreter's start-up."""
    from hypersearch.cli import main

    def invoke(*args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["hypersearch", *args], code, out, err)

    return invoke


def drop_file_privileges() -> None:
    """In a child about to exec: give up root's permission override (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH leave its bounding set), so a read-only folder is read-only to it too.
    A non-root process has no such power to give up."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture(scope="session")
def read_only_works(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip a test unless ``run_cli(..., unprivileged=True)`` really cannot write into a
    read-only folder here (root needs CAP_SETPCAP to give its override up)."""
    folder = tmp_path_factory.mktemp("read-only")
    read_only(folder)
    try:
        wrote = (
            subprocess.run(
                ["sh", "-c", f"touch {folder}/x"], preexec_fn=drop_file_privileges, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        wrote = True
    finally:
        writable(folder)
    if wrote:
        pytest.skip("this machine lets the test process write into read-only folders")


def read_only(path: Path) -> None:
    """Make a file, or a folder and everything in it, read-only."""
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        item.chmod(item.stat().st_mode & ~0o222)


def writable(path: Path) -> None:
    """Undo ``read_only`` (so pytest can clean the folder up)."""
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        item.chmod(item.stat().st_mode | 0o200)


def boot_clock() -> float:
    """Seconds since boot: the clock a process's start time in /proc is kept on."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def process_gone(pid: int, known_since: float | None = None) -> bool:
    """True once ``pid`` no longer runs (a zombie waiting for its reaper counts as gone). PIDs
    are reused (pid_max is 32768 here, and two xdist workers start processes all the time): given
    ``known_since``, when the PID was known to be ours (``boot_clock`` seconds: a pid file's
    mtime, a snapshot's time), a process that started after it is another one, and ours is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    if fields[0] == "Z":
        return True
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: since boot, in ticks
    return known_since is not None and started > known_since + 0.05


def pids_in(files: Iterable[Path]) -> dict[int, float]:
    """PID -> when it was known to be ours (when the file it was written to was written)."""
    age = {path: time.time() - path.stat().st_mtime for path in files}
    return {int(path.read_text()): boot_clock() - seconds for path, seconds in age.items()}


def survivors(pids: Mapping[int, float] | Iterable[int], timeout: float = 3.0) -> list[int]:
    """The PIDs still running after a bounded poll (SIGKILL is delivered asynchronously); a
    mapping gives each PID the time it was known to be ours (see ``process_gone``)."""
    known = dict(pids) if isinstance(pids, Mapping) else dict.fromkeys(pids)
    deadline = time.monotonic() + timeout
    alive = [pid for pid, since in known.items() if not process_gone(pid, since)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if not process_gone(pid, known[pid])]
    return alive


def kill_ours(pids: Mapping[int, float]) -> None:
    """SIGKILL each process that is still the one its PID named when it was known to be ours."""
    for pid, since in pids.items():
        if not process_gone(pid, since):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def sphere(x: np.ndarray) -> float:
    """A smooth test loss with its minimum at 0.3 in every coordinate."""
    return float(np.sum((x - 0.3) ** 2))


def drive(
    algo: Any, trials: int, batch: int, f: Callable[[np.ndarray], float] = sphere
) -> list[np.ndarray]:
    """Ask in batches and tell every point at once, as the engine does; every point asked."""
    from hypersearch.algorithms import Observation

    asked: list[np.ndarray] = []
    while len(asked) < trials:
        suggestions = algo.ask(min(batch, trials - len(asked)))
        assert suggestions, "ask() returned nothing with nothing in flight"
        algo.tell([Observation(s.id, s.x, (f(s.x),)) for s in suggestions])
        asked += [s.x for s in suggestions]
    return asked


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: a second thread only adds contention."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
