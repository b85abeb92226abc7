"""PyTorch-exported ONNX models (GoogLeNet, ResNet-50, MobileNetV2 and small graphs) imported by
nnlite and compared with ONNX Runtime and PyTorch (skipped without torch/onnx/onnxruntime)."""
import contextlib
import io
import warnings

import numpy as np
import pytest
from conftest import kernel_threads

import nnlite

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import nnlite.onnx as nxo  # noqa: E402

pytestmark = pytest.mark.torch


def export(model, x, **kw):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.from_numpy(x), buf, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"], **kw)
    return buf.getvalue()


def ort_run(data, x):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def randomize_bn(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            m.weight.data.copy_(1 + 0.1 * torch.randn(c, generator=gen))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=gen))
    return model


def compare(data, x, ref, rtol=1e-4):
    mod = nxo.load(data)
    scale = np.abs(ref).max()
    plain = mod(x).data
    fast = nnlite.optimize_for_inference(mod)(x).data
    assert np.abs(plain - ref).max() <= rtol * scale, np.abs(plain - ref).max() / scale
    assert np.abs(fast - ref).max() <= rtol * scale, np.abs(fast - ref).max() / scale
    return mod


def _architectures():
    try:
        from test_models import _torchvision_architectures
    except ImportError:  # pragma: no cover - the model tests moved
        pytest.skip("torchvision architecture rebuilds (tests/test_models.py) not available")
    return _torchvision_architectures(torch)


@pytest.fixture(autouse=True)
def one_thread():
    """Correctness only: one kernel thread keeps these tests fast on a busy machine."""
    with kernel_threads(1):
        yield


@pytest.mark.parametrize("name, fold", [("googlenet", False), ("resnet50", True),
                                        ("mobilenet_v2", False)])
def test_torchvision_architectures_match_onnxruntime(name, fold):
    """fold=True: the exporter folds BN into the convs; fold=False keeps BatchNormalization
    nodes (TrainingMode.PRESERVE in eval mode) so nnlite's own folding is exercised."""
    torch.manual_seed(0)
    model = randomize_bn(_architectures()[name]().eval())
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    kw = {} if fold else dict(do_constant_folding=False)
    data = export(model, x, **kw)
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert fold or "BatchNormalization" in ops
    with torch.no_grad():
        ref_t = model(torch.from_numpy(x)).numpy()
    ref_o = ort_run(data, x)
    np.testing.assert_allclose(ref_o, ref_t, rtol=1e-4, atol=1e-4 * np.abs(ref_t).max())
    compare(data, x, ref_o)


def test_view_flatten_and_dynamic_batch():
    """x.view(x.size(0), -1) exports Shape/Gather/Unsqueeze/Concat/Reshape; a dynamic batch
    axis makes nnlite compile one plan per batch size."""
    tnn = torch.nn

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv = tnn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.pool = tnn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)
            self.fc = tnn.Linear(8 * 3 * 3, 5)

        def forward(self, x):
            y = self.pool(torch.relu(self.conv(x)))
            y = y.view(y.size(0), -1)
            return torch.softmax(self.fc(y), dim=1)

    net = Net().eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 11, 11)).astype(np.float32)
    data = export(net, x, dynamic_axes={"input": {0: "n"}, "output": {0: "n"}})
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert {"Shape", "Gather", "Unsqueeze", "Concat", "Reshape"} <= ops
    mod = compare(data, x, ort_run(data, x))
    fast = nnlite.optimize_for_inference(mod)
    for n in (1, 4):
        xn = np.random.default_rng(n).standard_normal((n, 3, 11, 11)).astype(np.float32)
        np.testing.assert_allclose(fast(xn).data, ort_run(data, xn), rtol=1e-5, atol=1e-6)


def test_inception_concat_residual_relu6_depthwise_block():
    tnn = torch.nn

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.a = tnn.Sequential(tnn.Conv2d(4, 6, 1, bias=False), tnn.BatchNorm2d(6),
                                    tnn.ReLU())
            self.b = tnn.Sequential(tnn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False),
                                    tnn.BatchNorm2d(4), tnn.ReLU6(),
                                    tnn.Conv2d(4, 6, 1))
            self.c = tnn.Sequential(tnn.MaxPool2d(3, 1, 1, ceil_mode=True), tnn.Conv2d(4, 4, 1))
            self.proj = tnn.Conv2d(16, 4, 1, bias=False)
            self.bn = tnn.BatchNorm2d(4)

        def forward(self, x):
            y = torch.cat([self.a(x), self.b(x), self.c(x)], 1)
            return torch.relu(self.bn(self.proj(y)) + x)

    net = randomize_bn(Block().eval())
    x = np.random.default_rng(2).standard_normal((2, 4, 9, 7)).astype(np.float32)
    data = export(net, x, do_constant_folding=False)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    compare(data, x, ref)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer_with_dynamic_batch(norm_first):
    """nn.TransformerEncoderLayer (nn.MultiheadAttention inside) exports a Mod node (a head
    size check folded from constants); nnlite refused the whole model for it."""
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(16, 16)
            self.enc = torch.nn.TransformerEncoderLayer(16, 4, dim_feedforward=32,
                                                        batch_first=True, norm_first=norm_first)

        def forward(self, x):
            return self.enc(self.proj(x))

    layer = Net().eval()
    x = np.random.default_rng(2).standard_normal((2, 7, 16)).astype(np.float32)
    data = export(layer, x, dynamic_axes={"input": {0: "n"}, "output": {0: "n"}})
    assert "Mod" in {n.op_type for n in onnx.load_from_string(data).graph.node}
    with torch.no_grad():
        ref = layer(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ort_run(data, x), ref, rtol=1e-4, atol=1e-5)
    mod = compare(data, x, ref)
    fast = nnlite.optimize_for_inference(mod)
    for n in (1, 3):
        xn = np.random.default_rng(n).standard_normal((n, 7, 16)).astype(np.float32)
        with torch.no_grad():
            want = layer(torch.from_numpy(xn)).numpy()
        np.testing.assert_allclose(fast(xn).data, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(fast(xn).data, ort_run(data, xn), rtol=1e-4, atol=1e-5)


def test_dynamo_export_adaptive_pool_and_indexing_use_gather_nd():
    """The dynamo exporter (needs onnxscript) writes AdaptiveAvgPool2d to sizes that do not
    divide the input, and x[:, :, rows], as GatherND; nnlite refused those models."""
    pytest.importorskip("onnxscript")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
            self.pool = torch.nn.AdaptiveAvgPool2d((3, 4))

        def forward(self, x):
            y = self.pool(torch.relu(self.conv(x)))
            return y[:, :, torch.tensor([2, 0, 2])] * 2

    net = Net().eval()
    x = np.random.default_rng(3).standard_normal((2, 3, 10, 11)).astype(np.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(x),), buf, dynamo=True, opset_version=18,
                          input_names=["input"], output_names=["output"])
    data = buf.getvalue()
    assert "GatherND" in {n.op_type for n in onnx.load_from_string(data).graph.node}
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ort_run(data, x), ref, rtol=1e-5, atol=1e-6)
    compare(data, x, ref)
