"""hypersearch: metaheuristic hyperparameter optimization.

    >>> import hypersearch
    >>> result = hypersearch.run("searchspaces/branin.yaml", algo="tpe")  # doctest: +SKIP
    >>> result.summary["best"]  # doctest: +SKIP
    >>> trials, front = hypersearch.load_run(result.run_dir)  # doctest: +SKIP
    >>> comparison = hypersearch.compare("searchspaces/branin.yaml", seeds=5)  # doctest: +SKIP
    >>> comparison.table, comparison.compare_dir  # doctest: +SKIP

Names are imported lazily so that worker processes stay light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Experiment": "hypersearch.experiment",
    "load_experiment": "hypersearch.experiment",
    "SearchSpace": "hypersearch.space",
    "run": "hypersearch.engine",
    "RunResult": "hypersearch.engine",
    "compare": "hypersearch.report",  # comparison.compare, then results.csv/.md and plots
    "Comparison": "hypersearch.comparison",
    "load_run": "hypersearch.results",
    "RunData": "hypersearch.results",
    "TrialPruned": "hypersearch.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hypersearch' has no attribute {name!r}")
