"""fit(): learns, follows its schedule, calls hooks, resumes bit for bit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepshrink.data.dataset import ArrayDataset
from deepshrink.errors import ConfigError
from deepshrink.train import Callback, FitConfig, evaluate, fit
from deepshrink.train.config import lr_factor


def blobs(n: int = 256, seed: int = 0) -> ArrayDataset:
    """Two well separated classes in a 1×2×2 image."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 2, 2, generator=g) * 0.3 + (y.float() * 2 - 1).view(-1, 1, 1, 1)
    return ArrayDataset(x, y)


def tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2))


class Data:
    def __init__(self) -> None:
        self.train, self.test, self.val = blobs(256, 0), blobs(64, 1), None


def test_fit_learns_separable_data() -> None:
    model, data = tiny(), Data()
    before = evaluate(model, data.test).top1
    history = fit(model, data, epochs=5, batch_size=32, lr=0.1, progress=False)
    after = evaluate(model, data.test).top1
    assert before < 0.95 <= after
    assert [r.epoch for r in history.records] == [1, 2, 3, 4, 5]
    assert history.last is not None and history.last.eval_split == "test"
    assert history.last.eval_accuracy == pytest.approx(after)
    assert not model.training


def test_fit_is_deterministic_for_a_seed() -> None:
    a, b = tiny(), tiny()
    fit(a, Data(), epochs=2, batch_size=32, seed=3, progress=False)
    fit(b, Data(), epochs=2, batch_size=32, seed=3, progress=False)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_each_optimizer_reduces_loss(optimizer: str) -> None:
    model, data = tiny(), Data()
    loss0 = evaluate(model, data.train).loss
    fit(model, data, epochs=3, batch_size=32, optimizer=optimizer, lr=0.01, progress=False)
    assert evaluate(model, data.train).loss < loss0


def test_schedules_follow_their_formulas() -> None:
    cos = FitConfig(schedule="cosine")
    assert lr_factor(cos, 0, 100, 10) == 1.0
    assert lr_factor(cos, 100, 100, 10) == pytest.approx(0.0)
    step = FitConfig(schedule="step", step_epochs=2, gamma=0.5)
    assert [lr_factor(step, s, 100, 10) for s in (0, 19, 20, 40)] == [1.0, 1.0, 0.5, 0.25]
    inv = FitConfig(schedule="inv", gamma=1e-4, power=0.75)
    assert lr_factor(inv, 10000, 0, 1) == pytest.approx(2**-0.75)
    warm = FitConfig(warmup_epochs=1, schedule="constant")
    assert [lr_factor(warm, s, 100, 4) for s in (0, 3, 4)] == [0.25, 1.0, 1.0]


def test_loss_hook_and_callbacks_are_called() -> None:
    seen: list[int] = []

    def hook(context):  # an L2 penalty: must change training versus no hook
        seen.append(context.step)
        return sum(p.pow(2).sum() for p in context.model.parameters()) * 10.0

    class StopAfterTwo(Callback):
        def on_epoch_end(self, record, model):
            return record.epoch == 2

    plain, hooked = tiny(), tiny()
    fit(plain, Data(), epochs=2, batch_size=64, progress=False)
    history = fit(hooked, Data(), epochs=5, batch_size=64, loss_hooks=[hook],
                  callbacks=[StopAfterTwo()], progress=False)  # fmt: skip
    assert seen == list(range(8))  # 256 / 64 = 4 steps per epoch, stopped after epoch 2
    assert history.stopped_early and len(history.records) == 2
    norm = lambda m: sum(float(p.detach().pow(2).sum()) for p in m.parameters())  # noqa: E731
    assert norm(hooked) < norm(plain)


class Interrupt(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_epoch_end(self, record, model):
        if record.epoch == self.at:
            raise KeyboardInterrupt


def test_resume_after_interruption_is_bit_exact(tmp_path) -> None:
    straight = tiny()
    h1 = fit(straight, Data(), epochs=4, batch_size=32, seed=1, progress=False)
    interrupted = tiny()
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, Data(), epochs=4, batch_size=32, seed=1, checkpoint_dir=tmp_path,
            callbacks=[Interrupt(2)], progress=False)  # fmt: skip
    resumed = tiny(seed=99)  # a fresh process would start from other weights
    h2 = fit(resumed, Data(), epochs=4, batch_size=32, seed=1, checkpoint_dir=tmp_path,
             resume=True, progress=False)  # fmt: skip
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [r.train_loss for r in h1.records] == [r.train_loss for r in h2.records]


def test_resume_refuses_changed_settings(tmp_path) -> None:
    fit(tiny(), Data(), epochs=1, batch_size=32, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="lr: 0.05 → 0.2"):
        fit(tiny(), Data(), epochs=2, batch_size=32, lr=0.2, checkpoint_dir=tmp_path,
            resume=True, progress=False)  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("step", "7", "training.step must be a non-negative integer"),
        ("epoch", -1, "training.epoch must be a non-negative integer"),
        ("best_accuracy", "x", "training.best_accuracy"),
        ("history", [], "training.history must be a mapping"),
        ("history", {"records": [{"nope": 1}]}, "training.history is damaged"),
        ("config", {"lr": "fast"}, "training.config must be valid fit settings"),
    ],
)
def test_resume_from_a_damaged_training_record_is_a_format_error(
    tmp_path, field: str, value: object, says: str
) -> None:
    import json

    from deepshrink.errors import FormatError

    fit(tiny(), Data(), epochs=1, batch_size=32, checkpoint_dir=tmp_path, progress=False)
    (sidecar,) = tmp_path.glob("*.json")
    record = json.loads(sidecar.read_text())
    record["training"][field] = value
    sidecar.write_text(json.dumps(record))
    with pytest.raises(FormatError, match=says):
        fit(tiny(), Data(), epochs=2, batch_size=32, checkpoint_dir=tmp_path, resume=True,
            progress=False)  # fmt: skip


def test_bad_settings_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="epochs.*greater than or equal to 0.*-1"):
        fit(tiny(), Data(), epochs=-1, progress=False)
    with pytest.raises(ConfigError, match="optimizer"):
        fit(tiny(), Data(), optimizer="rmsprop", progress=False)
    with pytest.raises(ConfigError, match="unexpected|Extra inputs"):
        fit(tiny(), Data(), learning_rate=0.1, progress=False)
    with pytest.raises(ConfigError, match="validation split"):
        fit(tiny(), Data(), patience=2, progress=False)
    with pytest.raises(ConfigError, match="checkpoint_dir"):
        fit(tiny(), Data(), resume=True, progress=False)


def test_plain_dataset_goes_through_a_dataloader() -> None:
    data = blobs(128)
    plain = torch.utils.data.TensorDataset(data.images, data.labels)
    model = tiny()
    fit(model, plain, epochs=4, batch_size=16, lr=0.1, progress=False)
    assert evaluate(model, plain).top1 > 0.9
