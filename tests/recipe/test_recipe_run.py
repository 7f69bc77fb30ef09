"""Running recipes: outputs, resume after an interruption, plans, shipped recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import deepshrink.train
from deepshrink.cli import main
from deepshrink.recipe import load_recipe, prepare, run_recipe
from deepshrink.recipe.plan import plan_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

TINY = """\
version: 1
name: tiny
seed: 3
latency: false
model: {zoo: digits_mlp}
data: {name: digits, train_limit: 256, test_limit: 96}
stages:
  - train: {epochs: 2, batch_size: 32}
  - prune: {method: magnitude, sparsity: 0.7, exclude: fc3}
  - fine_tune: {epochs: 2, batch_size: 32, lr: 0.01, distill: {temperature: 2, alpha: 0.5}}
  - factorize: {method: svd, rank: 8, include: fc1}
  - evaluate: {latency: false}
"""


def _write(tmp_path: Path, text: str = TINY) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


def _comparable(metrics: dict) -> dict:
    """Everything but timings (which differ between runs)."""
    keep = ("accuracy", "loss", "parameters", "nonzero_parameters", "macs", "file_bytes")
    final = {k: metrics["final"][k] for k in keep}
    stages = [{k: s["report"][k] for k in keep} for s in metrics["stages"]]
    return {"final": final, "stages": stages, "layers": metrics["layers"]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("finished")
    run_recipe(_write(folder), folder / "run", progress=False)
    return folder / "run"


def test_run_folder_holds_reports_plots_and_the_recipe(finished: Path) -> None:
    names = {p.name for p in finished.iterdir()}
    assert {"metrics.json", "report.md", "report.html", "recipe.yaml", "model.safetensors"} <= names
    assert (finished / "recipe.yaml").read_text() == TINY
    stages = sorted(p.name for p in (finished / "stages").iterdir())
    assert stages == ["00-initial", "01-train", "02-prune", "03-fine_tune", "04-factorize",
                      "05-evaluate"]  # fmt: skip
    for png in ("stages.png", "layers.png"):
        assert (finished / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (finished / "report.html").read_text()
    assert "data:image/png;base64," in html and "<img" in html and 'src="plots' not in html
    metrics = json.loads((finished / "metrics.json").read_text())
    fc1 = next(row for row in metrics["layers"] if row["layer"] == "fc1")
    assert fc1["weights_after"] == 8 * (64 + 128)  # rank-8 SVD of a 128×64 layer
    fc3 = next(row for row in metrics["layers"] if row["layer"] == "fc3")
    assert fc3["nonzero_after"] == fc3["weights"]  # excluded from pruning
    assert metrics["baseline"]["name"] == "baseline (01-train)"


def test_final_model_reloads_with_the_same_outputs(finished: Path) -> None:
    import torch

    model, _ = deepshrink.train.load_checkpoint(finished / "model.safetensors")
    again, _ = deepshrink.train.load_checkpoint(finished / "stages/05-evaluate/model.safetensors")
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(model(x), again(x))


def test_resume_after_an_interruption_gives_the_same_metrics(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = deepshrink.train.fit

    class Interrupt(deepshrink.train.Callback):
        def on_epoch_end(self, record, model):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt  # as if killed after the first epoch of the fine-tune

    def interrupted_fit(*args, callbacks=(), **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("loss_hooks"):  # the fine_tune stage distills
            callbacks = [*callbacks, Interrupt()]
        return original(*args, callbacks=callbacks, **kwargs)

    recipe = _write(tmp_path)
    monkeypatch.setattr(deepshrink.train, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, tmp_path / "run", progress=False)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert [s["label"] for s in state["done"]] == ["01-train", "02-prune"]
    monkeypatch.setattr(deepshrink.train, "fit", original)
    with pytest.raises(deepshrink.ConfigError, match="pass --resume"):
        run_recipe(recipe, tmp_path / "run", progress=False)
    run_recipe(recipe, tmp_path / "run", resume=True, progress=False)
    resumed = json.loads((tmp_path / "run" / "metrics.json").read_text())
    whole = json.loads((finished / "metrics.json").read_text())
    assert _comparable(resumed) == _comparable(whole)


def test_resume_refuses_another_recipe(finished: Path, tmp_path: Path) -> None:
    other = _write(tmp_path, TINY.replace("seed: 3", "seed: 4"))
    with pytest.raises(deepshrink.ConfigError, match="another recipe"):
        run_recipe(other, finished, resume=True, progress=False)


def test_plan_applies_structural_stages_to_a_copy(tmp_path: Path) -> None:
    recipe, text = load_recipe(_write(tmp_path))
    prepared = prepare(recipe, text)
    before = [p.detach().clone() for p in prepared.model.parameters()]
    steps = plan_recipe(prepared)
    assert [s.label for s in steps] == ["initial", "01-train", "02-prune", "03-fine_tune",
                                        "04-factorize", "05-evaluate"]  # fmt: skip
    pruned = steps[2]
    assert pruned.nonzero < steps[1].nonzero and pruned.parameters == steps[1].parameters
    assert [row[0] for row in pruned.layers] == ["fc1", "fc2"]
    assert steps[4].parameters < steps[3].parameters  # SVD removes parameters
    assert all(a.equal(b) for a, b in zip(before, prepared.model.parameters(), strict=True))


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_passes_plan(
    path: Path, capsys, shared_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPSHRINK_DATA", str(shared_root))
    assert main(["plan", str(path)]) == 0, capsys.readouterr().err
    assert "initial" in capsys.readouterr().out


def test_shipped_recipes_start_from_committed_files() -> None:
    """Each result regenerates from a clean checkout: no recipe continues another run's folder."""
    import yaml

    starts = {}
    for path in sorted(RECIPES.glob("*.yaml")):
        checkpoint = yaml.safe_load(path.read_text())["model"].get("checkpoint")
        if checkpoint:
            starts[path.stem] = checkpoint
            assert (RECIPES / checkpoint).resolve().is_file(), (path.name, checkpoint)
            assert "runs/" not in checkpoint, (path.name, checkpoint)
    assert "frontier_resnet20" in starts  # the check saw the recipes that start from assets


def _shrunk(document: dict) -> dict:
    """The same recipe on a few hundred images with one epoch per training stage."""
    document["latency"] = False
    document["data"] = {**document.get("data", {}), "train_limit": 256, "test_limit": 128}
    for entry in document["stages"]:
        ((kind, settings),) = entry.items()
        if kind in ("train", "fine_tune"):
            settings["epochs"] = 1
            if "prune" in settings:  # a schedule: finish within the few steps of one epoch
                settings["prune"].update(begin_step=0, end_step=4, frequency=1)
        if kind == "prune" and "iterative" in settings:
            settings["iterative"] = {"rounds": 1, "fit": {"epochs": 1}}
        if kind == "export" and settings.get("latency_rounds", 1):
            settings["latency_rounds"] = 1
    return document


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_runs_end_to_end_on_small_data(
    path: Path, tmp_path: Path, shared_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    monkeypatch.setenv("DEEPSHRINK_DATA", str(shared_root))
    document = _shrunk(yaml.safe_load(path.read_text()))
    checkpoint = document["model"].get("checkpoint")
    if checkpoint:  # relative to the shipped recipe's folder
        document["model"]["checkpoint"] = str((path.parent / checkpoint).resolve())
    small = tmp_path / path.name
    small.write_text(yaml.safe_dump(document, sort_keys=False))
    result = run_recipe(small, tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["stages"]) == len(document["stages"])
    assert result.final.accuracy is not None and (tmp_path / "run" / "report.html").is_file()
    if any("encode" in stage for stage in document["stages"]):
        assert result.final.file_bytes < result.baseline.file_bytes  # the .dsz is the final file
    # the final file is the one the last encode/export wrote, unless the model changed after it
    kinds = [next(iter(stage)) for stage in document["stages"]]
    changes = [i for i, kind in enumerate(kinds) if kind not in ("encode", "export", "evaluate")]
    writes = [i for i, kind in enumerate(kinds) if kind in ("encode", "export")]
    delivered = metrics["artifacts"].get("delivered")
    if writes and (not changes or writes[-1] > changes[-1]):
        assert result.final.file_bytes == Path(delivered).stat().st_size
    else:
        assert delivered is None


def test_stages_record_their_coverage_in_metrics_reports_and_plans(
    finished: Path, tmp_path: Path
) -> None:
    from deepshrink.prune import weight_counts
    from deepshrink.zoo import create

    metrics = json.loads((finished / "metrics.json").read_text())
    prune = next(s for s in metrics["stages"] if s["label"] == "02-prune")
    detail = prune["summary"]["coverage_detail"]
    assert detail["skipped"] == {"fc3": "not selected"}
    sizes = {n: total for n, (_, total) in weight_counts(create("digits_mlp")).items()}
    share = (sizes["fc1"] + sizes["fc2"]) / sum(sizes.values())
    assert detail["fraction"] == pytest.approx(share)
    assert prune["summary"]["coverage"] == f"{share:.1%} of weights, 1 layers skipped"
    assert f"coverage {share:.1%} of weights" in (finished / "report.md").read_text()
    recipe, text = load_recipe(_write(tmp_path))
    steps = plan_recipe(prepare(recipe, text))
    assert steps[2].coverage == prune["summary"]["coverage"]
    assert steps[4].skipped == {"fc2": "not selected", "fc3": "not selected"}


def test_a_stage_train_limit_trains_on_what_the_data_limit_would_give(tmp_path: Path) -> None:
    """A stage's own ``train_limit`` = the recipe-wide limit for that stage; later stages see
    every sample again."""
    import torch

    def run(data: str, first: str, name: str) -> dict:
        text = (
            TINY.split("data:")[0]
            + f"data: {{name: digits, {data}test_limit: 96}}\n"
            + (
                f"stages:\n  - train: {{epochs: 2, batch_size: 32{first}}}\n"
                "  - fine_tune: {epochs: 1, batch_size: 32, lr: 0.01}\n"
            )
        )
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        run_recipe(path, tmp_path / name, progress=False)
        states = {}
        for stage in ("01-train", "02-fine_tune"):
            model, _ = deepshrink.train.load_checkpoint(
                tmp_path / name / "stages" / stage / "model.safetensors"
            )
            states[stage] = model.state_dict()
        return states

    recipe_wide = run("train_limit: 256, ", "", "wide")
    per_stage = run("", ", train_limit: 256", "stage")
    everything = run("", "", "full")
    for key, value in recipe_wide["01-train"].items():
        assert torch.equal(value, per_stage["01-train"][key]), key
    differs = [k for k, v in recipe_wide["01-train"].items()
               if not torch.equal(v, everything["01-train"][k])]  # fmt: skip
    assert differs  # the limit changed what the first stage trained on
    later = [k for k, v in recipe_wide["02-fine_tune"].items()
             if not torch.equal(v, per_stage["02-fine_tune"][k])]  # fmt: skip
    assert later  # the fine-tune after it saw all samples, not 256


def test_encode_stage_writes_half_width_floats_when_asked(tmp_path: Path) -> None:
    """``floats: float16`` stores codebooks and biases at half width: the decoded tensors are
    the full-width file's rounded to float16, and the file is smaller."""
    import torch

    import deepshrink as ds

    text = TINY.split("stages:")[0] + (
        "stages:\n"
        "  - train: {epochs: 1, batch_size: 32}\n"
        "  - quantize: {method: kmeans, bits: 4}\n"
        "  - encode: {file: exact.dsz, reload: false}\n"
        "  - encode: {file: half.dsz, floats: float16}\n"
    )
    run_recipe(_write(tmp_path, text), tmp_path / "run", progress=False)
    exact, half = tmp_path / "run" / "exact.dsz", tmp_path / "run" / "half.dsz"
    assert half.stat().st_size < exact.stat().st_size
    full, narrow = ds.load(exact).state_dict(), ds.load(half).state_dict()
    assert full.keys() == narrow.keys()
    for name, tensor in full.items():
        expected = (
            tensor.to(torch.float16).to(tensor.dtype) if tensor.is_floating_point() else tensor
        )
        assert torch.equal(narrow[name], expected), name
    stages = json.loads((tmp_path / "run" / "metrics.json").read_text())["stages"]
    assert [s.get("summary", {}).get("floats") for s in stages[-2:]] == [None, "float16"]


def test_encode_stage_folds_batchnorm_when_asked(tmp_path: Path, shared_root: Path) -> None:
    """``batchnorm: fold`` on ResNet-20: a smaller file whose decoded model gives the logits of
    the exact file's; a typo in the value is refused before anything runs."""
    import torch

    import deepshrink as ds

    text = (
        "version: 1\nname: fold\nseed: 0\nlatency: false\nmodel: {zoo: resnet20}\n"
        f"data: {{name: cifar10, root: {shared_root}, train_limit: 64, test_limit: 32}}\n"
        "stages:\n"
        "  - train: {epochs: 1, batch_size: 32}\n"  # running statistics of real data
        "  - encode: {file: exact.dsz, reload: false}\n"
        "  - encode: {file: fold.dsz, batchnorm: fold}\n"
    )
    run_recipe(_write(tmp_path, text), tmp_path / "run", progress=False)
    exact, fold = tmp_path / "run" / "exact.dsz", tmp_path / "run" / "fold.dsz"
    assert fold.stat().st_size < exact.stat().st_size
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ds.load(fold).eval()(x), ds.load(exact).eval()(x), atol=1e-4)
    stages = json.loads((tmp_path / "run" / "metrics.json").read_text())["stages"]
    assert stages[-1]["summary"]["batchnorm"] == "fold"
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(Exception, match="batchnorm"):
        run_recipe(_write(bad, text.replace("batchnorm: fold", "batchnorm: folded")),
                   bad / "run", progress=False)  # fmt: skip
    assert not (bad / "run").exists()
