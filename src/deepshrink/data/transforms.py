"""Batch augmentations on float image tensors ``(B, C, H, W)``, vectorised over the batch.

Each transform is a callable ``(images, generator) -> images``, as
:class:`~deepshrink.data.dataset.ArrayDataset` expects. Random draws come from ``generator``
(or torch's default one when it is ``None``), one tensor of draws per batch, so the same
generator state gives the same output. Written by hand because torchvision is not a dependency
and its transforms work sample by sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from deepshrink.data.dataset import BatchTransform
from deepshrink.errors import ConfigError


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or any(not isinstance(s, int) or s <= 0 for s in pair):
        raise ConfigError(f"size must be a positive int or (height, width), got {size!r}")
    return pair  # type: ignore[return-value]


def _random_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


class RandomCropPad:
    """Zero-pad each side by ``padding``, then crop a random ``size`` window per image.

    The batch is padded once; the windows are gathered with per-image offsets in one
    ``gather``, with no Python loop over images.

    >>> crop = RandomCropPad(4, padding=1)
    >>> crop(torch.ones(2, 3, 4, 4), torch.Generator().manual_seed(0)).shape
    torch.Size([2, 3, 4, 4])
    """

    def __init__(self, size: int | Sequence[int], padding: int = 0) -> None:
        self.size = _pair(size)
        if not isinstance(padding, int) or padding < 0:
            raise ConfigError(f"padding must be an int >= 0, got {padding!r}")
        self.padding = padding

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        batch, channels, height, width = images.shape
        p = self.padding
        crop_h, crop_w = self.size
        padded_h, padded_w = height + 2 * p, width + 2 * p
        if crop_h > padded_h or crop_w > padded_w:
            raise ConfigError(
                f"crop {crop_h}x{crop_w} is larger than the padded image "
                f"{padded_h}x{padded_w}; lower size or raise padding"
            )
        device = _random_device(generator)
        top = torch.randint(padded_h - crop_h + 1, (batch,), generator=generator, device=device)
        left = torch.randint(padded_w - crop_w + 1, (batch,), generator=generator, device=device)
        # Flat index of every window pixel in the padded image, (B, crop_h * crop_w), then
        # one gather over the flattened spatial dimension for all images and channels.
        corner = (top * padded_w + left).to(images.device)
        rows = torch.arange(crop_h, device=images.device)[:, None] * padded_w
        offsets = (rows + torch.arange(crop_w, device=images.device)).flatten()
        index = (corner[:, None] + offsets)[:, None, :].expand(batch, channels, -1)
        padded = F.pad(images, (p, p, p, p)) if p else images
        flat = padded.reshape(batch, channels, padded_h * padded_w)
        return flat.gather(2, index).view(batch, channels, crop_h, crop_w)

    def __repr__(self) -> str:
        return f"RandomCropPad(size={self.size}, padding={self.padding})"


class HorizontalFlip:
    """Mirror each image left-right with probability ``p``.

    >>> flip = HorizontalFlip(p=1.0)
    >>> flip(torch.tensor([[[[1.0, 2.0]]]])).tolist()
    [[[[2.0, 1.0]]]]
    """

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        draws = torch.rand(images.shape[0], generator=generator, device=_random_device(generator))
        flip = (draws < self.p).to(images.device)[:, None, None, None]
        return torch.where(flip, images.flip(-1), images)

    def __repr__(self) -> str:
        return f"HorizontalFlip(p={self.p})"


class Compose:
    """Apply transforms in order, passing the same generator to each.

    >>> augment = Compose([RandomCropPad(2, padding=1), HorizontalFlip()])
    >>> augment(torch.rand(5, 1, 2, 2), torch.Generator().manual_seed(1)).shape
    torch.Size([5, 1, 2, 2])
    """

    def __init__(self, transforms: Sequence[BatchTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for transform in self.transforms:
            images = transform(images, generator)
        return images

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"
