"""The shapes every reader hands over: raw arrays (``RawData``), the prepared ``Dataset``, and the
one error a dataset that cannot be read raises (``DatasetError``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hypersearch.errors import UserInputError

if TYPE_CHECKING:  # torch is imported when data is loaded, so name checks stay cheap
    import torch

# What a reader returns: x as (N, C, H, W) or (N, D) in its stored dtype, y as int64 0..K-1, the
# data's own validation x and y (or None: a hold-out is drawn), and the number of classes K.
RawData = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, int]


class DatasetError(UserInputError):
    """A dataset that cannot be found, downloaded or parsed; the message says where and what."""


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train/validation tensors on the CPU, inputs normalized with training-set statistics.

    Shared by every trial of a process (see ``load_dataset``): never modify the tensors in place.
    """

    name: str
    x_train: torch.Tensor  # float32, (N, C, H, W) for images; (N, D) for flat features
    y_train: torch.Tensor  # int64 class labels 0..n_classes-1, shape (N,)
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={tuple(self.x_train.shape)}, "
            f"valid={tuple(self.x_valid.shape)}, n_classes={self.n_classes})"
        )


def check_labels(labels: np.ndarray, n_classes: int, where: Path) -> np.ndarray:
    """Stored labels as int64, refused unless they lie in ``0..n_classes-1`` (a corrupt file
    would otherwise fail later, deep inside the loss)."""
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(
            f"{where}: labels must be in 0..{n_classes - 1}, found {labels.min()}..{labels.max()}"
        )
    return labels
