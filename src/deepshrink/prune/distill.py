"""Knowledge distillation as a loss hook: recover a pruned model with its unpruned teacher.

Hinton et al. (2015): the student matches the teacher's softened class distribution,

    loss = α · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − α) · CE(student, y)

The T² keeps the soft term's gradients on the scale of the hard term's as T grows.
:func:`deepshrink.train.fit` already adds the cross-entropy ``CE`` (``context.loss``); the hook
returns ``α · T² · KL − α · CE``, so the total is exactly the formula above.

>>> import copy, torch
>>> from torch import nn
>>> from deepshrink.data.dataset import ArrayDataset
>>> from deepshrink.train import fit
>>> student = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
>>> teacher = copy.deepcopy(student)
>>> data = ArrayDataset(torch.rand(32, 1, 2, 2), torch.randint(0, 3, (32,)))
>>> hook = distillation_loss(teacher, temperature=4.0, alpha=0.9)
>>> len(fit(student, data, epochs=1, batch_size=16, loss_hooks=[hook], progress=False).records)
1
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepshrink.errors import ConfigError
from deepshrink.graph.io import call, logits_of
from deepshrink.train import LossHook, StepContext

__all__ = ["distillation_loss", "soft_target_loss"]


def soft_target_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T² · KL(softmax(teacher/T) ‖ softmax(student/T))``, averaged over the batch.

    >>> logits = torch.tensor([[1.0, 2.0]])
    >>> float(soft_target_loss(logits, logits, 2.0))
    0.0
    """
    student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    divergence = F.kl_div(student, teacher, log_target=True, reduction="batchmean")
    return divergence * temperature**2


def distillation_loss(teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9) -> LossHook:
    """A :data:`~deepshrink.train.LossHook` distilling ``teacher`` into the model being trained.

    The teacher runs in eval mode without gradients on each training batch (on its own device:
    keep it beside the student). ``alpha`` in [0, 1] weighs the soft term against the
    cross-entropy; ``temperature`` > 0 softens both distributions. Label smoothing set in the
    fit config applies to the cross-entropy part.
    """
    if not isinstance(teacher, nn.Module):
        raise ConfigError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}")
    if not temperature > 0:
        raise ConfigError(
            f"temperature must be > 0, got {temperature}; 1 is no softening, 4 is usual"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1] (weight of the soft targets), got {alpha}")

    def hook(context: StepContext) -> Tensor:
        teacher.eval()
        with torch.no_grad():
            teacher_logits = logits_of(call(teacher, context.inputs))
        soft = soft_target_loss(context.logits, teacher_logits, temperature)
        return alpha * soft - alpha * context.loss

    return hook
