"""The experiment file: schema, validation and defaults.

An experiment says what to tune (``params``), how to score a config (``objective``), which
metrics to optimize (``objectives``) and how much to spend (``budget``). Validation errors are
one line naming the field, the rule and the value; unknown keys are rejected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from hypersearch.errors import ExperimentError, format_validation_error, user_errors
from hypersearch.initial import check_initial
from hypersearch.objectives.trainer.settings import METRICS, TUNABLE, TrainerSpec
from hypersearch.safe_yaml import read_yaml
from hypersearch.space import Param, SearchSpace, StrictModel, rule_error

# Letters, digits, '.', '_' and '-'; never a leading dot (".", ".." or a hidden folder).
NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"
NAME_RULE = "1-64 letters, digits, '.', '_' or '-', not starting with a dot"
METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Columns of trials.csv that a parameter or metric must not shadow.
RESERVED_COLUMNS = frozenset(
    {"number", "state", "duration_s", "error", "device", "superseded", "steps"}
)
Direction = Literal["minimize", "maximize"]


class SyntheticSpec(StrictModel):
    """A benchmark function (branin, hartmann6, rosenbrock, ackley, …) with optional noise."""

    function: str
    dim: Annotated[int, Field(ge=1)] | None = None
    noise: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0


class PythonSpec(StrictModel):
    """``"package.module:function"``, imported from ``path`` (relative to the experiment file)."""

    function: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]
    path: list[str] = []

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return [str(_resolve(p, info)) for p in value]


class CommandSpec(StrictModel):
    """An argv template (never a shell); ``{param}`` placeholders are replaced by values."""

    argv: Annotated[list[str], Field(min_length=1)]
    cwd: str | None = None
    env: dict[str, str] = {}

    @field_validator("cwd")
    @classmethod
    def _absolute(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else str(_resolve(value, info))


class ObjectiveSpec(StrictModel):
    """Exactly one of ``trainer``, ``python``, ``command`` or ``synthetic``."""

    trainer: TrainerSpec | None = None
    python: PythonSpec | None = None
    command: CommandSpec | None = None
    synthetic: SyntheticSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        """``python: "mod:fn"`` and ``command: [argv…]`` are accepted as shorthands."""
        if isinstance(data, Mapping):
            data = dict(data)
            if isinstance(data.get("python"), str):
                data["python"] = {"function": data["python"]}
            if isinstance(data.get("command"), list):
                data["command"] = {"argv": data["command"]}
            if isinstance(data.get("synthetic"), str):
                data["synthetic"] = {"function": data["synthetic"]}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> ObjectiveSpec:
        given = [k for k in ("trainer", "python", "command", "synthetic") if getattr(self, k)]
        if len(given) != 1:
            raise rule_error(
                None,
                "needs exactly one of trainer, python, command, synthetic "
                f"(got {', '.join(given) or 'none'})",
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("trainer", "python", "command", "synthetic") if getattr(self, k))


class Budget(StrictModel):
    """How many trials (pruned ones count) or ``steps`` (epochs, all trials together; alone,
    trials are unbounded), how many at once, how long one may run (seconds), what one trial
    holds on Ray (``cpus_per_trial``, ``gpus_per_trial``; the local executor ignores them)."""

    trials: Annotated[int, Field(ge=1)] | None = 40
    steps: Annotated[int, Field(ge=1)] | None = None
    parallel: Annotated[int, Field(ge=1)] = 1
    trial_timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    cpus_per_trial: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    gpus_per_trial: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    # Most built-in-trainer trials trained together as one population in one slot.
    population_size: Annotated[int, Field(ge=1)] = 16

    @model_validator(mode="before")
    @classmethod
    def _steps_alone(cls, data: Any) -> Any:
        """``steps`` given without ``trials`` bounds the run by steps alone."""
        if isinstance(data, dict) and data.get("steps") is not None and "trials" not in data:
            return {**data, "trials": None}
        return data

    @model_validator(mode="after")
    def _bounded(self) -> Budget:
        if self.trials is None and self.steps is None:
            raise rule_error("trials", "give trials, steps or both")
        return self

    @field_validator("cpus_per_trial", "gpus_per_trial")
    @classmethod
    def _share(cls, value: float) -> float:
        """Ray shares a CPU or GPU between trials in fractions of one, never of several."""
        if value > 1 and not value.is_integer():
            raise ValueError("must be at most 1 or a whole number")
        return value


def budget_words(budget: Budget) -> str:
    """``40 trials``, ``500 steps`` or ``40 trials or 500 steps``."""
    words = [f"{budget.trials} trials"] if budget.trials is not None else []
    return " or ".join(words + ([f"{budget.steps} steps"] if budget.steps else []))


class RaySpec(StrictModel):
    """What Ray gives every trial with ``--executor ray``: Ray's own ``runtime_env`` (local
    ``working_dir`` and ``py_modules`` paths are taken from the experiment's folder) and the
    names of the driver's environment variables to copy into it at run time (their values
    are never written to the run folder)."""

    runtime_env: dict[str, Any] = {}
    forward_env: list[str] = []

    @field_validator("runtime_env")
    @classmethod
    def _local_paths(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        env = dict(value)
        if isinstance(env.get("working_dir"), str) and "://" not in env["working_dir"]:
            env["working_dir"] = str(_existing(env["working_dir"], info, "working_dir"))
        if isinstance(env.get("py_modules"), list):
            env["py_modules"] = [
                str(_existing(m, info, "py_modules"))
                if isinstance(m, str) and "://" not in m
                else m
                for m in env["py_modules"]
            ]
        env_vars = env.get("env_vars", {})
        if not isinstance(env_vars, dict) or not all(isinstance(v, str) for v in env_vars.values()):
            raise rule_error("env_vars", f"must map names to strings (got {env_vars!r})")
        return env

    @field_validator("forward_env")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"must be environment variable names (got {name!r})")
        return value


class Experiment(StrictModel):
    """A validated experiment: from :func:`load_experiment` or :func:`parse_experiment`."""

    name: str = "experiment"
    seed: int = 0
    objective: ObjectiveSpec
    objectives: dict[str, Direction] = {}
    params: dict[str, Param] = {}
    budget: Budget = Budget()
    algorithm: dict[str, dict[str, Any]] = {}
    # Early stopping: a scheduler's name, or {name: {option: value}} (hypersearch.schedulers).
    scheduler: str | dict[str, dict[str, Any]] = "none"
    ray: RaySpec = RaySpec()
    # Hypervolume reference point, in each objective's own units (default: derived from the
    # observed values; see pareto.py).
    reference_point: dict[str, Annotated[float, Field(allow_inf_nan=False)]] | None = None
    # Configs evaluated first, before the algorithm's own (see hypersearch.initial).
    initial: list[Any] = []

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """Synthetic functions bring their own domain; objectives default to ``value``."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        objective = data.get("objective")
        if not isinstance(objective, Mapping):
            return data
        objectives_given = bool(data.get("objectives"))
        if not objectives_given:
            data["objectives"] = (
                {"val_loss": "minimize"} if "trainer" in objective else {"value": "minimize"}
            )
        if "synthetic" in objective:
            from hypersearch.objectives import synthetic

            try:
                spec = ObjectiveSpec.model_validate(objective).synthetic
                if not data.get("params"):
                    data["params"] = synthetic.default_params(spec)
                if not objectives_given:
                    data["objectives"] = synthetic.default_objectives(spec)
            except (ValidationError, ExperimentError):
                pass  # reported, with its field, by the validators that follow
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(NAME_PATTERN, value):
            raise ValueError(f"must be {NAME_RULE}")
        return value

    @field_validator("initial")
    @classmethod
    def _initial(cls, value: list[Any], info: ValidationInfo) -> list[Any]:
        """Each config names every parameter with a value in its domain (normalized)."""
        params = info.data.get("params")
        return check_initial(SearchSpace(params), value) if params else value

    @model_validator(mode="after")
    def _check(self) -> Experiment:
        if self.objective.synthetic is not None:
            from hypersearch.objectives.synthetic import check_spec

            check_spec(self.objective.synthetic, len(self.params))
        self.space  # noqa: B018  (raises on an empty space or a bad name)
        for metric in self.objectives:
            if not METRIC_NAME.match(metric):
                raise ExperimentError(
                    f"objectives.{metric}",
                    f"metric names must match {METRIC_NAME.pattern} (got {metric!r})",
                )
            if metric in RESERVED_COLUMNS or metric in self.params:
                raise ExperimentError(
                    f"objectives.{metric}",
                    "collides with a parameter or a "
                    f"reserved column ({', '.join(sorted(RESERVED_COLUMNS))})",
                )
        if self.objective.trainer is not None:
            self._check_trainer()
        if self.reference_point is not None:
            self._check_reference_point()
        for name in self.params:
            if name in RESERVED_COLUMNS:
                raise ExperimentError(
                    f"params.{name}",
                    "collides with a reserved column of "
                    f"trials.csv ({', '.join(sorted(RESERVED_COLUMNS))})",
                )
        from hypersearch.algorithms import validate_options

        for algo, options in self.algorithm.items():
            validate_options(algo, options, field=f"algorithm.{algo}")
        from hypersearch.schedulers import check_experiment

        check_experiment(self)
        return self

    def scheduler_spec(self) -> tuple[str, dict[str, Any]]:
        """The scheduler's name and options (see ``schedulers.spec_of``)."""
        from hypersearch.schedulers import spec_of

        return spec_of(self)

    def _check_reference_point(self) -> None:
        assert self.reference_point is not None
        if len(self.objectives) < 2:
            raise ExperimentError(
                "reference_point", "only used with two or more objectives (hypervolume)"
            )
        for metric in self.reference_point:
            if metric not in self.objectives:
                raise ExperimentError(
                    f"reference_point.{metric}",
                    f"not an objective (objectives: {', '.join(self.objectives)})",
                )
        missing = [m for m in self.objectives if m not in self.reference_point]
        if missing:
            raise ExperimentError(
                "reference_point",
                f"needs a value for every objective (missing: {', '.join(missing)})",
            )

    def _check_trainer(self) -> None:
        """Parameters must name tunable settings; objectives must be metrics it reports."""
        for name in self.params:
            if name not in TUNABLE:
                raise ExperimentError(
                    f"params.{name}",
                    "the built-in trainer has no tunable "
                    f"setting of this name (tunable: {', '.join(sorted(TUNABLE))})",
                )
        for metric in self.objectives:
            if metric not in METRICS:
                raise ExperimentError(
                    f"objectives.{metric}",
                    f"the built-in trainer reports no such metric (metrics: {', '.join(METRICS)})",
                )

    @property
    def space(self) -> SearchSpace:
        return SearchSpace(self.params)

    @property
    def directions(self) -> list[Direction]:
        return list(self.objectives.values())

    def to_yaml(self) -> str:
        """The resolved experiment (defaults filled in, paths absolute) as YAML."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["params"] = self.space.to_dict()
        if self.ray == RaySpec():
            del data["ray"]
        if not self.initial:
            del data["initial"]
        return yaml.safe_dump(data, sort_keys=False)

    def with_overrides(self, **changes: Any) -> Experiment:
        """A copy with top-level or ``budget`` fields changed (``trials=…``, ``name=…``)."""
        data = self.model_dump(mode="json", exclude_none=True)
        budget_keys = set(Budget.model_fields)
        if changes.get("steps") and not changes.get("trials"):  # steps alone bound the run
            data["budget"].pop("trials", None)
        for key, value in changes.items():
            if value is None:
                continue
            if key in budget_keys:
                data["budget"][key] = value
            elif key == "scheduler" and isinstance(data.get("scheduler"), dict):
                data[key] = value if value not in data[key] else {value: data[key][value]}
            else:
                data[key] = value
        return parse_experiment(data)


def _existing(path: str, info: ValidationInfo, field: str) -> Path:
    """A local path Ray is to upload: it must exist (checked before anything starts)."""
    resolved = _resolve(path, info)
    if not resolved.exists():
        raise rule_error(field, f"{resolved} does not exist")
    return resolved


def _resolve(path: str, info: ValidationInfo) -> Path:
    base = Path((info.context or {}).get("base_dir", "."))
    return (base / Path(path).expanduser()).resolve()


def parse_experiment(
    data: Any, base_dir: Path | str = ".", default_name: str | None = None
) -> Experiment:
    """Validate a mapping (as read from YAML); relative paths are taken from ``base_dir``."""
    if not isinstance(data, Mapping):
        raise ExperimentError(
            "experiment", f"must be a mapping of fields (got {type(data).__name__})"
        )
    if default_name and "name" not in data and re.fullmatch(NAME_PATTERN, default_name):
        data = {"name": default_name, **data}
    try:
        return Experiment.model_validate(data, context={"base_dir": str(base_dir)})
    except ValidationError as err:
        raise format_validation_error(err) from None


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file (UTF-8, with or without a byte-order mark)."""
    path = Path(path)
    with user_errors(str(path), "the file"):
        text = path.read_bytes().decode("utf-8-sig")
    data = read_yaml(text, source=str(path))
    return parse_experiment(data, base_dir=path.resolve().parent, default_name=path.stem)


def check_name(name: str, field: str) -> None:
    """A run or experiment name: it becomes part of a folder name."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise ExperimentError(field, f"must be {NAME_RULE} (got {name!r})")


def packaged_experiments_dir() -> Path:
    """The example experiments: installed inside the package, or beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "searchspaces", here.parent / "searchspaces"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the packaged searchspaces/ folder is missing")


DEFAULT_EXPERIMENT = "default.yaml"


def default_experiment_path() -> tuple[Path, str]:
    """``./hypersearch.yaml`` if present, else the packaged default; and which one it was."""
    local = Path("hypersearch.yaml")
    if local.is_file():
        return local, "./hypersearch.yaml"
    packaged = packaged_experiments_dir() / DEFAULT_EXPERIMENT
    return packaged, f"the packaged default experiment ({packaged})"
