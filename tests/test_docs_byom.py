"""docs/bring-your-own-model.md: its code runs, in order, on a Hugging Face BERT."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

PAGE = Path(__file__).resolve().parents[1] / "docs" / "bring-your-own-model.md"


def test_the_bring_your_own_model_page_runs_end_to_end(tmp_path, monkeypatch) -> None:
    pytest.importorskip("transformers")
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert len(blocks) >= 6
    code = "\n".join(blocks)
    code = code.replace("for _ in range(40)]", "for _ in range(6)]")  # fewer batches: test time
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "byom"}
    exec(compile(code, str(PAGE), "exec"), namespace)
    model, small, before = namespace["model"], namespace["small"], namespace["before"]
    assert sum(p.numel() for p in small.parameters()) < 0.7 * before.parameters
    inputs = {k: v for k, v in namespace["test"][0].items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(model.eval()(**inputs).logits, small.eval()(**inputs).logits)
    methods = [record.method for record in namespace["coverage_of"](model)]
    assert methods == ["channel pruning", "magnitude pruning", "k-means quantization"]
    assert (tmp_path / "bert.int8.onnx").is_file()
