"""``folder:PATH`` datasets: one sub-folder of images per class (optionally under ``train/`` and
``valid/``), decoded with Pillow to one common mode and size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hypersearch.objectives.trainer.data.dataset import DatasetError, RawData

# Images of a folder dataset take the first image's size, scaled down (aspect kept) so that its
# longer side is at most this many pixels: small networks, and tensors that fit in memory.
FOLDER_MAX_SIDE = 64
_IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def read_folder(root: Path) -> RawData:
    """Images per class folder, like fastai's ``ImageDataBunch.from_folder``.

    With ``train/`` (and ``valid/`` or ``val/``) under PATH those are the splits (any other
    sub-folder such as ``test/`` is ignored); without ``valid/`` the validation set is drawn from
    ``train/``; without ``train/`` PATH's own sub-folders are the classes. Classes are the
    training sub-folders that hold images, sorted by name. Images become 1-channel ("L") when
    every one of them is grayscale, else RGB (alpha dropped); all take the first training
    image's size, scaled down so its longer side is at most ``FOLDER_MAX_SIDE``.
    """
    if not root.is_dir():
        raise DatasetError(f"folder:{root}: no such folder")
    train_dir, valid_dir = root, None
    if (root / "train").is_dir():
        train_dir = root / "train"
        valid_dir = next((root / n for n in ("valid", "val") if (root / n).is_dir()), None)
    classes = [d.name for d in _class_dirs(train_dir) if _images(d)]
    if not classes:
        raise DatasetError(f"folder:{root}: no class sub-folders with images in {train_dir}")
    index = {name: i for i, name in enumerate(classes)}
    train_files = [(f, index[d.name]) for d in _class_dirs(train_dir) for f in _images(d)]
    valid_files: list[tuple[Path, int]] = []
    if valid_dir is not None:
        for d in _class_dirs(valid_dir):
            images = _images(d)
            if images and d.name not in index:
                raise DatasetError(
                    f"folder:{root}: class {d.name!r} is in {valid_dir} but not in {train_dir}"
                )
            valid_files += [(f, index[d.name]) for f in images]
        if not valid_files:
            raise DatasetError(f"folder:{root}: {valid_dir} holds no images in class folders")
    mode, size = _folder_format([f for f, _ in train_files + valid_files])
    x = _load_images([f for f, _ in train_files], mode, size)
    y = np.array([c for _, c in train_files], dtype=np.int64)
    if valid_dir is None:
        return x, y, None, None, len(classes)
    x_valid = _load_images([f for f, _ in valid_files], mode, size)
    y_valid = np.array([c for _, c in valid_files], dtype=np.int64)
    return x, y, x_valid, y_valid, len(classes)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    return sorted(
        f
        for f in folder.iterdir()
        if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES and not f.name.startswith(".")
    )


def _folder_format(files: list[Path]) -> tuple[str, tuple[int, int]]:
    """The common mode (L or RGB) and (width, height), from the files' headers only."""
    from PIL import Image

    modes = set()
    first_size: tuple[int, int] | None = None
    for path in files:
        try:
            with Image.open(path) as image:
                modes.add(image.mode)
                first_size = first_size or image.size
        except (OSError, Image.DecompressionBombError) as err:
            raise DatasetError(f"{path}: cannot read image ({err})") from err
    assert first_size is not None  # the caller found at least one file
    width, height = first_size
    scale = min(1.0, FOLDER_MAX_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return ("L" if modes <= _GRAY_MODES else "RGB"), size


def _load_images(files: list[Path], mode: str, size: tuple[int, int]) -> np.ndarray:
    """Decoded images as uint8 (N, C, H, W)."""
    from PIL import Image

    channels = 1 if mode == "L" else 3
    out = np.empty((len(files), size[1], size[0], channels), dtype=np.uint8)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as opened:
                image = opened.convert(mode)
                if image.size != size:
                    image = image.resize(size, Image.Resampling.BILINEAR)
                out[i] = np.asarray(image).reshape(size[1], size[0], channels)
        except (OSError, Image.DecompressionBombError) as err:
            raise DatasetError(f"{path}: cannot read image ({err})") from err
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
