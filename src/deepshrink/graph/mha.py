"""Head pruning of ``nn.MultiheadAttention``: a drop-in module with fewer heads.

``nn.MultiheadAttention`` cannot lose heads in place: ``F.multi_head_attention_forward`` takes
the head size as ``embed_dim // num_heads`` and packs q/k/v in one ``in_proj_weight``. So the
heads that stay are moved into :class:`HeadAttention`: separate ``q_proj``/``k_proj``/``v_proj``
``Linear`` layers onto ``heads × head_dim`` channels and an ``out_proj`` back to ``embed_dim``,
with the same call signature, masks and outputs (written with plain tensor operations, so it
exports to ONNX and every method sees four ``Linear`` layers). The kept heads compute exactly
what they did; ``nn.TransformerEncoder``'s nested-tensor fast path is turned off for encoders
that hold one (it reads the packed weights).

>>> mha = nn.MultiheadAttention(8, 4, batch_first=True).eval()
>>> x = torch.randn(2, 3, 8)
>>> small = HeadAttention.from_multihead(mha, [0, 1, 2, 3]).eval()
>>> torch.allclose(small(x, x, x)[0], mha(x, x, x)[0], atol=1e-6)
True
>>> HeadAttention.from_multihead(mha, [1, 3]).q_proj
Linear(in_features=8, out_features=4, bias=True)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepshrink.errors import FormatError

__all__ = ["HeadAttention", "cut_heads_", "head_scores", "unsupported"]


def unsupported(module: nn.MultiheadAttention) -> str:
    """Why the heads of ``module`` cannot be cut (empty when they can)."""
    if module.bias_k is not None or module.add_zero_attn:
        return "nn.MultiheadAttention with bias_k/bias_v or add_zero_attn: its heads are not cut"
    return ""


def _projections(module: nn.MultiheadAttention) -> list[tuple[Tensor, Tensor | None]]:
    e = module.embed_dim
    bias = module.in_proj_bias
    if module._qkv_same_embed_dim:
        weights = module.in_proj_weight.split(e)
    else:
        weights = (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)
    biases = bias.split(e) if bias is not None else (None, None, None)
    return list(zip(weights, biases, strict=True))


def head_scores(module: nn.MultiheadAttention) -> Tensor:
    """Σ|W| of each head's q/k/v rows and output-projection columns."""
    d = module.head_dim
    total = sum(w.detach().abs().sum(dim=1) for w, _ in _projections(module))
    total = total + module.out_proj.weight.detach().abs().sum(dim=0)
    return total.view(module.num_heads, d).sum(dim=1).float().cpu()


class HeadAttention(nn.Module):
    """Multi-head attention over ``heads`` heads of ``head_dim`` (``nn.MultiheadAttention``'s
    interface; ``kept_heads`` are the original indices, used to slice per-head masks)."""

    def __init__(
        self, embed_dim: int, kept_heads: list[int], head_dim: int, *, kdim: int, vdim: int,
        bias: bool, out_bias: bool, batch_first: bool, dropout: float,
    ) -> None:  # fmt: skip
        super().__init__()
        inner = len(kept_heads) * head_dim
        self.q_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.k_proj = nn.Linear(kdim, inner, bias=bias)
        self.v_proj = nn.Linear(vdim, inner, bias=bias)
        self.out_proj = nn.Linear(inner, embed_dim, bias=out_bias)
        self.embed_dim, self.head_dim, self.num_heads = embed_dim, head_dim, len(kept_heads)
        self.kept_heads, self.batch_first, self.dropout = list(kept_heads), batch_first, dropout
        # nn.TransformerEncoderLayer reads these to choose its fused fast path: never for us
        self._qkv_same_embed_dim, self.in_proj_weight, self.in_proj_bias = False, None, None

    @classmethod
    def from_multihead(cls, module: nn.MultiheadAttention, kept: list[int]) -> HeadAttention:
        """The heads ``kept`` of ``module``, with its weights."""
        d = module.head_dim
        rows = torch.tensor([h * d + i for h in sorted(kept) for i in range(d)], dtype=torch.long)
        (wq, bq), (wk, bk), (wv, bv) = _projections(module)
        new = cls(
            module.embed_dim, sorted(kept), d, kdim=wk.shape[1], vdim=wv.shape[1],
            bias=bq is not None, out_bias=module.out_proj.bias is not None,
            batch_first=module.batch_first, dropout=module.dropout,
        )  # fmt: skip
        with torch.no_grad():
            for layer, weight, bias in ((new.q_proj, wq, bq), (new.k_proj, wk, bk),
                                        (new.v_proj, wv, bv)):  # fmt: skip
                layer.weight.copy_(weight[rows])
                if bias is not None:
                    layer.bias.copy_(bias[rows])
            new.out_proj.weight.copy_(module.out_proj.weight[:, rows])
            if module.out_proj.bias is not None:
                new.out_proj.bias.copy_(module.out_proj.bias)
        return new.to(module.out_proj.weight.device).train(module.training)

    def _mask(
        self, attn_mask: Tensor | None, padding: Tensor | None, is_causal: bool, shape: tuple
    ) -> Tensor | None:
        batch, target, source, dtype, device = shape
        mask = torch.zeros((), dtype=dtype, device=device)
        if attn_mask is None and is_causal:
            attn_mask = torch.ones(target, source, dtype=torch.bool, device=device).triu(1)
        for value, view in ((attn_mask, None), (padding, (batch, 1, 1, source))):
            if value is None:
                continue
            value = value.to(device)
            if value.dtype == torch.bool:
                value = torch.zeros(value.shape, dtype=dtype, device=device).masked_fill(
                    value, -math.inf
                )
            if view is not None:
                value = value.reshape(view)
            elif value.dim() == 3:  # (batch · original heads, target, source)
                value = value.view(batch, -1, target, source)[:, self.kept_heads]
            mask = mask + value.to(dtype)
        return None if mask.dim() == 0 else mask

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
        need_weights: bool = True, attn_mask: Tensor | None = None,
        average_attn_weights: bool = True, is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        batched = query.dim() == 3
        if not batched:
            query, key, value = (
                t.unsqueeze(0 if self.batch_first else 1) for t in (query, key, value)
            )
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        (b, t, _), s, h, d = query.shape, key.shape[1], self.num_heads, self.head_dim
        q = self.q_proj(query).view(b, t, h, d).transpose(1, 2)
        k = self.k_proj(key).view(b, s, h, d).transpose(1, 2)
        v = self.v_proj(value).view(b, s, h, d).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        shape = (b, t, s, scores.dtype, scores.device)
        mask = self._mask(attn_mask, key_padding_mask, is_causal, shape)
        weights = (scores if mask is None else scores + mask).softmax(dim=-1)
        out = F.dropout(weights, self.dropout, self.training) @ v
        out = self.out_proj(out.transpose(1, 2).reshape(b, t, h * d))
        out = out if self.batch_first else out.transpose(0, 1)
        out = out if batched else out.squeeze(0 if self.batch_first else 1)
        if not need_weights:
            return out, None
        weights = weights.mean(dim=1) if average_attn_weights else weights
        return out, weights if batched else weights.squeeze(0)


def cut_heads_(model: nn.Module, name: str, heads: int, kept: list[int]) -> None:
    """Replace ``model``'s ``nn.MultiheadAttention`` ``name`` (of ``heads`` heads) by a
    :class:`HeadAttention` of the heads ``kept``; FormatError when it does not fit."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        module = None
    if not isinstance(module, nn.MultiheadAttention) or module.num_heads != heads:
        raise FormatError(
            f"prune.channels: the plan cuts the heads of {name!r} (nn.MultiheadAttention with "
            f"{heads} heads), which does not fit the model ({type(module).__name__})"
        )
    if not kept or sorted(set(kept)) != kept or kept[0] < 0 or kept[-1] >= heads:
        raise FormatError(f"prune.channels: kept heads of {name!r} must be sorted, in range")
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, HeadAttention.from_multihead(module, kept))
    for encoder in model.modules():
        layers = encoder.layers if isinstance(encoder, nn.TransformerEncoder) else []
        if any(isinstance(getattr(layer, "self_attn", None), HeadAttention) for layer in layers):
            encoder.use_nested_tensor = False
