"""The contract suite: every garden model × every capability is WORKS or a CLEAN REFUSAL.

WORKS is checked by an oracle (sparsity reached, fewer parameters, bit-identical after a .dsz
round trip, ONNX Runtime close to PyTorch, tied parameters still one tensor); a CLEAN REFUSAL is
a deepshrink error naming the layer or op. A silent no-op, a wrong result, a vague refusal or a
foreign exception fails the cell. See ``garden_oracles`` for the classes and
``docs/model-support.md`` for the current matrix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

from garden_capabilities import CAPABILITIES, PASSING, run_cell  # noqa: E402
from garden_models import GARDEN  # noqa: E402


@pytest.mark.parametrize("capability", list(CAPABILITIES))
@pytest.mark.parametrize("model", list(GARDEN))
def test_contract(model: str, capability: str, tmp_path: Path, record: Any) -> None:
    outcome = run_cell(GARDEN[model], capability, tmp_path)
    record(model, capability, outcome)
    assert outcome.kind in PASSING, f"{model} × {capability}: {outcome.kind}: {outcome.detail}"
