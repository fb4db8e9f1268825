"""What lr-find leaves behind: its folder (lr_find.csv, lr_find.png, experiment.narrowed.yaml)
and the lines it prints. The picture follows ``plot_style``: units on the axes, which way is
better, a log axis for the learning rate, each suggestion a named line in the legend.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from hypersearch.folders import create_folder
from hypersearch.plot_style import label, save

if TYPE_CHECKING:
    from hypersearch.lr_find_loop import Curve

CSV_NAME, PNG_NAME, NARROWED_NAME = "lr_find.csv", "lr_find.png", "experiment.narrowed.yaml"
MARK_STYLES = ("--", ":", "-.")  # a curve's first, second, third mark
# Each curve's marks: (what, learning rate) pairs, drawn as named vertical lines.
Marks = Sequence[tuple[str, float]]


def write_folder(
    out: Path,
    base: str,
    *,
    title: str,
    curves: Sequence[Curve],
    marks: Sequence[Marks],
    narrowed: tuple[float, float] | None,
    narrowed_yaml: str | None,
) -> Path:
    """``out/base`` with the curves (csv), their picture and the narrowed experiment; created
    whole or not at all (``folders.create_folder``)."""

    def build(staging: Path, _name: str) -> None:
        write_csv(staging / CSV_NAME, curves)
        plot(staging / PNG_NAME, title, curves, marks, narrowed)
        if narrowed_yaml is not None:
            (staging / NARROWED_NAME).write_text(narrowed_yaml)

    return create_folder(out, base, build)


def write_csv(path: Path, curves: Sequence[Curve]) -> None:
    """One row per step of each curve: ``curve,step,lr,loss,smoothed_loss`` (steps from 1)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["curve", "step", "lr", "loss", "smoothed_loss"])
        for curve in curves:
            rows = zip(curve.lrs, curve.losses, curve.smoothed, strict=True)
            for step, (lr, loss, smooth) in enumerate(rows, start=1):
                writer.writerow([curve.label, step, repr(lr), repr(loss), repr(smooth)])


def plot(
    path: Path,
    title: str,
    curves: Sequence[Curve],
    marks: Sequence[Marks],
    narrowed: tuple[float, float] | None,
) -> Path:
    """The smoothed loss (and, faint, each batch's) against the learning rate on a log axis;
    each curve's marks (its suggestions) as vertical lines in its colour, the narrowed range
    shaded."""
    fig = Figure(figsize=(8, 4.8))
    ax = fig.add_subplot()
    several = len(curves) > 1
    for i, (curve, its_marks) in enumerate(zip(curves, marks, strict=True)):
        color = f"C{i % 10}"
        ax.plot(curve.lrs, curve.losses, color=color, lw=0.7, alpha=0.3)
        smoothed = curve.label if several else "smoothed loss"
        ax.plot(curve.lrs, curve.smoothed, color=color, lw=2, label=smoothed)
        for (what, lr), style in zip(its_marks, MARK_STYLES, strict=False):
            ax.axvline(lr, color=color, ls=style, lw=1.4, label=f"{'  ' * several}{what}: {lr:.3g}")
    ax.plot([], [], color="0.5", lw=0.7, alpha=0.5, label="loss of each batch")
    if narrowed is not None:
        span = f"narrowed params.lr: [{narrowed[0]:.3g}, {narrowed[1]:.3g}]"
        ax.axvspan(*narrowed, color="0.5", alpha=0.12, lw=0, label=span)
    ax.set_xscale("log")
    ax.set_ylim(*_loss_limits(curves))
    ax.set_xlabel("learning rate (log scale; grows each step)")
    ax.set_ylabel(label("train_loss", "minimize"))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if several:  # beside the axes: three entries a curve would hide the curves
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    else:
        ax.legend(loc="upper left", fontsize=8)
    return save(fig, path)


def _loss_limits(curves: Sequence[Curve]) -> tuple[float, float]:
    """From just below the lowest loss to a third above where the curves start: the blow-up at
    the end and single batches' spikes are cut off rather than squashing the part that matters,
    where the loss falls."""
    lows, starts = [], []
    for curve in curves:
        values = np.asarray(curve.smoothed, dtype=float)
        values = values[np.isfinite(values)]
        raw = np.asarray(curve.losses, dtype=float)
        lows.append(min(values.min(), raw[np.isfinite(raw)].min()))
        starts.append(np.median(values[: max(1, len(values) // 10)]))
    low, start = float(min(lows)), float(max(starts))
    pad = 0.05 * (start - low) if start > low else 0.1 * abs(start) or 1.0
    return low - pad, max(start * 1.35, start + pad)
