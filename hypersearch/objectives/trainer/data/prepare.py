"""Raw arrays to a ``Dataset``: the seeded validation hold-out, the ``max_train`` subset, and
normalization with training-split statistics (float64 arithmetic in bounded chunks)."""

from __future__ import annotations

import numpy as np

from hypersearch.objectives.trainer.data.dataset import Dataset, DatasetError

_CHUNK_VALUES = 1 << 22  # values per chunk when computing statistics (bounded float64 temps)


def prepare(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    x_valid: np.ndarray | None,
    y_valid: np.ndarray | None,
    n_classes: int,
    valid_fraction: float,
    split_seed: int,
    max_train: int | None,
) -> Dataset:
    """Split (unless the data has its own validation set), take statistics, subsample, normalize.

    Statistics come before the subsample, so validation is the same with or without
    ``max_train``.
    """
    import torch

    rng = np.random.default_rng(split_seed)
    if x_valid is None or y_valid is None:
        n = len(y)
        if n < 2:
            raise DatasetError(f"dataset {name!r} has {n} sample(s); a split needs at least 2")
        n_valid = min(max(round(valid_fraction * n), 1), n - 1)
        order = rng.permutation(n)
        # Sorted, so both splits keep the stored order (reproducible, easy to inspect).
        valid_idx, train_idx = np.sort(order[:n_valid]), np.sort(order[n_valid:])
        x, y, x_valid, y_valid = x[train_idx], y[train_idx], x[valid_idx], y[valid_idx]
    mean, std = _statistics(x)
    if max_train is not None and max_train < len(y):
        keep = np.sort(rng.choice(len(y), size=max_train, replace=False))
        x, y = x[keep], y[keep]
    return Dataset(
        name=name,
        x_train=torch.from_numpy(_normalize(x, mean, std)),
        y_train=torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
        x_valid=torch.from_numpy(_normalize(x_valid, mean, std)),
        y_valid=torch.from_numpy(np.ascontiguousarray(y_valid, dtype=np.int64)),
        n_classes=int(n_classes),
    )


def _statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (images) or per-feature (flat) mean and std, two-pass in float64 chunks."""
    n, channels = x.shape[0], x.shape[1]
    view = x.reshape(n, channels, -1)
    step = max(1, _CHUNK_VALUES // max(1, view[0].size))
    count = n * view.shape[2]
    total = np.zeros(channels)
    for start in range(0, n, step):
        total += view[start : start + step].sum(axis=(0, 2), dtype=np.float64)
    mean = total / count
    squares = np.zeros(channels)
    for start in range(0, n, step):
        diff = view[start : start + step].astype(np.float64) - mean[:, None]
        squares += np.einsum("ncp,ncp->c", diff, diff)
    std = np.sqrt(squares / count)
    std[~(std > 1e-8)] = 1.0  # a constant channel/feature is only centered, never blown up
    return mean, std


def _normalize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, std = mean.reshape(shape), std.reshape(shape)
    out = np.empty(x.shape, dtype=np.float32)
    step = max(1, _CHUNK_VALUES // max(1, x[0].size))
    for start in range(0, len(x), step):
        out[start : start + step] = (x[start : start + step].astype(np.float64) - mean) / std
    return out
