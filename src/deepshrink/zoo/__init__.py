"""Reference models with exact published shapes, built by name.

>>> from deepshrink import zoo
>>> model = zoo.create("lenet5", num_classes=10)
>>> model(*model.example_inputs(batch_size=2)).shape
torch.Size([2, 10])
>>> zoo.arch_of(model)
{'name': 'lenet5', 'kwargs': {'num_classes': 10}}
>>> "resnet20" in zoo.list()
True

Every built-in model is a :class:`ZooModel` with ``input_shape`` (C, H, W), ``num_classes`` and
``example_inputs(batch_size)``. Add your own with the :func:`register` decorator.
"""

from __future__ import annotations

# Importing the model modules registers their models.
from deepshrink.zoo import lenet, mlp, mobilenet, resnet_cifar, vgg
from deepshrink.zoo.base import ZooModel
from deepshrink.zoo.registry import (
    arch_of,
    create,
    describe,
    list_models,
    register,
    unregister,
)
from deepshrink.zoo.resnet_cifar import PadShortcut

# The public name is ``zoo.list``; it shadows the builtin, which this module does not use.
list = list_models

__all__ = [
    "PadShortcut",
    "ZooModel",
    "arch_of",
    "create",
    "describe",
    "lenet",
    "list",
    "list_models",
    "mlp",
    "mobilenet",
    "register",
    "resnet_cifar",
    "unregister",
    "vgg",
]
