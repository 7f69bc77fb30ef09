"""Recipe ``model: {factory: "module:function"}``: modules beside the recipe or in the cwd."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from torch import nn

from deepshrink.errors import ConfigError
from deepshrink.recipe.schema import ModelSpec, call_factory

NET = """\
from torch import nn
import helper_{tag}


def build(width=4):
    return nn.Sequential(nn.Linear(helper_{tag}.INPUTS, width))


def not_a_model():
    return 3
"""


def _write(folder: Path, name: str, tag: str, inputs: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(NET.format(tag=tag))
    (folder / f"helper_{tag}.py").write_text(f"INPUTS = {inputs}\n")


def test_module_beside_the_recipe_with_its_own_imports(tmp_path: Path) -> None:
    _write(tmp_path / "recipes", "mynet_beside", "beside", inputs=5)
    path, modules = list(sys.path), set(sys.modules)
    model = call_factory("mynet_beside:build", {"width": 3}, tmp_path / "recipes")
    assert isinstance(model, nn.Sequential) and model[0].weight.shape == (3, 5)
    assert sys.path == path  # restored
    assert not {"mynet_beside", "helper_beside"} & set(sys.modules) - modules


def test_module_in_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    _write(tmp_path, "mynet_cwd", "cwd", inputs=7)
    monkeypatch.chdir(tmp_path)
    model = call_factory("mynet_cwd:build", {}, tmp_path / "elsewhere")
    assert model[0].weight.shape == (4, 7)


def test_same_module_name_in_two_folders_is_not_cached(tmp_path: Path) -> None:
    _write(tmp_path / "a", "mynet_twice", "twice", inputs=2)
    _write(tmp_path / "b", "mynet_twice", "twice", inputs=9)
    first = call_factory("mynet_twice:build", {}, tmp_path / "a")
    second = call_factory("mynet_twice:build", {}, tmp_path / "b")
    assert (first[0].in_features, second[0].in_features) == (2, 9)


def test_missing_module_function_or_model_are_named(tmp_path: Path) -> None:
    _write(tmp_path, "mynet_errors", "errors", inputs=2)
    with pytest.raises(
        ConfigError, match=r"no module 'nowhere_net' beside the recipe.*nowhere_net\.py"
    ):
        call_factory("nowhere_net:build", {}, tmp_path)
    with pytest.raises(ConfigError, match="has no function 'make'; it defines build, not_a_model"):
        call_factory("mynet_errors:make", {}, tmp_path)
    with pytest.raises(ConfigError, match="returned int, not a torch.nn.Module"):
        call_factory("mynet_errors:not_a_model", {}, tmp_path)
    (tmp_path / "broken_net.py").write_text("import no_such_dependency_xyz\n")
    with pytest.raises(ConfigError, match="importing 'broken_net' failed.*no_such_dependency_xyz"):
        call_factory("broken_net:build", {}, tmp_path)


def test_installed_modules_still_work() -> None:
    model = call_factory("torch.nn:Linear", {"in_features": 2, "out_features": 3})
    assert isinstance(model, nn.Linear)


def test_root_goes_with_a_factory() -> None:
    assert ModelSpec(factory="mynet:build", root="src").root == "src"
    with pytest.raises(ValueError, match="root is the folder of a factory"):
        ModelSpec(zoo="lenet5", root="src")


def test_a_recipe_finds_the_factory_module_beside_it_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deepshrink.recipe import load_recipe, prepare

    folder = tmp_path / "project"
    (folder / "mlp_beside_recipe.py").parent.mkdir(parents=True)
    (folder / "mlp_beside_recipe.py").write_text(
        "from torch import nn\n\n\ndef build(hidden=16):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(),"
        " nn.Linear(hidden, 10))\n"
    )
    (folder / "recipe.yaml").write_text(
        "version: 1\nname: factory_beside\n"
        "model: {factory: 'mlp_beside_recipe:build', args: {hidden: 12}}\n"
        "data: {name: digits, train_limit: 64, test_limit: 32}\n"
        "stages:\n  - prune: {method: magnitude, sparsity: 0.5}\n"
    )
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    recipe, text = load_recipe(folder / "recipe.yaml")
    model = prepare(recipe, text, allow_code=True).model
    assert model[1].weight.shape == (12, 64)
