"""Run and compare folders appear whole or not at all, under a free name, and what a killed
creation left behind is removed by a later one."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hypersearch.errors import NameTaken
from hypersearch.folders import STALE_AFTER_S, create_folder, remove_stale_staging
from tests.conftest import REPO


def _write(name: str):
    def build(staging: Path, final_name: str) -> None:
        (staging / "name.txt").write_text(final_name)

    return build


def _hidden(out: Path) -> list[Path]:
    return sorted(out.glob(".*"))


def test_a_folder_appears_whole_and_taken_names_move_on(tmp_path: Path) -> None:
    first = create_folder(tmp_path, "run", _write("run"))
    second = create_folder(tmp_path, "run", _write("run"))
    assert (first.name, second.name) == ("run", "run-2")
    assert (second / "name.txt").read_text() == "run-2"
    assert _hidden(tmp_path) == []
    assert oct(first.stat().st_mode & 0o777) != oct(0o700), "a run folder is not private"


def test_a_name_taken_elsewhere_moves_on(tmp_path: Path) -> None:
    def build(staging: Path, name: str) -> None:
        if name in ("run", "run-2"):
            raise NameTaken(name)  # e.g. a study of that name in a shared database
        (staging / "ok").write_text(name)

    assert create_folder(tmp_path, "run", build).name == "run-3"
    assert _hidden(tmp_path) == []


def test_a_failed_creation_leaves_nothing(tmp_path: Path) -> None:
    def build(staging: Path, name: str) -> None:
        (staging / "half").write_text("made")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        create_folder(tmp_path, "run", build)
    assert list(tmp_path.iterdir()) == []


def test_stale_staging_of_a_dead_creator_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    dead = tmp_path / ".run.abc.creating"
    dead.mkdir()
    (dead / "experiment.yaml").write_text("half")
    live = tmp_path / ".run.def.creating"
    live.mkdir()
    young = tmp_path / ".run.ghi.creating"
    young.mkdir()
    old = time.time() - 2 * STALE_AFTER_S
    for folder in (dead, live):
        os.utime(folder, (old, old))
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # its creator is still at work
    try:
        assert remove_stale_staging(tmp_path) == [dead]
    finally:
        os.close(holder)
    assert not dead.exists() and live.exists() and young.exists()


def test_a_run_killed_while_creating_its_folder_is_cleaned_up_by_the_next(
    tmp_path: Path, cli
) -> None:
    """SIGKILL a driver in the middle of creating its run folder (held there by a slow study
    creation), then run again: the half-made folder is gone and the new run is whole."""
    out = tmp_path / "runs"
    script = tmp_path / "slow_create.py"
    script.write_text(
        textwrap.dedent(f"""
            import sys, time
            import optuna
            real = optuna.create_study
            def slow(*args, **kwargs):
                print("creating", flush=True)
                time.sleep(600)
            optuna.create_study = slow
            from hypersearch.cli import main
            sys.exit(main(["run", {str(REPO / "searchspaces" / "branin.yaml")!r},
                           "--out", {str(out)!r}, "--executor", "inline"]))
        """)
    )
    driver = subprocess.Popen(
        [sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert driver.stdout is not None
    assert driver.stdout.readline() == "creating\n"
    staging = _hidden(out)
    assert len(staging) == 1 and staging[0].name.endswith(".creating")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    old = time.time() - 2 * STALE_AFTER_S  # as a later run would find it
    os.utime(staging[0], (old, old))
    result = cli(
        "run",
        str(REPO / "searchspaces" / "branin.yaml"),
        "--trials",
        "2",
        "--out",
        str(out),
        "--executor",
        "inline",
    )
    assert result.returncode == 0, result.stderr
    assert _hidden(out) == []
    [run_dir] = [p for p in out.iterdir()]
    assert (run_dir / "run.json").is_file() and (run_dir / "summary.json").is_file()


def test_a_failed_start_removes_its_staging_folder(tmp_path: Path, cli) -> None:
    out = tmp_path / "runs"
    result = cli(
        "run",
        str(REPO / "searchspaces" / "branin.yaml"),
        "--out",
        str(out),
        "--storage",
        "nosuchdb://h/d",
    )
    assert result.returncode == 2
    assert list(out.iterdir()) == []
