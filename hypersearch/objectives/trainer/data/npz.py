"""``npz:PATH`` datasets: arrays ``x`` and ``y`` (and optionally ``x_valid``, ``y_valid``) in one
NumPy archive, checked and brought to the trainer's layout and 0..K-1 labels."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from hypersearch.objectives.trainer.data.dataset import DatasetError, RawData


def read_npz(path: Path) -> RawData:
    """x (N, D), (N, H, W), (N, H, W, C) with C in {1, 3}, or (N, C, H, W); y labels of any values.

    A 4-D x is channels-last when its last axis is 1 or 3 and its second is not; otherwise it is
    channels-first. Label values (train and valid together) are mapped in sorted order to
    0..K-1; floats must be whole numbers.
    """
    where = f"npz:{path}"
    if not path.is_file():
        raise DatasetError(f"{where}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DatasetError(f"{where}: cannot read ({err})") from err
    if "x" not in arrays or "y" not in arrays:
        raise DatasetError(f"{where}: needs arrays 'x' and 'y' (found: {', '.join(arrays)})")
    if ("x_valid" in arrays) != ("y_valid" in arrays):
        raise DatasetError(f"{where}: 'x_valid' and 'y_valid' go together; found only one")
    x = _npz_inputs(arrays["x"], f"{where}: x")
    y = _npz_labels(arrays["y"], len(x), f"{where}: y")
    if "x_valid" not in arrays:
        classes, codes = np.unique(y, return_inverse=True)
        return x, codes.reshape(-1).astype(np.int64), None, None, len(classes)
    x_valid = _npz_inputs(arrays["x_valid"], f"{where}: x_valid")
    if x_valid.shape[1:] != x.shape[1:]:
        raise DatasetError(
            f"{where}: x_valid samples have shape {x_valid.shape[1:]}, x samples {x.shape[1:]}"
        )
    y_valid = _npz_labels(arrays["y_valid"], len(x_valid), f"{where}: y_valid")
    if (y.dtype.kind in "US") != (y_valid.dtype.kind in "US"):  # numpy would make all strings
        raise DatasetError(f"{where}: y and y_valid hold different kinds of labels")
    classes, codes = np.unique(np.concatenate([y, y_valid]), return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    return x, codes[: len(y)], x_valid, codes[len(y) :], len(classes)


def _npz_inputs(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"{where}: must be numeric (got dtype {x.dtype})")
    if x.ndim < 2 or x.ndim > 4 or len(x) == 0:
        raise DatasetError(
            f"{where}: expected (N, D), (N, H, W), (N, H, W, C) or (N, C, H, W) with N > 0, "
            f"got shape {x.shape}"
        )
    if x.dtype.kind == "b":
        x = x.astype(np.uint8)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DatasetError(f"{where}: contains NaN or infinite values")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def _npz_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DatasetError(f"{where}: expected {n} class labels of shape ({n},), got {y.shape}")
    if y.dtype.kind == "f":
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise DatasetError(f"{where}: class labels must be whole numbers (got floats)")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "biuUS":
        raise DatasetError(f"{where}: class labels must be integers or strings ({y.dtype})")
    return y
