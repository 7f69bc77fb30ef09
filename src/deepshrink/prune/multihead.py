"""Which heads of each ``nn.MultiheadAttention`` a channel plan keeps, checked before applying.

With ``heads=`` a share of each ``nn.MultiheadAttention``'s heads goes: the heads with the
largest ``Σ|W|`` over their q/k/v rows and output-projection columns stay (whatever the channel
criterion), and the module becomes a :class:`~deepshrink.graph.mha.HeadAttention` of those
heads. Each entry is checked on the example inputs: the cut model must give the outputs of the
unpruned one with the dropped heads' output-projection columns zeroed.

>>> import torch
>>> from torch import nn
>>> model = nn.TransformerEncoderLayer(8, 4, dim_feedforward=16, batch_first=True).eval()
>>> skipped = {}
>>> [e["heads"] for e in plan_multihead(model, 0.5, [], [], torch.randn(1, 3, 8), skipped)]
[[4, 2]]
"""

from __future__ import annotations

import copy
import fnmatch
import math
from typing import Any

import torch
from torch import nn

from deepshrink.graph.mha import cut_heads_, head_scores, unsupported
from deepshrink.prune.channel_check import _outputs, _same

__all__ = ["plan_multihead"]


def _why_not(name: str, wanted: list[str], ignored: list[str]) -> str:
    if any(fnmatch.fnmatchcase(name, g) for g in ignored):
        return "ignored"
    if wanted and not any(fnmatch.fnmatchcase(name, g) for g in wanted):
        return "not included"
    return ""


def _exact(model: nn.Module, entry: dict[str, Any], inputs: Any) -> bool:
    """Whether cutting the heads equals zeroing their output-projection columns."""
    masked, pruned = copy.deepcopy(model), copy.deepcopy(model)
    module = masked.get_submodule(entry["module"])
    d = module.head_dim
    dropped = [
        h * d + i for h in range(module.num_heads) if h not in entry["kept"] for i in range(d)
    ]
    with torch.no_grad():
        module.out_proj.weight[:, dropped] = 0
    cut_heads_(pruned, entry["module"], entry["heads"][0], entry["kept"])
    try:
        return _same(_outputs(pruned.eval(), inputs), _outputs(masked.eval(), inputs))
    except RuntimeError:
        return False


def plan_multihead(
    model: nn.Module,
    share: float,
    wanted: list[str],
    ignored: list[str],
    inputs: Any,
    skipped: dict[str, str],
) -> list[dict[str, Any]]:
    """Per ``nn.MultiheadAttention`` of ``model``: ``{"module", "heads": [old, new], "kept"}``;
    modules left whole go to ``skipped`` with the reason."""
    entries = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.MultiheadAttention):
            continue
        why = _why_not(name, wanted, ignored) or unsupported(module)
        if why:
            skipped[name] = why
            continue
        count = max(1, module.num_heads - int(math.floor(module.num_heads * share + 1e-9)))
        best = torch.sort(-head_scores(module), stable=True).indices[:count]
        entry = {"module": name, "heads": [module.num_heads, count], "kept": sorted(best.tolist())}
        if count < module.num_heads and not _exact(model, entry, inputs):
            skipped[name] = "cutting its heads is not exact on the example inputs"
            continue
        skipped.pop(name, None)
        entries.append(entry)
    return entries
