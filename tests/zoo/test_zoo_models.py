"""Every zoo model: exact parameter counts, forward/backward, example inputs, copy and tracing."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.fx
from torch import nn

from deepshrink import zoo
from deepshrink.errors import ConfigError

# Total parameters (weights + biases + BN affine) with num_classes=10, derived by hand.
EXPECTED_PARAMETERS = {
    # 784*300 + 300*100 + 100*10 = 266,200 weights; 300 + 100 + 10 = 410 biases.
    "lenet300": 266_200 + 410,
    # weights 20*1*5*5 + 50*20*5*5 + 800*500 + 500*10 = 500 + 25,000 + 400,000 + 5,000 = 430,500;
    # biases 20 + 50 + 500 + 10 = 580.
    "lenet5": 430_500 + 580,
    # hidden matrices 784*1000 + 1000*1000 + 1000*500 + 500*200 = 2,384,000; output 200*10;
    # biases 1000 + 1000 + 500 + 200 + 10 = 2,710.
    "mlp_fc4": 2_384_000 + 2_000 + 2_710,
    # conv 12*1*3*3 + 12 = 120; fc 2028*10 + 10 = 20,290.
    "mnist_cnn": 120 + 20_290,
    # 64*128 + 128 = 8,320; 128*64 + 64 = 8,256; 64*10 + 10 = 650.
    "digits_mlp": 8_320 + 8_256 + 650,
    # He et al. ResNet-(6n+2), option A, all convs bias-free, BN has weight + bias:
    #   stem 3*16*9 + 2*16 = 464; fc 64*10 + 10 = 650
    #   16-channel block 2*(16*16*9) + 2*2*16 = 4,672
    #   32-channel block 2*(32*32*9) + 2*2*32 = 18,560; first one (16 → 32) 4,608 + 9,216 + 128
    #   = 13,952, i.e. 4,608 fewer
    #   64-channel block 2*(64*64*9) + 2*2*64 = 73,984; first one (32 → 64) 18,432 + 36,864 + 256
    #   = 55,552, i.e. 18,432 fewer
    #   total = n * (4,672 + 18,560 + 73,984) - 4,608 - 18,432 + 464 + 650 = 97,216 n - 21,926
    "resnet20": 97_216 * 3 - 21_926,  # 269,722
    "resnet32": 97_216 * 5 - 21_926,  # 464,154
    "resnet56": 97_216 * 9 - 21_926,  # 853,018
    "resnet110": 97_216 * 18 - 21_926,  # 1,727,962
    # stem 3*64*9 + 128 = 1,856
    # layer1 4 convs 64*64*9 = 147,456 + 4 BN 512 = 147,968
    # layer2 128*64*9 + 3*128*128*9 + 4 BN 1,024 + projection 64*128 + 256 = 525,568
    # layer3 256*128*9 + 3*256*256*9 + 4 BN 2,048 + projection 128*256 + 512 = 2,099,712
    # layer4 512*256*9 + 3*512*512*9 + 4 BN 4,096 + projection 256*512 + 1,024 = 8,393,728
    # fc 512*10 + 10 = 5,130
    "resnet18_cifar": 1_856 + 147_968 + 525_568 + 2_099_712 + 8_393_728 + 5_130,  # 11,173,962
    # 13 bias-free 3x3 convs: 9 * (3*64 + 64*64 + 64*128 + 128*128 + 128*256 + 2*256*256
    #   + 256*512 + 5*512*512) = 14,710,464; their BN 2 * 4,224 channels = 8,448;
    # classifier 512*512 + 512 + BN1d 2*512 + 512*10 + 10 = 268,810.
    "vgg16_cifar": 14_710_464 + 8_448 + 268_810,  # 14,987,722
    # 8 bias-free 3x3 convs: 9 * (3*64 + 64*128 + 128*256 + 256*256 + 256*512 + 3*512*512)
    #   = 9,217,728; their BN 2 * 2,752 channels = 5,504; the same classifier, 268,810.
    "vgg11_cifar": 9_217_728 + 5_504 + 268_810,  # 9,492,042
    # stem conv 3*32*9 + BN 64 = 928; stages (expansion t, out c, blocks n, stride) from the
    # paper: 896 + 13,968 + 39,696 + 183,872 + 303,168 + 795,264 + 473,920 = 1,810,784;
    # conv 320*1280 + BN 2,560 = 412,160; fc 1280*10 + 10 = 12,810. Equal to torchvision's
    # mobilenet_v2 (3,504,872) minus its 1000-class fc (1,281,000) plus this fc (12,810).
    "mobilenetv2_cifar": 928 + 1_810_784 + 412_160 + 12_810,  # 2,236,682
}
BUILTIN = sorted(EXPECTED_PARAMETERS)


@functools.cache
def shared_model(name: str) -> nn.Module:
    """One default instance per model for tests that leave its parameters unchanged.

    Building each big CIFAR model once keeps the file fast.
    """
    return zoo.create(name)


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def weight_count(model: nn.Module, names: list[str]) -> int:
    return sum(model.get_submodule(name).weight.numel() for name in names)


def test_every_builtin_model_is_registered_and_counted() -> None:
    assert set(BUILTIN) <= set(zoo.list())
    shipped = [
        name
        for name in zoo.list()
        if zoo.registry._MODELS.get(name).__module__.startswith("deepshrink.zoo.")
    ]
    assert sorted(shipped) == BUILTIN, "add the new model's parameter count above"


@pytest.mark.parametrize("name", BUILTIN)
def test_exact_parameter_count(name: str) -> None:
    assert parameter_count(shared_model(name)) == EXPECTED_PARAMETERS[name]


def test_published_counts_spelled_out() -> None:
    assert EXPECTED_PARAMETERS["resnet20"] == 269_722
    assert EXPECTED_PARAMETERS["resnet56"] == 853_018
    assert EXPECTED_PARAMETERS["resnet18_cifar"] == 11_173_962
    assert EXPECTED_PARAMETERS["vgg16_cifar"] == 14_987_722
    assert EXPECTED_PARAMETERS["mobilenetv2_cifar"] == 2_236_682


def test_weights_only_counts() -> None:
    assert weight_count(shared_model("lenet300"), ["fc1", "fc2", "fc3"]) == 266_200
    assert weight_count(shared_model("lenet5"), ["conv1", "conv2", "fc1", "fc2"]) == 430_500
    assert weight_count(shared_model("mlp_fc4"), ["fc1", "fc2", "fc3", "fc4"]) == 2_384_000


@pytest.mark.parametrize("name", ["resnet20", "resnet32", "resnet56", "resnet110"])
def test_option_b_adds_two_projections(name: str) -> None:
    # Option B replaces the two padding shortcuts with 1x1 conv + BN projections:
    # 16*32 + 2*32 = 576 and 32*64 + 2*64 = 2,176, so 2,752 more parameters.
    model = zoo.create(name, shortcut="B")
    assert parameter_count(model) == EXPECTED_PARAMETERS[name] + 576 + 2_176


def test_option_a_shortcut_is_a_named_module() -> None:
    model = shared_model("resnet20")
    assert isinstance(model.get_submodule("layer2.0.shortcut"), zoo.PadShortcut)
    assert isinstance(model.get_submodule("layer1.0.shortcut"), nn.Identity)
    x = torch.randn(1, 16, 8, 8)
    out = zoo.PadShortcut(16, 32, stride=2)(x)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert not out[:, 16:].any()


def test_readable_module_names() -> None:
    names = {name for name, _ in shared_model("resnet20").named_modules()}
    assert {"conv1", "layer1.0.conv1", "layer3.2.bn2", "fc"} <= names
    names = {name for name, _ in shared_model("vgg16_cifar").named_modules()}
    assert {"features.conv13", "features.bn13", "classifier.fc1", "classifier.bn1"} <= names
    names = {name for name, _ in shared_model("mobilenetv2_cifar").named_modules()}
    assert {"layer1.0.depthwise_conv", "layer2.0.expand_conv", "layer7.0.project_bn"} <= names


@pytest.mark.parametrize("name", BUILTIN)
def test_forward_backward(name: str) -> None:
    model = shared_model(name).train()
    model.zero_grad(set_to_none=True)
    (inputs,) = model.example_inputs(batch_size=2)
    output = model(inputs)
    assert output.shape == (2, model.num_classes)
    nn.functional.cross_entropy(output, torch.tensor([0, 1])).backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", BUILTIN)
def test_example_inputs_match_input_shape(name: str) -> None:
    model = shared_model(name)
    assert isinstance(model, zoo.ZooModel)
    assert len(model.input_shape) == 3 and model.num_classes == 10
    first = model.example_inputs(batch_size=3)
    assert [tuple(x.shape) for x in first] == [(3, *model.input_shape)]
    assert all(torch.equal(a, b) for a, b in zip(first, model.example_inputs(3), strict=True))


def test_example_inputs_follow_model_dtype_and_reject_bad_batch() -> None:
    model = zoo.create("mnist_cnn").double()
    assert model.example_inputs()[0].dtype == torch.float64
    with pytest.raises(ConfigError, match="batch_size"):
        model.example_inputs(batch_size=0)


@pytest.mark.parametrize("name", BUILTIN)
def test_num_classes_changes_output(name: str) -> None:
    model = zoo.create(name, num_classes=3).eval()
    assert model.num_classes == 3
    assert model(*model.example_inputs(batch_size=2)).shape == (2, 3)


@pytest.mark.parametrize("name", BUILTIN)
def test_deepcopy_and_fx_trace(name: str) -> None:
    model = shared_model(name).eval()
    clone = copy.deepcopy(model)
    assert zoo.arch_of(clone) == zoo.arch_of(model)
    traced = torch.fx.symbolic_trace(model)
    inputs = model.example_inputs(batch_size=2)
    with torch.no_grad():
        expected = model(*inputs)
        assert torch.equal(clone(*inputs), expected)
        assert torch.allclose(traced(*inputs), expected)


def test_digits_mlp_trains_quickly() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    train, test = order[:1400], order[1400:]
    torch.manual_seed(0)
    model = zoo.create("digits_mlp")
    # Plain SGD by hand: torch.optim's first use imports torch._dynamo, which costs over a second.
    for _ in range(30):
        for batch in train.split(32):
            model.zero_grad()
            nn.functional.cross_entropy(model(images[batch]), labels[batch]).backward()
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter -= 0.2 * parameter.grad
    with torch.no_grad():
        accuracy = (model(images[test]).argmax(1) == labels[test]).float().mean().item()
    assert accuracy > 0.95
