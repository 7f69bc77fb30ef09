"""Pure tensor maths shared by the compression methods; nothing here knows about modules."""

from __future__ import annotations

from deepshrink.functional.kmeans import (
    INITS,
    KMeansResult,
    SharedWeight,
    cluster_weight,
    kmeans_1d,
    shared_values,
)
from deepshrink.functional.lowrank import (
    factor_modes,
    low_rank_factors,
    rank_for_compression,
    rank_from_energy,
    truncated_svd,
    truncation_error,
    tt_max_ranks,
    tt_svd,
    tt_to_matrix,
)
from deepshrink.functional.masks import (
    global_keep_masks,
    iterative_sparsities,
    keep_count,
    keep_mask,
    polynomial_decay,
    pruning_step_due,
    quality_threshold,
    threshold_mask,
)
from deepshrink.functional.quant import (
    dequantize,
    fake_cast,
    fake_quantize,
    qparams,
    quant_range,
    quantize,
)

__all__ = [
    "INITS",
    "KMeansResult",
    "SharedWeight",
    "cluster_weight",
    "kmeans_1d",
    "shared_values",
    "dequantize",
    "fake_cast",
    "fake_quantize",
    "qparams",
    "quant_range",
    "quantize",
    "factor_modes",
    "global_keep_masks",
    "iterative_sparsities",
    "keep_count",
    "keep_mask",
    "low_rank_factors",
    "polynomial_decay",
    "pruning_step_due",
    "quality_threshold",
    "rank_for_compression",
    "rank_from_energy",
    "threshold_mask",
    "truncated_svd",
    "truncation_error",
    "tt_max_ranks",
    "tt_svd",
    "tt_to_matrix",
]
