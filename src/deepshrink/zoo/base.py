"""The base class shared by every zoo model, weight initialisation and argument checks.

Every zoo model knows the shape of one input sample (``input_shape``, as ``(C, H, W)``), how many
classes it predicts (``num_classes``) and can make a deterministic batch of random inputs with
:meth:`ZooModel.example_inputs`, which tracing, channel pruning, export and MAC counting need.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepshrink.errors import ConfigError

__all__ = ["ZooModel", "check_choice", "check_positive_int", "check_sizes", "init_weights"]

EXAMPLE_SEED = 0
"""Seed of the generator behind :meth:`ZooModel.example_inputs`, so inputs repeat across calls."""


class ZooModel(nn.Module):
    """A classifier with a known input shape, class count and example inputs.

    Subclasses call ``super().__init__(input_shape, num_classes)`` first, then build their layers.

    >>> class Tiny(ZooModel):
    ...     def __init__(self) -> None:
    ...         super().__init__(input_shape=(1, 4, 4), num_classes=3)
    ...         self.fc1 = nn.Linear(16, 3)
    ...     def forward(self, x: torch.Tensor) -> torch.Tensor:
    ...         return self.fc1(x.flatten(1))
    >>> model = Tiny()
    >>> model(*model.example_inputs(batch_size=2)).shape
    torch.Size([2, 3])
    """

    input_shape: tuple[int, int, int]
    num_classes: int

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        check_sizes("input_shape", input_shape, length=3)
        self.input_shape = (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
        self.num_classes = num_classes

    def example_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        """Random inputs of shape ``(batch_size, *input_shape)``, the same on every call.

        The tensor is drawn on the CPU from a fixed seed, then moved to the device and floating
        dtype of the model's parameters. Models with ``BatchNorm1d`` (``vgg16_cifar``) need
        ``batch_size >= 2`` in training mode.

        >>> from deepshrink import zoo
        >>> [x.shape for x in zoo.create("lenet5").example_inputs(batch_size=4)]
        [torch.Size([4, 1, 28, 28])]
        """
        check_positive_int("batch_size", batch_size)
        generator = torch.Generator().manual_seed(EXAMPLE_SEED)
        inputs = torch.randn((batch_size, *self.input_shape), generator=generator)
        reference = next(self.parameters(), None)
        if reference is None:
            return (inputs,)
        dtype = reference.dtype if reference.is_floating_point() else inputs.dtype
        return (inputs.to(device=reference.device, dtype=dtype),)


def init_weights(model: nn.Module) -> None:
    """Initialise the zoo way: Kaiming normal convolutions (fan_out, ReLU), BN weight 1 bias 0.

    Linear layers keep PyTorch's default initialisation; convolution biases are zeroed.

    >>> layer = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    >>> init_weights(layer)
    >>> bool(layer[1].weight.eq(1).all()), bool(layer[1].bias.eq(0).all())
    (True, True)
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def check_positive_int(argument: str, value: object) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer (not a bool) of at least 1.

    >>> check_positive_int("num_classes", 10)
    >>> check_positive_int("num_classes", 0)
    Traceback (most recent call last):
    ...
    deepshrink.errors.ConfigError: num_classes must be a positive integer, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{argument} must be a positive integer, got {value!r}")


def check_sizes(argument: str, value: object, length: int | None = None) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a sequence of positive integers.

    >>> check_sizes("hidden_sizes", [128, 64])
    >>> check_sizes("hidden_sizes", [128, -1])
    Traceback (most recent call last):
    ...
    deepshrink.errors.ConfigError: hidden_sizes must be a list of positive integers, got [128, -1]
    """
    valid = isinstance(value, (list, tuple)) and all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in value
    )
    if not valid:
        raise ConfigError(f"{argument} must be a list of positive integers, got {value!r}")
    if length is not None and len(value) != length:  # type: ignore[arg-type]
        raise ConfigError(f"{argument} must have {length} entries, got {value!r}")


def check_choice(argument: str, value: object, choices: Sequence[str]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``.

    >>> check_choice("shortcut", "A", ("A", "B"))
    >>> check_choice("shortcut", "C", ("A", "B"))
    Traceback (most recent call last):
    ...
    deepshrink.errors.ConfigError: shortcut must be one of 'A', 'B', got 'C'
    """
    if value not in choices:
        options = ", ".join(repr(choice) for choice in choices)
        raise ConfigError(f"{argument} must be one of {options}, got {value!r}")
