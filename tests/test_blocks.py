"""The blocks of ``nnlite.nn.blocks``: output shapes on odd sizes and stride 2, a gradient for
every parameter, each block against its definition written out with plain modules/functional
ops, parameter counts in closed form, and torchvision's state_dict names."""
import numpy as np
import pytest

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F


def rand(*shape, seed=0):
    return nnlite.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def rand64(*shape, seed=0):
    return nnlite.tensor(np.random.default_rng(seed).standard_normal(shape))


def forward(block, x, train=False):
    block.train(train)
    with nnlite.no_grad():
        return block(x)


def n_params(m):
    return sum(p.data.size for p in m.parameters())


def out_len(size, k, s=1, p=0):
    return (size + 2 * p - k) // s + 1


# ------------------------------------------------------------------------------ output shapes
SHAPE_CASES = [
    # (block factory, in_channels, stride, expected out_channels, spatial rule)
    ("BasicConv2d", lambda: nn.BasicConv2d(3, 5, kernel_size=3, stride=2, padding=1), 3, 5,
     lambda h: out_len(h, 3, 2, 1)),
    ("Inception", lambda: nn.Inception(6, 2, 3, 4, 2, 3, 2), 6, 2 + 4 + 3 + 2, lambda h: h),
    ("Inception-naive", lambda: nn.Inception(6, 2, 0, 4, 0, 3, 0, reduce=False), 6,
     2 + 4 + 3 + 6, lambda h: h),
    ("Inception-5x5", lambda: nn.Inception(4, 2, 3, 4, 2, 3, 0, branch3_kernel_size=5), 4,
     2 + 4 + 3 + 4, lambda h: h),
    ("InceptionA", lambda: nn.InceptionA(3), 3, 88, lambda h: h),
    ("StackedConv3x3", lambda: nn.StackedConv3x3(3, 4, stride=2), 3, 4,
     lambda h: out_len(h, 5, 2, 2)),
    ("AsymmetricConv2d", lambda: nn.AsymmetricConv2d(3, 4, 5, mid_channels=2), 3, 4,
     lambda h: h),
    ("GridReduction", lambda: nn.GridReduction(3, 4, 5, 2), 3, 4 + 5 + 3,
     lambda h: out_len(h, 3, 2)),
    ("GridReduction-avg", lambda: nn.GridReduction(3, 4, pool="avg"), 3, 4 + 3,
     lambda h: out_len(h, 3, 2)),
    ("BasicBlock", lambda: nn.BasicBlock(4, 6, stride=2), 4, 6, lambda h: out_len(h, 1, 2)),
    ("BasicBlock-id", lambda: nn.BasicBlock(4, 4), 4, 4, lambda h: h),
    ("Bottleneck", lambda: nn.Bottleneck(4, 2, stride=2), 4, 8, lambda h: out_len(h, 1, 2)),
    ("Bottleneck-id", lambda: nn.Bottleneck(8, 2), 8, 8, lambda h: h),
    ("ResNeXtBlock", lambda: nn.ResNeXtBlock(8, 8, stride=2, cardinality=4, base_width=8), 8,
     32, lambda h: out_len(h, 1, 2)),
    ("DepthwiseSeparable", lambda: nn.DepthwiseSeparableConv2d(3, 5, 3, stride=2, padding=1),
     3, 5,
     lambda h: out_len(h, 3, 2, 1)),
    ("XceptionBlock", lambda: nn.XceptionBlock(3, 6, reps=2, stride=2), 3, 6,
     lambda h: out_len(h, 1, 2)),
    ("XceptionBlock-mid", lambda: nn.XceptionBlock(4, 4, reps=3, grow_first=False), 4, 4,
     lambda h: h),
    ("InvertedResidual", lambda: nn.InvertedResidual(4, 6, 2, 6), 4, 6,
     lambda h: out_len(h, 3, 2, 1)),
    ("InvertedResidual-res", lambda: nn.InvertedResidual(4, 4, 1, 6), 4, 4, lambda h: h),
    ("InvertedResidual-t1", lambda: nn.InvertedResidual(4, 3, 1, 1), 4, 3, lambda h: h),
]


@pytest.mark.parametrize("case", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
@pytest.mark.parametrize("hw", [(7, 9), (8, 5), (3, 3)])
def test_block_output_shape(case, hw):
    _, make, cin, cout, rule = case
    h, w = hw
    y = forward(make(), rand(2, cin, h, w))
    assert y.shape == (2, cout, rule(h), rule(w))


@pytest.mark.parametrize("case", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_block_batch_one_eval(case):
    _, make, cin, cout, rule = case
    y = forward(make(), rand(1, cin, 5, 5))
    assert y.shape == (1, cout, rule(5), rule(5))


# -------------------------------------------------------------- every parameter gets a gradient
@pytest.mark.parametrize("case", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_every_parameter_receives_a_gradient(case):
    _, make, cin, _, _ = case
    block = make().double()
    block.train()
    x = rand64(3, cin, 7, 6, seed=1)
    x.requires_grad_(True)
    # a random linear functional, so that BN's zero-sum gradients do not cancel out
    y = block(x)
    g = np.random.default_rng(2).standard_normal(y.shape)
    (y * nnlite.tensor(g)).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None, name
        assert p.grad.shape == p.shape, name
        assert np.all(np.isfinite(p.grad)) and np.any(p.grad != 0), name
    assert x.grad is not None and np.any(x.grad != 0)


# ---------------------------------------------------------------- blocks vs their definitions
def bn_eval(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0,
                        bn.eps)


def randomize_bn(module, seed=3):
    rng = np.random.default_rng(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.data = rng.standard_normal(c).astype(m.running_mean.dtype)
            m.running_var.data = rng.uniform(0.5, 2, c).astype(m.running_var.dtype)
            m.weight.data = rng.standard_normal(c).astype(m.weight.dtype)
            m.bias.data = rng.standard_normal(c).astype(m.bias.dtype)
    return module


def conv(x, c, **overrides):
    kw = dict(stride=c.stride, padding=c.padding, dilation=c.dilation, groups=c.groups)
    kw.update(overrides)
    return F.conv2d(x, c.weight, c.bias, **kw)


def close(a, b):
    np.testing.assert_allclose(np.asarray(a.data), np.asarray(b.data), rtol=1e-9, atol=1e-9)


def test_depthwise_separable_equals_two_convs():
    blk = nn.DepthwiseSeparableConv2d(4, 6, (3, 2), stride=(2, 1), padding=(2, 1),
                                      dilation=(1, 2), depth_multiplier=2).double()
    x = rand64(2, 4, 9, 7)
    dw = F.conv2d(x, blk.depthwise.weight, blk.depthwise.bias, stride=(2, 1), padding=(2, 1),
                  dilation=(1, 2), groups=4)
    ref = F.conv2d(dw, blk.pointwise.weight, blk.pointwise.bias)
    close(forward(blk, x), ref)
    assert blk.depthwise.weight.shape == (8, 1, 3, 2) and blk.pointwise.weight.shape == (6, 8, 1, 1)
    assert blk.bn is None and blk.relu is None


def test_depthwise_separable_with_mid_activation():
    blk = randomize_bn(nn.DepthwiseSeparableConv2d(3, 5, 3, padding=1, mid_norm=True,
                                                   mid_activation=True).double())
    x = rand64(2, 3, 5, 6)
    mid = bn_eval(F.conv2d(x, blk.depthwise.weight, blk.depthwise.bias, padding=1, groups=3),
                  blk.bn).relu()
    close(forward(blk, x), F.conv2d(mid, blk.pointwise.weight, blk.pointwise.bias))


def test_depthwise_separable_param_count():
    c, f, k = 16, 32, 3
    assert n_params(nn.DepthwiseSeparableConv2d(c, f, k, bias=False)) == c * k * k + c * f
    assert n_params(nn.DepthwiseSeparableConv2d(c, f, k)) == c * k * k + c + c * f + f


def basic_conv_ref(x, b):
    return bn_eval(conv(x, b.conv), b.bn).relu()


def test_inception_equals_its_branches():
    blk = randomize_bn(nn.Inception(5, 2, 3, 4, 2, 3, 2).double())
    x = rand64(2, 5, 7, 6)
    b1 = basic_conv_ref(x, blk.branch1)
    b2 = basic_conv_ref(basic_conv_ref(x, blk.branch2[0]), blk.branch2[1])
    b3 = basic_conv_ref(basic_conv_ref(x, blk.branch3[0]), blk.branch3[1])
    pooled = F.max_pool2d(x, 3, 1, 1, ceil_mode=True)
    b4 = basic_conv_ref(pooled, blk.branch4[1])
    close(forward(blk, x), nnlite.cat([b1, b2, b3, b4], 1))
    assert blk.branch3[1].conv.kernel_size == (3, 3)  # torchvision's layout


def test_naive_inception_equals_its_branches():
    blk = randomize_bn(nn.Inception(3, 2, 99, 4, 99, 3, 99, reduce=False).double())
    x = rand64(1, 3, 6, 5)
    assert blk.branch3.conv.kernel_size == (5, 5)  # the paper's figure (a)
    ref = nnlite.cat([basic_conv_ref(x, blk.branch1), basic_conv_ref(x, blk.branch2),
                      basic_conv_ref(x, blk.branch3), F.max_pool2d(x, 3, 1, 1)], 1)
    close(forward(blk, x), ref)
    assert blk.out_channels == 2 + 4 + 3 + 3


def test_inception_a_equals_tutorial_definition():
    blk = nn.InceptionA(5).double()
    x = rand64(2, 5, 6, 7)
    b1 = conv(x, blk.branch1x1)
    b5 = conv(conv(x, blk.branch5x5_1), blk.branch5x5_2)
    b3 = conv(conv(conv(x, blk.branch3x3dbl_1), blk.branch3x3dbl_2), blk.branch3x3dbl_3)
    bp = conv(F.avg_pool2d(x, 3, stride=1, padding=1), blk.branch_pool)
    close(forward(blk, x), nnlite.cat([b1, b5, b3, bp], 1))
    for cin in (1, 10, 20):
        assert forward(nn.InceptionA(cin), rand(1, cin, 4, 4)).shape == (1, 88, 4, 4)


def test_stacked_3x3_and_asymmetric_equal_their_convs():
    plain = lambda ci, co, **kw: nn.Conv2d(ci, co, **kw)  # noqa: E731
    st = nn.StackedConv3x3(3, 4, mid_channels=2, stride=2, conv_block=plain).double()
    x = rand64(2, 3, 9, 8)
    close(forward(st, x), conv(conv(x, st.conv1), st.conv2))
    assert st.conv1.kernel_size == st.conv2.kernel_size == (3, 3) and st.conv2.stride == (2, 2)
    asym = nn.AsymmetricConv2d(3, 4, 7, conv_block=plain).double()
    close(forward(asym, x), conv(conv(x, asym.conv1), asym.conv2))
    assert asym.conv1.kernel_size == (1, 7) and asym.conv2.kernel_size == (7, 1)


def test_grid_reduction_equals_its_branches():
    blk = randomize_bn(nn.GridReduction(3, 4, 5, 2).double())
    for hw in ((9, 9), (8, 11)):
        x = rand64(1, 3, *hw)
        dbl = basic_conv_ref(basic_conv_ref(basic_conv_ref(x, blk.branch3x3dbl[0]),
                                            blk.branch3x3dbl[1]), blk.branch3x3dbl[2])
        ref = nnlite.cat([basic_conv_ref(x, blk.branch3x3), dbl, F.max_pool2d(x, 3, 2)], 1)
        close(forward(blk, x), ref)


def test_basic_block_equals_definition():
    blk = randomize_bn(nn.BasicBlock(3, 5, stride=2).double())
    x = rand64(2, 3, 7, 6)
    out = bn_eval(conv(bn_eval(conv(x, blk.conv1), blk.bn1).relu(), blk.conv2), blk.bn2)
    short = bn_eval(conv(x, blk.downsample[0]), blk.downsample[1])
    close(forward(blk, x), (out + short).relu())


def test_bottleneck_equals_definition_and_counts():
    blk = randomize_bn(nn.Bottleneck(6, 2, stride=2).double())
    x = rand64(2, 6, 7, 7)
    h = bn_eval(conv(x, blk.conv1), blk.bn1).relu()
    h = bn_eval(conv(h, blk.conv2), blk.bn2).relu()
    h = bn_eval(conv(h, blk.conv3), blk.bn3)
    short = bn_eval(conv(x, blk.downsample[0]), blk.downsample[1])
    close(forward(blk, x), (h + short).relu())
    assert blk.conv2.stride == (2, 2) and blk.conv1.stride == (1, 1)  # stride on the 3x3
    cin, p = 256, 64
    convs = cin * p + p * p * 9 + p * 4 * p
    assert n_params(nn.Bottleneck(cin, p)) == convs + 2 * (p + p + 4 * p)
    assert nn.Bottleneck(cin, p).downsample is None
    proj = nn.Bottleneck(64, 64)  # 64 -> 256 needs a projection
    assert n_params(proj.downsample) == 64 * 256 + 2 * 256


def test_resnext_block_is_grouped_bottleneck():
    blk = nn.ResNeXtBlock(256, 64)
    assert blk.conv2.groups == 32 and blk.conv2.weight.shape == (128, 4, 3, 3)
    assert blk.conv3.weight.shape == (256, 128, 1, 1)


def test_xception_block_equals_definition():
    blk = randomize_bn(nn.XceptionBlock(3, 4, reps=2, stride=2).double())
    x = rand64(2, 3, 7, 8)
    seps = [m for m in blk.rep if isinstance(m, nn.DepthwiseSeparableConv2d)]
    bns = [m for m in blk.rep if isinstance(m, nn.BatchNorm2d)]
    h = x
    for sep, bn in zip(seps, bns):
        h = h.relu()
        h = conv(conv(h, sep.depthwise), sep.pointwise)
        h = bn_eval(h, bn)
    h = F.max_pool2d(h, 3, 2, 1)
    short = bn_eval(conv(x, blk.skip[0]), blk.skip[1])
    close(forward(blk, x), h + short)
    assert nn.XceptionBlock(4, 4, reps=3).skip is None
    assert not isinstance(nn.XceptionBlock(4, 4, start_with_relu=False).rep[0], nn.ReLU)


def test_inverted_residual_definition_and_names():
    blk = randomize_bn(nn.InvertedResidual(4, 4, 1, 6).double())
    x = rand64(2, 4, 5, 7)
    e, d = blk.conv[0], blk.conv[1]
    h = bn_eval(conv(x, e[0]), e[1]).clamp(0, 6)
    h = bn_eval(conv(h, d[0]), d[1]).clamp(0, 6)
    h = bn_eval(conv(h, blk.conv[2]), blk.conv[3])
    assert blk.use_res_connect
    close(forward(blk, x), x + h)
    assert d[0].groups == 24 and d[0].weight.shape == (24, 1, 3, 3)
    assert isinstance(e[2], nn.ReLU6)
    keys = list(nn.InvertedResidual(16, 24, 2, 6).state_dict())
    assert keys[:2] == ["conv.0.0.weight", "conv.0.1.weight"]
    assert {k.rsplit(".", 1)[0] for k in keys} == {"conv.0.0", "conv.0.1", "conv.1.0",
                                                   "conv.1.1", "conv.2", "conv.3"}
    t1 = nn.InvertedResidual(32, 16, 1, 1)  # no expansion layer
    assert {k.rsplit(".", 1)[0] for k in t1.state_dict()} == {"conv.0.0", "conv.0.1", "conv.1",
                                                              "conv.2"}
    assert not t1.use_res_connect and not nn.InvertedResidual(4, 4, 2, 6).use_res_connect


def test_basic_conv2d_names_match_torchvision():
    keys = list(nn.BasicConv2d(3, 8, kernel_size=3).state_dict())
    assert keys == ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                    "bn.num_batches_tracked"]
    assert nn.BasicConv2d(3, 8, kernel_size=1).bn.eps == 0.001


# ------------------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("make,match", [
    (lambda: nn.Inception(4, 2, 2, 2, 2, 2, 2, branch3_kernel_size=4), "branch3_kernel_size"),
    (lambda: nn.Inception(4, 0, 2, 2, 2, 2, 2), "ch1x1"),
    (lambda: nn.AsymmetricConv2d(3, 3, 6), "odd"),
    (lambda: nn.GridReduction(3, 4, pool="min"), "pool"),
    (lambda: nn.BasicBlock(4, 4, groups=2), "groups"),
    (lambda: nn.Bottleneck(4, 1, base_width=8), "width"),
    (lambda: nn.InvertedResidual(4, 4, 3, 6), "stride"),
    (lambda: nn.XceptionBlock(4, 4, stride=3), "stride"),
    (lambda: nn.DepthwiseSeparableConv2d(4, 0, 3), "out_channels"),
])
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_grid_reduction_too_small_input_raises():
    with pytest.raises((ValueError, RuntimeError)):
        forward(nn.GridReduction(2, 2), rand(1, 2, 2, 5))


@pytest.mark.parametrize("momentum,affine,dtype", [(0.1, True, np.float64), (None, True, np.float64),
                                                   (0.3, False, np.float32)])
def test_inception_fused_pointwise_heads_equal_the_separate_blocks(momentum, affine, dtype,
                                                                   monkeypatch):
    # training mode runs branch1 and the first blocks of branch2/branch3 as one 1x1 conv and
    # one BatchNorm->ReLU node over their channels: the same outputs, gradients and running
    # statistics as the three blocks run one by one (the oracle: fusion switched off)
    from nnlite.nn.blocks import Inception

    def run(fused):
        nnlite.manual_seed(5)
        m = Inception(6, 3, 2, 4, 1, 2, 3, branch3_kernel_size=5).to(dtype)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.momentum = momentum
                if not affine:
                    mod.affine = False
                    mod.weight = None
                    mod.bias = None
        if not fused:
            monkeypatch.setattr(Inception, "_pointwise_heads", lambda self: None)
        assert (m._pointwise_heads() is not None) == fused
        rng = np.random.default_rng(0)
        grads = []
        for _ in range(2):                      # two steps: the batch counts and averages
            x = nnlite.tensor(rng.standard_normal((3, 6, 5, 4)).astype(dtype),
                              requires_grad=True)
            y = m(x)
            (y * nnlite.tensor(rng.standard_normal(y.shape).astype(dtype))).sum().backward()
            grads.append(x.grad)
        monkeypatch.undo()
        return y.data, grads, {k: p.grad for k, p in m.named_parameters()}, m.state_dict()

    y1, gx1, gp1, sd1 = run(True)
    y0, gx0, gp0, sd0 = run(False)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y1, y0, **tol)
    for a, b in zip(gx1, gx0):
        np.testing.assert_allclose(a, b, **tol)
    assert gp1.keys() == gp0.keys()
    for k in gp0:
        np.testing.assert_allclose(gp1[k], gp0[k], err_msg=k, **tol)
    for k in sd0:
        np.testing.assert_allclose(sd1[k], sd0[k], err_msg=k, **tol)
