"""Per-layer sensitivity: the accuracy when one layer alone is pruned to each sparsity.

Each weight layer is pruned by itself (a copy of the model, magnitude per layer, no fine-tuning)
at every sparsity of a sweep and evaluated, as Distiller's sensitivity analysis does. From the
curves, :meth:`Sensitivity.suggest` picks for each layer the highest sparsity whose accuracy
stays within a tolerance of the dense model — per-layer targets for a recipe's ``overrides``.

>>> import torch
>>> from torch import nn
>>> from deepshrink.data.dataset import ArrayDataset
>>> data = ArrayDataset(torch.rand(64, 1, 2, 2), torch.randint(0, 2, (64,)))
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
>>> result = sensitivity(model, data, sparsities=(0.5, 0.9))
>>> sorted(result.curves), [s for s, _ in result.curves["1"]]
(['1', '3'], [0.0, 0.5, 0.9])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from torch import nn

from deepshrink.errors import ConfigError

__all__ = ["Sensitivity", "sensitivity"]


@dataclass(frozen=True)
class Sensitivity:
    """Accuracy of the dense model and, per layer, ``[(sparsity, accuracy), ...]``."""

    dense_accuracy: float
    curves: dict[str, list[tuple[float, float]]]
    criterion: str = "magnitude"

    def suggest(self, tolerance: float = 0.01) -> dict[str, float]:
        """Per layer, the highest sparsity whose accuracy drop is at most ``tolerance``.

        >>> Sensitivity(0.9, {"fc1": [(0.0, 0.9), (0.5, 0.899), (0.9, 0.7)]}).suggest(0.005)
        {'fc1': 0.5}
        """
        if not 0 <= tolerance < 1:
            raise ConfigError(f"tolerance is a fraction of accuracy in [0, 1), got {tolerance}")
        chosen = {}
        for layer, curve in self.curves.items():
            fine = [s for s, accuracy in curve if self.dense_accuracy - accuracy <= tolerance]
            chosen[layer] = max(fine, default=0.0)
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return {
            "dense_accuracy": self.dense_accuracy,
            "criterion": self.criterion,
            "curves": {k: [list(p) for p in v] for k, v in self.curves.items()},
        }


def sensitivity(
    model: nn.Module,
    dataset: Any,
    sparsities: tuple[float, ...] = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98),
    *,
    criterion: str = "magnitude",
    include: Any = None,
    exclude: Any = None,
    backend: str = "serial",
    address: str | None = None,
    workers: int | None = None,
) -> Sensitivity:
    """Prune each weight layer of ``model`` alone at each sparsity and measure the accuracy.

    ``model`` is not changed. ``include``/``exclude`` are globs over layer names.
    ``backend="ray"`` runs each (layer, sparsity) trial as a Ray task, the model and dataset
    sent once (see :func:`deepshrink._trials.map_trials` for ``address`` and ``workers``).
    """
    from deepshrink._trials import check_backend, map_trials
    from deepshrink.prune.targets import select, weight_layers
    from deepshrink.train import evaluate

    for value in sparsities:
        if not 0 <= value < 1:
            raise ConfigError(f"sparsities must be in [0, 1), got {value}")
    check_backend(backend, address, workers)
    dense = evaluate(model, dataset).top1
    layers = list(select(weight_layers(model), include, exclude, method="sensitivity"))
    items = [(layer, value) for layer in layers for value in sorted(sparsities) if value != 0]
    trials = map_trials(_prune_one, items, shared=(model, dataset, criterion), backend=backend,
                        address=address, workers=workers, label=_label)  # fmt: skip
    curves: dict[str, list[tuple[float, float]]] = {layer: [(0.0, dense)] for layer in layers}
    for trial in trials:
        layer, value = trial.item
        if not trial.ok:
            raise ConfigError(f"sensitivity of layer {layer} at sparsity {value}: {trial.error}")
        curves[layer].append((value, trial.value))
    return Sensitivity(dense, curves, criterion)


def _label(item: tuple[str, float]) -> str:
    return f"layer {item[0]} at sparsity {item[1]:g}"


def _prune_one(shared: tuple[nn.Module, Any, str], item: tuple[str, float]) -> float:
    """Top-1 of a copy of the model with one layer pruned to one sparsity."""
    from deepshrink.prune import MagnitudePruning, prune_
    from deepshrink.train import evaluate

    model, dataset, criterion = shared
    (layer, value), trial = item, copy.deepcopy(model)
    prune_(trial, MagnitudePruning(sparsity=value, criterion=criterion), include=[layer])
    return evaluate(trial, dataset).top1
