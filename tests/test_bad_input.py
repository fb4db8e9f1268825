"""Files and folders that cannot be used: one ``error:`` line naming the thing, exit 2, never a
traceback, and nothing changed. Read-only cases run the CLI without root's permission override
(``unprivileged``), so they mean the same as root and as a normal user."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, read_only, run_cli, writable

BRANIN = REPO / "searchspaces" / "branin.yaml"


def one_line_error(result, starts: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(starts), result.stderr


def finished_run(tmp_path: Path, trials: int = 3) -> Path:
    from hypersearch.engine import run

    return run(BRANIN, trials=trials, executor="inline", out=tmp_path / "runs").run_dir


@pytest.mark.parametrize("command", ["run", "compare"])
def test_out_that_is_read_only_is_one_line(command: str, tmp_path: Path, read_only_works) -> None:
    out = tmp_path / "locked"
    out.mkdir()
    read_only(out)
    try:
        result = run_cli(
            command, str(BRANIN), "--out", str(out), "--executor", "inline", unprivileged=True
        )
    finally:
        writable(out)
    one_line_error(result, f"error: --out: {out} is not writable (Permission denied)")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("command", ["run", "compare"])
def test_out_that_is_a_file_is_one_line(command: str, tmp_path: Path, cli) -> None:
    out = tmp_path / "a-file"
    out.write_text("not a folder")
    result = cli(command, BRANIN, "--out", out, "--executor", "inline")
    one_line_error(result, f"error: --out: {out} is not writable (not a folder)")
    assert out.read_text() == "not a folder"


def test_out_below_a_file_is_one_line(tmp_path: Path, cli) -> None:
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "runs"
    result = cli("run", BRANIN, "--out", out, "--executor", "inline")
    one_line_error(result, f"error: --out: {out} is not writable (not a folder)")


@pytest.mark.parametrize(
    ("locked", "says"),
    [
        (
            "study.db",
            "error: --resume: cannot use the database {run_dir}/study.db (attempt to "
            "write a readonly database)",
        ),
        (".", "error: --resume: {run_dir} is not writable (Permission denied)"),
    ],
)
def test_resume_of_a_read_only_study_or_folder_is_one_line_and_changes_nothing(
    locked: str, says: str, tmp_path: Path, read_only_works
) -> None:
    run_dir = finished_run(tmp_path)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    read_only(run_dir / locked)
    try:
        result = run_cli(
            "run",
            "--resume",
            str(run_dir),
            "--trials",
            "5",
            "--executor",
            "inline",
            unprivileged=True,
        )
    finally:
        writable(run_dir / locked)
    one_line_error(result, says.format(run_dir=run_dir.resolve()))
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert after["experiment.yaml"] == before["experiment.yaml"], "budget rewritten anyway"
    assert after["summary.json"] == before["summary.json"]


def test_run_folder_made_read_only_mid_run_is_one_line_and_resumable(
    tmp_path: Path, write_experiment, read_only_works, cli
) -> None:
    """A python objective locks its own run folder after the first trials: the driver stops
    with one line, and once the folder is writable again the run resumes to its budget."""
    module = tmp_path / "lockme.py"
    module.write_text(
        textwrap.dedent("""
            from pathlib import Path

            def objective(config, ctx):
                if ctx.number == 2:  # no new file can be made in the run folder from now on
                    run_dir = Path(ctx.trial_dir).parents[1]
                    run_dir.chmod(run_dir.stat().st_mode & ~0o222)
                return config["x"] ** 2
        """)
    )
    path = write_experiment(f"""
        name: lockme
        objective: {{python: {{function: "lockme:objective", path: [{str(tmp_path)!r}]}}}}
        params: {{x: {{type: float, low: -1, high: 1}}}}
        budget: {{trials: 6, parallel: 1}}
    """)
    out = tmp_path / "runs"
    result = run_cli(
        "run",
        str(path),
        "--out",
        str(out),
        "--executor",
        "inline",
        "--algo",
        "random",
        "--json",
        unprivileged=True,
    )
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    writable(run_dir)
    one_line_error(result, f"error: run folder: {run_dir} is not writable (Permission denied)")
    (module).write_text("def objective(config, ctx):\n    return config['x'] ** 2\n")
    resumed = cli("run", "--resume", run_dir, "--executor", "inline", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["complete"] == 6


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{not json", "is not valid JSON"),
        (b"\xff\xfe\x00", "is not UTF-8 text"),
        (b'{"algo": "tpe", "study_name": "x"}', "is damaged (seed: required field is missing)"),
        (b"[1, 2]", "is damaged (must be a mapping (got a list))"),
        (
            b'{"algo": "tpe", "seed": "zero", "study_name": "x"}',
            "is damaged (seed: must be an integer (got the string 'zero'))",
        ),
        (
            b'{"algo": "tpe", "seed": 0, "study_name": "x", "storage": 5}',
            "is damaged (storage: must be a string (got 5))",
        ),
    ],
)
def test_damaged_run_json_is_one_line(content: bytes, says: str, tmp_path: Path, cli) -> None:
    run_dir = finished_run(tmp_path)
    (run_dir / "run.json").write_bytes(content)
    result = cli("run", "--resume", run_dir, "--executor", "inline")
    one_line_error(result, f"error: --resume: {run_dir / 'run.json'} ")
    assert says in result.stderr


def test_damaged_study_db_is_one_line(tmp_path: Path, cli) -> None:
    run_dir = finished_run(tmp_path)
    (run_dir / "study.db").write_bytes(b"this is not a database" * 100)
    for leftover in run_dir.glob("study.db-*"):
        leftover.unlink()
    result = cli("run", "--resume", run_dir, "--executor", "inline")
    one_line_error(result, "error: --resume: cannot use the database ")
    assert "file is not a database" in result.stderr


@pytest.mark.parametrize("name", [".", "..", ".hidden"])
@pytest.mark.parametrize("command", ["run", "compare"])
def test_name_starting_with_a_dot_is_refused(command: str, name: str, tmp_path: Path, cli) -> None:
    out = tmp_path / "runs"
    result = cli(command, BRANIN, "--name", name, "--out", out)
    one_line_error(result, "error: --name: must be 1-64 letters, digits, '.', '_' or '-', not")
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{", "is not valid JSON"),
        (b'{"seeds": [0]}', "is damaged (algos: required field is missing)"),
        (b'{"algos": "tpe", "seeds": [0]}', "is damaged (algos: must be a list (got the string"),
    ],
)
def test_damaged_compare_json_is_one_line(content: bytes, says: str, tmp_path: Path, cli) -> None:
    made = cli(
        "compare",
        BRANIN,
        "--algos",
        "random",
        "--seeds",
        "1",
        "--trials",
        "2",
        "--executor",
        "inline",
        "--out",
        tmp_path,
    )
    assert made.returncode == 0, made.stderr
    [folder] = [p for p in tmp_path.iterdir() if p.name.startswith("compare-")]
    (folder / "compare.json").write_bytes(content)
    result = cli("compare", "--resume", folder, "--executor", "inline")
    one_line_error(result, f"error: --resume: {folder / 'compare.json'} ")
    assert says in result.stderr
