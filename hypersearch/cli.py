"""The ``hypersearch`` command line: run, compare, report, algos, validate, lr-find.

Exit codes: 0 success; 2 bad input (one ``error:`` line on stderr naming the field); 1 a run that
could not finish; 130 interrupted after saving (resume with ``--resume RUN_DIR``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from hypersearch.errors import HypersearchError, UserInputError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _stdout() -> Console:
    """The console for tables: as wide as the terminal, or wide enough for whole tables when the
    output goes to a file or a pipe (rich would otherwise assume 80 columns)."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _experiment_path(given: str | None, err: Console) -> Path:
    if given is not None:
        return Path(given)
    from hypersearch.experiment import default_experiment_path

    path, which = default_experiment_path()
    err.print(f"using {which}", highlight=False, soft_wrap=True)
    return path


def _executor_options(command: Callable[..., int]) -> Callable[..., int]:
    """Where trials run: the options ``run`` and ``compare`` share."""
    options = [
        click.option(
            "--executor",
            default="local",
            show_default=True,
            type=click.Choice(["inline", "local", "ray"]),
            help="Where trials run (a compare's runs share one executor).",
        ),
        click.option(
            "--gpus",
            metavar="IDS",
            help="GPUs for the local executor, e.g. 0,2, or 'none' (default: every GPU found).",
        ),
        click.option(
            "--trials-per-gpu",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Trials sharing one GPU at a time (pack small trials).",
        ),
        click.option(
            "--ray-address",
            metavar="ADDR",
            help="With --executor ray: the Ray cluster, e.g. HEAD:6379 (default: a local Ray).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _check_resume(
    what: str, resume: str | None, experiment: str | None, given: Mapping[str, object]
) -> None:
    """``--resume`` continues from the folder's own settings: refuse ones given with it."""
    if resume is None:
        return
    if experiment is not None:
        raise UserInputError(
            f"--resume: continues from the {what} folder's own experiment.yaml; give no EXPERIMENT"
        )
    for flag, value in given.items():
        if value is not None:
            raise UserInputError(
                f"{flag}: a resumed {what} keeps its own (got {value!r} with --resume)"
            )


def _check_executor_flags(
    executor: str, gpus: str | None, trials_per_gpu: int, ray_address: str | None
) -> None:
    """Reject executor flags that cannot work, before anything is started or created."""
    from hypersearch.executors import check_executor

    check_executor(executor, ray_address)
    if executor != "local" and (gpus is not None or trials_per_gpu != 1):
        flag = "--gpus" if gpus is not None else "--trials-per-gpu"
        raise UserInputError(
            f"{flag}: only used with --executor local (got {executor!r}; "
            "Ray takes budget.gpus_per_trial)"
        )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hypersearch")
def cli() -> None:
    """Metaheuristic hyperparameter optimization (GA, PSO, RF surrogate, A*, TPE, random)."""


@cli.command()
@click.argument("experiment", required=False)
@click.option("--algo", help="Algorithm name (see `hypersearch algos`); default tpe.")
@click.option("--trials", type=click.IntRange(min=1), help="Trial budget (overrides the file).")
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    help="Budget of steps (epochs) trained by all trials together (overrides the file).",
)
@click.option("--parallel", type=click.IntRange(min=1), help="Trials in flight at once.")
@click.option("--seed", type=int, help="Run seed (overrides the file).")
@click.option("--out", help="Folder for run folders (default: runs).")
@click.option("--name", help="Experiment name used for the run folder (overrides the file).")
@click.option(
    "--resume",
    "resume",
    type=click.Path(file_okay=False),
    help="Continue the run in this run folder (needs no EXPERIMENT).",
)
@_executor_options
@click.option(
    "--storage",
    help="SQLAlchemy URL for the Optuna study (default: study.db in the run folder; also read "
    "from HYPERSEARCH_STORAGE). Its password is never saved: a resume needs it again.",
)
@click.option(
    "--population",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Train compatible built-in-trainer trials together as one stacked model "
    "(auto: for ga, pso and random).",
)
@click.option(
    "--scheduler",
    type=click.Choice(["none", "median", "asha", "hyperband"]),
    help="Stop unpromising trials early at a reported step (default: the experiment's "
    "scheduler, else none).",
)
@click.option(
    "--warm-start",
    "warm_start",
    multiple=True,
    metavar="RUN_DIR",
    help="Tell the algorithm every complete trial of this earlier run first (repeat the flag, "
    "or separate folders with commas); they are not trials of this run.",
)
@click.option(
    "--enqueue",
    metavar="FILE.yaml",
    help="Run these configs (a YAML list) first, after the experiment's initial:.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON, nothing else.")
def run(
    experiment: str | None,
    algo: str | None,
    trials: int | None,
    steps: int | None,
    parallel: int | None,
    seed: int | None,
    out: str,
    name: str | None,
    resume: str | None,
    executor: str,
    gpus: str | None,
    trials_per_gpu: int,
    ray_address: str | None,
    storage: str | None,
    population: str,
    scheduler: str | None,
    warm_start: tuple[str, ...],
    enqueue: str | None,
    as_json: bool,
) -> int:
    """Tune EXPERIMENT (default ./hypersearch.yaml, else the packaged default)."""
    from hypersearch.database import given_storage
    from hypersearch.devices import parse_gpus
    from hypersearch.engine import run as run_experiment
    from hypersearch.report import RunProgress, every_trial_failed, print_run_end, say
    from hypersearch.results import load_run

    err = Console(stderr=True)
    given = {"--seed": seed, "--name": name, "--out": out, "--scheduler": scheduler}
    given |= {"--warm-start": ",".join(warm_start) or None, "--enqueue": enqueue}
    _check_resume("run", resume, experiment, given)
    _check_executor_flags(executor, gpus, trials_per_gpu, ray_address)
    if algo is not None:
        from hypersearch.algorithms import get_algorithm

        get_algorithm(algo)  # an unknown name fails before anything else is said
    path = None if resume is not None else _experiment_path(experiment, err)
    result = run_experiment(
        path,
        algo=algo,
        trials=trials,
        steps=steps,
        parallel=parallel,
        seed=seed,
        out=out or "runs",
        name=name,
        resume=resume,
        executor=executor,
        # a resume looks at HYPERSEARCH_STORAGE only for a saved URL whose password is hidden
        storage=storage if resume is not None else given_storage(storage),
        ray_address=ray_address,
        gpus=None if gpus is None else parse_gpus(gpus),
        trials_per_gpu=trials_per_gpu,
        progress=lambda store: RunProgress(store, err, quiet=as_json),
        population=population,
        scheduler=scheduler,
        warm_start=warm_start,
        enqueue=enqueue,
    )
    run_data = load_run(result.run_dir)
    if as_json:
        click.echo(json.dumps(result.summary, indent=2, default=str))
    else:
        print_run_end(_stdout(), run_data, result.interrupted)
    if result.interrupted:
        return EXIT_INTERRUPTED
    failure = every_trial_failed(run_data)
    if failure is not None:  # nothing to deploy: `hypersearch run … && deploy` must stop here
        say(err, failure)
        return EXIT_FAILED
    return EXIT_OK


@cli.command()
@click.argument("experiment", required=False)
@click.option(
    "--algos",
    "algo_names",
    metavar="A,B,…",
    help="Algorithms to compare, comma-separated (default: all; see `hypersearch algos`).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    help="Seeds per algorithm, the same for every algorithm (paired); default 3.",
)
@click.option("--trials", type=click.IntRange(min=1), help="Trial budget of each run.")
@click.option("--parallel", type=click.IntRange(min=1), help="Trials in flight at once.")
@click.option("--target", type=float, help="Target score (default: random search's median).")
@click.option("--out", help="Folder for the compare folder (default: runs).")
@click.option("--name", help="Experiment name (overrides the file).")
@click.option(
    "--resume",
    "resume",
    type=click.Path(file_okay=False),
    help="Continue the compare in this compare folder (needs no EXPERIMENT).",
)
@_executor_options
@click.option(
    "--population",
    type=click.Choice(["on", "off"]),
    default="off",
    show_default=True,
    help="Train compatible built-in-trainer trials together as stacked models, for every "
    "algorithm alike (the same dispatch for all keeps the comparison fair).",
)
@click.option(
    "--scheduler",
    type=click.Choice(["none", "median", "asha", "hyperband"]),
    help="Stop unpromising trials early, every algorithm under the same scheduler (default: "
    "the experiment's, else none).",
)
def compare(
    experiment: str | None,
    algo_names: str | None,
    seeds: int | None,
    trials: int | None,
    parallel: int | None,
    target: float | None,
    out: str | None,
    name: str | None,
    resume: str | None,
    executor: str,
    gpus: str | None,
    trials_per_gpu: int,
    ray_address: str | None,
    population: str,
    scheduler: str | None,
) -> int:
    """Run every algorithm × seed on EXPERIMENT and print the results table."""
    from hypersearch.devices import parse_gpus
    from hypersearch.report import CompareLines, print_compare_end, say
    from hypersearch.report import compare as run_compare  # runs, then writes results and plots

    err = Console(stderr=True)
    given: dict[str, object] = {"--algos": algo_names, "--seeds": seeds, "--trials": trials}
    given |= {"--parallel": parallel, "--target": target, "--out": out, "--name": name}
    given["--scheduler"] = scheduler
    _check_resume("compare", resume, experiment, given)
    _check_executor_flags(executor, gpus, trials_per_gpu, ray_address)
    names = None
    if algo_names is not None:
        from hypersearch.algorithms import get_algorithm

        names = [a.strip() for a in algo_names.split(",") if a.strip()]
        if not names:
            raise UserInputError(f"--algos: no algorithm named (got {algo_names!r})")
        for algo in names:
            get_algorithm(algo)
    path = None if resume is not None else _experiment_path(experiment, err)
    comparison = run_compare(
        path,
        algos=names,
        seeds=seeds or 3,
        trials=trials,
        parallel=parallel,
        out=out or "runs",
        name=name,
        resume=resume,
        executor=executor,
        target=target,
        ray_address=ray_address,
        gpus=None if gpus is None else parse_gpus(gpus),
        trials_per_gpu=trials_per_gpu,
        progress=CompareLines(err),
        population=population,
        scheduler=scheduler,
    )
    print_compare_end(_stdout(), comparison)
    if comparison.interrupted:
        return EXIT_INTERRUPTED
    without = comparison.runs_without_success
    if without:
        say(err, f"no successful trial in {len(without)} run(s): {', '.join(without)}")
        if len(without) == comparison.notes["runs_finished"]:
            return EXIT_FAILED
    return EXIT_OK


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False))
def report(folder: str) -> int:
    """Rebuild the tables and plots of a run or compare FOLDER from what it stored."""
    from hypersearch.report import report as make_report

    make_report(Path(folder), _stdout())
    return EXIT_OK


@cli.command()
def algos() -> int:
    """List the algorithms."""
    from hypersearch.algorithms import available

    table = Table("name", "description", title="algorithms (--algo NAME)", title_justify="left")
    for name, cls in available().items():
        table.add_row(name, cls.description)
    Console().print(table)
    return EXIT_OK


@cli.command()
@click.argument("experiment")
def validate(experiment: str) -> int:
    """Check an experiment file (schema, search space, objective import) without running it."""
    from hypersearch.experiment import budget_words, load_experiment
    from hypersearch.objectives import build_objective

    exp = load_experiment(experiment)
    build_objective(exp.objective).check()
    objectives = ", ".join(f"{m} ({d})" for m, d in exp.objectives.items())
    click.echo(
        f"ok: {exp.name}: {exp.space.dim} parameters ({', '.join(exp.params)}); "
        f"{exp.objective.kind} objective; optimizing {objectives}; "
        f"{budget_words(exp.budget)}, {exp.budget.parallel} in parallel"
    )
    return EXIT_OK


class _SpreadValues(click.Command):
    """``--momentum 0.9 0.95``: the numbers after a flag of ``SPREAD`` are each given to it
    (click options take one value each; ``multiple=True`` collects them)."""

    SPREAD = ("--momentum", "--weight-decay")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        spread: list[str] = []
        flag, first = None, False
        for arg in args:
            if first:  # the flag's own value, parsed by click
                spread.append(arg)
                first = False
            elif flag is not None and _is_number(arg):
                spread += [flag, arg]
            else:
                flag = arg.split("=")[0] if arg.split("=")[0] in self.SPREAD else None
                first = flag is not None and "=" not in arg
                spread.append(arg)
        return super().parse_args(ctx, spread)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@cli.command("lr-find", cls=_SpreadValues)
@click.argument("experiment", required=False)
@click.option(
    "--start",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-7,
    show_default=True,
    help="First lr.",
)
@click.option(
    "--end",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Last lr.",
)
@click.option(
    "--steps", type=click.IntRange(min=20), default=100, show_default=True, help="Batches trained."
)
@click.option(
    "--momentum",
    type=click.FloatRange(0, 1, max_open=True),
    multiple=True,
    metavar="V [V…]",
    help="A curve per value (default: one, at the middle of params.momentum).",
)
@click.option(
    "--weight-decay",
    type=click.FloatRange(min=0),
    multiple=True,
    metavar="V [V…]",
    help="A curve per value (default: one, at the middle of params.weight_decay).",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--narrow", is_flag=True, help="Write experiment.narrowed.yaml (params.lr narrowed).")
@click.option("--out", help="Folder for the lr-find folder (default: runs).")
def lr_find(
    experiment: str | None,
    start: float,
    end: float,
    steps: int,
    momentum: tuple[float, ...],
    weight_decay: tuple[float, ...],
    device: str,
    narrow: bool,
    out: str | None,
) -> int:
    """Learning-rate range test of EXPERIMENT's built-in trainer: suggested lr, plot, csv.

    The lr grows exponentially each step (a trial's model, batch, optimizer, precision, on the
    GPU when there is one) until the smoothed loss passes 4x its best."""
    from hypersearch.experiment import load_experiment
    from hypersearch.lr_find import lr_find as find
    from hypersearch.lr_find import summary_lines

    err = Console(stderr=True)
    exp = load_experiment(_experiment_path(experiment, err))
    outcome = find(
        exp,
        ramp=(start, end, steps),
        momentum=momentum,
        weight_decay=weight_decay,
        device=device,
        out=out or "runs",
        narrow=narrow,
        progress=lambda line: err.print(f"lr-find {line}", highlight=False, soft_wrap=True),
    )
    for line in summary_lines(exp, outcome):
        click.echo(line)
    return EXIT_OK


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the CLI and maps outcomes to exit codes."""
    try:
        code = cli.main(args=argv, prog_name="hypersearch", standalone_mode=False)
    except click.exceptions.Exit as done:
        code = done.exit_code
    except click.UsageError as usage:
        click.echo(f"error: {' '.join(usage.format_message().split())}", err=True)
        return EXIT_BAD_INPUT
    except (click.Abort, KeyboardInterrupt):
        click.echo("error: interrupted", err=True)
        return EXIT_INTERRUPTED
    except UserInputError as bad:
        click.echo(f"error: {_one_line(bad)}", err=True)
        return EXIT_BAD_INPUT
    except HypersearchError as failed:
        click.echo(f"error: {_one_line(failed)}", err=True)
        return EXIT_FAILED
    return code if isinstance(code, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
