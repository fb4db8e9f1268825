"""The experiment file: malformed files give exit 2 and one stderr line naming the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hypersearch.cli import main
from hypersearch.errors import ExperimentError
from hypersearch.experiment import load_experiment, parse_experiment, read_yaml
from tests.conftest import run_cli

GOOD = """\
name: good
seed: 3
objective:
  synthetic: {function: branin}
objectives:
  value: minimize
params:
  x1: {type: float, low: -5, high: 10}
  x2: {type: float, low: 0, high: 15}
budget: {trials: 5, parallel: 1}
"""

# (case id, YAML text, expected start of the one stderr line after "error: ")
MALFORMED = [
    (
        "low-above-high",
        """
        objective: {synthetic: {function: sphere, dim: 1}}
        params: {x: {type: float, low: 2, high: 1}}
     """,
        "params.x.low: must be <= high (got low=2, high=1)",
    ),
    (
        "log-with-zero-low",
        """
        objective: {python: "m:f"}
        params: {lr: {type: float, low: 0, high: 1, log: true}}
     """,
        "params.lr.low: must be > 0 when log is true (got 0)",
    ),
    (
        "int-log-below-one",
        """
        objective: {python: "m:f"}
        params: {n: {type: int, low: 0, high: 64, log: true}}
     """,
        "params.n.low: must be >= 1 when log is true",
    ),
    (
        "step-with-log",
        """
        objective: {python: "m:f"}
        params: {lr: {type: float, low: 0.1, high: 1, log: true, step: 0.1}}
     """,
        "params.lr.step: cannot be combined with log",
    ),
    (
        "empty-choices",
        """
        objective: {python: "m:f"}
        params: {opt: {type: categorical, choices: []}}
     """,
        "params.opt.choices: must not be empty",
    ),
    (
        "mixed-choices",
        """
        objective: {python: "m:f"}
        params: {opt: {type: categorical, choices: [sgd, 1]}}
     """,
        "params.opt.choices: must all be of one type",
    ),
    (
        "nan-bound",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: .nan, high: 1}}
     """,
        "params.x.low: input should be a finite number",
    ),
    (
        "inf-bound",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: 0, high: .inf}}
     """,
        "params.x.high: input should be a finite number",
    ),
    (
        "unknown-type",
        """
        objective: {python: "m:f"}
        params: {x: {type: double, low: 0, high: 1}}
     """,
        "params.x.type: unknown type 'double'",
    ),
    (
        "missing-type",
        """
        objective: {python: "m:f"}
        params: {x: {low: 0, high: 1}}
     """,
        "params.x.type: required field is missing",
    ),
    (
        "misspelled-param-key",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: 0, hihg: 1}}
     """,
        "params.x.hihg: unknown field (did you mean 'high'?)",
    ),
    (
        "misspelled-top-key",
        """
        objective: {python: "m:f"}
        parmas: {x: {type: float, low: 0, high: 1}}
     """,
        "parmas: unknown field (did you mean 'params'?)",
    ),
    (
        "misspelled-budget-key",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: 0, high: 1}}
        budget: {trails: 10}
     """,
        "budget.trails: unknown field (did you mean 'trials'?)",
    ),
    (
        "duplicate-param",
        """
        objective: {python: "m:f"}
        params:
          x: {type: float, low: 0, high: 1}
          x: {type: float, low: 0, high: 2}
     """,
        "params.x: duplicate key (line 5, column 3; first at line 4)",
    ),
    (
        "param-collides-with-metric",
        """
        objective: {python: "m:f"}
        objectives: {x: minimize}
        params: {x: {type: float, low: 0, high: 1}}
     """,
        "objectives.x: collides with a parameter",
    ),
    (
        "param-collides-with-column",
        """
        objective: {python: "m:f"}
        params: {state: {type: float, low: 0, high: 1}}
     """,
        "params.state: collides with a reserved column",
    ),
    (
        "bad-param-name",
        """
        objective: {python: "m:f"}
        params: {"learning rate": {type: float, low: 0, high: 1}}
     """,
        "params.learning rate: names must match",
    ),
    (
        "bad-run-name",
        """
        name: "my run!"
        objective: {python: "m:f"}
        params: {x: {type: float, low: 0, high: 1}}
     """,
        "name: must be 1-64 letters, digits, '.', '_' or '-', not starting with a dot "
        "(got 'my run!')",
    ),
    (
        "long-run-name",
        f"""
        name: {"a" * 65}
        objective: {{python: "m:f"}}
        params: {{x: {{type: float, low: 0, high: 1}}}}
     """,
        "name: must be 1-64 letters, digits, '.', '_' or '-', not starting with a dot (got 'aaaa",
    ),
    (
        "two-objective-kinds",
        """
        objective: {python: "m:f", command: [echo, "1"]}
        params: {x: {type: float, low: 0, high: 1}}
     """,
        "objective: needs exactly one of trainer, python, command, synthetic",
    ),
    (
        "no-objective",
        """
        params: {x: {type: float, low: 0, high: 1}}
     """,
        "objective: required field is missing",
    ),
    (
        "bad-direction",
        """
        objective: {python: "m:f"}
        objectives: {loss: minimise}
        params: {x: {type: float, low: 0, high: 1}}
     """,
        "objectives.loss: input should be 'minimize' or 'maximize'",
    ),
    (
        "zero-trials",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: 0, high: 1}}
        budget: {trials: 0}
     """,
        "budget.trials: input should be greater than or equal to 1",
    ),
    (
        "unknown-synthetic",
        """
        objective: {synthetic: {function: rastrigrin}}
     """,
        "objective.synthetic.function: unknown function 'rastrigrin'",
    ),
    (
        "synthetic-wrong-dim",
        """
        objective: {synthetic: {function: hartmann6, dim: 3}}
     """,
        "objective.synthetic.dim: hartmann6 is 6-dimensional",
    ),
    (
        "unknown-algorithm-block",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: 0, high: 1}}
        algorithm: {gaa: {population: 4}}
     """,
        "algorithm.gaa: unknown algorithm",
    ),
    (
        "bad-algorithm-option",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: 0, high: 1}}
        algorithm: {tpe: {n_startup: 4}}
     """,
        "algorithm.tpe.n_startup: unknown field (did you mean 'n_startup_trials'?)",
    ),
    (
        "not-a-number",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: abc, high: 1}}
     """,
        "params.x.low: must be a number (got the string 'abc')",
    ),
    # Values are taken as YAML typed them: a quoted number is a string, "yes" is not a boolean.
    (
        "quoted-number",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: "1e-3", high: 1}}
     """,
        "params.x.low: must be a number (got the string '1e-3')",
    ),
    (
        "quoted-integer-high",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: 0, high: "1"}}
     """,
        "params.x.high: must be a number (got the string '1')",
    ),
    (
        "boolean-as-number",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: true, high: 1}}
     """,
        "params.x.low: must be a number (got true)",
    ),
    (
        "string-as-boolean",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: 1, high: 2, log: "yes"}}
     """,
        "params.x.log: must be true or false (got the string 'yes')",
    ),
    (
        "quoted-budget",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: 1, high: 2}}
        budget: {trials: "10"}
     """,
        "budget.trials: must be an integer (got the string '10')",
    ),
    (
        "unknown-field-lists-allowed-sorted",
        """
        objective: {python: "m:f"}
        params: {x: {type: float, low: 1, high: 2}}
        budget: {trails: 3}
     """,
        "budget.trails: unknown field (did you mean 'trials'?); allowed: cpus_per_trial, "
        "gpus_per_trial, parallel, population_size, steps, trial_timeout, trials",
    ),
    (
        "name-dot",
        """
        name: "."
        objective: {python: "m:f"}
        params: {x: {type: float, low: 1, high: 2}}
     """,
        "name: must be 1-64 letters, digits, '.', '_' or '-', not starting with a dot",
    ),
    (
        "name-dot-dot",
        """
        name: ..
        objective: {python: "m:f"}
        params: {x: {type: float, low: 1, high: 2}}
     """,
        "name: must be 1-64 letters, digits, '.', '_' or '-', not starting with a dot",
    ),
    (
        "name-hidden",
        """
        name: .hidden
        objective: {python: "m:f"}
        params: {x: {type: float, low: 1, high: 2}}
     """,
        "name: must be 1-64 letters",
    ),
    (
        "yaml-syntax",
        """
        objective: {python: "m:f"
        params: [
     """,
        "EXP: line 3, column 1: expected ',' or '}'",
    ),
    (
        "not-a-mapping",
        """
        - just
        - a list
     """,
        "experiment: must be a mapping of fields",
    ),
    *[
        (
            f"initial-{case}",
            f"""
        objective: {{python: "m:f"}}
        params:
          x: {{type: float, low: 1, high: 2, step: 0.5}}
          n: {{type: int, low: 1, high: 9}}
          opt: {{type: categorical, choices: [sgd, adam]}}
        initial: {initial}
     """,
            expected,
        )
        for case, initial, expected in [
            (
                "out-of-range",
                "[{x: 1, n: 2, opt: sgd}, {x: 3, n: 2, opt: sgd}]",
                "initial[1].x: must be in [1, 2] (got 3)",
            ),
            ("off-grid", "[{x: 1.2, n: 2, opt: sgd}]", "initial[0].x: must be on the grid"),
            ("float-for-int", "[{x: 1, n: 2.0, opt: sgd}]", "initial[0].n: must be an integer"),
            (
                "not-a-choice",
                "[{x: 1, n: 2, opt: adamw}]",
                "initial[0].opt: must be one of ['sgd', 'adam'] (got 'adamw')",
            ),
            (
                "string",
                "[{x: '1.5', n: 2, opt: sgd}]",
                "initial[0].x: must be a number (got the string '1.5')",
            ),
            (
                "unknown",
                "[{x: 1, n: 2, opt: sgd, lr: 0.1}]",
                "initial[0].lr: not a parameter (params: x, n, opt)",
            ),
            (
                "missing",
                "[{x: 1}]",
                "initial[0]: every parameter needs a value (missing: n, opt)",
            ),
            ("not-a-config", "[3]", "initial[0]: must be a mapping of parameter values"),
            ("not-a-list", "{x: 1}", "initial: must be a list (got a mapping)"),
        ]
    ],
]


@pytest.mark.parametrize(("case", "text", "expected"), MALFORMED, ids=[c[0] for c in MALFORMED])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_malformed_experiment_exits_2_with_one_line_naming_the_field(
    command: str,
    case: str,
    text: str,
    expected: str,
    write_experiment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_experiment(text)
    args = [command, str(path)] + (["--out", str(tmp_path / "runs")] if command == "run" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: " + expected.replace("EXP", str(path))), lines[0]
    assert not (tmp_path / "runs").exists(), "a rejected experiment must not create a run"


def test_unsafe_yaml_tag_is_rejected_and_runs_nothing(write_experiment, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write_experiment(f"""
        name: !!python/object/apply:os.system ["touch {marker}"]
        objective: {{synthetic: {{function: branin}}}}
    """)
    for args in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "runs")]):
        result = run_cli(*args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {path}: line 2")
        assert "python/object/apply:os.system" in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "runs").exists()


def test_numbers_written_without_a_dot_are_numbers(write_experiment) -> None:
    exp = load_experiment(
        write_experiment("""
        objective: {python: "m:f"}
        params:
          lr: {type: float, low: 1e-4, high: 1E0, log: true}
          wd: {type: categorical, choices: [1e-5, 1e-4, 1e-3]}
    """)
    )
    assert exp.params["lr"].low == 1e-4 and exp.params["lr"].high == 1.0
    assert exp.params["wd"].choices == [1e-5, 1e-4, 1e-3]
    assert all(isinstance(c, float) for c in exp.params["wd"].choices)
    assert read_yaml("a: 1_000\nb: 2e3\nc: '1e-3'\nd: 1.5e-3") == {
        "a": 1000,
        "b": 2000.0,
        "c": "1e-3",
        "d": 0.0015,
    }


def test_good_file_defaults_and_resolved_yaml_round_trip(write_experiment, tmp_path) -> None:
    exp = load_experiment(write_experiment(GOOD))
    assert exp.name == "good" and exp.seed == 3 and exp.budget.trials == 5
    assert exp.budget.trial_timeout is None
    again = parse_experiment(read_yaml(exp.to_yaml()))
    assert again == exp


def test_initial_configs_are_normalized_and_round_trip(write_experiment) -> None:
    exp = load_experiment(
        write_experiment(GOOD + "initial:\n  - {x2: 3, x1: -5}\n  - {x1: 1e-3, x2: 15}\n")
    )
    assert exp.initial == [{"x1": -5.0, "x2": 3.0}, {"x1": 0.001, "x2": 15.0}]
    assert all(isinstance(v, float) for config in exp.initial for v in config.values())
    assert parse_experiment(read_yaml(exp.to_yaml())) == exp
    assert "initial" not in load_experiment(write_experiment(GOOD, "plain")).to_yaml()


def test_synthetic_without_params_uses_the_function_domain(write_experiment) -> None:
    exp = load_experiment(
        write_experiment("objective: {synthetic: {function: branin}}", name="branin-min")
    )
    assert exp.name == "branin-min"  # from the file name
    assert list(exp.params) == ["x0", "x1"]
    assert (exp.params["x0"].low, exp.params["x0"].high) == (-5, 10)
    assert (exp.params["x1"].low, exp.params["x1"].high) == (0, 15)
    assert exp.objectives == {"value": "minimize"}
    zdt = parse_experiment({"objective": {"synthetic": {"function": "zdt1", "dim": 3}}})
    assert zdt.objectives == {"f1": "minimize", "f2": "minimize"} and zdt.space.dim == 3


def test_relative_paths_are_resolved_against_the_experiment_file(
    write_experiment, tmp_path
) -> None:
    exp = load_experiment(
        write_experiment("""
        objective:
          command: {argv: [python, train.py, "{x}"], cwd: scripts}
        params: {x: {type: float, low: 0, high: 1}}
    """)
    )
    assert exp.objective.command.cwd == str((tmp_path / "scripts").resolve())
    exp = load_experiment(
        write_experiment("""
        objective: {python: {function: "mod:fn", path: [lib]}}
        params: {x: {type: float, low: 0, high: 1}}
    """)
    )
    assert exp.objective.python.path == [str((tmp_path / "lib").resolve())]


def test_python_api_reports_the_same_errors() -> None:
    with pytest.raises(ExperimentError, match=r"^params\.x\.low: must be <= high"):
        parse_experiment(
            {
                "objective": {"python": "m:f"},
                "params": {"x": {"type": "float", "low": 1, "high": 0}},
            }
        )


def test_packaged_examples_are_valid() -> None:
    folder = Path(__file__).resolve().parents[1] / "searchspaces"
    files = sorted(folder.glob("*.yaml"))
    assert {
        "default.yaml",
        "hartmann6.yaml",
        "branin.yaml",
        "digits-python.yaml",
        "digits-command.yaml",
    } <= {f.name for f in files}
    kinds = {load_experiment(f).objective.kind for f in files}
    assert {"synthetic", "python", "command", "trainer"} <= kinds


def test_validate_prints_a_summary(capsys: pytest.CaptureFixture[str], write_experiment) -> None:
    assert main(["validate", str(write_experiment(textwrap.dedent(GOOD)))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: good: 2 parameters (x1, x2)")


# A "billion laughs": nine levels of nine aliases, 9**9 strings once expanded, in under 1 KB.
LAUGHS = (
    "a: &a ["
    + ", ".join(["lol"] * 9)
    + "]\n"
    + "".join(
        f"{level}: &{level} [" + ", ".join([f"*{prev}"] * 9) + "]\n"
        for prev, level in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_billion_laughs_is_refused_at_once(command: str, tmp_path: Path, cli) -> None:
    """Nested aliases that would expand to 387 million values are refused before anything is
    built from them."""
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    assert len(LAUGHS) < 1024
    args = [command, str(path)] + (["--out", str(tmp_path / "runs")] if command == "run" else [])
    # validate in a process of its own, whose timeout stops a regression that would hang
    result = run_cli(*args, timeout=300) if command == "validate" else cli(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "expands to more than 10000 values through YAML aliases" in result.stderr


def test_aliases_within_the_limit_still_work() -> None:
    data = read_yaml("base: &b {type: float, low: 0, high: 1}\nparams: {x: *b, y: *b}\n")
    assert data["params"] == {"x": data["base"], "y": data["base"]}


@pytest.mark.parametrize(
    ("case", "content"),
    [
        ("binary", bytes(range(256)) * 4),
        ("utf-16", GOOD.encode("utf-16")),
        ("latin-1", "name: caf\xe9\n".encode("latin-1")),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_file_that_is_not_utf8_is_one_line(
    command: str, case: str, content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(content)
    args = [command, str(path)] + (["--out", str(tmp_path / "runs")] if command == "run" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: {path}: the file is not UTF-8 text (byte 0x"), err
    assert not (tmp_path / "runs").exists()


def test_utf8_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(GOOD.encode("utf-8-sig"))
    assert load_experiment(path).name == "good"


def test_unknown_field_lists_what_is_allowed_in_the_same_order_every_time(
    write_experiment,
) -> None:
    """The allowed names come from a set, whose order changes with the process's hash seed:
    sorted, the line reads the same in every process."""
    path = write_experiment("""
        objective: {synthetic: branin}
        budget: {trails: 3}
    """)
    lines = {
        run_cli("validate", str(path), env={"PYTHONHASHSEED": seed}).stderr for seed in ("1", "2")
    }
    assert lines == {
        "error: budget.trails: unknown field (did you mean 'trials'?); allowed: cpus_per_trial, "
        "gpus_per_trial, parallel, population_size, steps, trial_timeout, trials\n"
    }


@pytest.mark.parametrize("depth", [60, 5000])
def test_deeply_nested_yaml_is_one_line(depth: int, tmp_path: Path, cli) -> None:
    """Past PyYAML's own recursion (5000 brackets in 10 KB) or past a depth no experiment
    needs: one line, not a RecursionError."""
    path = tmp_path / "deep.yaml"
    path.write_text(
        "objective: {synthetic: branin}\nalgorithm: {tpe: {x: " + "[" * depth + "]" * depth + "}}\n"
    )
    result = cli("validate", path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "nested deeper than 50 levels" in result.stderr


def test_the_python_api_takes_tuples_paths_and_numpy_numbers(tmp_path: Path) -> None:
    """Strict about YAML's strings, not about what Python code naturally passes."""
    import numpy as np

    exp = parse_experiment(
        {
            "objective": {"python": {"function": "m:f", "path": [tmp_path]}},
            "params": {
                "c": {"type": "categorical", "choices": ("a", "b")},
                "x": {"type": "float", "low": np.float64(0.5), "high": 2},
            },
            "budget": {"trials": np.int64(7)},
        }
    )
    assert exp.budget.trials == 7 and isinstance(exp.budget.trials, int)
    assert exp.params["c"].choices == ["a", "b"]
    assert exp.objective.python.path == [str(tmp_path)]
    with pytest.raises(ExperimentError, match="must be a number"):
        parse_experiment(
            {
                "objective": {"synthetic": "branin"},
                "params": {"x": {"type": "float", "low": "0.5", "high": 2}},
            }
        )
