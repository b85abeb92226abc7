"""The model-zoo architectures onnx ships (AlexNet, DenseNet-121, Inception v1/v2, ResNet-50,
ShuffleNet, SqueezeNet, VGG-19, ZFNet-512) with random weights: nnlite, plain and through
``optimize_for_inference``, against ONNX Runtime (skipped without onnx/onnxruntime)."""
import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import nnlite  # noqa: E402
import nnlite.onnx as nxo  # noqa: E402
from onnx_backend_zoo import HEAVY, ZOO, input_for, randomized  # noqa: E402

RTOL = 1e-4   # relative to the largest |logit| (the final softmax is dropped)


def _ort(model, name, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {name: x})[0]


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.slow) if a in HEAVY else a
                                  for a in ZOO])
def test_zoo_matches_onnxruntime_plain_and_optimized(arch):
    model = randomized(arch)
    name, x = input_for(model)
    ref = _ort(model, name, x)
    assert ref.std() > 1e-4 * np.abs(ref).max(), "the reference output must not be constant"
    mod = nxo.load(model.SerializeToString())
    plain = mod(x).data
    assert plain.shape == ref.shape and plain.dtype == ref.dtype
    assert _rel(plain, ref) <= RTOL, f"plain: {_rel(plain, ref):.2e}"
    fast = nnlite.optimize_for_inference(mod)
    opt = fast(x).data
    assert _rel(opt, ref) <= RTOL, f"optimized: {_rel(opt, ref):.2e}"
