"""``hypersearch compare`` and ``hypersearch report`` end to end, and the Python API.

The numbers in results.csv are recomputed here from the run folders' own files (summary.json,
trials.csv), independently of ``hypersearch.stats``; the statistics themselves are tested on
constructed inputs in test_stats.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import hypersearch
from hypersearch import pareto
from hypersearch.algorithms import available

from .conftest import REPO, run_cli

ALGOS = sorted(available())
REQUIRED_COLUMNS = {
    "algo",
    "runs",
    "best_median",
    "best_q1",
    "best_q3",
    "best_mean",
    "best_std",
    "auc",
    "trials_to_target",
    "reached_target",
    "failed",
    "wall_s",
    "overhead_ms_per_trial",
    "mean_rank",
    "p_vs_random",
    "vs_random",
    "p_vs_best",
    "vs_best",
}
BRANIN = REPO / "searchspaces" / "branin.yaml"
TRIALS = 10


def compare_dir_of(out: Path) -> Path:
    found = sorted(out.glob("compare-*/compare.json"))
    assert len(found) == 1, f"expected one compare folder in {out}, found {found}"
    return found[0].parent


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path.name} was not written"
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width >= 500 and height >= 300, f"{path.name} is only {width}x{height}"


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def best_so_far_from_csv(run_dir: Path, metric: str = "value") -> np.ndarray:
    trials = pd.read_csv(run_dir / "trials.csv").sort_values("number")
    values = np.where(trials["state"] == "COMPLETE", trials[metric], np.nan)
    out, best = [], np.inf
    for v in values:
        best = min(best, v) if np.isfinite(v) else best
        out.append(best)
    return np.array(out)


@pytest.fixture(scope="module")
def all_algos(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Every registered algorithm × 3 seeds on branin (inline executor: it is the statistics,
    not the dispatch, under test here)."""
    out = tmp_path_factory.mktemp("compare")
    result = run_cli(
        "compare",
        str(BRANIN),
        "--algos",
        ",".join(ALGOS),
        "--seeds",
        "3",
        "--trials",
        str(TRIALS),
        "--executor",
        "inline",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result, compare_dir_of(out)


def test_compare_runs_every_algorithm_and_seed(all_algos: Any) -> None:
    _, folder = all_algos
    assert re.fullmatch(r"compare-branin-\d{8}-\d{6}", folder.name)
    for algo in ALGOS:
        for seed in range(3):
            run_dir = folder / f"branin-{algo}-s{seed}"
            s = summary(run_dir)
            assert (s["algo"], s["seed"], s["trials"], s["running"]) == (algo, seed, TRIALS, 0)
    assert not list(folder.glob(".*creating"))


def test_results_csv_matches_the_run_folders(all_algos: Any) -> None:
    _, folder = all_algos
    table = pd.read_csv(folder / "results.csv")
    assert set(table.columns) >= REQUIRED_COLUMNS
    assert sorted(table["algo"]) == ALGOS
    table = table.set_index("algo")
    finals = {
        algo: [
            summary(folder / f"branin-{algo}-s{s}")["best"]["metrics"]["value"] for s in range(3)
        ]
        for algo in ALGOS
    }
    target = float(np.median(finals["random"]))
    for algo in ALGOS:
        row = table.loc[algo]
        assert row["runs"] == 3 and row["failed"] == 0
        assert row["best_median"] == pytest.approx(np.median(finals[algo]), rel=1e-12)
        assert row["best_mean"] == pytest.approx(np.mean(finals[algo]), rel=1e-12)
        assert row["best_std"] == pytest.approx(np.std(finals[algo], ddof=1), rel=1e-9)
        curves = [best_so_far_from_csv(folder / f"branin-{algo}-s{s}") for s in range(3)]
        assert row["auc"] == pytest.approx(np.mean([c.mean() for c in curves]), rel=1e-12)
        reach = [
            float(np.argmax(c <= target) + 1) if (c <= target).any() else np.inf for c in curves
        ]
        assert row["trials_to_target"] == np.median(reach)
        assert row["reached_target"] == f"{sum(np.isfinite(reach))}/3"
        walls = [summary(folder / f"branin-{algo}-s{s}")["wall_seconds"] for s in range(3)]
        assert row["wall_s"] == pytest.approx(np.median(walls))
        # 3 paired seeds: the smallest two-sided p of the signed-rank test is 0.25.
        assert row["vs_random"] in {"n.s.", "baseline"}
        assert row["vs_best"] in {"n.s.", "best"}
        if algo != "random":
            assert 0.25 <= row["p_vs_random"] <= 1
    ranks = pd.DataFrame(finals).rank(axis=1).mean()
    for algo in ALGOS:
        assert table.loc[algo, "mean_rank"] == pytest.approx(ranks[algo])
    assert table["vs_best"].tolist().count("best") == 1
    assert ranks[table.index[0]] == ranks.min()  # the first row has the best mean rank


def test_compare_writes_markdown_plots_and_prints_the_table(all_algos: Any) -> None:
    result, folder = all_algos
    markdown = (folder / "results.md").read_text()
    assert "| algo" in markdown and "Wilcoxon" in markdown
    for algo in ALGOS:
        assert f"| {algo} " in markdown
    assert f"[{3 * len(ALGOS)}/{3 * len(ALGOS)}]" in result.stderr  # a line per run
    for name in ("best_so_far.png", "final_scores.png"):
        assert_png(folder / name)
        assert f"]({name})" in markdown
    assert not (folder / "pareto_fronts.png").exists()  # one objective: no fronts to overlay
    for algo in ALGOS:
        assert algo in result.stdout
    assert "vs random" in result.stdout and "smallest possible p is 0.25" in result.stdout


def test_report_rebuilds_the_same_results_without_running(all_algos: Any) -> None:
    _, folder = all_algos
    before = pd.read_csv(folder / "results.csv")
    mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("*/study.db")}
    (folder / "results.csv").unlink()
    (folder / "best_so_far.png").unlink()
    result = run_cli("report", str(folder))
    assert result.returncode == 0, result.stderr
    pd.testing.assert_frame_equal(pd.read_csv(folder / "results.csv"), before)
    assert_png(folder / "best_so_far.png")
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*/study.db")} == mtimes


def test_api_compare_returns_the_table_and_pairs_seeds(tmp_path: Path) -> None:
    comparison = hypersearch.compare(
        BRANIN, algos=["random", "tpe"], seeds=2, trials=6, executor="inline", out=tmp_path
    )
    assert isinstance(comparison, hypersearch.Comparison)
    table = comparison.table
    assert isinstance(table, pd.DataFrame)
    assert sorted(table["algo"]) == ["random", "tpe"]
    folder = comparison.compare_dir
    assert comparison.interrupted is False
    assert comparison.notes["runs_finished"] == 4 and comparison.runs_without_success == []
    # The API writes what `hypersearch compare` writes, and the table is what results.csv holds.
    pd.testing.assert_frame_equal(pd.read_csv(folder / "results.csv"), table, check_dtype=False)
    assert (folder / "results.md").is_file() and (folder / "best_so_far.png").is_file()
    seeds = {(summary(d)["algo"], summary(d)["seed"]) for d in folder.glob("branin-*")}
    assert seeds == {(a, s) for a in ("random", "tpe") for s in (0, 1)}
    # Each run in a compare is the run a user gets with that algorithm and seed alone.
    alone = hypersearch.run(
        BRANIN, algo="tpe", seed=1, trials=6, executor="inline", out=tmp_path / "alone"
    )
    columns = ["number", "x1", "x2", "value"]
    pd.testing.assert_frame_equal(
        pd.read_csv(folder / "branin-tpe-s1" / "trials.csv")[columns],
        pd.read_csv(alone.run_dir / "trials.csv")[columns],
    )


def test_two_objective_compare_shares_one_reference_point(tmp_path: Path) -> None:
    zdt1 = REPO / "searchspaces" / "zdt1.yaml"
    comparison = hypersearch.compare(
        zdt1, algos=["random", "ga"], seeds=2, trials=16, executor="inline", out=tmp_path
    )
    folder, table = comparison.compare_dir, comparison.table
    runs = {d.name: pd.read_csv(d / "trials.csv") for d in folder.glob("zdt1-*")}
    pooled = np.vstack(
        [t.loc[t["state"] == "COMPLETE", ["f1", "f2"]].to_numpy() for t in runs.values()]
    )
    ref = pareto.reference_point(pooled)
    assert comparison.notes["reference_point"] == pytest.approx({"f1": ref[0], "f2": ref[1]})
    for algo in ("random", "ga"):
        hvs = [
            pareto.hypervolume(runs[f"zdt1-{algo}-s{s}"][["f1", "f2"]].to_numpy(), ref)
            for s in (0, 1)
        ]
        row = table.set_index("algo").loc[algo]
        assert row["hypervolume_median"] == pytest.approx(np.median(hvs), rel=1e-9)
        assert row["auc"] <= row["hypervolume_median"] + 1e-12  # the curve only grows
    assert_png(folder / "pareto_fronts.png")


SHARED_OBJECTIVE = """\
import os


def objective(config):
    return {"value": (config["x"] - 0.3) ** 2, "pid": float(os.getpid())}
"""


def test_compare_runs_share_one_pool_of_workers(tmp_path: Path) -> None:
    (tmp_path / "pidobj.py").write_text(SHARED_OBJECTIVE)
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "name: shared\nobjective: {python: {function: 'pidobj:objective', path: ['.']}}\n"
        "params: {x: {type: float, low: 0, high: 1}}\nbudget: {trials: 4, parallel: 2}\n"
    )
    result = run_cli(
        "compare", str(exp), "--algos", "random,tpe", "--seeds", "2", "--out", "out", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    folder = compare_dir_of(tmp_path / "out")
    pids = set()
    for run_dir in folder.glob("shared-*"):
        pids |= set(pd.read_csv(run_dir / "trials.csv")["pid"])
    assert len(pids) <= 2, f"4 runs used {len(pids)} worker processes; the pool has 2"
    assert sorted(p.name for p in (folder / "logs").glob("worker-*.log"))


# -- killed, reported, resumed ---------------------------------------------------------------------


def _reset_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finished_runs(folder: Path) -> set[str]:
    done = set()
    for run_dir in folder.glob("branin-*"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            s = summary(run_dir)
            if s["trials"] >= TRIALS and s["running"] == 0:
                done.add(run_dir.name)
    return done


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_killed_compare_reports_resumes_and_reports_everything(tmp_path: Path, how: str) -> None:
    algos = ["random", "tpe", "ga"]
    args = [*("compare", str(BRANIN), "--algos", ",".join(algos), "--seeds", "3")]
    args += ["--trials", str(TRIALS), "--executor", "inline", "--out", str(tmp_path)]
    process = subprocess.Popen(
        [sys.executable, "-m", "hypersearch.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_reset_sigint,
    )
    deadline = time.monotonic() + 600
    folder = None
    try:
        while time.monotonic() < deadline:
            found = list(tmp_path.glob("compare-*/compare.json"))
            if found and len(finished_runs(found[0].parent)) >= 3:
                folder = found[0].parent
                break
            assert process.poll() is None, "the compare ended before it could be interrupted"
            time.sleep(0.01)
        assert folder is not None, "no run finished in 600 s"
        os.killpg(process.pid, getattr(signal, how))
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if how == "SIGINT":
        assert process.returncode == 130, err
        assert f"hypersearch compare --resume {folder}" in out + err
    else:
        assert process.returncode == -signal.SIGKILL
    done_at_kill = finished_runs(folder)
    assert 3 <= len(done_at_kill) < 9, "the kill should land mid-compare"
    kept = {name: (folder / name / "trials.csv").read_text() for name in done_at_kill}

    report = run_cli("report", str(folder))
    assert report.returncode == 0, report.stderr
    partial = pd.read_csv(folder / "results.csv").set_index("algo")
    runs_by_algo = {a: sum(n.startswith(f"branin-{a}-") for n in done_at_kill) for a in algos}
    assert {a: int(partial.loc[a, "runs"]) for a in partial.index} == {
        a: n for a, n in runs_by_algo.items() if n
    }
    assert f"{len(done_at_kill)}/9 runs" in report.stdout
    assert f"hypersearch compare --resume {folder}" in report.stdout

    resumed = run_cli("compare", "--resume", str(folder), "--executor", "inline")
    assert resumed.returncode == 0, resumed.stderr
    started = {f"branin-{a}-s{n}" for a, n in re.findall(r"\] (\w+) seed (\d+) …", resumed.stderr)}
    assert started and not started & done_at_kill  # finished runs are not run again …
    for name in done_at_kill:  # … and are kept as they were
        assert (folder / name / "trials.csv").read_text() == kept[name]
    assert finished_runs(folder) == {f"branin-{a}-s{s}" for a in algos for s in range(3)}

    again = run_cli("report", str(folder))
    assert again.returncode == 0, again.stderr
    final = pd.read_csv(folder / "results.csv")
    assert sorted(final["algo"]) == sorted(algos) and (final["runs"] == 3).all()
    assert "9/9 runs" in again.stdout


# -- report on a single run, load_run ------------------------------------------------------------

GATED_OBJECTIVE = """\
import time
from pathlib import Path


def objective(config, ctx):
    if ctx.number >= 3:
        while Path(__file__).with_name("gate").exists():
            time.sleep(0.02)
    return {"value": (config["lr"] - 0.01) ** 2, "other": config["wd"]}
"""


def test_report_works_on_a_run_in_progress(tmp_path: Path) -> None:
    (tmp_path / "gated.py").write_text(GATED_OBJECTIVE)
    (tmp_path / "gate").touch()
    (tmp_path / "exp.yaml").write_text(
        "name: live\nobjective: {python: {function: 'gated:objective', path: ['.']}}\n"
        "params:\n  lr: {type: float, low: 1.0e-4, high: 1.0, log: true}\n"
        "  wd: {type: float, low: 1.0e-6, high: 0.1, log: true}\n"
        "budget: {trials: 6, parallel: 2}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "hypersearch.cli", "run", "exp.yaml", "--algo", "random"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        while True:  # trials 0-2 finish; 3 and 4 hold at the gate
            found = list((tmp_path / "runs").glob("live-*/summary.json"))
            with contextlib.suppress(OSError, ValueError):
                if found and summary(found[0].parent)["trials"] == 3:
                    break
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        run_dir = found[0].parent
        running = summary(run_dir)["running"]
        assert running >= 1
        result = run_cli("report", str(run_dir))  # the driver holds the run's lock meanwhile
        assert result.returncode == 0, result.stderr
        progress = f"in progress or interrupted: 3 finished of 6 trials, {running} running"
        assert progress in result.stdout
        for name in ("history.png", "params.png"):
            assert_png(run_dir / name)
        trials = hypersearch.load_run(run_dir).trials
        assert (trials["state"] == "RUNNING").sum() == running
        assert (trials["state"] == "COMPLETE").sum() == 3
        assert process.poll() is None  # the run went on meanwhile
    finally:
        (tmp_path / "gate").unlink()
        assert process.wait(timeout=600) == 0
    trials, _front = hypersearch.load_run(run_dir)
    assert (trials["state"] == "COMPLETE").sum() == 6


def test_load_run_gives_trials_with_ranks_and_the_front(tmp_path: Path) -> None:
    result = hypersearch.run(
        REPO / "searchspaces" / "zdt1.yaml",
        algo="random",
        trials=20,
        executor="inline",
        out=tmp_path,
    )
    run = hypersearch.load_run(result.run_dir)
    trials, front = run
    assert len(trials) == 20 and run.summary == summary(result.run_dir)
    losses = trials[["f1", "f2"]].to_numpy()
    # Rank 1 is exactly the set no other trial dominates (checked by brute force).
    for i, row in enumerate(losses):
        dominated = any(np.all(o <= row) and np.any(o < row) for o in losses)
        assert (trials["pareto_rank"].iloc[i] == 1) == (not dominated)
    assert sorted(front["number"]) == sorted(trials.loc[trials["pareto_rank"] == 1, "number"])
    assert trials["pareto_rank"].max() > 1


def test_report_rejects_a_folder_that_is_neither(tmp_path: Path) -> None:
    result = run_cli("report", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "neither a run folder" in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--algos", "ga,bogus"], "bogus"),
        (["--algos", "ga,ga"], "--algos"),
        (["--seeds", "0"], "--seeds"),
        (["--resume", "somewhere", "--trials", "3"], "--resume"),
    ],
)
def test_compare_bad_input_is_one_line_exit_2(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    # (With --resume, the EXPERIMENT given as well is refused before anything runs.)
    result = run_cli("compare", str(BRANIN), *args, "--out", str(tmp_path), "--executor", "inline")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert expected in result.stderr
    assert not list(tmp_path.glob("compare-*"))
