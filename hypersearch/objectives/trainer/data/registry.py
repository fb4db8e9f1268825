"""The dataset names the trainer knows (``DATASETS``) and, for each, the reader of its raw arrays.

``check_dataset_name`` answers at validation time without touching any file; ``read_raw`` hands a
resolved name to its reader (the readers import Pillow, scikit-learn or download only when used).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hypersearch.errors import ExperimentError
from hypersearch.objectives.trainer.data.cifar10 import read_cifar10
from hypersearch.objectives.trainer.data.dataset import RawData
from hypersearch.objectives.trainer.data.folder import read_folder
from hypersearch.objectives.trainer.data.idx import read_mnist_like
from hypersearch.objectives.trainer.data.npz import read_npz

_BUILTIN = ("digits", "mnist", "fashion-mnist", "cifar10")
DATASETS: tuple[str, ...] = (*_BUILTIN, "folder:PATH", "npz:PATH")
# Names that carry a path of their own (resolved against the current directory).
PATH_PREFIXES = ("folder:", "npz:")
_FIELD = "objective.trainer.dataset"


def check_dataset_name(name: object) -> None:
    """Reject an unknown dataset name at validation time, without touching any file."""
    if not isinstance(name, str):
        raise ExperimentError(_FIELD, f"must be a string (got {name!r})")
    if name in _BUILTIN:
        return
    for prefix in PATH_PREFIXES:
        if name.startswith(prefix):
            if not name[len(prefix) :].strip():
                raise ExperimentError(_FIELD, f"{prefix} needs a path, e.g. {prefix}data/x")
            return
    raise ExperimentError(_FIELD, f"unknown dataset {name!r} (choose from: {', '.join(DATASETS)})")


def read_raw(name: str, cache_dir: Path | None) -> RawData:
    """Raw arrays: x as (N, C, H, W) or (N, D) in its stored dtype, y as int64 0..K-1."""
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images[:, None], digits.target.astype(np.int64), None, None, 10
    if name.startswith("folder:"):
        return read_folder(Path(name[len("folder:") :]))
    if name.startswith("npz:"):
        return read_npz(Path(name[len("npz:") :]))
    assert cache_dir is not None  # load_dataset resolves it for every built-in name
    if name == "cifar10":
        x, y = read_cifar10(cache_dir / "cifar10")
    else:
        x, y = read_mnist_like(name, cache_dir / name)
    return x, y, None, None, 10
