"""Small convolutional MNIST models: Caffe's LeNet-5 and the TF Model Optimization MNIST CNN."""

from __future__ import annotations

import torch
from torch import nn

from deepshrink.zoo.base import ZooModel, init_weights
from deepshrink.zoo.limits import CLASSES
from deepshrink.zoo.registry import register

__all__ = ["LeNet5", "MnistCNN", "lenet5", "mnist_cnn"]

MNIST_SHAPE = (1, 28, 28)


class LeNet5(ZooModel):
    """Caffe's LeNet: conv 20@5x5, pool, conv 50@5x5, pool, fc 800→500, ReLU, fc 500→classes.

    Faithful to Caffe's ``lenet_train_test.prototxt``: no padding and no ReLU after the
    convolutions; the only nonlinearity is the ReLU after ``fc1``. 430,500 weights and 580 biases
    with 10 classes, as in Han et al. 2015.

    >>> model = LeNet5()
    >>> sum(p.numel() for name, p in model.named_parameters() if name.endswith("weight"))
    430500
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(MNIST_SHAPE, num_classes)
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)  # 28 → 24
        self.pool1 = nn.MaxPool2d(2)  # 24 → 12
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)  # 12 → 8
        self.pool2 = nn.MaxPool2d(2)  # 8 → 4
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(500, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.fc2(self.relu1(self.fc1(self.flatten(x))))


class MnistCNN(ZooModel):
    """The TF Model Optimization MNIST example: conv 12@3x3, ReLU, pool 2, fc 2028→classes.

    20,410 parameters with 10 classes (conv 108 + 12, fc 20,280 + 10). Flattening is channel
    first (PyTorch's NCHW) where Keras flattens NHWC; the parameter count is the same.

    >>> sum(p.numel() for p in MnistCNN().parameters())
    20410
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(MNIST_SHAPE, num_classes)
        self.conv1 = nn.Conv2d(1, 12, kernel_size=3)  # 28 → 26
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)  # 26 → 13
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(12 * 13 * 13, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.flatten(self.pool1(self.relu1(self.conv1(x)))))


@register("lenet5", limits={"num_classes": CLASSES})
def lenet5(num_classes: int = 10) -> LeNet5:
    """LeNet-5 (Caffe): conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc for 28x28 digits.

    >>> lenet5().fc1
    Linear(in_features=800, out_features=500, bias=True)
    """
    return LeNet5(num_classes=num_classes)


@register("mnist_cnn", limits={"num_classes": CLASSES})
def mnist_cnn(num_classes: int = 10) -> MnistCNN:
    """MNIST CNN (TF Model Optimization example): conv 12@3x3, ReLU, pool, fc for 28x28 digits.

    >>> mnist_cnn().fc1
    Linear(in_features=2028, out_features=10, bias=True)
    """
    return MnistCNN(num_classes=num_classes)
