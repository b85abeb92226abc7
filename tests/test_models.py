"""torchvision-compatible models: parameter counts (torchvision's published figures), state_dict
keys and shapes, forward shapes at small inputs, and (when torch is installed) logits parity with
torchvision's architectures rebuilt in plain torch below with torchvision's module names."""
import numpy as np
import pytest

import nnlite
import nnlite.nn as nn
from nnlite import models

# torchvision's parameter counts (num_classes=1000; GoogLeNet without auxiliary heads)
TORCHVISION_PARAMS = {
    "googlenet": 6_624_904,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
}


def n_params(model):
    return sum(p.data.size for p in model.parameters())


@pytest.fixture(scope="module")
def built():
    nnlite.manual_seed(0)
    return {name: getattr(models, name)() for name in TORCHVISION_PARAMS}


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_param_count_equals_torchvision(built, name):
    assert n_params(built[name]) == TORCHVISION_PARAMS[name]


def test_googlenet_paper_5x5_option():
    # the paper's 5x5 adds ch5x5red * ch5x5 * (25 - 9) weights in each of the nine modules
    five = models.googlenet(branch3_kernel_size=5)
    extra = sum(m.branch3[1].conv.weight.shape[0] * m.branch3[1].conv.weight.shape[1] * 16
                for m in five.modules() if isinstance(m, nn.Inception))
    assert n_params(five) == TORCHVISION_PARAMS["googlenet"] + extra
    assert five.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert models.googlenet().inception3a.branch3[1].conv.kernel_size == (3, 3)


# torchvision's documented compute (its weights tables list "GFLOPS", which are multiply-adds)
TORCHVISION_GMACS = {"googlenet": 1.50, "resnet18": 1.81, "resnet50": 4.09, "mobilenet_v2": 0.30}


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_summary_macs_at_224_match_torchvision_docs(built, name):
    rep = nnlite.summary(built[name], (1, 3, 224, 224))
    assert round(rep.macs / 1e9, 2) == TORCHVISION_GMACS[name]
    assert rep.params == TORCHVISION_PARAMS[name]


# ----------------------------------------------------------------- state_dict keys and shapes
def test_googlenet_keys(built):
    sd = built["googlenet"].state_dict()
    assert len(sd) == 344
    assert list(sd)[:7] == ["conv1.conv.weight", "conv1.bn.weight", "conv1.bn.bias",
                            "conv1.bn.running_mean", "conv1.bn.running_var",
                            "conv1.bn.num_batches_tracked", "conv2.conv.weight"]
    assert sd["inception3a.branch3.1.conv.weight"].shape == (32, 16, 3, 3)
    assert sd["inception5b.branch4.1.conv.weight"].shape == (128, 832, 1, 1)
    assert sd["fc.weight"].shape == (1000, 1024)
    assert not any(k.startswith("aux") for k in sd)
    assert sd["conv1.bn.num_batches_tracked"].dtype == np.int64


def test_resnet_keys(built):
    sd18, sd50 = built["resnet18"].state_dict(), built["resnet50"].state_dict()
    assert (len(sd18), len(sd50)) == (122, 320)
    assert "layer1.0.downsample.0.weight" not in sd18
    assert sd18["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd50["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd50["layer4.2.conv2.weight"].shape == (512, 512, 3, 3)
    assert sd50["fc.weight"].shape == (1000, 2048)
    assert built["resnet50"].layer2[0].conv2.stride == (2, 2)


def test_mobilenet_keys(built):
    sd = built["mobilenet_v2"].state_dict()
    assert len(sd) == 314
    assert sd["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert sd["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)
    assert sd["features.1.conv.1.weight"].shape == (16, 32, 1, 1)
    assert sd["features.2.conv.0.0.weight"].shape == (96, 16, 1, 1)
    assert sd["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert sd["classifier.1.weight"].shape == (1000, 1280)
    names = {n for n, _ in built["mobilenet_v2"].named_modules()}
    assert "avgpool" not in names and "classifier.0" in names


def test_state_dict_round_trip_gives_identical_logits():
    a, b = models.resnet18(num_classes=7), models.resnet18(num_classes=7)
    b.load_state_dict(a.state_dict())
    x = nnlite.tensor(np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype("f4"))
    with nnlite.no_grad():
        np.testing.assert_array_equal(a.eval()(x).data, b.eval()(x).data)
    with pytest.raises(ValueError, match="size mismatch for fc.weight"):
        models.resnet18(num_classes=5).load_state_dict(a.state_dict())


# ------------------------------------------------------------------------------ forward shapes
@pytest.mark.parametrize("name,size", [("googlenet", 40), ("resnet18", 33), ("resnet50", 32),
                                       ("mobilenet_v2", 35)])
def test_forward_small_input(name, size):
    model = getattr(models, name)(num_classes=11).eval()
    x = nnlite.tensor(np.random.default_rng(1).standard_normal((2, 3, size, size)).astype("f4"))
    with nnlite.no_grad():
        y = model(x)
    assert y.shape == (2, 11) and np.all(np.isfinite(y.data))


def test_train_step_reaches_every_parameter():
    model = models.mobilenet_v2(num_classes=3)
    model.train()
    x = nnlite.tensor(np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype("f4"))
    loss = nnlite.nn.functional.cross_entropy(model(x), nnlite.tensor(np.array([0, 2])))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert np.all(np.isfinite(p.grad)), name
        # (a BN bias whose every path runs through a linear layer into a training-mode BN has an
        # exactly-zero gradient, as in torch; weights of convs and linears never do)
        if p.ndim > 1:
            assert p.grad.any(), name


@pytest.mark.parametrize("make,size", [(models.small_cnn, 8), (models.small_cnn, 28),
                                       (models.tutorial_inception_net, 28)])
def test_small_cnns(make, size):
    model = make().eval()
    x = nnlite.tensor(np.random.default_rng(3).standard_normal((3, 1, size, size)).astype("f4"))
    with nnlite.no_grad():
        assert model(x).shape == (3, 10)


# ------------------------------------------------------------------ optional torch parity
def torch_inception_blocks(torch, branch3_kernel=3):
    """(BasicConv2d, Inception) in plain torch with torchvision's module names: conv without
    bias, BatchNorm eps 1e-3, F.relu; the Inception's third branch has a ``branch3_kernel``
    conv (3 in torchvision's GoogLeNet, 5 in the paper and in nnlite's SmallInceptionNet)."""
    tnn, F = torch.nn, torch.nn.functional

    class BasicConv2d(tnn.Module):
        def __init__(self, i, o, **kw):
            super().__init__()
            self.conv = tnn.Conv2d(i, o, bias=False, **kw)
            self.bn = tnn.BatchNorm2d(o, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    class Inception(tnn.Module):
        def __init__(self, i, c1, c3r, c3, c5r, c5, pp):
            super().__init__()
            k = branch3_kernel
            self.branch1 = BasicConv2d(i, c1, kernel_size=1)
            self.branch2 = tnn.Sequential(BasicConv2d(i, c3r, kernel_size=1),
                                          BasicConv2d(c3r, c3, kernel_size=3, padding=1))
            self.branch3 = tnn.Sequential(BasicConv2d(i, c5r, kernel_size=1),
                                          BasicConv2d(c5r, c5, kernel_size=k, padding=k // 2))
            self.branch4 = tnn.Sequential(tnn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                          BasicConv2d(i, pp, kernel_size=1))

        def forward(self, x):
            return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x),
                              self.branch4(x)], 1)

    return BasicConv2d, Inception


def _torchvision_architectures(torch):
    """torchvision's GoogLeNet (no aux), ResNet and MobileNetV2, rebuilt in plain torch with the
    same module names (written from torchvision's model definitions)."""
    tnn, F = torch.nn, torch.nn.functional

    BasicConv2d, Inception = torch_inception_blocks(torch)

    class GoogLeNet(tnn.Module):
        def __init__(self, num_classes=1000):
            super().__init__()
            self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
            self.maxpool1 = tnn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.conv2 = BasicConv2d(64, 64, kernel_size=1)
            self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
            self.maxpool2 = tnn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
            self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
            self.maxpool3 = tnn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
            self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
            self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
            self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
            self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
            self.maxpool4 = tnn.MaxPool2d(2, stride=2, ceil_mode=True)
            self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
            self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
            self.aux1 = self.aux2 = None
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.dropout = tnn.Dropout(0.2)
            self.fc = tnn.Linear(1024, num_classes)

        def forward(self, x):
            x = self.maxpool1(self.conv1(x))
            x = self.maxpool2(self.conv3(self.conv2(x)))
            x = self.maxpool3(self.inception3b(self.inception3a(x)))
            for n in ("4a", "4b", "4c", "4d"):
                x = getattr(self, "inception" + n)(x)
            x = self.maxpool4(self.inception4e(x))
            x = self.inception5b(self.inception5a(x))
            return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    def conv3x3(i, o, stride=1):
        return tnn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False)

    def conv1x1(i, o, stride=1):
        return tnn.Conv2d(i, o, 1, stride=stride, bias=False)

    class BasicBlock(tnn.Module):
        expansion = 1

        def __init__(self, i, p, stride=1, downsample=None):
            super().__init__()
            self.conv1, self.bn1 = conv3x3(i, p, stride), tnn.BatchNorm2d(p)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2, self.bn2 = conv3x3(p, p), tnn.BatchNorm2d(p)
            self.downsample = downsample

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + idt)

    class Bottleneck(tnn.Module):
        expansion = 4

        def __init__(self, i, p, stride=1, downsample=None):
            super().__init__()
            self.conv1, self.bn1 = conv1x1(i, p), tnn.BatchNorm2d(p)
            self.conv2, self.bn2 = conv3x3(p, p, stride), tnn.BatchNorm2d(p)
            self.conv3, self.bn3 = conv1x1(p, 4 * p), tnn.BatchNorm2d(4 * p)
            self.relu = tnn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.bn3(self.conv3(out)) + idt)

    class ResNet(tnn.Module):
        def __init__(self, block, layers, num_classes=1000):
            super().__init__()
            self.inplanes = 64
            self.conv1 = tnn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1, self.relu = tnn.BatchNorm2d(64), tnn.ReLU(inplace=True)
            self.maxpool = tnn.MaxPool2d(3, stride=2, padding=1)
            for idx, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
                setattr(self, f"layer{idx + 1}",
                        self._make_layer(block, planes, n, 1 if idx == 0 else 2))
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(512 * block.expansion, num_classes)

        def _make_layer(self, block, planes, blocks, stride):
            down = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                down = tnn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                      tnn.BatchNorm2d(planes * block.expansion))
            layers = [block(self.inplanes, planes, stride, down)]
            self.inplanes = planes * block.expansion
            layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
            return tnn.Sequential(*layers)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class ConvNormActivation(tnn.Sequential):
        def __init__(self, i, o, kernel_size=3, stride=1, groups=1):
            super().__init__(tnn.Conv2d(i, o, kernel_size, stride, (kernel_size - 1) // 2,
                                        groups=groups, bias=False),
                             tnn.BatchNorm2d(o), tnn.ReLU6(inplace=True))

    class InvertedResidual(tnn.Module):
        def __init__(self, inp, oup, stride, t):
            super().__init__()
            hidden = int(round(inp * t))
            self.use_res_connect = stride == 1 and inp == oup
            layers = [ConvNormActivation(inp, hidden, kernel_size=1)] if t != 1 else []
            layers += [ConvNormActivation(hidden, hidden, stride=stride, groups=hidden),
                       tnn.Conv2d(hidden, oup, 1, 1, 0, bias=False), tnn.BatchNorm2d(oup)]
            self.conv = tnn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(tnn.Module):
        def __init__(self, num_classes=1000):
            super().__init__()
            setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                       [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
            feats, cin = [ConvNormActivation(3, 32, stride=2)], 32
            for t, c, n, s in setting:
                for i in range(n):
                    feats.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            feats.append(ConvNormActivation(cin, 1280, kernel_size=1))
            self.features = tnn.Sequential(*feats)
            self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(1280, num_classes))

        def forward(self, x):
            x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
            return self.classifier(torch.flatten(x, 1))

    return {
        "googlenet": GoogLeNet,
        "resnet18": lambda: ResNet(BasicBlock, [2, 2, 2, 2]),
        "resnet50": lambda: ResNet(Bottleneck, [3, 4, 6, 3]),
        "mobilenet_v2": MobileNetV2,
    }


@pytest.mark.torch
@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_torch_parity(built, name):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tmodel = _torchvision_architectures(torch)[name]().eval()
    # non-trivial BatchNorm statistics, so that eval-mode BN is exercised
    gen = torch.Generator().manual_seed(1)
    for m in tmodel.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            m.weight.data.copy_(1 + 0.1 * torch.randn(c, generator=gen))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=gen))
    tsd = {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()}
    model = built[name]
    own = model.state_dict()
    assert list(own) == list(tsd)
    assert {k: v.shape for k, v in own.items()} == {k: v.shape for k, v in tsd.items()}
    assert sum(p.numel() for p in tmodel.parameters()) == TORCHVISION_PARAMS[name]
    model.load_state_dict(tsd)
    model.eval()
    x = np.random.default_rng(4).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = tmodel(torch.from_numpy(x)).numpy()
    with nnlite.no_grad():
        got = model(nnlite.tensor(x)).data
    rel = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
    assert rel <= 1e-4, rel
