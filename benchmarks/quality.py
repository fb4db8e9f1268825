"""Quality benchmark: Bayesmark's normalized score of every algorithm, against Optuna's samplers.

Every config (a hypersearch algorithm, a variant of one with options, or an Optuna sampler run
as an anchor) searches every task of ``quality_tasks.py`` under every setting (``64x8``: 64
trials asked in batches of 8, as with ``parallel: 8``; ``32x2``: 32 in batches of 2) for
``--seeds`` seeds. A run asks a batch, evaluates it, tells it all, until its trials are spent.

Score (Bayesmark; Turner et al. 2021, "Bayesian Optimization is Superior to Random Search for
Machine Learning Hyperparameter Tuning"), per task and setting: normalized loss = (best found -
opt) / (random's median - opt), score = 100 x (1 - normalized loss): 0 is random search's median
result, 100 the optimum; below 0 is worse than random's median (a run's score is clipped at
-100, as Bayesmark limits one run's weight). ``opt`` is the
known optimum of synthetic and mixed tasks, else the best value any cached run of any config
ever found on the task; random's median is the median over seeds of ``optuna-random``'s best
(always run, as the reference). Noisy tasks are scored by the noiseless value of the trials.
A config's mean over a half's tasks is taken per seed; the table shows the mean over seeds and
its standard error.

Runs are cached as JSON in ``benchmarks/results/quality/``, keyed by algorithm, options, task,
seed, setting and a version: for hypersearch's algorithms a hash of the source the algorithm
runs (its module, the ``hypersearch.algorithms`` modules it imports, ``hypersearch/space.py``:
editing an algorithm reruns it alone),
for the anchors Optuna's version (they never rerun while it is unchanged).

    python benchmarks/quality.py --jobs 2 > quality.md
    python benchmarks/quality.py --configs 'ga,ga-plain=ga:{"surrogate": false},optuna-tpe'
    python benchmarks/quality.py --list-tasks
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from quality_tasks import HALVES, TASKS, Task, TaskFailure

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "quality"
RUNNER_VERSION = 1  # bump when the way runs are driven changes: every cached run is redone
RANDOM = "optuna-random"  # the reference of the score
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# --- configs ---------------------------------------------------------------------------------


def _samplers() -> dict[str, Callable[..., Any]]:
    """The Optuna anchors: name -> sampler factory (seed and options as keyword arguments)."""
    import optuna

    samplers = optuna.samplers

    def tpe(**fixed: Any) -> Callable[..., Any]:
        return lambda **kw: samplers.TPESampler(**(fixed | kw))

    return {
        "optuna-tpe": samplers.TPESampler,
        "optuna-tpe-indep": tpe(multivariate=False, constant_liar=False),
        "optuna-tpe-mv": tpe(multivariate=True, constant_liar=True),
        "optuna-gp": samplers.GPSampler,
        "optuna-random": samplers.RandomSampler,
    }


# Optuna's samplers run as anchors. Since Optuna 5, TPESampler's defaults (``optuna-tpe``) are
# multivariate with the constant liar, the same as ``optuna-tpe-mv`` (kept for Optuna 4, not
# run by default); ``optuna-tpe-indep`` is Optuna 4's default, independent TPE.
ANCHORS = ("optuna-tpe", "optuna-tpe-indep", "optuna-tpe-mv", "optuna-gp", "optuna-random")
DEFAULT_ANCHORS = ("optuna-tpe", "optuna-tpe-indep", "optuna-gp", "optuna-random")


@dataclass(frozen=True)
class Config:
    """What runs: ``algo`` (a registered algorithm or an anchor) with ``options``, shown as
    ``label``."""

    label: str
    algo: str
    options_json: str = "{}"  # canonical JSON (sorted keys), so that a config is hashable

    @property
    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = json.loads(self.options_json)
        return options

    @property
    def anchor(self) -> bool:
        return self.algo in ANCHORS


def split_top_level(text: str) -> list[str]:
    """Split on commas outside braces, brackets and quotes (options are JSON)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_config(spec: str) -> Config:
    """``algo``, ``algo:{json}`` or ``label=algo:{json}``."""
    label, _, rest = spec.partition("=") if "=" in spec.split(":", 1)[0] else ("", "", spec)
    algo, _, raw = rest.partition(":")
    algo = algo.strip()
    options = json.loads(raw) if raw.strip() else {}
    if not isinstance(options, dict):
        raise SystemExit(f"--configs: options of {spec!r} must be a JSON object")
    if algo not in ANCHORS:  # (anchors run without importing hypersearch's algorithms)
        _check_algorithm(algo, spec)
    canonical = json.dumps(options, sort_keys=True)
    default = algo if not options else f"{algo}:{canonical}"
    return Config(label.strip() or default, algo, canonical)


def _check_algorithm(algo: str, spec: str) -> None:
    from hypersearch.algorithms import available

    if algo not in available():
        known = ", ".join([*available(), *ANCHORS])
        raise SystemExit(f"--configs: unknown algorithm {algo!r} in {spec!r} (known: {known})")


def default_configs() -> str:
    from hypersearch.algorithms import available

    return ",".join([*available(), *DEFAULT_ANCHORS])


# --- cache keys --------------------------------------------------------------------------------


def source_hash(algo: str) -> str:
    """Hash of the source an algorithm runs: its module, the hypersearch.algorithms modules it
    imports (transitively) and the search space; so changing one algorithm reruns only it."""
    import re

    from hypersearch.algorithms import available

    folder = ROOT / "hypersearch" / "algorithms"
    pattern = re.compile(r"^from hypersearch\.algorithms\.(\w+) import", re.MULTILINE)
    todo = [available()[algo].__module__.rsplit(".", 1)[-1]]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen and (folder / f"{name}.py").is_file():
            seen.add(name)
            todo.extend(pattern.findall((folder / f"{name}.py").read_text()))
    digest = hashlib.sha256()
    for path in [*(folder / f"{n}.py" for n in sorted(seen)), ROOT / "hypersearch" / "space.py"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def version_of(config: Config) -> str:
    if config.anchor:
        import optuna

        return f"optuna-{optuna.__version__}"
    return f"hypersearch-{source_hash(config.algo)}"


def task_fingerprint(task: Task) -> str:
    """What defines the task's landscape: its space, noise, version and the libraries that
    compute it (a new scikit-learn or torch may move it)."""
    libraries = ""
    if task.kind == "sklearn":
        import sklearn

        libraries = sklearn.__version__
    elif task.kind == "trainer":
        import torch

        libraries = torch.__version__
    raw = json.dumps([task.name, task.version, task.params, task.noise, libraries], default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def cache_path(
    config: Config, version: str, task: Task, seed: int, trials: int, batch: int
) -> Path:
    key = json.dumps(
        [RUNNER_VERSION, config.algo, config.options, version, task_fingerprint(task)],
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return RESULTS / task.name / f"{config.algo}-{digest}-s{seed}-{trials}x{batch}.json"


# --- one run -----------------------------------------------------------------------------------


@dataclass
class Trace:
    """A run's trials in order: the noiseless loss (None: failed), the loss told, the config."""

    values: list[float | None] = field(default_factory=list)
    observed: list[float | None] = field(default_factory=list)
    configs: list[dict[str, Any]] = field(default_factory=list)
    eval_seconds: float = 0.0

    def evaluate(self, task: Task, config: Mapping[str, Any], seed: int) -> float | None:
        """Evaluate the run's next trial; its noise is seeded by (seed, trial number), the same
        for every config. Returns the loss told, or None when the trial failed."""
        rng = np.random.default_rng([seed, 7919, len(self.values)])
        started = time.perf_counter()
        try:
            value: float | None = task.fn(config)
            told = value + task.noise * float(rng.standard_normal()) if task.noise else value
        except TaskFailure:
            value = told = None
        self.eval_seconds += time.perf_counter() - started
        if value is not None and not math.isfinite(value):
            value = told = None
        self.values.append(value)
        self.observed.append(told)
        self.configs.append({k: _plain(v) for k, v in config.items()})
        return told


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def run_hypersearch(config: Config, task: Task, seed: int, trials: int, batch: int) -> Trace:
    """Drive a registered algorithm as ``hypersearch.testing.evaluations`` does."""
    from hypersearch.algorithms import Observation, create

    space = task.space
    algorithm = create(config.algo, space, 1, seed=seed, options=config.options or None)
    trace = Trace()
    while len(trace.values) < trials:
        asked = algorithm.ask(min(batch, trials - len(trace.values)))
        if not asked:
            raise RuntimeError(f"{config.algo} asked nothing with nothing in flight")
        told = []
        for suggestion in asked:
            loss = trace.evaluate(task, space.decode(suggestion.x), seed)
            told.append(Observation(suggestion.id, suggestion.x, None if loss is None else (loss,)))
        algorithm.tell(told)
    return trace


def run_optuna(config: Config, task: Task, seed: int, trials: int, batch: int) -> Trace:
    """Drive an Optuna sampler on the task's native distributions: ask a batch, tell it."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = _samplers()[config.algo](seed=seed, **config.options)
    study = optuna.create_study(sampler=sampler)
    distributions = task.space.distributions()
    trace = Trace()
    while len(trace.values) < trials:
        asked = [study.ask(distributions) for _ in range(min(batch, trials - len(trace.values)))]
        losses = [trace.evaluate(task, trial.params, seed) for trial in asked]
        for trial, loss in zip(asked, losses, strict=True):
            if loss is None:
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, loss)
    return trace


@dataclass(frozen=True)
class Job:
    config: Config
    version: str
    task: str
    seed: int
    trials: int
    batch: int

    @property
    def path(self) -> Path:
        return cache_path(
            self.config, self.version, TASKS[self.task], self.seed, self.trials, self.batch
        )


def execute(job: Job) -> tuple[Job, dict[str, Any] | None, str]:
    """Run one job and cache it; returns the record, or None and the traceback."""
    task = TASKS[job.task]
    warm_up(task)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning, convergence, …
            runner = run_optuna if job.config.anchor else run_hypersearch
            trace = runner(job.config, task, job.seed, job.trials, job.batch)
    except Exception:
        return job, None, traceback.format_exc()
    seconds = time.perf_counter() - started
    record = {
        "label": job.config.label,
        "algo": job.config.algo,
        "options": job.config.options,
        "version": job.version,
        "task": job.task,
        "task_fingerprint": task_fingerprint(task),
        "seed": job.seed,
        "trials": job.trials,
        "batch": job.batch,
        "values": trace.values,
        "observed": trace.observed,
        "configs": trace.configs,
        "seconds": seconds,
        "eval_seconds": trace.eval_seconds,
    }
    job.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = job.path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(job.path)
    return job, record, ""


_WARM: set[str] = set()


def warm_up(task: Task) -> None:
    """Evaluate ``task`` once per process before its first timed run, so that no run's time
    includes importing scikit-learn or torch and loading the dataset."""
    if task.name not in _WARM:
        _WARM.add(task.name)
        _try(task, task.space.decode(np.full(task.space.dim, 0.5)))


def limit_threads() -> None:
    """One thread per worker (BLAS, OpenMP, torch): the jobs are the parallelism."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def run_all(jobs: Sequence[Job], workers: int) -> dict[Job, dict[str, Any]]:
    """Every job's record: from the cache, else run (``workers`` processes); failures are
    reported on stderr and left out."""
    records: dict[Job, dict[str, Any]] = {}
    todo = []
    for job in jobs:
        if job.path.exists():
            records[job] = json.loads(job.path.read_text())
        else:
            todo.append(job)
    log(f"{len(records)} runs cached, {len(todo)} to run with {workers} worker(s)")
    if not todo:
        return records
    started, failed = time.perf_counter(), 0
    limit_threads()  # inherited by the spawned workers
    with ProcessPoolExecutor(workers, get_context("spawn"), initializer=limit_threads) as pool:
        futures: list[Future[tuple[Job, dict[str, Any] | None, str]]] = [
            pool.submit(execute, job) for job in _expensive_first(todo)
        ]
        for done, future in enumerate(as_completed(futures), 1):
            job, record, error = future.result()
            if record is None:
                failed += 1
                log(
                    f"FAILED {job.config.label} on {job.task}, seed {job.seed}, "
                    f"{job.trials}x{job.batch}:\n{error}"
                )
            else:
                records[job] = record
            if done % 20 == 0 or done == len(todo):
                log(
                    f"{done}/{len(todo)} runs, {failed} failed, "
                    f"{time.perf_counter() - started:.0f} s"
                )
    return records


def _expensive_first(jobs: list[Job]) -> list[Job]:
    """Model-heavy tasks and GP samplers first, so the pool does not end on one long run."""
    weight = {"trainer": 3, "sklearn": 2}

    def cost(job: Job) -> tuple[int, int]:
        gp = int(job.config.algo in ("gp", "optuna-gp"))
        return (-weight.get(TASKS[job.task].kind, 0) - gp, -job.trials)

    return sorted(jobs, key=cost)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the score ---------------------------------------------------------------------------------


def best_of(values: Sequence[float | None]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return min(finite) if finite else math.inf


SCORE_FLOOR = -100.0  # a run's score is clipped here: see normalized_score


def normalized_score(best: float, opt: float, random_median: float) -> float:
    """Bayesmark's score: 100 at the optimum, 0 at random search's median; NaN when random's
    median already is the optimum (the task cannot tell methods apart). Clipped from below at
    -100 (a normalized loss of 2), as Bayesmark clips each run's normalized loss "to limit max
    influence of single run on final average" (experiment_analysis.compute_aggregates): on a
    task where random search comes close to the optimum, one bad run would otherwise outweigh
    every other task."""
    gap = random_median - opt
    if not gap > 0:
        return math.nan
    return max(SCORE_FLOOR, 100.0 * (1.0 - (best - opt) / gap))


def task_optima(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """The optimum of every task: known, else the best value any cached run ever found on it
    (every setting, every config, every version of the algorithms, same task fingerprint)."""
    opt = {name: task.optimum for name, task in TASKS.items() if task.optimum is not None}
    fingerprints = {name: task_fingerprint(task) for name, task in TASKS.items()}
    seen: dict[str, float] = {}
    for record in records:
        name = record["task"]
        if fingerprints.get(name) == record.get("task_fingerprint"):
            seen[name] = min(seen.get(name, math.inf), best_of(record["values"]))
    return {name: opt.get(name, seen.get(name, math.nan)) for name in TASKS}


def cached_records() -> list[dict[str, Any]]:
    records = []
    for path in RESULTS.glob("*/*.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return records


Scores = dict[tuple[str, str, int], float]  # (config label, task, seed) -> score


def score_setting(
    records: Mapping[Job, dict[str, Any]], opt: Mapping[str, float], trials: int, batch: int
) -> Scores:
    """Every run's score under one setting."""
    mine = {j: r for j, r in records.items() if (j.trials, j.batch) == (trials, batch)}
    randoms: dict[str, list[float]] = {}
    for job, record in mine.items():
        if job.config.algo == RANDOM and not job.config.options:
            randoms.setdefault(job.task, []).append(best_of(record["values"]))
    worst: dict[str, float] = {}  # a run whose every trial failed counts as the worst run
    for job, record in mine.items():
        best = best_of(record["values"])
        if math.isfinite(best):
            worst[job.task] = max(worst.get(job.task, -math.inf), best)
    scores: Scores = {}
    for job, record in mine.items():
        if job.task not in randoms:
            continue
        best = best_of(record["values"])
        best = best if math.isfinite(best) else worst.get(job.task, math.nan)
        score = normalized_score(best, opt[job.task], float(np.median(randoms[job.task])))
        if not math.isnan(score):
            scores[(job.config.label, job.task, job.seed)] = score
    return scores


def summary(scores: Scores, label: str, tasks: Sequence[str], seeds: Sequence[int]) -> str:
    """Mean over seeds of the per-seed mean over ``tasks`` ± its standard error."""
    per_seed = []
    for seed in seeds:
        values = [scores.get((label, t, seed), math.nan) for t in tasks]
        if values and not any(math.isnan(v) for v in values):
            per_seed.append(float(np.mean(values)))
    if not per_seed:
        return "–"
    mean = float(np.mean(per_seed))
    se = float(np.std(per_seed, ddof=1) / math.sqrt(len(per_seed))) if len(per_seed) > 1 else 0
    return f"{mean:.1f} ± {se:.1f}"


def tables(
    scores: Scores,
    labels: Sequence[str],
    tasks: Sequence[str],
    seeds: Sequence[int],
    costs: Mapping[str, float] | None = None,
) -> list[str]:
    """The markdown of one setting: the summary by half, then the mean score per task. Tasks
    no run was scored on (random's median is the optimum, or no random runs) are left out of
    the summary."""
    scored = {task for _, task, _ in scores}
    undefined = [t for t in tasks if t not in scored]
    tasks = [t for t in tasks if t in scored]
    halves = [(h, [t for t in tasks if TASKS[t].half == h]) for h in HALVES]
    halves = [(h, ts) for h, ts in halves if ts]
    columns = [f"{h} ({len(ts)} tasks)" for h, ts in halves] + [f"all ({len(tasks)})"]
    lines = ["| config | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for label in labels:
        cells = [summary(scores, label, ts, seeds) for _, ts in halves]
        lines.append(
            f"| {label} | " + " | ".join([*cells, summary(scores, label, tasks, seeds)]) + " |"
        )
    lines += [
        "",
        "| task | half | ms / eval | " + " | ".join(labels) + " |",
        "|---|---|---:|" + "---:|" * len(labels),
    ]
    for task in tasks:
        cells = []
        for label in labels:
            values = [scores.get((label, task, s), math.nan) for s in seeds]
            finite = [v for v in values if not math.isnan(v)]
            cells.append(f"{np.mean(finite):.0f}" if finite else "–")
        ms = f"{1000 * costs[task]:.1f}" if costs and task in costs else "–"
        lines.append(f"| {task} | {TASKS[task].half} | {ms} | " + " | ".join(cells) + " |")
    if undefined:
        lines += [
            "",
            f"Not scored (random's median is the best seen, or no random runs): "
            f"{', '.join(undefined)}.",
        ]
    return lines


def eval_costs(records: Mapping[Job, dict[str, Any]]) -> dict[str, float]:
    """Mean seconds per evaluation of every task, over the runs given."""
    seconds: dict[str, list[float]] = {}
    for job, record in records.items():
        seconds.setdefault(job.task, []).append(record["eval_seconds"] / len(record["values"]))
    return {task: float(np.mean(values)) for task, values in seconds.items()}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


# --- command line ------------------------------------------------------------------------------


def parse_settings(text: str) -> list[tuple[int, int]]:
    settings = []
    for part in split_top_level(text):
        trials, _, batch = part.partition("x")
        settings.append((int(trials), int(batch or 1)))
    return settings


def list_tasks(samples: int) -> None:
    """The tasks, their halves and the measured seconds per evaluation (one thread)."""
    limit_threads()
    print("| task | half | kind | params | noise | optimum | ms / evaluation | what |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for task in TASKS.values():
        space, rng = task.space, np.random.default_rng(0)
        configs = [space.decode(rng.random(space.dim)) for _ in range(samples + 1)]
        _try(task, configs[0])  # warm-up: imports, dataset loading
        started = time.perf_counter()
        for config in configs[1:]:
            _try(task, config)
        ms = 1000 * (time.perf_counter() - started) / samples
        opt = f"{task.optimum:.6g}" if task.optimum is not None else "best seen"
        print(
            f"| {task.name} | {task.half} | {task.kind} | {space.dim} | {task.noise:g} | "
            f"{opt} | {ms:.1f} | {task.note} |"
        )


def _try(task: Task, config: Mapping[str, Any]) -> None:
    with warnings.catch_warnings(), contextlib.suppress(TaskFailure):
        warnings.simplefilter("ignore")
        task.fn(config)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--settings", default="64x8,32x2", help="TRIALSxBATCH, comma-separated")
    parser.add_argument("--configs", default=None, help="algo, algo:{json}, label=algo:{json}")
    parser.add_argument("--tasks", default=None, help="comma-separated task names")
    parser.add_argument("--half", choices=[*HALVES, "all"], default="all")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--list-tasks", action="store_true", help="list tasks, time them")
    parser.add_argument("--samples", type=int, default=8, help="evaluations timed per task")
    args = parser.parse_args(argv)
    if args.list_tasks:
        list_tasks(args.samples)
        return
    started = time.perf_counter()
    configs = [parse_config(s) for s in split_top_level(args.configs or default_configs())]
    if len({c.label for c in configs}) < len(configs):
        raise SystemExit("--configs: two configs share a label")
    if not any(c.algo == RANDOM and not c.options for c in configs):
        configs.append(Config(RANDOM, RANDOM))  # the score's reference
    tasks = select_tasks(args.tasks, args.half)
    seeds = list(range(args.seeds))
    settings = parse_settings(args.settings)
    versions = {c: version_of(c) for c in configs}
    jobs = [
        Job(c, versions[c], t, s, trials, batch)
        for trials, batch in settings
        for t in tasks
        for c in configs
        for s in seeds
    ]
    records = run_all(jobs, max(1, args.jobs))
    opt = task_optima([*cached_records(), *records.values()])
    report(records, opt, configs, tasks, seeds, settings, time.perf_counter() - started)


def select_tasks(names: str | None, half: str) -> list[str]:
    chosen = split_top_level(names) if names else list(TASKS)
    unknown = [n for n in chosen if n not in TASKS]
    if unknown:
        raise SystemExit(f"--tasks: unknown {unknown} (known: {', '.join(TASKS)})")
    return [n for n in chosen if half == "all" or TASKS[n].half == half]


def report(
    records: Mapping[Job, dict[str, Any]],
    opt: Mapping[str, float],
    configs: Sequence[Config],
    tasks: Sequence[str],
    seeds: Sequence[int],
    settings: Sequence[tuple[int, int]],
    elapsed: float,
) -> None:
    labels = [c.label for c in configs]
    print(
        "Bayesmark's normalized score (0 = optuna-random's median, 100 = the optimum; mean ± "
        f"standard error over {len(seeds)} seeds of the mean over tasks).\n"
    )
    for trials, batch in settings:
        print(f"### {trials} trials in batches of {batch}\n")
        scores = score_setting(records, opt, trials, batch)
        print("\n".join(tables(scores, labels, tasks, seeds, eval_costs(records))) + "\n")
    seconds: dict[str, list[float]] = {}
    for job, record in records.items():
        seconds.setdefault(job.config.label, []).append(record["seconds"] - record["eval_seconds"])
    print(
        "Optimizer time per run (seconds, median over runs): "
        + ", ".join(
            f"{label} {np.median(seconds[label]):.2f}" for label in labels if label in seconds
        )
    )
    print(f"\nCommand: `python benchmarks/quality.py {shlex.join(sys.argv[1:])}`")
    print(
        f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; {elapsed:.0f} s."
    )


if __name__ == "__main__":
    main()
