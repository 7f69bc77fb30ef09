"""Images in an ImageFolder layout (``root/<class>/<image>``), read into memory with Pillow."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from deepshrink.data.dataset import ArrayDataset, channel_stats
from deepshrink.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

#: File name endings read as images (case-insensitive).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def image_folder(
    root: str | os.PathLike[str], size: int | Sequence[int] | None = None
) -> ArrayDataset:
    """All images under ``root/<class>/`` as one in-memory dataset; classes sorted by name.

    Images are grayscale (1 channel) when every file is grayscale, else RGB. Without ``size``
    all images must have the same size; with it they are resized to ``size`` (int or
    ``(height, width)``). Mean and std are computed per channel from the images.

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("cat", "dog"):
    ...     (root / name).mkdir()
    ...     Image.new("RGB", (4, 4)).save(root / name / "0.png")
    >>> data = image_folder(root)
    >>> len(data), data.input_shape, data.classes
    (2, (3, 4, 4), ['cat', 'dog'])
    """
    root = Path(root)
    classes, files, labels = _scan(root)
    target = _target_size(size)
    images = _read_images(files, target)
    tensor = torch.from_numpy(images)
    mean, std = channel_stats(tensor)
    logger.info("read %d images of %d classes from %s", len(files), len(classes), root)
    return ArrayDataset(
        tensor, torch.tensor(labels), mean=mean, std=std, classes=classes, name=root.name
    )


def _scan(root: Path) -> tuple[list[str], list[Path], list[int]]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = sorted(
            p
            for p in (root / name).rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
        files += found
        labels += [index] * len(found)
    if not files:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise DataError(
            f"no images found under {root}: expected {root}/<class name>/<image> with one of "
            f"the endings {suffixes}"
        )
    return classes, files, labels


def _target_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or any(not isinstance(s, int) or s <= 0 for s in pair):
        raise ConfigError(f"size must be a positive int or (height, width), got {size!r}")
    return pair  # type: ignore[return-value]


def _read_images(files: list[Path], size: tuple[int, int] | None) -> np.ndarray:
    arrays = [_read_image(path, size) for path in files]
    _check_same_size(arrays, files)
    if all(array.ndim == 2 for array in arrays):
        return np.stack(arrays)[:, None]
    colour = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]
    return np.ascontiguousarray(np.stack(colour).transpose(0, 3, 1, 2))


def _read_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8 ``(H, W)`` when grayscale, else ``(H, W, 3)``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            converted = image.convert("L" if image.mode in _GRAYSCALE_MODES else "RGB")
        if size is not None and converted.size != (size[1], size[0]):
            converted = converted.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(converted, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc


def _check_same_size(arrays: list[np.ndarray], files: list[Path]) -> None:
    first = arrays[0].shape[:2]
    for array, path in zip(arrays, files, strict=True):
        if array.shape[:2] != first:
            raise DataError(
                f"images differ in size: {files[0]} is {first[0]}x{first[1]}, {path} is "
                f"{array.shape[0]}x{array.shape[1]}; pass size= to resize them all"
            )
