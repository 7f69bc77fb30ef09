"""Fully connected classifiers: LeNet-300-100, the 4-hidden-layer MNIST MLP and the digits demo.

Layers are top-level modules named ``fc1, fc2, ...`` with one ``nn.ReLU`` module after each
hidden layer (``relu1, relu2, ...``), so pruning and quantization can address them by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepshrink.zoo.base import ZooModel, check_sizes, init_weights
from deepshrink.zoo.limits import CLASSES, IntList
from deepshrink.zoo.registry import register

__all__ = ["MLP", "digits_mlp", "lenet300", "mlp_fc4"]

MNIST_SHAPE = (1, 28, 28)
DIGITS_SHAPE = (1, 8, 8)


class MLP(ZooModel):
    """Flatten, then ``Linear → ReLU`` for each hidden size, then a final ``Linear``.

    >>> model = MLP(input_shape=(1, 8, 8), hidden_sizes=[32], num_classes=10)
    >>> [name for name, _ in model.named_children()]
    ['flatten', 'fc1', 'relu1', 'fc2']
    >>> model(*model.example_inputs(batch_size=3)).shape
    torch.Size([3, 10])
    """

    def __init__(
        self, input_shape: Sequence[int], hidden_sizes: Sequence[int], num_classes: int = 10
    ) -> None:
        super().__init__(input_shape, num_classes)
        check_sizes("hidden_sizes", hidden_sizes)
        self.hidden_sizes = tuple(hidden_sizes)
        self.flatten = nn.Flatten()
        in_features = self.input_shape[0] * self.input_shape[1] * self.input_shape[2]
        for index, size in enumerate(self.hidden_sizes, start=1):
            self.add_module(f"fc{index}", nn.Linear(in_features, size))
            self.add_module(f"relu{index}", nn.ReLU())
            in_features = size
        self.add_module(f"fc{len(self.hidden_sizes) + 1}", nn.Linear(in_features, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        for index in range(1, len(self.hidden_sizes) + 1):
            x = getattr(self, f"relu{index}")(getattr(self, f"fc{index}")(x))
        return getattr(self, f"fc{len(self.hidden_sizes) + 1}")(x)


@register("lenet300", limits={"num_classes": CLASSES})
def lenet300(num_classes: int = 10) -> MLP:
    """LeNet-300-100: a 784-300-100-10 ReLU MLP for 28x28 digits (Han et al. 2015).

    266,200 weights and 410 biases with 10 classes.

    >>> sum(p.numel() for p in lenet300().parameters())
    266610
    """
    return MLP(MNIST_SHAPE, hidden_sizes=(300, 100), num_classes=num_classes)


@register("mlp_fc4", limits={"num_classes": CLASSES})
def mlp_fc4(num_classes: int = 10) -> MLP:
    """FC-4: a 784-1000-1000-500-200-10 ReLU MLP for 28x28 digits.

    The four hidden-layer matrices hold 2,384,000 weights; the output layer adds 200 x 10.

    >>> sum(p.numel() for p in mlp_fc4().parameters())
    2388710
    """
    return MLP(MNIST_SHAPE, hidden_sizes=(1000, 1000, 500, 200), num_classes=num_classes)


@register("digits_mlp", limits={"num_classes": CLASSES, "hidden_sizes": IntList(16, 1, 16384)})
def digits_mlp(num_classes: int = 10, hidden_sizes: Sequence[int] = (128, 64)) -> MLP:
    """Digits demo: a small 64-128-64-10 ReLU MLP for scikit-learn's 8x8 digits.

    Trains to over 95% test accuracy in a few seconds on a CPU; ``hidden_sizes`` sets the widths.

    >>> digits_mlp(hidden_sizes=[32]).fc1
    Linear(in_features=64, out_features=32, bias=True)
    """
    return MLP(DIGITS_SHAPE, hidden_sizes=hidden_sizes, num_classes=num_classes)
