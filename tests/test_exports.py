"""The record of a run and its exports: what trials.csv says about a superseded trial, what
readers make of old exports, what the store keeps of a trial besides its result, and the import
rules that keep the record, the exports, the computing and the rendering apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from hypersearch.executors.base import COMPLETE, FAIL, TrialResult
from hypersearch.experiment import parse_experiment
from hypersearch.results import load_run
from hypersearch.store import RunStore, opened

PACKAGE = Path(__file__).resolve().parents[1] / "hypersearch"


def branin(tmp_path: Path) -> RunStore:
    exp = parse_experiment({"name": "rec", "objective": {"synthetic": "branin"}})
    return RunStore.create(tmp_path, "rec", exp, "random", 0)


def test_a_superseded_trial_is_a_column_of_trials_csv_and_counted_nowhere(
    tmp_path: Path,
) -> None:
    store = branin(tmp_path)
    space = store.experiment.space
    try:
        lost = store.start_trial(space.decode([0.1, 0.2]))
        retry = store.start_trial(space.decode([0.1, 0.2]))
        lost_result = TrialResult(lost, FAIL, {}, error="SIGKILL", reason="worker_lost")
        store.finish_trial(lost_result, retried_as=retry)
        store.finish_trial(TrialResult(retry, COMPLETE, {"value": 3.0}), retry_of=lost)
        other = store.start_trial(space.decode([0.5, 0.5]))
        store.finish_trial(TrialResult(other, FAIL, {}, error="boom", reason="exception"))
        assert store.tally() == (2, 1)
        store.export(1.0, 0.1)
    finally:
        store.close()
    csv = pd.read_csv(store.run_dir / "trials.csv")
    assert list(csv.columns) == [
        "number",
        "state",
        "x0",
        "x1",
        "value",
        "duration_s",
        "error",
        "superseded",
        "steps",
    ]
    assert csv["superseded"].tolist() == [True, False, False]
    run = load_run(store.run_dir)
    assert run.tally() == (2, 1) and run.finished_count == 3
    assert run.losses().shape == (2, 1)
    with opened(store.run_dir) as reopened:  # read back from the study
        assert reopened.tally() == (2, 1) and reopened.records[lost].retried_as == retry


def test_exports_without_the_superseded_column_read_as_none_superseded(tmp_path: Path) -> None:
    store = branin(tmp_path)
    try:
        for point in ([0.1, 0.2], [0.3, 0.4]):
            number = store.start_trial(store.experiment.space.decode(point))
            store.finish_trial(TrialResult(number, COMPLETE, {"value": float(number)}))
        store.export(1.0, 0.1)
    finally:
        store.close()
    path = store.run_dir / "trials.csv"
    pd.read_csv(path).drop(columns="superseded").to_csv(path, index=False)  # an older run
    run = load_run(store.run_dir)
    assert run.trials["superseded"].tolist() == [False, False]
    assert run.tally() == (2, 0) and run.done is False


def test_the_store_keeps_the_asked_point_its_id_and_the_finishing_order(tmp_path: Path) -> None:
    store = branin(tmp_path)
    try:
        first = store.start_trial(store.experiment.space.decode([0.25, 0.75]), [0.25, 0.75], 7)
        plain = store.start_trial(store.experiment.space.decode([0.5, 0.5]))
        store.finish_trial(TrialResult(plain, COMPLETE, {"value": 2.0}))  # finishes first
        record = store.finish_trial(TrialResult(first, COMPLETE, {"value": 1.0}))
        assert (record.x, record.suggestion_id, record.order) == ([0.25, 0.75], 7, 1)
        assert store.records[plain].x is None and store.records[plain].suggestion_id is None
        assert store.records[plain].order == 0
    finally:
        store.close()
    with opened(store.run_dir) as reopened:
        again = reopened.records[first]
        assert (again.x, again.suggestion_id, again.order) == ([0.25, 0.75], 7, 1)
        assert reopened.records[plain].x is None and reopened.records[plain].order == 0
        assert "hypersearch:x" not in again.metrics
        late = reopened.start_trial({"x0": 0.0, "x1": 0.0})
        assert reopened.finish_trial(TrialResult(late, COMPLETE, {"value": 3.0})).order == 2


def imports(module: str) -> set[str]:
    """Every ``hypersearch`` module a module imports, anywhere in it (inside functions and under
    ``TYPE_CHECKING`` too): ``from hypersearch import x`` counts as importing ``x``."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "hypersearch" and len(parts) > 1:
                found.add(parts[1])
    return {m for m in found if (PACKAGE / f"{m}.py").is_file()} - {module}


def test_computing_rendering_record_and_exports_import_one_way() -> None:
    assert not imports("comparison") & {"report", "plots"}
    assert not imports("plots") & {"comparison", "report", "store"}
    assert not imports("exports") & {"store", "results", "comparison", "report"}
    assert not imports("records") & {"store", "exports"}
    modules = ["comparison", "report", "plots", "results", "stats", "store", "exports", "records"]
    for module in modules:
        for other in imports(module) & set(modules):
            assert module not in imports(other), f"{module} and {other} import each other"


def test_steps_are_integers_beside_trials_that_reported_none(tmp_path: Path) -> None:
    from hypersearch.trials import Report

    store = branin(tmp_path)
    try:
        reported = store.start_trial(store.experiment.space.decode([0.1, 0.2]))
        store.report(Report(reported, 3, {"value": 1.0}))
        store.start_trial(store.experiment.space.decode([0.3, 0.4]))  # running, no report
        store.export(1.0, 0.1)
    finally:
        store.close()
    lines = (store.run_dir / "trials.csv").read_text().splitlines()
    assert lines[1].endswith(",3") and lines[2].endswith(",")
