"""Batch transforms: crop windows match a per-image reference, flips are flips, seeds repeat."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepshrink.data.transforms import Compose, HorizontalFlip, RandomCropPad
from deepshrink.errors import ConfigError


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_crop_shape_and_each_output_is_a_window_of_the_padded_image() -> None:
    images = torch.rand(16, 3, 8, 8) + 1.0  # no zeros inside the image
    out = RandomCropPad(6, padding=2)(images, generator(0))
    assert out.shape == (16, 3, 6, 6)
    padded = F.pad(images, (2, 2, 2, 2))
    offsets = set()
    for i in range(16):
        matches = [
            (top, left)
            for top in range(7)
            for left in range(7)
            if torch.equal(out[i], padded[i, :, top : top + 6, left : left + 6])
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 1  # offsets differ per image


def test_padding_region_is_zero() -> None:
    out = RandomCropPad(4, padding=4)(torch.ones(1024, 1, 4, 4), generator(1))
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert (out == 0).all(dim=(1, 2, 3)).any()  # some windows lie wholly in the padding
    assert (out == 1).all(dim=(1, 2, 3)).any()  # some windows are the centred image


def test_crop_without_padding_and_rectangular_size() -> None:
    images = torch.rand(3, 2, 5, 7)
    assert RandomCropPad((5, 7))(images, generator(0)).equal(images)
    assert RandomCropPad((2, 3))(images, generator(0)).shape == (3, 2, 2, 3)


def test_flip_is_a_flip() -> None:
    images = torch.rand(64, 3, 4, 5)
    assert HorizontalFlip(p=1.0)(images, generator(0)).equal(images.flip(-1))
    assert HorizontalFlip(p=0.0)(images, generator(0)).equal(images)
    out = HorizontalFlip()(images, generator(0))
    flipped = [torch.equal(o, x.flip(-1)) for o, x in zip(out, images, strict=True)]
    kept = [torch.equal(o, x) for o, x in zip(out, images, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)


def test_same_seed_same_output_different_seed_different() -> None:
    augment = Compose([RandomCropPad(8, padding=4), HorizontalFlip()])
    images = torch.rand(32, 3, 8, 8)
    assert augment(images, generator(7)).equal(augment(images, generator(7)))
    assert not augment(images, generator(7)).equal(augment(images, generator(8)))
    assert augment(images, None).shape == images.shape  # default generator works too


def test_invalid_arguments() -> None:
    with pytest.raises(ConfigError, match="size"):
        RandomCropPad(0)
    with pytest.raises(ConfigError, match="padding"):
        RandomCropPad(4, padding=-1)
    with pytest.raises(ConfigError, match="p must be"):
        HorizontalFlip(p=1.5)
    with pytest.raises(ConfigError, match="larger than the padded image"):
        RandomCropPad(9, padding=0)(torch.zeros(1, 1, 8, 8), generator(0))
    assert "RandomCropPad" in repr(Compose([RandomCropPad(4, 1)]))
