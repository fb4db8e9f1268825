"""How every picture of hypersearch reads: units and "which way is better" on the axes, when a
log axis helps, titles and saving (one place, so ``plots`` and ``step_plots`` draw alike).

matplotlib is imported only for types here; the figures themselves are built by the modules
that draw (``matplotlib.figure.Figure``, no pyplot state).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from hypersearch.results import RunData

DPI = 120
UNITS = {
    "val_loss": "cross-entropy, nats",
    "train_loss": "cross-entropy, nats",
    "val_accuracy": "fraction correct",
    "train_seconds": "s",
    "train_flops": "floating-point operations",
    "peak_memory_mb": "MiB",
    "n_params": "count",
    "duration_s": "s",
    "value": "function value",
    "regret": "function value",
}


def label(metric: str, direction: str | None = None) -> str:
    """``val_loss (cross-entropy, nats) ↓``: the metric, its unit, and which way is better."""
    unit = UNITS.get(metric, "objective units")
    arrow = {"minimize": " ↓ better", "maximize": " ↑ better"}.get(direction or "", "")
    return f"{metric} ({unit}){arrow}"


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def log_ok(values: np.ndarray, span: float = 100.0) -> bool:
    """A log axis helps when every value is positive and they span over ``span`` (two decades
    by default)."""
    finite = values[np.isfinite(values)]
    return bool(len(finite)) and finite.min() > 0 and finite.max() / finite.min() > span


def run_title(run: RunData, what: str) -> str:
    return f"{run.experiment.name} · {run.algo} · seed {run.seed}: {what}"


def score_sign(notes: dict[str, Any]) -> float:
    """+1 where a comparison's score is minimized, -1 where maximized: curves are stored as
    losses."""
    return 1.0 if notes["score_direction"] == "minimize" else -1.0


def best_score_label(notes: dict[str, Any]) -> str:
    """The y label of a best-so-far curve of a comparison's score."""
    if notes["score"] == "hypervolume":
        return "hypervolume so far (objective units², shared reference) ↑ better"
    return "best " + label(notes["score"], notes["score_direction"])


def quartiles(stacked: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First quartile, median and third quartile over seeds (rows), column by column."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before a success
        q1, med, q3 = np.nanpercentile(stacked, [25, 50, 75], axis=0)
    return q1, med, q3


def finish_best_so_far(
    fig: Figure, ax: Axes, notes: dict[str, Any], shown: np.ndarray, texts: tuple[str, str, str]
) -> None:
    """The legend entry of the quartile bands, a log axis where it helps, labels and grid of a
    best-so-far picture; ``texts`` are the band's legend, the x label and the title."""
    band, xlabel, title = texts
    ax.plot([], [], color="0.5", alpha=0.3, lw=8, label=band)
    if notes["score"] != "hypervolume" and log_ok(shown):
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(best_score_label(notes))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
