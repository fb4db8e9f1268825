"""Where a study lives: storage URLs whose password is never written or printed, one-line errors
for a database that cannot be used, and a real PostgreSQL server (Debian's ``postgresql``
package, started by the test on 127.0.0.1; skipped with the reason where it is not installed).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from hypersearch.database import STORAGE_ENV, masked, resumed_url
from hypersearch.errors import UserInputError
from hypersearch.experiment import load_experiment
from hypersearch.store import RunStore
from tests.conftest import REPO

PASSWORD = "S3cret-pw_do-not-print"
BRANIN = REPO / "searchspaces" / "branin.yaml"


# -- masking and resuming, without a server ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://hs:pw@db.example:5432/runs", "postgresql://hs:***@db.example:5432/runs"),
        ("mysql+pymysql://u:p%40ss@h/d", "mysql+pymysql://u:***@h/d"),
        ("postgresql://hs@db/runs", "postgresql://hs@db/runs"),
        ("sqlite:////tmp/x/study.db", "sqlite:////tmp/x/study.db"),
        ("not a url://u:secret@h", "not a url://u:secret@h"),  # no scheme: not a URL
        ("postgresql://hs:p@ss/w0rd@db/runs", "postgresql://hs:***@db/runs"),  # unescaped @ /
        (
            "postgresql://hs@db/runs?password=pw&sslmode=x",
            "postgresql://hs@db/runs?password=***&sslmode=x",
        ),
        ("postgresql://hs@db/runs?sslpassword=pw", "postgresql://hs@db/runs?sslpassword=***"),
    ],
)
def test_masked_hides_the_password_and_nothing_else(url: str, shown: str) -> None:
    assert masked(url) == shown


def test_a_resume_takes_the_password_again() -> None:
    saved = masked(f"postgresql://hs:{PASSWORD}@db:5432/runs")
    with pytest.raises(UserInputError, match=STORAGE_ENV) as err:
        resumed_url(saved, None)
    assert PASSWORD not in str(err.value)
    given = f"postgresql://hs:{PASSWORD}@db:5432/runs"
    assert resumed_url(saved, given) == given
    with pytest.raises(UserInputError, match="not in postgresql://hs:\\*\\*\\*@other") as err:
        resumed_url(saved, f"postgresql://hs:{PASSWORD}@other:5432/runs")
    assert PASSWORD not in str(err.value)
    assert resumed_url(None, None) is None  # SQLite in the run folder


# -- a database that cannot be used: one line, exit 2, no password -------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"postgresql://hs:{PASSWORD}@127.0.0.1:1/runs",
            "error: --storage: cannot connect to postgresql at 127.0.0.1:1 (connection refused)",
        ),
        (
            f"mysql://hs:{PASSWORD}@127.0.0.1:1/runs",
            "error: --storage: mysql needs the MySQLdb package (pip install mysqlclient)",
        ),
        ("nosuchdb://h/d", "error: --storage: unknown database kind 'nosuchdb'"),
        ("just-words", "error: --storage: not a database URL SQLAlchemy understands"),
        (
            f"postgresql://hs:{PASSWORD}@127.0.0.1:notaport/runs",
            "error: --storage: not a database URL SQLAlchemy understands",
        ),
        (  # an unescaped @ and / in the password: the driver would read a piece of it as host
            f"postgresql://hs:p@ss/{PASSWORD}@127.0.0.1:1/runs",
            "error: --storage: cannot tell the password from the host in "
            "postgresql://hs:***@127.0.0.1:1/runs: percent-encode",
        ),
    ],
)
def test_storage_that_cannot_be_used_is_one_line(
    url: str, expected: str, tmp_path: Path, cli
) -> None:
    pytest.importorskip("psycopg", reason="the psycopg driver is in the test extra")
    if url.startswith("mysql") and importlib.util.find_spec("MySQLdb") is not None:
        pytest.skip("mysqlclient is installed here: the missing-driver case cannot happen")
    result = cli("run", BRANIN, "--storage", url, "--out", tmp_path / "runs")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(expected), result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    assert not list((tmp_path / "runs").glob("*")), "nothing is left behind"


# -- a real PostgreSQL server ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server on 127.0.0.1 with a password user; yields the URL with the password.
    Root runs it as the ``postgres`` user, as PostgreSQL requires (in a folder outside pytest's
    private temp folders, which that user could not enter)."""
    pytest.importorskip("psycopg", reason="the psycopg driver is in the test extra")
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip(
            "PostgreSQL is not installed (Debian package 'postgresql'; .ci/run installs it)"
        )
    bin_dir = Path(found[-1]).parent
    as_user: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root without a 'postgres' user to run the server as")
        as_user = [runuser, "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="hypersearch-postgres-"))
    root.chmod(0o777)
    data, sockets = root / "data", root / "sockets"

    def run(*argv: str) -> None:
        subprocess.run([*as_user, *argv], check=True, capture_output=True, timeout=300, cwd="/")

    run(str(bin_dir / "initdb"), "-D", str(data), "--auth-local=trust", "--auth-host=scram-sha-256")
    run("mkdir", str(sockets))
    for attempt in range(3):  # a port free a moment ago may be taken (Ray, on the other worker)
        port = _free_port()
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log")]
        try:
            run(*pg_ctl, "-w", "start")
            break
        except subprocess.CalledProcessError:
            if attempt == 2:
                raise
    try:
        psql = [str(bin_dir / "psql"), "-h", str(sockets), "-p", str(port), "-d", "postgres"]
        run(*psql, "-c", f"CREATE USER hs WITH PASSWORD '{PASSWORD}'")
        run(*psql, "-c", "CREATE DATABASE runs OWNER hs")
        yield f"postgresql://hs:{PASSWORD}@127.0.0.1:{port}/runs"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _files_containing(folder: Path, secret: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_password_is_never_written_or_printed_and_resume_asks_for_it(
    postgres: str, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "runs"
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    first = cli(
        "run",
        BRANIN,
        "--trials",
        4,
        "--executor",
        "inline",
        "--json",
        "--out",
        out,
        "--storage",
        postgres,
    )
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["storage"] == masked(postgres) and "***" in summary["storage"]
    run_dir = Path(summary["run_dir"])
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["storage"] == masked(postgres)
    assert not (run_dir / "study.db").exists(), "the study is in PostgreSQL"
    assert PASSWORD not in first.stdout + first.stderr
    assert _files_containing(run_dir, PASSWORD) == []

    # the study is real and complete in PostgreSQL
    study = optuna.load_study(study_name=summary["study_name"], storage=postgres)
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)

    # a resume without the password says where to give it, and changes nothing
    before = (run_dir / "experiment.yaml").read_bytes()
    refused = cli("run", "--resume", run_dir, "--trials", 6)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and STORAGE_ENV in refused.stderr, refused.stderr
    assert (run_dir / "experiment.yaml").read_bytes() == before

    # from the environment: the resume runs to its new budget, and still writes no password
    monkeypatch.setenv(STORAGE_ENV, postgres)
    resumed = cli("run", "--resume", run_dir, "--trials", 6, "--executor", "inline", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["complete"] == 6
    assert PASSWORD not in resumed.stdout + resumed.stderr
    assert _files_containing(run_dir, PASSWORD) == []

    # or from --storage again
    monkeypatch.delenv(STORAGE_ENV)
    again = cli(
        "run",
        "--resume",
        run_dir,
        "--trials",
        7,
        "--executor",
        "inline",
        "--json",
        "--storage",
        postgres,
    )
    assert again.returncode == 0, again.stderr
    assert len(optuna.load_study(study_name=summary["study_name"], storage=postgres).trials) == 7


def test_wrong_password_is_one_line_without_it(postgres: str, tmp_path: Path, cli) -> None:
    wrong = postgres.replace(PASSWORD, "not-" + PASSWORD)
    result = cli("run", BRANIN, "--storage", wrong, "--out", tmp_path / "runs")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "password authentication failed" in result.stderr, result.stderr
    assert PASSWORD not in result.stderr


def test_a_taken_study_name_moves_on_to_a_free_one(postgres: str, tmp_path: Path) -> None:
    """Two runs whose folders would share a name (same --name, same second) in one shared
    database: the second takes the next free name instead of failing."""
    exp = load_experiment(BRANIN)
    first = RunStore.create(tmp_path / "a", "same", exp, "random", 0, postgres)
    second = RunStore.create(tmp_path / "b", "same", exp, "random", 0, postgres)
    try:
        assert (first.study_name, second.study_name) == ("same", "same-2")
        assert second.run_dir == tmp_path / "b" / "same-2"
        assert not list((tmp_path / "b").glob(".*")), "no staging folder is left behind"
    finally:
        first.close()
        second.close()


def test_two_drivers_with_one_name_and_storage_both_run(postgres: str, tmp_path: Path) -> None:
    """Started together (usually in the same second): both finish, under different names."""
    drivers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hypersearch.cli",
                "run",
                str(BRANIN),
                "--name",
                "twin",
                "--trials",
                "3",
                "--executor",
                "inline",
                "--json",
                "--storage",
                postgres,
                "--out",
                str(tmp_path / "runs"),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    summaries = []
    for driver in drivers:
        out, err = driver.communicate(timeout=600)
        assert driver.returncode == 0, err
        summaries.append(json.loads(out))
    names = {s["study_name"] for s in summaries}
    assert len(names) == 2
    assert all(s["complete"] == 3 for s in summaries)


@pytest.mark.parametrize(
    "error",
    [PermissionError(13, "Permission denied"), json.JSONDecodeError("Expecting value", "{", 0)],
)
def test_a_message_about_a_url_never_shows_its_password(error: Exception) -> None:
    """Whatever goes wrong with a URL-named target, the line shows the URL masked."""
    from hypersearch.errors import user_errors

    url = f"postgresql://hs:{PASSWORD}@db:5432/runs"
    with pytest.raises(UserInputError) as raised, user_errors("--storage", url, writing=True):
        raise error
    assert PASSWORD not in str(raised.value)
    assert "postgresql://hs:***@db:5432/runs" in str(raised.value)


def test_the_environment_variable_does_not_stop_a_sqlite_run_from_resuming(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HYPERSEARCH_STORAGE gives new runs their storage and a hidden password back; a run whose
    study is in its folder resumes whatever it says."""
    from hypersearch.engine import run

    first = run(BRANIN, trials=2, executor="inline", out=tmp_path)
    monkeypatch.setenv(STORAGE_ENV, f"postgresql://hs:{PASSWORD}@127.0.0.1:1/runs")
    resumed = cli("run", "--resume", first.run_dir, "--trials", 3, "--executor", "inline")
    assert resumed.returncode == 0, resumed.stderr
    assert PASSWORD not in resumed.stdout + resumed.stderr


TELLS_ENV = f"""
import os

def f(config):
    return {{"value": config["x"] ** 2, "sees_storage": float("{STORAGE_ENV}" in os.environ)}}
"""


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_trials_never_see_the_storage_variable(
    executor: str, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variable holds a password: worker processes and command objectives run without it.
    (A python objective under ``--executor inline`` runs in the driver, with its environment.)"""
    (tmp_path / "tells_env.py").write_text(TELLS_ENV)
    (tmp_path / "tells_env_cmd.py").write_text(
        "import json, os\nprint(json.dumps({'value': 1.0, "
        f"'sees_storage': float({STORAGE_ENV!r} in os.environ)}}))\n"
    )
    objective = (
        "{command: {argv: [python, tells_env_cmd.py], cwd: .}}"
        if executor == "inline"
        else f"{{python: {{function: 'tells_env:f', path: [{str(tmp_path)!r}]}}}}"
    )
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"name: env\nobjective: {objective}\n"
        "params: {x: {type: float, low: -1, high: 1}}\nbudget: {trials: 2, parallel: 1}\n"
    )
    monkeypatch.setenv(STORAGE_ENV, "sqlite:///" + str(tmp_path / "s.db"))
    result = cli(
        "run",
        path,
        "--algo",
        "random",
        "--executor",
        executor,
        "--out",
        tmp_path / "runs",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    rows = (Path(json.loads(result.stdout)["run_dir"]) / "trials.csv").read_text()
    header, *lines = rows.splitlines()
    column = header.split(",").index("sees_storage")
    assert [float(line.split(",")[column]) for line in lines] == [0.0, 0.0]
