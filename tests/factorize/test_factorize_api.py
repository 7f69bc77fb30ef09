"""The factorize_ API: registry, layer selection, policies, and checkpoint round trips."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from deepshrink import zoo
from deepshrink.errors import ConfigError, FormatError, UnknownNameError
from deepshrink.factorize import (
    FACTORIZATIONS,
    CPFactorization,
    SeparableFactorization,
    SVDFactorization,
    TTFactorization,
    TuckerFactorization,
    factorization,
    factorize_,
    plan_factorization,
)
from deepshrink.graph import structure_of
from deepshrink.train import load_checkpoint, save_checkpoint


def test_configs_are_registered_by_name() -> None:
    assert FACTORIZATIONS.names() == ["cp", "separable", "svd", "tt", "tucker"]
    config = factorization("tt", input_modes=[4, 7], output_modes=[2, 5], ranks=3)
    assert isinstance(config, TTFactorization) and config.to_dict()["method"] == "tt"
    settings = config.to_dict()
    assert factorization(settings.pop("method"), **settings) == config
    with pytest.raises(UnknownNameError, match="did you mean 'tucker'"):
        factorization("tuker", ranks=2)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SVDFactorization(rank=0), "SVDFactorization: rank must be ≥ 1, got 0"),
        (lambda: SVDFactorization(), "give exactly one of rank=, energy=, compression="),
        (lambda: SVDFactorization(energy=1.5), r"energy must be in \(0, 1\]"),
        (lambda: SVDFactorization(rank=2, policy="fast"), "SVDFactorization.policy"),
        (lambda: TuckerFactorization(ranks=(0, 2)), "each of ranks must be ≥ 1, got 0"),
        (lambda: CPFactorization(compression=0.5), "compression must be > 1"),
        (lambda: TTFactorization(ranks=[2, 2, 2], order=3), "must list 2 inner TT-ranks"),
        (lambda: SVDFactorization(rank=2, extra=1), "SVDFactorization.extra: Extra inputs"),
    ],
)
def test_bad_config_values_fail_when_built(build, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


def test_configs_are_frozen() -> None:
    config = SVDFactorization(rank=2)
    with pytest.raises(Exception, match="frozen"):
        config.rank = 3  # type: ignore[misc]


def test_globs_select_layers_and_unknown_globs_are_errors() -> None:
    model = zoo.create("lenet300")
    plan = plan_factorization(model, SVDFactorization(rank=4), include="fc*", exclude="fc3")
    assert [d.name for d in plan] == ["fc1", "fc2"]
    with pytest.raises(ConfigError, match="include 'fc9' matches no Linear layer; .* fc1, fc2"):
        factorize_(model, SVDFactorization(rank=4), include="fc9")
    with pytest.raises(ConfigError, match=r"exclude 'conv\*' matches no Linear layer"):
        factorize_(model, SVDFactorization(rank=4), exclude="conv*")
    with pytest.raises(ConfigError, match="the model has no Conv2d layer"):
        factorize_(model, TuckerFactorization(ranks=2))


def test_plan_reports_macs_per_sample_on_zoo_inputs() -> None:
    model = zoo.create("lenet300")
    (decision,) = plan_factorization(model, SVDFactorization(rank=10), include="fc1")
    assert decision.macs_before == 784 * 300
    assert decision.macs_after == 10 * (784 + 300)
    assert decision.to_dict()["compression"] == pytest.approx(235500 / 11140)


def test_faster_policy_measures_both_and_needs_inputs() -> None:
    model = nn.Sequential(nn.Conv2d(8, 8, 3))
    with pytest.raises(ConfigError, match="policy 'faster' times each layer on its real input"):
        factorize_(model, TuckerFactorization(ranks=2, policy="faster"))
    config = TuckerFactorization(ranks=2, policy="faster", min_speedup=1e6)
    (decision,) = plan_factorization(model, config, example_inputs=torch.randn(1, 8, 8, 8))
    assert decision.latency_before_ms and decision.latency_after_ms
    assert not decision.accepted and decision.reason.startswith("not faster")  # 1e6x: never


def build_all(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = zoo.create(name)
    if name == "lenet5":
        factorize_(model, SeparableFactorization(rank=3, policy="none"), include="conv1")
        factorize_(model, TuckerFactorization(ranks=(8, 6)), include="conv2")
        factorize_(model, TTFactorization(input_modes=[8, 10, 10], output_modes=[5, 10, 10]))
        factorize_(model, SVDFactorization(rank=5, policy="none"), include="fc2")
    else:
        config = CPFactorization(rank=6, iterations=20)
        factorize_(model, config, include="layer1.0.conv1")
        factorize_(model, TuckerFactorization(energy=0.5), include="layer3.*.conv2")
    return model


@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_checkpoint_round_trip_rebuilds_factorized_layers(tmp_path, name: str) -> None:
    model = build_all(name).eval()
    kinds = {entry["kind"] for entry in structure_of(model)}
    assert len(kinds) == (4 if name == "lenet5" else 2)
    path = save_checkpoint(model, tmp_path / name)
    loaded, _ = load_checkpoint(path)
    loaded.eval()
    (x,) = model.example_inputs(batch_size=3)
    assert torch.equal(model(x), loaded(x))
    assert structure_of(loaded) == structure_of(model)
    assert [type(m).__name__ for m in loaded.modules()] == [
        type(m).__name__ for m in model.modules()
    ]


def test_checkpoint_that_does_not_fit_is_a_format_error(tmp_path) -> None:
    model = zoo.create("lenet300")
    factorize_(model, SVDFactorization(rank=4), include="fc2")
    path = save_checkpoint(model, tmp_path / "m")
    other = zoo.create("lenet300")
    with torch.no_grad():
        other.fc2 = nn.Linear(300, 99)  # not the shape the record was made for
    with pytest.raises(FormatError, match="out_features is 100 in the checkpoint but 99"):
        load_checkpoint(path, other)


def test_top_level_names_are_the_factorize_api() -> None:
    import deepshrink as ds

    assert ds.factorize_ is factorize_ and ds.SVDFactorization is SVDFactorization
    model = ds.factorize_(zoo.create("lenet300"), ds.SVDFactorization(rank=4), include="fc1")
    assert structure_of(model)[0]["kind"] == "factorize.svd"
    with pytest.raises(ConfigError, match=r"fc1: rank 301 is larger than min\(in_features, "):
        ds.factorize_(zoo.create("lenet300"), ds.SVDFactorization(rank=301), include="fc1")


def test_plain_import_rebuilds_factorized_checkpoints_without_tensorly(tmp_path) -> None:
    path = save_checkpoint(build_all("lenet5"), tmp_path / "lenet5")
    code = (
        "import sys, deepshrink as ds; "
        "light = 'tensorly' not in sys.modules; "
        f"model, _ = ds.load_checkpoint({str(path)!r}); "
        "print(light, 'tensorly' not in sys.modules, "
        "[type(model.get_submodule(n)).__name__ for n in ('conv1', 'conv2', 'fc1', 'fc2')])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    expected = "True True ['SeparableConv2d', 'TuckerConv2d', 'TTLinear', 'SVDLinear']"
    assert result.stdout.strip() == expected
