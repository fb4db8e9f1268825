"""``hypersearch lr-find``: the learning-rate range test (Smith 2015; fastai's ``lr_find``) on an
experiment's built-in trainer, its suggestions, and a search space narrowed around them.

It trains what a trial of the experiment trains: the same model, data, batch size, optimizer and
mixed precision (``lr_find_loop``). The other tuned parameters take the middle of their range
(geometric for log scales, the middle choice of a categorical) unless ``--momentum`` or
``--weight-decay`` give values, each of which gets a curve of its own (fastai's habit of checking
weight decay this way). It runs in this process: one short run needs no worker, and the process
starts no other that could inherit its CUDA state.

Suggestions, as fastai names them: ``steepest``, the lr where the smoothed loss falls fastest
against log lr, and ``min/10``, a tenth of the lr at its minimum (fastai's ``steep`` and
``minimum``). The first and last points (a tenth of the steps, and five) are left out, as fastai
does: the start is flat noise and the end is the blow-up.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hypersearch.errors import ExperimentError, UserInputError
from hypersearch.experiment import Experiment, parse_experiment
from hypersearch.objectives.trainer.settings import TrainerSpec
from hypersearch.space import CategoricalParam, FloatParam, fmt

if TYPE_CHECKING:
    from hypersearch.lr_find_loop import Curve

LR = "lr"
UNUSED = frozenset({"epochs", "schedule"})  # the ramp's steps and schedule replace them
SKIP_END = 5  # points left out at the end (fastai's)
STEEPEST = "steepest descent of the smoothed loss"
MIN_OVER_10 = "min-loss/10"
NARROW_RULE = "[steepest/10, min(lr at the minimum, 10 x steepest) but at least 2 x steepest]"


@dataclass(frozen=True)
class Suggestion:
    """A curve's suggested learning rates."""

    steepest: float  # at the most negative slope of the smoothed loss against log lr
    min_over_10: float  # a tenth of ``at_min``
    at_min: float  # the lr at the smoothed loss's minimum


@dataclass(frozen=True)
class Plan:
    """What lr-find trains: a trial's settings per curve (label → settings), and how the values
    of the experiment's other parameters were chosen (one phrase each)."""

    curves: list[tuple[str, TrainerSpec]]
    chosen: list[str]


@dataclass(frozen=True)
class Outcome:
    """A finished lr-find: its folder, what it trained, the curves and their suggestions, the
    narrowed lr range (with ``--narrow``) and remarks for the user."""

    folder: Path
    plan: Plan
    device: str  # and its arithmetic: "cpu, float32", "cuda, mixed precision, bf16"
    ramp: tuple[float, float, int]  # start, end, steps
    curves: list[Curve]
    suggestions: list[Suggestion | str]  # a curve too short to read: why, instead
    narrowed: tuple[float, float] | None
    remarks: list[str]


def check_experiment(exp: Experiment, narrow: bool = False) -> None:
    """lr-find needs the built-in trainer and an ``lr`` parameter (a float one to ``--narrow``)."""
    if exp.objective.trainer is None:
        raise ExperimentError(
            "objective", f"lr-find needs the built-in trainer (got {exp.objective.kind})"
        )
    if LR not in exp.params:
        raise ExperimentError(
            f"params.{LR}",
            f"lr-find needs a learning-rate parameter named lr (params: {', '.join(exp.params)})",
        )
    lr = exp.params[LR]
    if narrow and not isinstance(lr, FloatParam):
        raise ExperimentError(f"params.{LR}", f"--narrow needs a float parameter (got {lr.type})")


def plan(
    exp: Experiment, momentum: Sequence[float] = (), weight_decay: Sequence[float] = ()
) -> Plan:
    """One curve per combination of the momentum and weight-decay values given (one curve when
    at most one of each is given); every other parameter at the middle of its range."""
    from hypersearch.objectives.trainer import TrainerObjective

    flags = {"momentum": list(momentum), "weight_decay": list(weight_decay)}
    config: dict[str, Any] = {}
    chosen = []
    for name, param in exp.params.items():
        if name == LR or name in UNUSED or flags.get(name):
            continue
        config[name] = param.decode(0.5)
        how = (
            "middle choice"
            if isinstance(param, CategoricalParam)
            else ("geometric middle" if param.log else "middle")
        )
        shown = f"{config[name]:.3g}" if isinstance(config[name], float) else fmt(config[name])
        chosen.append(f"{name}={shown} ({how} of params.{name})")
    fixed = {name: values[0] for name, values in flags.items() if len(values) == 1}
    chosen += [f"{name}={value:g} (--{name.replace('_', '-')})" for name, value in fixed.items()]
    varying = {name: values for name, values in flags.items() if len(values) > 1}
    settings = TrainerObjective(exp.objective.trainer).settings  # a trial's settings
    curves = []
    for values in itertools.product(*varying.values()):
        given = dict(zip(varying, values, strict=True))
        label = ", ".join(f"{k}={v:g}" for k, v in (given or fixed).items()) or "default"
        curves.append((label, settings(config | fixed | given)))
    return Plan(curves, chosen)


def suggest(lrs: Sequence[float], smoothed: Sequence[float], skip_start: int) -> Suggestion:
    """The suggestions of one curve (see the module's docstring)."""
    lr, loss = np.asarray(lrs, dtype=float), np.asarray(smoothed, dtype=float)
    bad = np.flatnonzero(~np.isfinite(loss))
    n = int(bad[0]) if len(bad) else len(loss)
    lo, hi = skip_start, n - SKIP_END
    if hi - lo < 3:  # stopped early: use every finite point
        lo, hi = 0, n
    if hi - lo < 3:
        raise UserInputError(
            f"--start: the loss diverged at step {len(lrs)} (lr {lr[-1]:.3g}), too early to "
            f"suggest a learning rate: lower --start (got {lr[0]:g})"
        )
    slope = np.gradient(loss[lo:hi], np.log(lr[lo:hi]))
    at_min = float(lr[lo + int(np.argmin(loss[lo:hi]))])
    return Suggestion(float(lr[lo + int(np.argmin(slope))]), at_min / 10, at_min)


def narrowed_range(
    suggestions: Sequence[Suggestion], param: FloatParam
) -> tuple[float, float, str | None]:
    """The lr range ``NARROW_RULE`` around every curve's steepest suggestion (their union),
    clipped to ``param``'s bounds and rounded to 3 digits; and a remark when a suggestion lies
    outside those bounds (a range left empty by the clipping keeps the decade of the original
    nearest the suggestions)."""
    low = min(s.steepest / 10 for s in suggestions)
    high = max(max(min(s.at_min, 10 * s.steepest), 2 * s.steepest) for s in suggestions)
    remark = None
    if any(s.steepest > param.high for s in suggestions):
        remark = f"a suggestion lies above params.lr.high ({fmt(param.high)}): consider raising it"
    elif any(s.steepest < param.low for s in suggestions):
        remark = f"a suggestion lies below params.lr.low ({fmt(param.low)}): consider lowering it"
    low = max(float(f"{max(low, param.low):.3g}"), param.low)
    high = min(float(f"{min(high, param.high):.3g}"), param.high)
    if low >= high and low >= param.high / 10:  # all of it at or above the top
        low, high = max(param.high / 10, param.low), param.high
    elif low >= high:  # all of it at or below the bottom
        low, high = param.low, min(param.low * 10, param.high)
    return low, high, remark


def narrowed_experiment(exp: Experiment, low: float, high: float) -> tuple[Experiment, int]:
    """``exp`` with ``params.lr`` = [low, high] on a log scale, everything else unchanged but
    the ``initial:`` configs whose lr falls outside (they would no longer validate); and how
    many of those were dropped."""
    data = exp.model_dump(mode="json", exclude_none=True)
    data["params"] = exp.space.to_dict()
    data["params"][LR] = {"type": "float", "low": low, "high": high, "log": True}
    initial = data.get("initial", [])
    data["initial"] = [c for c in initial if low <= float(c[LR]) <= high]
    return parse_experiment(data), len(initial) - len(data["initial"])


def lr_find(
    exp: Experiment,
    *,
    ramp: tuple[float, float, int] = (1e-7, 10.0, 100),
    momentum: Sequence[float] = (),
    weight_decay: Sequence[float] = (),
    device: str = "auto",
    out: str | Path = "runs",
    narrow: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Outcome:
    """Run the range test on ``exp``, the learning rate going from ``ramp`` = (start, end,
    steps), and write ``<out>/lr-find-<name>-<time>/`` (lr_find.csv, lr_find.png and, with
    ``narrow``, experiment.narrowed.yaml)."""
    start, end, steps = ramp
    if end <= start:
        raise UserInputError(f"--end: must be above --start (got start {start:g}, end {end:g})")
    check_experiment(exp, narrow)
    the_plan = plan(exp, momentum, weight_decay)
    from hypersearch.lr_find_loop import precision, range_tests, resolve_device

    dev = resolve_device(device)
    curves = range_tests(
        the_plan.curves,
        seed=exp.seed,
        device=dev,
        ramp=ramp,
        done=None if progress is None else lambda c: progress(f"{c.label}: {c.stopped}"),
    )
    suggestions = _suggestions(curves, steps // 10)
    found = [s for s in suggestions if isinstance(s, Suggestion)]
    narrowed, remarks, narrowed_yaml = None, [], None
    if narrow:
        param = exp.params[LR]
        assert isinstance(param, FloatParam)  # check_experiment made sure
        low, high, remark = narrowed_range(found, param)
        narrowed = (low, high)
        remarks += [remark] if remark else []
        narrowed_exp, dropped = narrowed_experiment(exp, low, high)
        narrowed_yaml = narrowed_exp.to_yaml()
        if dropped:
            remarks.append(f"{dropped} initial: config(s) with lr outside the range left out")
    from hypersearch.lr_find_output import write_folder

    first = the_plan.curves[0][1]
    where = f"{dev}, {precision(first, dev)}"
    folder = write_folder(
        Path(out),
        f"lr-find-{exp.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}",
        title=f"{exp.name}: lr range test ({first.model} on {first.dataset}, "
        f"batch {first.batch_size}, {where})",
        curves=curves,
        marks=[
            [(STEEPEST, s.steepest), (MIN_OVER_10, s.min_over_10)]
            if isinstance(s, Suggestion)
            else []
            for s in suggestions
        ],
        narrowed=narrowed,
        narrowed_yaml=narrowed_yaml,
    )
    return Outcome(folder, the_plan, where, ramp, curves, suggestions, narrowed, remarks)


def _suggestions(curves: Sequence[Curve], skip_start: int) -> list[Suggestion | str]:
    """Each curve's suggestions, or why it has none (it diverged too early to read); an error
    only when no curve has any, so one bad momentum or weight decay does not cost the others."""
    found: list[Suggestion | str] = []
    for curve in curves:
        try:
            found.append(suggest(curve.lrs, curve.smoothed, skip_start))
        except UserInputError as err:
            found.append(str(err).removeprefix("--start: "))
    if not any(isinstance(s, Suggestion) for s in found):
        raise UserInputError(f"--start: {found[0]}")
    return found


def summary_lines(exp: Experiment, outcome: Outcome) -> list[str]:
    """What lr-find prints: what it trained, then per curve why it stopped and its suggestions,
    the narrowed range, and where the files are."""
    from hypersearch.lr_find_output import CSV_NAME, NARROWED_NAME, PNG_NAME

    first = outcome.plan.curves[0][1]
    start, end, steps = outcome.ramp
    accumulated = f" x {first.grad_accum} accumulated" if first.grad_accum > 1 else ""
    lines = [
        f"lr-find {exp.name}: {first.model} on {first.dataset}, batch {first.batch_size}"
        f"{accumulated}, SGD, {outcome.device}",
        f"  lr {start:g} -> {end:g}, exponentially over up to {steps} steps",
    ]
    if outcome.plan.chosen:
        lines.append(f"  other parameters: {', '.join(outcome.plan.chosen)}")
    for curve, suggestion in zip(outcome.curves, outcome.suggestions, strict=True):
        lines.append(f"{curve.label}: {curve.stopped}")
        if isinstance(suggestion, str):
            lines.append(f"  no suggestion: {suggestion}")
            continue
        lines += [
            f"  suggested lr ({STEEPEST}): {suggestion.steepest:.3g}",
            f"  suggested lr ({MIN_OVER_10}): {suggestion.min_over_10:.3g}",
        ]
    files = [CSV_NAME, PNG_NAME]
    if outcome.narrowed is not None:
        param = exp.params[LR]
        assert isinstance(param, FloatParam)
        lines.append(
            f"narrowed params.{LR}: [{outcome.narrowed[0]:g}, {outcome.narrowed[1]:g}], log "
            f"(rule: {NARROW_RULE}, within the original [{param.low:g}, {param.high:g}])"
        )
        files.append(NARROWED_NAME)
    lines += [f"note: {remark}" for remark in outcome.remarks]
    lines.append(f"wrote {outcome.folder}/ ({', '.join(files)})")
    return lines
