"""MobileNetV2 (Sandler et al. 2018), width 1.0, adapted to 32x32 CIFAR images.

The CIFAR adaptation (as in the common CIFAR code bases) runs the stem and the second stage at
stride 1, so a 32x32 input reaches the last block at 4x4 instead of 1x1. Blocks follow the paper:
no expansion convolution in the first block (expansion 1), expansion 6 elsewhere, ReLU6 after
expansion and depthwise convolutions, a linear 1x1 projection, and a residual connection only
when a block keeps its shape. There is no dropout before the classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from deepshrink.zoo.base import ZooModel, init_weights
from deepshrink.zoo.limits import CLASSES
from deepshrink.zoo.registry import register

__all__ = ["CIFAR_STAGES", "InvertedResidual", "MobileNetV2Cifar", "mobilenetv2_cifar"]

CIFAR_SHAPE = (3, 32, 32)
CIFAR_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # stride 2 in the paper; 1 for 32x32 inputs
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
"""Per stage: expansion factor, output channels, number of blocks, stride of the first block."""


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, 1x1 linear projection; residual when the shape is kept.

    Modules: ``expand_conv/expand_bn/expand_relu`` (absent when ``expansion == 1``),
    ``depthwise_conv/depthwise_bn/depthwise_relu`` and ``project_conv/project_bn``.

    >>> block = InvertedResidual(16, 16, stride=1, expansion=6)
    >>> block.use_residual, block(torch.randn(2, 16, 8, 8)).shape
    (True, torch.Size([2, 16, 8, 8]))
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expansion = expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        if expansion != 1:
            self.expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self.expand_bn = nn.BatchNorm2d(hidden)
            self.expand_relu = nn.ReLU6()
        self.depthwise_conv = nn.Conv2d(
            hidden, hidden, 3, stride, padding=1, groups=hidden, bias=False
        )
        self.depthwise_bn = nn.BatchNorm2d(hidden)
        self.depthwise_relu = nn.ReLU6()
        self.project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expansion != 1:
            out = self.expand_relu(self.expand_bn(self.expand_conv(out)))
        out = self.depthwise_relu(self.depthwise_bn(self.depthwise_conv(out)))
        out = self.project_bn(self.project_conv(out))
        return out + x if self.use_residual else out


class MobileNetV2Cifar(ZooModel):
    """MobileNetV2 for 32x32 images: stem ``conv1``, stages ``layer1..layer7``, ``conv2`` to 1280.

    >>> model = MobileNetV2Cifar()
    >>> model(*model.example_inputs(batch_size=2)).shape
    torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(CIFAR_SHAPE, num_classes)
        self.conv1 = nn.Conv2d(3, 32, 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu1 = nn.ReLU6()
        in_channels = 32
        for index, (expansion, channels, blocks, stride) in enumerate(CIFAR_STAGES, start=1):
            stage = [InvertedResidual(in_channels, channels, stride, expansion)]
            stage += [InvertedResidual(channels, channels, 1, expansion) for _ in range(blocks - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*stage))
            in_channels = channels
        self.conv2 = nn.Conv2d(in_channels, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.relu2 = nn.ReLU6()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(1280, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        for index in range(1, len(CIFAR_STAGES) + 1):
            x = getattr(self, f"layer{index}")(x)
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(self.flatten(self.avgpool(x)))


@register("mobilenetv2_cifar", limits={"num_classes": CLASSES})
def mobilenetv2_cifar(num_classes: int = 10) -> MobileNetV2Cifar:
    """MobileNetV2 for CIFAR: width 1.0, inverted residuals, stem and stage 2 at stride 1.

    >>> sum(p.numel() for p in mobilenetv2_cifar().parameters())
    2236682
    """
    return MobileNetV2Cifar(num_classes=num_classes)
