"""VGG-16 with batch normalisation for CIFAR, the model of L1 filter pruning and network slimming.

Convolutions are 3x3, padding 1, without bias (the BN after each one makes a bias redundant),
as in the PyTorch code of Liu et al. 2019 "Rethinking the value of network pruning" that
reproduces both Li et al. 2017 and Liu et al. 2017. Modules are named, not numbered:
``features.conv1 .. features.conv13`` with ``bn``/``relu`` of the same number and
``features.pool1 .. features.pool5``; the classifier is ``classifier.fc1, bn1, relu1, fc2``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.zoo.base import ZooModel, init_weights
from deepshrink.zoo.limits import CLASSES, FloatRange
from deepshrink.zoo.registry import register

__all__ = ["VGG11_CONFIG", "VGG16_CONFIG", "CifarVGG", "vgg11_cifar", "vgg16_cifar"]

CIFAR_SHAPE = (3, 32, 32)
VGG16_CONFIG: tuple[int | str, ...] = (
    *(64, 64, "M"),
    *(128, 128, "M"),
    *(256, 256, 256, "M"),
    *(512, 512, 512, "M"),
    *(512, 512, 512, "M"),
)
"""Output channels of each 3x3 convolution; ``"M"`` is a 2x2 max pooling."""
VGG11_CONFIG: tuple[int | str, ...] = (
    64,
    "M",
    128,
    "M",
    256,
    256,
    "M",
    512,
    512,
    "M",
    512,
    512,
    "M",
)
"""VGG-11 (configuration "A" of Simonyan & Zisserman 2015): 8 convolutions."""


def make_features(config: Sequence[int | str], in_channels: int = 3) -> nn.Sequential:
    """Conv-BN-ReLU layers and max pools from a VGG configuration, with readable names.

    >>> list(make_features([8, "M"]).state_dict())[:2]
    ['conv1.weight', 'bn1.weight']
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    conv_count = pool_count = 0
    for item in config:
        if item == "M":
            pool_count += 1
            layers[f"pool{pool_count}"] = nn.MaxPool2d(2)
            continue
        conv_count += 1
        channels = int(item)
        layers[f"conv{conv_count}"] = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        layers[f"bn{conv_count}"] = nn.BatchNorm2d(channels)
        layers[f"relu{conv_count}"] = nn.ReLU()
        in_channels = channels
    return nn.Sequential(layers)


class CifarVGG(ZooModel):
    """VGG-16-BN for CIFAR with Li et al. 2017's classifier: Linear(512, 512), BN1d, ReLU, Linear.

    ``config`` (default :data:`VGG16_CONFIG`) and the classifier's ``hidden`` width build the
    other depths and widths (:func:`vgg11_cifar`); the input must pool to 1x1.

    After five poolings a 32x32 input is 1x1, so the classifier sees 512 features. The
    ``BatchNorm1d`` in the classifier needs a batch of at least 2 in training mode.

    >>> model = CifarVGG()
    >>> model.eval()(*model.example_inputs()).shape
    torch.Size([1, 10])
    """

    def __init__(
        self, num_classes: int = 10, config: Sequence[int | str] = VGG16_CONFIG, hidden: int = 512
    ) -> None:
        super().__init__(CIFAR_SHAPE, num_classes)
        self.features = make_features(config)
        self.flatten = nn.Flatten()
        width = int(config[-2])
        self.classifier = nn.Sequential(
            OrderedDict(
                fc1=nn.Linear(width, hidden),
                bn1=nn.BatchNorm1d(hidden),
                relu1=nn.ReLU(),
                fc2=nn.Linear(hidden, num_classes),
            )
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


@register("vgg16_cifar", limits={"num_classes": CLASSES})
def vgg16_cifar(num_classes: int = 10) -> CifarVGG:
    """VGG-16 with BN for CIFAR (Li et al. 2017; Liu et al. 2017): 13 convs, 512-512-10 classifier.

    >>> sum(p.numel() for p in vgg16_cifar().parameters())
    14987722
    """
    return CifarVGG(num_classes=num_classes)


@register("vgg11_cifar", limits={"num_classes": CLASSES, "width": FloatRange(0, 4)})
def vgg11_cifar(num_classes: int = 10, width: float = 1.0) -> CifarVGG:
    """VGG-11 with BN for CIFAR: 8 convs, classifier 512-512-10, channels scaled by ``width``.

    ``width=0.25`` (16 to 128 channels, about 10 M MACs) trains in minutes on a CPU; it is the
    network-slimming benchmark's model.

    >>> sum(p.numel() for p in vgg11_cifar().parameters())
    9492042
    >>> vgg11_cifar(width=0.25).features.conv8
    Conv2d(128, 128, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
    """
    if not 0 < width <= 4:
        raise ConfigError(f"width must be in (0, 4] (a channel multiplier), got {width}")
    config = [c if c == "M" else max(1, round(int(c) * width)) for c in VGG11_CONFIG]
    return CifarVGG(num_classes, config, hidden=max(1, round(512 * width)))
