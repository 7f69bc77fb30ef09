"""Without the optional extra, every TFLite function says how to install it (one line)."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import deepshrink as ds
from deepshrink.errors import ConfigError
from deepshrink.export.tflite import describe_tflite, export_tflite, interpreter

MODULES = ["litert_torch", "ai_edge_quantizer", "ai_edge_quantizer.quantizer", "ai_edge_litert",
           "ai_edge_litert.interpreter", "ai_edge_litert.schema_py_generated"]  # fmt: skip
HINT = "pip install 'deepshrink[tflite]'"


@pytest.fixture
def without_extra(monkeypatch):
    for name in MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError


def test_export_without_the_extra_names_the_install_line(without_extra, tmp_path):
    with pytest.raises(ConfigError, match=r"pip install 'deepshrink\[tflite\]'") as caught:
        ds.export(nn.Linear(4, 2), tmp_path / "m.tflite", example_inputs=torch.rand(1, 4))
    assert "\n" not in str(caught.value)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="litert-torch"):
        export_tflite(nn.Linear(4, 2), tmp_path / "m.tflite", example_inputs=torch.rand(1, 4))


def test_reading_a_file_without_the_extra_names_the_install_line(without_extra, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 32)
    for call in (interpreter, describe_tflite):
        with pytest.raises(ConfigError, match=r"deepshrink\[tflite\]"):
            call(path)


def test_importing_deepshrink_does_not_import_the_converter():
    import subprocess

    code = ("import sys, deepshrink, deepshrink.export.tflite; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('litert_torch', 'ai_edge_litert', 'ai_edge_quantizer', 'jax')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
