"""Print what a hypersearch run folder recorded: summary.json (counts, devices, versions),
trials.csv, and each trial's record in the Optuna study (device, reason, error, oom_ladder,
population, population_oom, peak memory, batch used).

    python show_run.py OUT_DIR [EXPECT...]   (the newest run folder under OUT_DIR)

EXPECT: cuda (every trial ran on a cuda device), oom (a trial FAILed with reason oom and
another COMPLETEd), ladder (a trial recorded an oom_ladder), population (a trial was trained in
a population of more than one). Each prints CHECK ok/FAILED; the exit code is 1 if any failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KEYS = ("name", "algo", "trials", "complete", "failed", "pruned", "devices", "wall_seconds")
TRIAL_METRICS = ("val_loss", "peak_memory_mb", "used_batch_size", "used_grad_accum", "loss")


def expectations(records: list[tuple[str, dict]], wanted: list[str]) -> int:
    """Print CHECK lines for the wanted expectations; return how many failed."""
    states = [state for state, _ in records]
    checks = {
        "cuda": bool(records)
        and all(str(r.get("device", "")).startswith("cuda") for _, r in records),
        "oom": any(s == "FAIL" and r.get("reason") == "oom" for s, r in records)
        and "COMPLETE" in states,
        "ladder": any(r.get("oom_ladder") for _, r in records),
        "population": any((r.get("population") or 1) > 1 for _, r in records),
    }
    failed = 0
    for name in wanted:
        ok = checks.get(name, False)
        failed += not ok
        print(f"CHECK {name}: {'ok' if ok else 'FAILED'}")
    return failed


def main() -> None:
    out = Path(sys.argv[1])
    wanted = sys.argv[2:]
    found = [p for p in out.iterdir() if p.is_dir()] if out.is_dir() else []
    runs = sorted(found, key=lambda p: p.stat().st_mtime)
    if not runs:
        print(f"show_run: no run folder under {out}")
        sys.exit(1 if wanted else 0)
    run = runs[-1]
    print(f"run folder: {run}")
    summary_path = run / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        print("summary:", json.dumps({k: summary.get(k) for k in KEYS}))
        print("versions:", json.dumps(summary.get("versions")))
    else:
        print("summary.json: missing")
    trials_csv = run / "trials.csv"
    print("trials.csv:")
    print(trials_csv.read_text() if trials_csv.exists() else "  missing")
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=run.name, storage=f"sqlite:///{run}/study.db")
    except Exception as exc:  # a diagnostic: say why and go on
        print(f"study: not readable ({type(exc).__name__}: {exc})")
        sys.exit(1 if wanted else 0)
    print("per-trial records (user_attrs):")
    records = []
    for t in study.trials:
        attrs = t.user_attrs
        record = dict(attrs.get("hypersearch", {}))
        record.pop("traceback", None)
        metrics = {k: attrs[k] for k in TRIAL_METRICS if k in attrs}
        print(f"  trial {t.number} {t.state.name}: {json.dumps(record)} {json.dumps(metrics)}")
        records.append((t.state.name, record))
    sys.exit(1 if expectations(records, wanted) else 0)


if __name__ == "__main__":
    main()
