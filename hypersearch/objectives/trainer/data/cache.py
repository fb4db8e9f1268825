"""``load_dataset``: checked options, resolved locations, and the per-process cache of prepared
datasets (a worker runs many trials on the same data, so it reads and normalizes it once)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from hypersearch.errors import ExperimentError
from hypersearch.objectives.trainer.data.dataset import Dataset
from hypersearch.objectives.trainer.data.prepare import prepare
from hypersearch.objectives.trainer.data.registry import (
    PATH_PREFIXES,
    check_dataset_name,
    read_raw,
)


def default_cache_dir() -> Path:
    """Where downloaded datasets live: ``$HYPERSEARCH_DATA``, else ~/.cache/hypersearch/datasets."""
    env = os.environ.get("HYPERSEARCH_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "hypersearch" / "datasets"


def load_dataset(
    name: str,
    *,
    valid_fraction: float = 0.2,
    split_seed: int = 0,
    max_train: int | None = None,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """Load (or take from this process's cache) one dataset, split and normalized.

    ``valid_fraction`` of the training data is held out for validation, chosen by ``split_seed``
    (ignored where the data has its own validation set). ``max_train`` keeps a seeded subset of
    the training split for quick runs; it is applied after the split and after the normalization
    statistics are taken, so validation is the same with or without it. ``folder:`` and ``npz:``
    paths are resolved against the current directory; ``Dataset.name`` holds the resolved path.
    """
    check_dataset_name(name)
    if isinstance(valid_fraction, bool) or not 0 < valid_fraction < 1:
        raise ExperimentError(
            "objective.trainer.valid_fraction", f"must be in (0, 1) (got {valid_fraction!r})"
        )
    if max_train is not None and (
        isinstance(max_train, bool) or not isinstance(max_train, int) or max_train < 1
    ):
        raise ExperimentError("objective.trainer.max_train", f"must be >= 1 (got {max_train!r})")
    prefix = next((p for p in PATH_PREFIXES if name.startswith(p)), None)
    if prefix is not None:  # a path of its own: the cache folder plays no part
        path = Path(name[len(prefix) :].strip()).expanduser().resolve()
        key_name, key_dir = prefix + str(path), None
    else:
        key_name = name
        key_dir = str(Path(cache_dir or default_cache_dir()).expanduser().resolve())
    return _load_cached(key_name, float(valid_fraction), int(split_seed), max_train, key_dir)


def clear_cache() -> None:
    """Forget the datasets loaded by this process (e.g. after replacing their files)."""
    _load_cached.cache_clear()


# Few entries: one float32 CIFAR-10 is 600 MB; a worker rarely needs more than one dataset.
@functools.lru_cache(maxsize=4)
def _load_cached(
    name: str, valid_fraction: float, split_seed: int, max_train: int | None, cache_dir: str | None
) -> Dataset:
    x, y, x_valid, y_valid, n_classes = read_raw(name, Path(cache_dir) if cache_dir else None)
    return prepare(name, x, y, x_valid, y_valid, n_classes, valid_fraction, split_seed, max_train)
