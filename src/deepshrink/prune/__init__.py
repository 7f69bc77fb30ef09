"""Pruning: masks on weights or units, physical neuron removal, schedules and recovery.

>>> import torch
>>> from torch import nn
>>> import deepshrink.prune as dp
>>> model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
>>> _ = dp.prune_(model, dp.NeuronPruning(ratio=0.5))           # physically smaller
>>> model[0]
Linear(in_features=16, out_features=16, bias=True)
>>> _ = dp.prune_(model, dp.MagnitudePruning(sparsity=0.75))    # masks, enforced in training
>>> round(dp.sparsity(dp.finalize_(model)), 2)                   # masks made permanent
0.75

Methods (each a frozen config, applied by :func:`prune_`): :class:`MagnitudePruning`
(unstructured, layer-wise or global, by sparsity or by ``quality × std``; ``criterion="random"``
as a baseline), :class:`NeuronPruning` (whole units of dense layers) and :class:`ChannelPruning`
(filters/channels, physically removed; :func:`plan_channel_pruning` / :func:`apply_plan_`;
network slimming with :func:`slimming_penalty` and ``criterion="bn_scale"``). Schedules:
:class:`PolynomialDecay` (a :class:`deepshrink.train.Callback`) and :func:`iterative_prune`.
Recovery: :func:`distillation_loss` (a loss hook for ``fit``) and :func:`lottery_ticket`.
Deployment: :func:`sparse_linear_` runs sparse dense layers as CSR products where measured
faster on this machine.
Importing this package registers the structure records (``"prune.mask"``, ``"prune.neurons"``,
``"prune.channels"``) that let :func:`deepshrink.train.load_checkpoint` rebuild pruned models.
"""

from __future__ import annotations

from deepshrink.prune import criteria
from deepshrink.prune.api import prune_, register_method
from deepshrink.prune.channel_criteria import CHANNEL_CRITERIA
from deepshrink.prune.config import (
    METHODS,
    ChannelPruning,
    MagnitudePruning,
    NeuronPruning,
    PruneConfig,
    pruning,
)
from deepshrink.prune.criteria import CRITERIA, register_criterion
from deepshrink.prune.distill import distillation_loss
from deepshrink.prune.lottery import LotteryTicket, lottery_ticket, rewind_
from deepshrink.prune.masking import enforce_masks_, finalize_, iter_masks
from deepshrink.prune.neuron import prune_neurons_
from deepshrink.prune.schedules import (
    IterativeStep,
    PolynomialDecay,
    PruningStepper,
    iterative_prune,
)
from deepshrink.prune.slimming import slimming_penalty
from deepshrink.prune.sparse_exec import SparseDecision, SparseLinear, sparse_linear_
from deepshrink.prune.structured import apply_plan_, plan_channel_pruning, prune_channels_
from deepshrink.prune.unstructured import prune_magnitude_, sparsity, weight_counts

register_method(MagnitudePruning, prune_magnitude_)
register_method(NeuronPruning, prune_neurons_)
register_method(ChannelPruning, prune_channels_)

__all__ = [
    "PruningStepper",
    "CHANNEL_CRITERIA",
    "CRITERIA",
    "METHODS",
    "ChannelPruning",
    "IterativeStep",
    "LotteryTicket",
    "MagnitudePruning",
    "NeuronPruning",
    "PolynomialDecay",
    "PruneConfig",
    "SparseDecision",
    "SparseLinear",
    "apply_plan_",
    "criteria",
    "distillation_loss",
    "enforce_masks_",
    "finalize_",
    "iter_masks",
    "iterative_prune",
    "lottery_ticket",
    "plan_channel_pruning",
    "prune_",
    "pruning",
    "register_criterion",
    "register_method",
    "rewind_",
    "slimming_penalty",
    "sparse_linear_",
    "sparsity",
    "weight_counts",
]
