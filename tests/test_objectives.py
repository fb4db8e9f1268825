"""Objectives: command lines (argv, never a shell; metrics from the last stdout line), python
callables (both signatures, import errors as exit 2) and the synthetic benchmark functions.

How failures of each kind end up in trials.csv under each executor is tested in
test_executors.py; here the objectives themselves are checked, and a few end-to-end runs show
the metrics they return land in the run folder.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hypersearch.cli import main
from hypersearch.engine import run as run_engine
from hypersearch.errors import ExperimentError, TrialFailure
from hypersearch.experiment import CommandSpec, PythonSpec, parse_experiment
from hypersearch.objectives.base import TrialContext, as_metrics, check_objectives, trial_seed
from hypersearch.objectives.command import STDERR_TAIL, CommandObjective, parse_metrics
from hypersearch.objectives.python import PythonObjective
from hypersearch.objectives.synthetic import (
    FUNCTIONS,
    SyntheticObjective,
    ackley,
    branin,
    hartmann6,
    offset,
    rosenbrock,
    sphere,
    zdt1,
)
from tests.conftest import kill_ours, pids_in, run_cli, survivors

# Shell syntax that must reach the command as one plain argv item each.
HOSTILE = ["; touch X", "$(touch X)", "`touch X`", "&& touch X", "| touch X", "a b {trial}"]


def ctx_for(tmp_path: Path, number: int = 3, seed: int = 11, timeout: float | None = None):
    return TrialContext(number, seed, "cpu", tmp_path / "trial", timeout)


def read_rows(run_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (run_dir / "trials.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def no_file_named_x(*folders: Path) -> None:
    for folder in folders:
        assert not [p for p in folder.rglob("X")], f"a shell ran: {folder} holds a file X"


# -- metrics from a command's stdout ---------------------------------------------------------------


def test_last_line_json_object_gives_every_metric() -> None:
    out = 'epoch 1\n{"loss": 9}\n{"loss": 0.5, "acc": 0.9, "n": 3}\n\n   \n'
    assert parse_metrics(out) == {"loss": 0.5, "acc": 0.9, "n": 3.0}


@pytest.mark.parametrize(
    ("line", "value"), [("0.25", 0.25), ("  -1.5e-3 ", -0.0015), ("7", 7.0), ("nan", math.nan)]
)
def test_last_line_bare_number_is_value(line: str, value: float) -> None:
    metrics = parse_metrics(f"training...\n{line}\n")
    assert list(metrics) == ["value"]
    assert metrics["value"] == pytest.approx(value, nan_ok=True)


@pytest.mark.parametrize(
    "out",
    ["", "\n\n", "done\n", "loss: 0.5\n", '{"loss": 0.5}\ntrailing words\n', '{"a": "x"}\n'],
)
def test_last_line_garbage_fails_with_exception(out: str) -> None:
    with pytest.raises(TrialFailure) as failure:
        parse_metrics(out, "the-stderr-tail")
    assert failure.value.reason == "exception"
    assert "not a JSON object or a number" in str(failure.value)
    assert str(failure.value).endswith("stderr: the-stderr-tail")


def test_as_metrics_numbers_and_mappings() -> None:
    assert as_metrics(2, "f()") == {"value": 2.0}
    assert as_metrics(np.float32(0.5), "f()") == {"value": 0.5}
    assert as_metrics({"a": 1, "b": np.int64(2)}, "f()") == {"a": 1.0, "b": 2.0}
    for bad in (None, True, "abc", {"a": "abc"}, {"a": [1]}):
        with pytest.raises(TrialFailure) as failure:
            as_metrics(bad, "f()")
        assert failure.value.reason == "exception"


def test_check_objectives_missing_and_non_finite() -> None:
    objectives = {"acc": "maximize", "loss": "minimize"}
    check_objectives({"acc": 1.0, "loss": 0.5, "extra": math.nan}, objectives)  # extras may be
    with pytest.raises(TrialFailure) as failure:
        check_objectives({"loss": 0.5}, objectives)
    assert failure.value.reason == "exception"
    assert "missing objective metric(s) acc" in str(failure.value)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(TrialFailure) as failure:
            check_objectives({"acc": 1.0, "loss": bad}, objectives)
        assert failure.value.reason == "non_finite"
        assert "loss=" in str(failure.value)


# -- the command objective -------------------------------------------------------------------------

ECHO_ARGV = """
import json, os, sys
with open(os.path.join(os.environ["HYPERSEARCH_TRIAL_DIR"], "argv.json"), "w") as handle:
    json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": {
        k: v for k, v in os.environ.items() if k.startswith(("HYPERSEARCH_", "MY_"))}}, handle)
print("noise on stdout")
print(json.dumps({"value": 1.0, "argc": len(sys.argv) - 1}))
"""


def command(tmp_path: Path, argv: list[str], **spec: Any) -> CommandObjective:
    return CommandObjective(
        CommandSpec.model_validate({"argv": argv, "cwd": str(tmp_path), **spec})
    )


def test_argv_placeholders(tmp_path: Path) -> None:
    template = ["python", "x.py", "--lr={lr}", "{n}", "{opt}", "{trial}/{seed}", "{trial_dir}"]
    objective = command(tmp_path, [*template, "{device}", "{unknown}", "{lr}{lr}"])
    ctx = ctx_for(tmp_path)
    argv = objective.argv({"lr": 0.1, "n": 3, "opt": "sgd"}, ctx)
    assert argv == [
        sys.executable,
        "x.py",
        "--lr=0.1",
        "3",
        "sgd",
        "3/11",
        str(ctx.trial_dir),
        "cpu",
        "{unknown}",
        "0.10.1",
    ]


@pytest.mark.parametrize("value", HOSTILE)
def test_command_values_are_plain_argv_items(tmp_path: Path, value: str) -> None:
    (tmp_path / "echo.py").write_text(ECHO_ARGV)
    objective = command(tmp_path, ["python", "echo.py", "{mode}", "--tail"], env={"MY_VAR": "1"})
    ctx = ctx_for(tmp_path)
    assert objective.evaluate({"mode": value}, ctx) == {"value": 1.0, "argc": 2.0}
    seen = json.loads((ctx.trial_dir / "argv.json").read_text())
    assert seen["argv"] == [value, "--tail"]
    assert seen["cwd"] == str(tmp_path)
    assert seen["env"]["MY_VAR"] == "1"
    assert seen["env"]["HYPERSEARCH_TRIAL"] == "3"
    assert seen["env"]["HYPERSEARCH_SEED"] == "11"
    assert seen["env"]["HYPERSEARCH_TRIAL_DIR"] == str(ctx.trial_dir)
    assert json.loads(seen["env"]["HYPERSEARCH_CONFIG"]) == {"mode": value}
    no_file_named_x(tmp_path, Path.cwd())


def test_command_non_zero_exit_fails_with_stderr_tail(tmp_path: Path) -> None:
    script = (
        'import sys\nsys.stderr.write("HEAD" + "x" * 5000 + "\\nthe real cause\\n")\nsys.exit(3)'
    )
    (tmp_path / "fail.py").write_text(script)
    with pytest.raises(TrialFailure) as failure:
        command(tmp_path, ["python", "fail.py"]).evaluate({}, ctx_for(tmp_path))
    message = str(failure.value)
    assert failure.value.reason == "exception"
    assert message.startswith("command exited with status 3; stderr: ")
    assert message.endswith("the real cause")
    assert "HEAD" not in message
    assert len(message) <= STDERR_TAIL + 100


def test_command_killed_by_a_signal(tmp_path: Path) -> None:
    (tmp_path / "die.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    with pytest.raises(TrialFailure) as failure:
        command(tmp_path, ["python", "die.py"]).evaluate({}, ctx_for(tmp_path))
    assert failure.value.reason == "exception"
    assert "SIGTERM" in str(failure.value)


def test_command_that_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(TrialFailure) as failure:
        command(tmp_path, ["./no-such-program-here"]).evaluate({}, ctx_for(tmp_path))
    assert failure.value.reason == "exception"
    assert "no-such-program-here" in str(failure.value)


def test_command_timeout_kills_grandchild_holding_stdout(tmp_path: Path) -> None:
    """The command's own timeout (inline executor): `sh -c "sleep 60 & echo 1"` returns at once
    but its `sleep` keeps stdout open; the trial times out and the sleep is killed."""
    pid_file = tmp_path / "sleep.pid"
    objective = command(tmp_path, ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; echo 1"])
    started = time.monotonic()
    try:
        with pytest.raises(TrialFailure) as failure:
            objective.evaluate({}, ctx_for(tmp_path, timeout=1.0))
        assert failure.value.reason == "timeout"
        assert time.monotonic() - started < 10
        assert survivors(pids_in([pid_file])) == []
    finally:
        kill_ours(pids_in([pid_file] if pid_file.exists() else []))


# -- the python objective --------------------------------------------------------------------------


@pytest.fixture
def user_module(tmp_path: Path) -> Iterator[Callable[[str], PythonSpec]]:
    """Write a module with a unique name to tmp_path; returns a spec for ``<module>:f``."""
    names: list[str] = []
    saved = list(sys.path)

    def write(source: str) -> PythonSpec:
        name = f"user_objective_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return PythonSpec.model_validate({"function": f"{name}:f", "path": [str(tmp_path)]})

    yield write
    sys.path[:] = saved
    for name in names:
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    ("signature", "gets_ctx"),
    [
        ("f(config)", False),
        ("f(config, ctx)", True),
        ("f(config, ctx=None)", True),
        ("f(*args)", True),
        ("f(config, /, ctx)", True),
    ],
)
def test_python_signatures(user_module, tmp_path: Path, signature: str, gets_ctx: bool) -> None:
    spec = user_module(
        f"""
        def {signature}:
            args = locals().get("args") or (config, locals().get("ctx"))
            config, ctx = args[0], (args[1] if len(args) > 1 else None)
            if ctx is None:
                return config["x"] * 2
            (ctx.trial_dir / "seen").write_text(f"{{ctx.number}} {{ctx.seed}} {{ctx.device}}")
            return {{"value": config["x"], "number": ctx.number, "seed": ctx.seed}}
        """
    )
    objective = PythonObjective(spec)
    objective.check()
    ctx = ctx_for(tmp_path)
    metrics = objective.evaluate({"x": 0.5}, ctx)
    if gets_ctx:
        assert metrics == {"value": 0.5, "number": 3.0, "seed": 11.0}
        assert (ctx.trial_dir / "seen").read_text() == "3 11 cpu"
    else:
        assert metrics == {"value": 1.0}


def test_python_objective_gets_a_copy_of_the_config(user_module, tmp_path: Path) -> None:
    spec = user_module(
        """
        def f(config):
            config["x"] = 99
            return 0.0
        """
    )
    config = {"x": 1}
    PythonObjective(spec).evaluate(config, ctx_for(tmp_path))
    assert config == {"x": 1}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def f(config):\n    return None\n", "returned None"),
        ("def f(config):\n    return 'good'\n", "not a number"),
        ("def f(config):\n    return {'loss': 'bad'}\n", "'loss'"),
    ],
)
def test_python_objective_bad_return_values(user_module, tmp_path, source, message) -> None:
    with pytest.raises(TrialFailure) as failure:
        PythonObjective(user_module(source)).evaluate({"x": 1}, ctx_for(tmp_path))
    assert failure.value.reason == "exception"
    assert message in str(failure.value)


@pytest.mark.parametrize(
    ("source", "function", "message"),
    [
        (None, "no_such_module_zz:f", "cannot import module 'no_such_module_zz'"),
        ("def g(config):\n    return 1\n", None, "has no function 'f'"),
        ("raise RuntimeError('broken at import')\n", None, "raised RuntimeError: broken"),
        ("def f(config:\n", None, "raised SyntaxError"),
        ("import no_such_dependency_zz\n", None, "no_such_dependency_zz"),
    ],
)
def test_python_objective_check_names_the_field(user_module, source, function, message) -> None:
    spec = user_module(source or "")
    if function is not None:
        spec = PythonSpec.model_validate({"function": function, "path": spec.path})
    with pytest.raises(ExperimentError) as error:
        PythonObjective(spec).check()
    assert error.value.field == "objective.python.function"
    assert message in str(error.value)


UNIMPORTABLE = """
    objective:
      python: {{function: "{function}", path: ["."]}}
    params:
      x: {{type: float, low: 0.0, high: 1.0}}
    budget: {{trials: 2}}
"""


@pytest.mark.slow
@pytest.mark.parametrize("command", ["validate", "run"])
def test_unimportable_module_exits_2_with_one_line(write_experiment, tmp_path, command) -> None:
    path = write_experiment(UNIMPORTABLE.format(function="missing_module_q:f"))
    args = ["--algo", "random", "--out", str(tmp_path / "runs")] if command == "run" else []
    proc = run_cli(command, str(path), *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: objective.python.function: ")
    assert "missing_module_q" in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing was started


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("def g(config):\n    return 1\n", "has no function 'f'"),
        ("raise RuntimeError('broken at import')\n", "broken at import"),
        ("def f(config:\n", "SyntaxError"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_broken_module_exits_2_with_one_line(
    tmp_path: Path, capsys, command: str, source: str, fragment: str
) -> None:
    """The same through ``main`` in-process (quick): no traceback, one ``error:`` line."""
    name = f"broken_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(source)
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(UNIMPORTABLE.format(function=f"{name}:f")))
    args = ["--algo", "random", "--out", str(tmp_path / "runs")] if command == "run" else []
    saved = list(sys.path)
    try:
        code = main([command, str(path), *args])
    finally:
        sys.path[:] = saved
        sys.modules.pop(name, None)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: objective.python.function: ")
    assert fragment in err
    assert not (tmp_path / "runs").exists()


def test_import_error_with_multiline_message_is_one_line(tmp_path: Path, capsys) -> None:
    name = f"broken_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(
        'raise ImportError("\\nIMPORTANT: PLEASE READ THIS FOR ADVICE\\n\\nmore details\\n")\n'
    )
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(UNIMPORTABLE.format(function=f"{name}:f")))
    saved = list(sys.path)
    try:
        code = main(["validate", str(path)])
    finally:
        sys.path[:] = saved
        sys.modules.pop(name, None)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err


# -- end to end: what objectives return lands in trials.csv ----------------------------------------

MULTI_METRIC = """
import json, sys
number = int(sys.argv[1])
out = [
    {"loss": 0.5, "acc": 0.9, "extra_m": 7},     # every objective, plus an extra metric
    {"loss": 0.3},                                # acc is missing: FAIL
    {"acc": 0.8, "loss": 0.2, "other_m": number}, # another extra metric
][number % 3]
print("log line")
print(json.dumps(out))
"""


@pytest.mark.slow
def test_command_metrics_become_columns(write_experiment, tmp_path: Path) -> None:
    (tmp_path / "multi.py").write_text(MULTI_METRIC)
    path = write_experiment(
        """
        objective:
          command: {argv: [python, multi.py, "{trial}"], cwd: "."}
        objectives: {acc: maximize, loss: minimize}
        params:
          x: {type: float, low: 0.0, high: 1.0}
        budget: {trials: 6, parallel: 2}
        """
    )
    out = tmp_path / "runs"
    proc = run_cli("run", str(path), "--algo", "random", "--out", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["trials"], summary["complete"], summary["failed"]) == (6, 4, 2)
    header, rows = read_rows(Path(summary["run_dir"]))
    assert header[:5] == ["number", "state", "x", "acc", "loss"]
    assert header[-4:] == ["duration_s", "error", "superseded", "steps"]
    assert set(header[5:-4]) == {"extra_m", "other_m"}
    for row in rows:
        number = int(row["number"])
        if number % 3 == 0:
            assert (row["state"], row["acc"], row["loss"], row["extra_m"]) == (
                *("COMPLETE", "0.9", "0.5"),
                "7.0",
            )
            assert row["other_m"] == ""
        elif number % 3 == 1:
            assert row["state"] == "FAIL"
            assert row["error"] == "exception: missing objective metric(s) acc; got loss"
        else:
            assert (row["state"], float(row["other_m"]), row["error"]) == (
                "COMPLETE",
                number,
                "",
            )
    # acc is maximized and loss minimized: both kinds of complete rows are on the Pareto front
    with (Path(summary["run_dir"]) / "pareto.csv").open(newline="") as handle:
        front = {(float(r["acc"]), float(r["loss"])) for r in csv.DictReader(handle)}
    assert front == {(0.9, 0.5), (0.8, 0.2)}


@pytest.mark.slow
def test_hostile_values_reach_the_command_verbatim(write_experiment, tmp_path: Path) -> None:
    (tmp_path / "echo.py").write_text(ECHO_ARGV)
    path = write_experiment(
        f"""
        objective:
          command: {{argv: [python, echo.py, "{{mode}}"], cwd: "."}}
        params:
          mode: {{type: categorical, choices: {json.dumps(HOSTILE)}}}
        budget: {{trials: 8, parallel: 2}}
        """
    )
    out = tmp_path / "runs"
    proc = run_cli("run", str(path), "--algo", "random", "--out", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(json.loads(proc.stdout)["run_dir"])
    _, rows = read_rows(run_dir)
    assert len(rows) == 8
    for row in rows:
        assert row["state"] == "COMPLETE", row
        assert row["mode"] in HOSTILE
        seen = json.loads((run_dir / "trials" / row["number"] / "argv.json").read_text())
        assert seen["argv"] == [row["mode"]]
        assert float(row["argc"]) == 1
    assert len({row["mode"] for row in rows}) >= 3
    no_file_named_x(tmp_path, Path.cwd())


@pytest.mark.slow
def test_python_mapping_records_every_metric(user_module, tmp_path: Path) -> None:
    """``f(config)`` returning a mapping, through the engine (inline, in this process)."""
    spec = user_module(
        """
        def f(config):
            return {"value": config["x"], "double": 2 * config["x"], "const": 3}
        """
    )
    experiment = parse_experiment(
        {
            "name": "mapping",
            "objective": {"python": spec.model_dump()},
            "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "budget": {"trials": 4, "parallel": 2},
        }
    )
    result = run_engine(experiment, algo="random", out=tmp_path / "runs", executor="inline")
    assert (result.summary["trials"], result.summary["complete"]) == (4, 4)
    header, rows = read_rows(result.run_dir)
    metrics = ["value", "double", "const"]
    tail = ["duration_s", "error", "superseded", "steps"]
    assert header == ["number", "state", "x", *metrics, *tail]
    for row in rows:
        assert float(row["value"]) == float(row["x"])
        assert float(row["double"]) == pytest.approx(2 * float(row["x"]))
        assert float(row["const"]) == 3
    assert result.summary["best"]["metrics"].keys() == {"value", "double", "const"}


def test_extra_metric_named_like_a_column_does_not_corrupt_trials_csv(
    user_module, tmp_path: Path
) -> None:
    spec = user_module(
        """
        def f(config):
            return {"value": config["x"], "error": 0.05, "state": 3.0, "x": 7.0}
        """
    )
    experiment = parse_experiment(
        {
            "name": "collide",
            "objective": {"python": spec.model_dump()},
            "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "budget": {"trials": 2, "parallel": 1},
        }
    )
    result = run_engine(experiment, algo="random", out=tmp_path / "runs", executor="inline")
    with (result.run_dir / "trials.csv").open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    assert len(header) == len(set(header)), header
    for row in rows:
        cells = dict(zip(header, row, strict=True))
        assert cells["state"] == "COMPLETE"
        assert float(cells["x"]) == float(cells["value"])  # the parameter, not the metric x
        assert cells["error"] == ""
        assert (cells["metric.error"], cells["metric.state"], cells["metric.x"]) == (
            "0.05",
            "3.0",
            "7.0",
        )  # the metrics are kept, renamed


# -- synthetic functions ---------------------------------------------------------------------------

BRANIN_OPTIMA = [(-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)]
HARTMANN6_X = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)


@pytest.mark.parametrize("x", BRANIN_OPTIMA)
def test_branin_optima(x: tuple[float, float]) -> None:
    assert branin(np.array(x)) == pytest.approx(0.397887, abs=1e-5)
    assert FUNCTIONS["branin"].optimum == pytest.approx(0.397887, abs=1e-6)
    assert branin(np.array([0.0, 0.0])) > 1  # not flat


def test_hartmann6_optimum() -> None:
    assert hartmann6(np.array(HARTMANN6_X)) == pytest.approx(-3.32237, abs=1e-5)
    assert FUNCTIONS["hartmann6"].optimum == pytest.approx(-3.32237, abs=1e-5)
    rng = np.random.default_rng(0)
    assert min(hartmann6(x) for x in rng.random((200, 6))) > -3.32237


@pytest.mark.parametrize("dim", [2, 3, 5, 10])
def test_rosenbrock_ackley_sphere_optima_are_shifted_off_centre_and_grid(dim: int) -> None:
    shifts = {
        "rosenbrock": (rosenbrock, 1.0 - offset(dim, -5.0, 10.0), (-5.0, 10.0)),
        "ackley": (ackley, offset(dim, -32.768, 32.768), (-32.768, 32.768)),
        "sphere": (sphere, offset(dim, -5.12, 5.12), (-5.12, 5.12)),
    }
    for fn, optimum, (lo, hi) in shifts.values():
        assert fn(optimum) == pytest.approx(0.0, abs=1e-12)
        rng = np.random.default_rng(dim)
        assert min(fn(x) for x in rng.uniform(lo, hi, (200, dim))) > 0.0
        unit = (optimum - lo) / (hi - lo)
        assert np.all(np.abs(unit - 0.5) > 0.05)  # not the centre
        for n in (2, 3, 4, 5, 8, 10, 16):  # nor on a regular grid of the cube
            assert np.all(np.abs(unit * n - np.round(unit * n)) > 1e-6)
    assert rosenbrock(np.ones(dim)) > 1.0  # the textbook optimum is not ours


def test_zdt1_returns_two_objectives_with_a_shifted_pareto_set() -> None:
    on_set = offset(4, 0.0, 1.0)
    on_set[0] = 0.25  # on the front: g = 1, f2 = 1 - sqrt(f1)
    assert zdt1(on_set) == pytest.approx((0.25, 0.5))
    f1, f2 = zdt1(np.array([0.25, 0.0, 0.0, 0.0]))  # on the cube's face: off the front
    assert f1 == 0.25 and f2 > 0.5 + 0.1


def synthetic(function: str, noise: float = 0.0, **extra: Any) -> SyntheticObjective:
    experiment = parse_experiment(
        {"objective": {"synthetic": {"function": function, "noise": noise, **extra}}}
    )
    return SyntheticObjective(experiment.objective.synthetic)


def test_synthetic_objective_value_and_regret(tmp_path: Path) -> None:
    metrics = synthetic("branin").evaluate({"x0": math.pi, "x1": 2.275}, ctx_for(tmp_path))
    assert metrics.keys() == {"value", "regret"}
    assert metrics["value"] == pytest.approx(0.397887, abs=1e-5)
    assert metrics["regret"] == pytest.approx(0.0, abs=1e-5)
    best = dict(zip(["x0", "x1", "x2"], 1.0 - offset(3, -5.0, 10.0), strict=True))
    metrics = synthetic("rosenbrock", dim=3).evaluate(best, ctx_for(tmp_path))
    assert metrics == pytest.approx({"value": 0.0, "regret": 0.0})
    on_set = dict(zip(["x0", "x1", "x2"], offset(3, 0.0, 1.0), strict=True)) | {"x0": 0.25}
    metrics = synthetic("zdt1", dim=3).evaluate(on_set, ctx_for(tmp_path))
    assert metrics == pytest.approx({"f1": 0.25, "f2": 0.5})


def test_synthetic_noise_is_seeded_per_trial_and_spares_regret(tmp_path: Path) -> None:
    config = {"x0": 1.0, "x1": 2.0}
    clean = synthetic("branin").evaluate(config, ctx_for(tmp_path, seed=5))
    noisy = synthetic("branin", noise=0.5)
    seeds = [trial_seed(0, n) for n in range(6)]
    runs = [noisy.evaluate(config, ctx_for(tmp_path, seed=s)) for s in seeds]
    again = [noisy.evaluate(config, ctx_for(tmp_path, seed=s)) for s in seeds]
    assert runs == again  # the same trial seed gives the same noise
    assert len({m["value"] for m in runs}) == len(seeds)  # different seeds, different noise
    assert all(m["value"] != clean["value"] for m in runs)
    assert all(m["regret"] == clean["regret"] for m in runs)  # regret stays noiseless
    spread = np.std([m["value"] - clean["value"] for m in runs])
    assert 0.05 < spread < 2.5


def test_two_experiments_with_same_module_name_each_run_their_own(tmp_path: Path) -> None:
    """A module imported for one experiment is not reused by another in the same process
    whose ``path`` holds a different file of that name (a notebook running two experiments)."""
    from hypersearch.objectives import build_objective

    values = []
    for k in (1, 2):
        folder = tmp_path / f"exp{k}"
        folder.mkdir()
        (folder / "same_name_objective.py").write_text(f"def f(config):\n    return {k}.0\n")
        spec = parse_experiment(
            {
                "objective": {
                    "python": {"function": "same_name_objective:f", "path": [str(folder)]}
                },
                "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            }
        ).objective
        ctx = TrialContext(0, 0, "cpu", tmp_path / f"t{k}")
        values.append(build_objective(spec).evaluate({"x": 0.5}, ctx)["value"])
    assert values == [1.0, 2.0]
