"""Attention modules whose heads channel pruning may remove, and what each one reads.

Removing attention head ``h`` removes rows ``h·d … h·d+d-1`` of the query, key and value
projections (``d`` the head size) and the same input columns of the output projection; the
attention in between works per head, so the other heads compute exactly what they did. Each
adapter recognises one kind of attention module, says how many heads it has, which layers
project onto the heads, and updates the attributes its ``forward`` reads after heads go:

* separate projections (Hugging Face BERT, DistilBERT and ViT style): child ``Linear`` layers
  ``query``/``key``/``value``, ``q_proj``/``k_proj``/``v_proj`` or ``q_lin``/``k_lin``/``v_lin``,
  a head count ``num_attention_heads``, ``num_heads`` or ``n_heads`` and a head size
  ``attention_head_size`` or ``head_dim`` (the reshapes use ``-1`` heads and the head size);
* fused projections (Hugging Face GPT-2): one ``Conv1D`` ``c_attn`` whose output is
  ``[q | k | v]``, split by ``split_size``.

``nn.MultiheadAttention`` is not one of them: its packed ``in_proj_weight`` and
``F.multi_head_attention_forward`` tie the head size to ``embed_dim // num_heads`` and the head
space to the width of the residual stream, so its width never shrinks and its heads go only by
replacing it (:mod:`deepshrink.graph.mha`); :data:`REFUSED` gives the reason channel pruning
reports for its channel groups.

>>> from torch import nn
>>> class SelfAttention(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.num_attention_heads, self.attention_head_size = 2, 4
...         self.query, self.key, self.value = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
>>> spec = find_attention(nn.Sequential(SelfAttention()))["0"]
>>> spec.heads, spec.head_dim, spec.projections
(2, 4, ('0.query', '0.key', '0.value'))
>>> spec.channels([1])
[4, 5, 6, 7]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = ["REFUSED", "AttentionSpec", "find_attention", "set_heads"]

#: Why modules of these types block the channel groups that reach them.
REFUSED = {
    nn.MultiheadAttention: (
        "nn.MultiheadAttention: its width (embed_dim) is not pruned, its packed in_proj_weight "
        "ties the head size to embed_dim // num_heads; pass heads= to remove whole heads "
        "(the module becomes a deepshrink.graph.mha.HeadAttention)"
    ),
}

_SEPARATE = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("q_lin", "k_lin", "v_lin"))
_HEAD_COUNT = ("num_attention_heads", "num_heads", "n_heads")
_HEAD_SIZE = ("attention_head_size", "head_dim")


@dataclass(frozen=True)
class AttentionSpec:
    """One attention module: ``heads`` of ``head_dim`` channels projected by ``projections``.

    ``sections`` is 3 when one fused projection outputs ``[q | k | v]``, else 1.
    """

    name: str
    heads: int
    head_dim: int
    projections: tuple[str, ...]
    sections: int = 1

    def channels(self, heads: list[int]) -> list[int]:
        """The projection output channels of ``heads`` (in every section of a fused one)."""
        width = self.heads * self.head_dim
        return [
            section * width + head * self.head_dim + offset
            for section in range(self.sections)
            for head in sorted(heads)
            for offset in range(self.head_dim)
        ]


def _first(module: nn.Module, names: tuple[str, ...]) -> str:
    return next((n for n in names if isinstance(getattr(module, n, None), int)), "")


def _separate(name: str, module: nn.Module) -> AttentionSpec | None:
    count, size = _first(module, _HEAD_COUNT), _first(module, _HEAD_SIZE)
    for triple in _SEPARATE:
        layers = [getattr(module, n, None) for n in triple]
        if count and size and all(isinstance(layer, nn.Linear) for layer in layers):
            heads, head_dim = getattr(module, count), getattr(module, size)
            if all(layer.out_features == heads * head_dim for layer in layers):
                prefix = f"{name}." if name else ""
                return AttentionSpec(name, heads, head_dim, tuple(prefix + n for n in triple))
    return None


def _fused(name: str, module: nn.Module) -> AttentionSpec | None:
    c_attn = getattr(module, "c_attn", None)
    if type(c_attn).__name__ != "Conv1D" or getattr(module, "is_cross_attention", False):
        return None
    heads, head_dim = getattr(module, "num_heads", None), getattr(module, "head_dim", None)
    if not isinstance(heads, int) or not isinstance(head_dim, int):
        return None
    if c_attn.weight.shape[1] != 3 * heads * head_dim or not hasattr(module, "split_size"):
        return None
    return AttentionSpec(name, heads, head_dim, (f"{name}.c_attn" if name else "c_attn",), 3)


_ADAPTERS: list[Callable[[str, nn.Module], AttentionSpec | None]] = [_separate, _fused]


def find_attention(model: nn.Module) -> dict[str, AttentionSpec]:
    """Every attention module of ``model`` whose heads can be removed, by module name."""
    found = {}
    for name, module in model.named_modules():
        for adapter in _ADAPTERS:
            spec = adapter(name, module)
            if spec is not None:
                found[name] = spec
                break
    return found


def set_heads(module: nn.Module, heads: int) -> None:
    """Update the attributes ``module``'s forward reads to ``heads`` heads (after slicing)."""
    count, size = _first(module, _HEAD_COUNT), _first(module, _HEAD_SIZE)
    head_dim = getattr(module, size)
    setattr(module, count, heads)
    for width in ("all_head_size", "split_size", "embed_dim"):
        if isinstance(getattr(module, width, None), int):
            setattr(module, width, heads * head_dim)
