"""The contract suite's own oracles catch what they are meant to catch."""

from __future__ import annotations

import torch
from garden_oracles import (
    FOREIGN,
    REFUSED,
    SILENT,
    VAGUE,
    WORKS,
    WRONG,
    Verdict,
    changed_weights,
    check_accounted,
    check_ties,
    classify,
    module_types,
    tie_groups,
    weight_names,
)
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.graph.coverage import Coverage, report_coverage


def _tied() -> nn.Module:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.Linear(4, 10, bias=False))
    model[2].weight = model[0].weight
    return model


def _raise(error: Exception) -> str:
    raise error


def test_classify_sorts_outcomes() -> None:
    model = _tied()
    kinds = [
        classify(lambda: "fine", lambda: model).kind,
        classify(lambda: _raise(ConfigError("layer '1' is blocked by Addmm")), lambda: model).kind,
        classify(
            lambda: _raise(ConfigError("2 (its output is the model's output)")), lambda: model
        ).kind,  # fmt: skip
        classify(lambda: _raise(ConfigError("could not trace Sequential")), lambda: model).kind,
        classify(lambda: _raise(TypeError("boom")), lambda: model).kind,
        classify(lambda: _raise(Verdict(WRONG, "differs")), lambda: model).kind,
    ]
    assert kinds == [WORKS, REFUSED, REFUSED, VAGUE, FOREIGN, WRONG]


def test_foreign_exception_names_where() -> None:
    outcome = classify(lambda: _raise(KeyError("x")), lambda: None)
    assert outcome.kind == FOREIGN and "test_oracles.py:" in outcome.detail


def test_untied_parameters_are_caught() -> None:
    model = _tied()
    groups = tie_groups(model)
    assert groups == [["0.weight", "2.weight"]]
    check_ties(model, groups, "now")
    model[2].weight = nn.Parameter(model[0].weight.detach().clone())
    try:
        check_ties(model, groups, "after untying")
    except Verdict as verdict:
        assert verdict.kind == WRONG and "0.weight and 2.weight" in verdict.detail
    else:
        raise AssertionError("a broken tie was not caught")


def test_silent_skips_are_caught_unless_recorded() -> None:
    model = _tied()
    before, types = weight_names(model), module_types(model)
    with torch.no_grad():
        model[1].weight.zero_()
    changed = changed_weights(model, before, types)
    assert changed == {"1.weight"}
    try:
        check_accounted(model, before, changed, "demo")
    except Verdict as verdict:
        assert verdict.kind == SILENT and "0.weight" in verdict.detail
    else:
        raise AssertionError("an unreported skip was not caught")
    report_coverage(model, Coverage("demo", {"1": 16}, {"0": "embeddings are not pruned"}, 56))
    assert check_accounted(model, before, changed, "demo").endswith("of weights changed")
