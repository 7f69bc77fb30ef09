"""CIFAR ResNets: He et al. 2016's ResNet-20/32/56/110 and the common CIFAR ResNet-18.

All are built by :class:`CifarResNet`: a 3x3 stem convolution, stages of :class:`BasicBlock`
(the first block of every stage after the first halves the resolution), global average pooling
and a linear classifier. Every ReLU is its own ``nn.ReLU`` module (``relu1`` after ``bn1`` and
``relu2`` after the residual addition in a block), never shared and never functional, so hooks
and conv-BN-ReLU fusion see each one.

The shortcut of a block whose shape changes is either option A (:class:`PadShortcut`,
parameter free: stride-2 subsampling, then zero channels appended after the input channels) or
option B (1x1 convolution + BN projection). Blocks that keep their shape use ``nn.Identity``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepshrink.zoo.base import ZooModel, check_choice, check_sizes, init_weights
from deepshrink.zoo.limits import CLASSES, Choice
from deepshrink.zoo.registry import register

__all__ = [
    "BasicBlock",
    "CifarResNet",
    "PadShortcut",
    "resnet18_cifar",
    "resnet20",
    "resnet32",
    "resnet56",
    "resnet110",
]

CIFAR_SHAPE = (3, 32, 32)
SHORTCUTS = ("A", "B")
_LIMITS = {"num_classes": CLASSES, "shortcut": Choice(SHORTCUTS)}


class PadShortcut(nn.Module):
    """Option A shortcut: keep every ``stride``-th pixel, then append zero-valued channels.

    The input channels stay first, in order; ``out_channels - in_channels`` zero channels follow.
    After channel pruning the map is general: output channel ``j`` is input channel
    ``sources[j]``, or zero where ``sources[j]`` is -1 (:meth:`keep_in_channels`,
    :meth:`keep_out_channels`), so the residual streams on both sides of the shortcut can lose
    channels independently.

    >>> PadShortcut(16, 32, stride=2)(torch.ones(1, 16, 8, 8)).shape
    torch.Size([1, 32, 4, 4])
    >>> cut = PadShortcut(4, 8, stride=1)
    >>> cut.keep_in_channels([0, 2, 3]); cut.keep_out_channels([1, 2, 5])
    >>> cut.sources, cut(torch.arange(3.0).view(1, 3, 1, 1)).flatten().tolist()
    ([-1, 1, -1], [0.0, 1.0, 0.0])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"PadShortcut cannot shrink {in_channels} to {out_channels} channels")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        #: Output channel j is input channel sources[j] (-1: zero); None: the plain padding.
        self.sources: list[int] | None = None
        self.register_buffer("_index", torch.zeros(0, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        if self.sources is None:
            return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))
        zero = torch.zeros_like(x[:, :1])
        return torch.cat([x, zero], dim=1).index_select(1, self._index)

    def _map(self) -> list[int]:
        if self.sources is not None:
            return list(self.sources)
        return [j if j < self.in_channels else -1 for j in range(self.out_channels)]

    def _set(self, sources: list[int], in_channels: int) -> None:
        self.sources, self.in_channels, self.out_channels = sources, in_channels, len(sources)
        index = [in_channels if s < 0 else s for s in sources]
        self._index = torch.tensor(index, dtype=torch.long, device=self._index.device)

    def keep_in_channels(self, kept: Sequence[int]) -> None:
        """Keep only input channels ``kept`` (sorted); outputs fed by others become zero."""
        position = {old: new for new, old in enumerate(kept)}
        self._set([position.get(s, -1) for s in self._map()], len(kept))

    def keep_out_channels(self, kept: Sequence[int]) -> None:
        """Keep only output channels ``kept`` (sorted), in order."""
        sources = self._map()
        self._set([sources[j] for j in kept], self.in_channels)

    def extra_repr(self) -> str:
        mapped = "" if self.sources is None else ", channel map"
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}{mapped}"


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a shortcut: ``relu2(bn2(conv2(relu1(bn1(conv1(x))))) + s(x))``.

    >>> block = BasicBlock(16, 32, stride=2, shortcut="A")
    >>> block(torch.randn(2, 16, 8, 8)).shape
    torch.Size([2, 32, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


def make_shortcut(in_channels: int, out_channels: int, stride: int, shortcut: str) -> nn.Module:
    """Identity when the shape is kept, else option ``"A"`` (padding) or ``"B"`` (projection).

    >>> make_shortcut(16, 16, 1, "A")
    Identity()
    >>> make_shortcut(16, 32, 2, "A")
    PadShortcut(16, 32, stride=2)
    """
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if shortcut == "A":
        return PadShortcut(in_channels, out_channels, stride)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
    )


class CifarResNet(ZooModel):
    """ResNet for 32x32 images: stem ``conv1``/``bn1``/``relu``, stages ``layer1..``, ``fc``.

    ``stage_channels`` gives each stage's width, ``blocks_per_stage`` its number of blocks; the
    stem has ``stage_channels[0]`` filters at stride 1 and there is no max pooling.

    >>> model = CifarResNet(stage_channels=[16, 32], blocks_per_stage=[1, 1])
    >>> model(*model.example_inputs(batch_size=2)).shape
    torch.Size([2, 10])
    >>> type(model.layer2[0].shortcut).__name__
    'PadShortcut'
    """

    def __init__(
        self,
        stage_channels: Sequence[int],
        blocks_per_stage: Sequence[int],
        num_classes: int = 10,
        shortcut: str = "A",
    ) -> None:
        super().__init__(CIFAR_SHAPE, num_classes)
        check_sizes("stage_channels", stage_channels)
        check_sizes("blocks_per_stage", blocks_per_stage, length=len(stage_channels))
        check_choice("shortcut", shortcut, SHORTCUTS)
        self.shortcut_option = shortcut
        self.conv1 = nn.Conv2d(3, stage_channels[0], 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stage_channels[0])
        self.relu = nn.ReLU()
        in_channels = stage_channels[0]
        stages = zip(stage_channels, blocks_per_stage, strict=True)
        for index, (channels, blocks) in enumerate(stages):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(in_channels, channels, stride, shortcut)]
            stage += [BasicBlock(channels, channels, 1, shortcut) for _ in range(blocks - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            in_channels = channels
        self.stage_count = len(stage_channels)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for index in range(1, self.stage_count + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.fc(self.flatten(self.avgpool(x)))


def _he_resnet(depth: int, num_classes: int, shortcut: str) -> CifarResNet:
    """He et al.'s CIFAR ResNet of ``depth = 6n + 2`` layers: n blocks at 16, 32, 64 channels."""
    blocks = (depth - 2) // 6
    return CifarResNet((16, 32, 64), (blocks, blocks, blocks), num_classes, shortcut)


@register("resnet20", limits=_LIMITS)
def resnet20(num_classes: int = 10, shortcut: str = "A") -> CifarResNet:
    """ResNet-20 for CIFAR (He et al. 2016): 3 stages of 3 basic blocks at 16/32/64 channels.

    >>> sum(p.numel() for p in resnet20().parameters())
    269722
    """
    return _he_resnet(20, num_classes, shortcut)


@register("resnet32", limits=_LIMITS)
def resnet32(num_classes: int = 10, shortcut: str = "A") -> CifarResNet:
    """ResNet-32 for CIFAR (He et al. 2016): 3 stages of 5 basic blocks at 16/32/64 channels.

    >>> len(resnet32().layer1)
    5
    """
    return _he_resnet(32, num_classes, shortcut)


@register("resnet56", limits=_LIMITS)
def resnet56(num_classes: int = 10, shortcut: str = "A") -> CifarResNet:
    """ResNet-56 for CIFAR (He et al. 2016): 3 stages of 9 basic blocks at 16/32/64 channels.

    >>> sum(p.numel() for p in resnet56().parameters())
    853018
    """
    return _he_resnet(56, num_classes, shortcut)


@register("resnet110", limits=_LIMITS)
def resnet110(num_classes: int = 10, shortcut: str = "A") -> CifarResNet:
    """ResNet-110 for CIFAR (He et al. 2016): 3 stages of 18 basic blocks at 16/32/64 channels.

    >>> len(resnet110().layer3)
    18
    """
    return _he_resnet(110, num_classes, shortcut)


@register("resnet18_cifar", limits=_LIMITS)
def resnet18_cifar(num_classes: int = 10, shortcut: str = "B") -> CifarResNet:
    """ResNet-18 for CIFAR: 3x3 stem, no max pool, 2 blocks per stage at 64/128/256/512 channels.

    Projection (option B) shortcuts by default, as in the common CIFAR ResNet-18.

    >>> sum(p.numel() for p in resnet18_cifar().parameters())
    11173962
    """
    return CifarResNet((64, 128, 256, 512), (2, 2, 2, 2), num_classes, shortcut)
