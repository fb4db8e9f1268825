"""CIFAR-10: the five official binary training batches in ``<cache_dir>/cifar10/``, downloaded
and extracted there when missing. The test batch is never read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hypersearch.objectives.trainer.data.dataset import DatasetError, check_labels
from hypersearch.objectives.trainer.data.download import announce, download, safe_extract

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_CIFAR10_MD5 = {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"}
_CIFAR10_DIR = "cifar-10-batches-bin"
_CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR10_RECORD = 1 + 3 * 32 * 32


def read_cifar10(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training images as uint8 (N, 3, 32, 32) and their labels, downloading when missing."""
    paths = _find_cifar10(folder)
    if paths is None:
        _download_cifar10(folder)
        paths = _find_cifar10(folder)
        if paths is None:
            raise DatasetError(
                f"{CIFAR10_URL} did not contain {_CIFAR10_DIR}/{_CIFAR10_TRAIN[0]} … "
                f"{_CIFAR10_TRAIN[-1]}; place the extracted files in {folder}"
            )
    images, labels = [], []
    for path in paths:
        records = np.fromfile(path, dtype=np.uint8)
        if records.size == 0 or records.size % _CIFAR10_RECORD:
            raise DatasetError(
                f"{path}: {records.size} bytes is not a whole number of CIFAR-10 records "
                f"({_CIFAR10_RECORD} bytes: 1 label + 3072 pixels)"
            )
        records = records.reshape(-1, _CIFAR10_RECORD)
        labels.append(check_labels(records[:, 0], 10, path))
        images.append(records[:, 1:].reshape(-1, 3, 32, 32))  # R, G, B planes, row-major
    return np.concatenate(images), np.concatenate(labels)


def _find_cifar10(folder: Path) -> list[Path] | None:
    """The five training batches, in cifar-10-batches-bin/ (as extracted) or in the folder."""
    for where in (folder / _CIFAR10_DIR, folder):
        paths = [where / name for name in _CIFAR10_TRAIN]
        if all(path.is_file() for path in paths):
            return paths
    return None


def _download_cifar10(folder: Path) -> None:
    archive_name = CIFAR10_URL.rsplit("/", 1)[1]
    expected = [f"{_CIFAR10_DIR}/{name}" for name in _CIFAR10_TRAIN]
    announce("CIFAR-10", CIFAR10_URL, folder)
    archive = folder / archive_name
    download(CIFAR10_URL, archive, _CIFAR10_MD5[archive_name], "CIFAR-10", expected)
    try:
        safe_extract(archive, folder)
    finally:
        archive.unlink(missing_ok=True)
