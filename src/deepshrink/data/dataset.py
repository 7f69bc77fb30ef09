"""In-memory image datasets with batched, vectorised transforms.

Small vision datasets (MNIST, CIFAR-10, digits) fit in memory as one uint8 tensor. Keeping them
there and transforming whole batches at once is many times faster on a CPU than a per-sample
``DataLoader`` pipeline, and it makes shuffling and augmentation reproducible from one
``torch.Generator``. :class:`ArrayDataset` is still a regular ``torch.utils.data.Dataset``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

#: A batch transform: float images ``(B, C, H, W)`` in [0, 1] and an optional generator → images.
BatchTransform = Callable[[Tensor, "torch.Generator | None"], Tensor]


class ArrayDataset(torch.utils.data.Dataset):
    """Images ``(N, C, H, W)`` (uint8 0–255 or float 0–1) with int64 labels, held in memory.

    Batches come out as float32, augmented by ``transform`` (applied to [0, 1] pixels) and then
    normalised with ``mean``/``std`` per channel.

    >>> ds = ArrayDataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.arange(4))
    >>> x, y = ds.batch(torch.tensor([0, 1]))
    >>> tuple(x.shape), y.tolist()
    ((2, 1, 2, 2), [0, 1])
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        transform: BatchTransform | None = None,
        classes: Sequence[str] | None = None,
        name: str = "",
    ) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}"
            )
        channels = images.shape[1]
        self.images = images
        self.labels = labels.to(torch.int64)
        self.mean = torch.tensor(mean if mean is not None else [0.0] * channels).view(1, -1, 1, 1)
        self.std = torch.tensor(std if std is not None else [1.0] * channels).view(1, -1, 1, 1)
        self.transform = transform
        self.classes = list(classes) if classes is not None else None
        self.name = name

    def __repr__(self) -> str:
        name = f"{self.name!r}, " if self.name else ""
        return (
            f"ArrayDataset({name}{len(self)} samples, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, transform={self.transform!r})"
        )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x, y = self.batch(torch.tensor([i]))
        return x[0], int(y[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(C, H, W)``."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        """Number of classes: ``len(classes)`` when known, else the largest label plus one."""
        if self.classes is not None:
            return len(self.classes)
        return int(self.labels.max()) + 1 if len(self) else 0

    def batch(
        self, index: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """The samples at ``index`` as one float batch, transformed and normalised."""
        x = self.images[index]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if self.transform is not None:
            x = self.transform(x, generator)
        return (x - self.mean) / self.std, self.labels[index]

    def iter_batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(x, y)`` batches; with ``shuffle`` the order comes from ``generator``."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield self.batch(order[start : start + batch_size], generator)

    def subset(self, index: Tensor) -> ArrayDataset:
        """A new dataset holding the samples at ``index`` (same transform and normalisation)."""
        return self._replace(images=self.images[index], labels=self.labels[index])

    def without_transform(self) -> ArrayDataset:
        """The same samples with augmentation switched off (normalisation kept)."""
        return self._replace(transform=None)

    def _replace(self, **changes: object) -> ArrayDataset:
        fields: dict[str, object] = dict(
            images=self.images,
            labels=self.labels,
            mean=self.mean.flatten().tolist(),
            std=self.std.flatten().tolist(),
            transform=self.transform,
            classes=self.classes,
            name=self.name,
        )
        fields.update(changes)
        images, labels = fields.pop("images"), fields.pop("labels")
        return ArrayDataset(images, labels, **fields)  # type: ignore[arg-type]


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of images ``(N, C, H, W)`` on the [0, 1] scale.

    uint8 images count as 0–255; float images as already in [0, 1]. Works in chunks, so it
    never holds a float64 copy of the whole set.

    >>> channel_stats(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1))
    ([0.5], [0.5])
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W), got {tuple(images.shape)}")
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for part in images.split(chunk):
        x = part.to(torch.float64) / scale
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()
