"""``nnlite.summary``: counts vs hand formulas and vs instrumented naive loops, no double counting,
the FLOP switches, formatting, and that the pass leaves the model untouched."""
import csv
import io
import itertools

import numpy as np
import pytest

import nnlite
import nnlite.nn as nn
from nnlite import autograd
from nnlite.summary import CostReport, summary


# --------------------------------------------------------------- instrumented naive counters
def naive_conv2d_macs(x, w, stride, padding, dilation, groups):
    """Run a loop conv on a zero-padded copy of x, counting every multiply-accumulate."""
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, f, oh, ow))
    fg = f // groups
    count = 0
    for b, o, i, j in itertools.product(range(n), range(f), range(oh), range(ow)):
        g = o // fg
        acc = 0.0
        for ci, u, v in itertools.product(range(cg), range(kh), range(kw)):
            acc += xp[b, g * cg + ci, i * sh + u * dh, j * sw + v * dw] * w[o, ci, u, v]
            count += 1
        y[b, o, i, j] = acc
    return count, y


def naive_conv_transpose2d_macs(x, w, stride, padding, output_padding, dilation, groups):
    """Scatter-form transposed conv, counting every multiply-accumulate."""
    n, c, h, wd = x.shape
    _, fg, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((n, fg * groups, oh + 2 * ph, ow + 2 * pw))
    cg = c // groups
    count = 0
    for b, ci, i, j in itertools.product(range(n), range(c), range(h), range(wd)):
        g = ci // cg
        for fo, u, v in itertools.product(range(fg), range(kh), range(kw)):
            prod = x[b, ci, i, j] * w[ci, fo, u, v]
            full[b, g * fg + fo, i * sh + u * dh, j * sw + v * dw] += prod
            count += 1
    return count, full[:, :, ph:ph + oh, pw:pw + ow]


CONV_CASES = [
    # (N, C, H, W, F, kernel, stride, padding, dilation, groups)
    (1, 1, 5, 5, 1, (3, 3), (1, 1), (0, 0), (1, 1), 1),
    (2, 4, 7, 6, 6, (3, 2), (2, 1), (2, 1), (1, 2), 2),
    (1, 6, 9, 5, 6, (2, 3), (1, 3), (3, 0), (2, 1), 6),   # depthwise, padding > kernel
    (3, 3, 4, 8, 5, (1, 1), (2, 2), (0, 1), (1, 1), 1),   # 1x1 with stride and pad
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_macs_match_instrumented_loop(case):
    n, c, h, w, f, k, s, p, d, g = case
    conv = nn.Conv2d(c, f, k, stride=s, padding=p, dilation=d, groups=g).double()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w))
    count, y_ref = naive_conv2d_macs(x, conv.weight.data, s, p, d, g)
    rep = summary(conv, (n, c, h, w), dtype=np.float64, count_bias=True)
    assert rep.macs == count
    assert rep.output_shape == y_ref.shape
    assert rep.flops == 2 * count + y_ref.size  # bias adds: one per output element
    with nnlite.no_grad():
        y = conv(nnlite.tensor(x)).data
    np.testing.assert_allclose(y - conv.bias.data[:, None, None], y_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", [
    # (N, C, H, W, F, kernel, stride, padding, output_padding, dilation, groups)
    (1, 2, 3, 3, 3, (3, 3), (1, 1), (0, 0), (0, 0), (1, 1), 1),
    (2, 4, 3, 4, 6, (3, 2), (2, 3), (1, 0), (1, 2), (1, 1), 2),
    (1, 3, 4, 2, 3, (2, 2), (2, 1), (0, 1), (0, 0), (2, 3), 3),
])
def test_conv_transpose2d_macs_match_instrumented_loop(case):
    n, c, h, w, f, k, s, p, op, d, g = case
    conv = nn.ConvTranspose2d(c, f, k, stride=s, padding=p, output_padding=op, dilation=d,
                              groups=g, bias=False).double()
    x = np.random.default_rng(1).standard_normal((n, c, h, w))
    count, y_ref = naive_conv_transpose2d_macs(x, conv.weight.data, s, p, op, d, g)
    rep = summary(conv, (n, c, h, w), dtype=np.float64)
    assert count == n * h * w * c * (f // g) * k[0] * k[1]
    assert rep.macs == count and rep.flops == 2 * count
    assert rep.output_shape == y_ref.shape
    with nnlite.no_grad():
        y = conv(nnlite.tensor(x)).data
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", [
    # (N, C, L, F, kernel, stride, padding, dilation, groups)
    (1, 1, 7, 1, 3, 1, 0, 1, 1),
    (2, 4, 9, 6, 4, 2, 5, 2, 2),                         # padding > kernel, stride != dilation
    (1, 6, 5, 6, 3, 1, 1, 1, 6),                         # depthwise
])
def test_conv1d_macs_match_the_instrumented_loop_on_a_height_1_map(case):
    n, c, length, f, k, s, p, d, g = case
    conv = nn.Conv1d(c, f, k, stride=s, padding=p, dilation=d, groups=g, bias=False).double()
    x = np.random.default_rng(2).standard_normal((n, c, length))
    count, y_ref = naive_conv2d_macs(x[:, :, None, :], conv.weight.data[:, :, None, :], (1, s),
                                     (0, p), (1, d), g)
    rep = summary(conv, (n, c, length), dtype=np.float64)
    assert rep.macs == count and rep.output_shape == (n, f, y_ref.shape[-1])
    convt = nn.ConvTranspose1d(c, f, k, stride=s, groups=g, bias=False)
    rep = summary(convt, (n, c, length))
    assert rep.macs == n * c * length * (f // g) * k    # every input element through its taps


def test_new_layers_counts():
    x = (2, 6, 5, 4)
    rep = summary(nn.Sequential(nn.GroupNorm(3, 6), nn.Hardswish(), nn.LocalResponseNorm(3),
                                nn.LPPool2d(2, (2, 3)), nn.PReLU(), nn.PixelShuffle(1)),
                  x, count_all=True)
    size = 2 * 6 * 5 * 4
    assert rep["0"].flops == 2 * size and rep["1"].flops == size and rep["2"].flops == 3 * size
    assert rep["3"].output_shape == (2, 6, 2, 1) and rep["3"].flops == 2 * 6 * 2 * 1 * 6
    assert rep["4"].flops == 2 * 6 * 2 and rep["5"].flops == 0 and rep.uncounted == []
    rep = summary(nn.Sequential(nn.MaxPool1d(3, 2), nn.AvgPool1d(2), nn.AdaptiveAvgPool1d(3)),
                  (1, 2, 13), count_all=True)
    # 13 -> 6 (k=3) -> 3 (k=2) -> 3 adaptive bins of length 1
    assert [r.flops for r in rep.rows] == [2 * 6 * 3, 2 * 3 * 2, 2 * 3 * 1]


def test_linear_counts_all_leading_dims():
    rep = summary(nn.Linear(7, 5), (4, 3, 7), count_bias=True)
    assert rep.macs == 4 * 3 * 7 * 5
    assert rep.flops == 2 * rep.macs + 4 * 3 * 5
    assert rep.params == 7 * 5 + 5


def naive_pool_taps(h, w, k, s, p, d, ceil_mode):
    """Window taps per plane, enumerating windows the way the output size rule allows."""
    def out_len(size, k, s, p, d):
        eff = d * (k - 1) + 1
        num = size + 2 * p - eff
        o = (-(-num // s) if ceil_mode else num // s) + 1
        if ceil_mode and (o - 1) * s >= size + p:
            o -= 1
        return o
    oh, ow = out_len(h, k[0], s[0], p[0], d[0]), out_len(w, k[1], s[1], p[1], d[1])
    taps = sum(1 for _ in itertools.product(range(oh), range(ow), range(k[0]), range(k[1])))
    return taps, (oh, ow)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pool_counts(ceil_mode):
    pool = nn.MaxPool2d((3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2),
                        ceil_mode=ceil_mode)
    taps, (oh, ow) = naive_pool_taps(8, 7, (3, 2), (2, 1), (1, 1), (1, 2), ceil_mode)
    rep = summary(pool, (2, 3, 8, 7), count_pool=True)
    assert rep.output_shape == (2, 3, oh, ow)
    assert rep.macs == 0 and rep.flops == 2 * 3 * taps
    assert summary(pool, (2, 3, 8, 7)).flops == 0  # switch off
    avg = summary(nn.AvgPool2d(3, stride=2, padding=1), (1, 2, 9, 9), count_pool=True)
    assert avg.flops == 2 * 5 * 5 * 9


@pytest.mark.parametrize("inp,out", [((7, 5), (3, 2)), ((5, 5), (1, 1)), ((4, 6), (6, 4))])
def test_adaptive_pool_counts_exact_bins(inp, out):
    def taps(i_len, o_len):  # loop over bins and their members
        n = 0
        for i in range(o_len):
            start = (i * i_len) // o_len
            end = -(-((i + 1) * i_len) // o_len)
            n += sum(1 for _ in range(start, end))
        return n
    rep = summary(nn.AdaptiveAvgPool2d(out), (2, 3) + inp, count_pool=True)
    assert rep.flops == 2 * 3 * taps(inp[0], out[0]) * taps(inp[1], out[1])
    rep = summary(nn.AdaptiveMaxPool2d(out), (1, 1) + inp, count_pool=True)
    assert rep.flops == taps(inp[0], out[0]) * taps(inp[1], out[1])


# ------------------------------------------------------------- containers, switches, inline ops
def test_no_double_counting_of_parents():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    alone = summary(conv, (2, 3, 6, 6), count_all=True)
    nested = summary(nn.Sequential(nn.Sequential(conv), nn.Sequential()), (2, 3, 6, 6),
                     count_all=True)
    assert (nested.params, nested.macs, nested.flops) == (alone.params, alone.macs, alone.flops)
    assert [r.name for r in nested] == ["0.0", "1"]  # an empty Sequential is an identity leaf
    assert nested["1"].flops == 0 and nested.uncounted == []
    assert alone.rows[0].name == "(model)"


def test_rows_are_leaves_and_sum_to_totals():
    model = nnlite.models.resnet18(num_classes=10)
    rep = summary(model, (1, 3, 32, 32), count_all=True)
    leaves = {n for n, m in model.named_modules() if not list(m.children())}
    leaf_rows = [r for r in rep if ":" not in r.name]
    assert {r.name for r in leaf_rows} == leaves
    assert sum(r.params for r in leaf_rows) == rep.params == sum(
        p.data.size for p in model.parameters())
    assert sum(r.macs for r in rep) == rep.macs
    assert sum(r.flops for r in rep) == rep.flops
    # the shared relu of each block is one row with all its calls
    assert rep["layer1.0.relu"].calls == 2 and rep["relu"].calls == 1
    # the residual additions are the blocks' own (inline) work, one per block
    adds = [r for r in rep if r.name.endswith(":add")]
    assert len(adds) == 8 and all(r.calls == 1 for r in adds)
    assert rep["layer1.0:add"].parts["elementwise"] == 64 * 8 * 8


def test_flop_switches():
    block = nn.BasicConv2d(3, 8, kernel_size=3, padding=1)  # conv (no bias), bn, inline relu
    out_elems = 2 * 8 * 5 * 5
    base = summary(block, (2, 3, 5, 5))
    assert base.macs == out_elems * 3 * 9 and base.flops == 2 * base.macs
    assert summary(block, (2, 3, 5, 5), count_bn=True).flops == 2 * base.macs + 2 * out_elems
    assert summary(block, (2, 3, 5, 5), count_act=True).flops == 2 * base.macs + out_elems
    assert summary(block, (2, 3, 5, 5), count_bias=True).flops == 2 * base.macs  # no bias
    allr = summary(block, (2, 3, 5, 5), count_all=True)
    assert allr.flops == 2 * base.macs + 3 * out_elems
    assert allr.macs == base.macs
    assert allr["(model):relu"].type == "ReLU (inline)"


def test_activation_modules_and_free_layers():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6, bias=False), nn.ReLU6(),
                          nn.Dropout(0.5), nn.Linear(6, 2, bias=False), nn.Sigmoid())
    rep = summary(model, (5, 3, 2, 2), count_all=True)
    assert rep.macs == 5 * (12 * 6 + 6 * 2)
    assert rep.flops == 2 * rep.macs + 5 * 6 + 5 * 2
    assert rep["3"].flops == 0 and rep["0"].flops == 0
    assert rep.uncounted == []


def test_unknown_leaf_is_reported_not_guessed():
    class Weird(nn.Module):
        def forward(self, x):
            return x * 2.0

    rep = summary(nn.Sequential(Weird(), nn.Conv2d(1, 1, 1)), (1, 1, 2, 2), count_all=True)
    assert rep.uncounted == ["Weird"]
    assert rep["0"].flops == 0
    assert "Weird" in str(rep)


def test_bytes_and_intensity():
    conv = nn.Conv2d(4, 8, 3, bias=False)
    rep = summary(conv, (2, 4, 6, 6))
    r = rep.rows[0]
    x_b, w_b, y_b = 2 * 4 * 6 * 6 * 4, 8 * 4 * 9 * 4, 2 * 8 * 4 * 4 * 4
    assert r.activation_bytes == y_b and r.bytes_moved == x_b + w_b + y_b
    assert r.arithmetic_intensity == pytest.approx(r.flops / (x_b + w_b + y_b))
    r64 = summary(conv.double(), (2, 4, 6, 6)).rows[0]  # dtype follows the parameters
    assert r64.bytes_moved == 2 * r.bytes_moved


# ------------------------------------------------------------------------ side effects, errors
def test_summary_leaves_model_untouched():
    model = nnlite.models.small_cnn()
    apply_before = autograd.Function.__dict__["apply"]
    model.train()
    model.inception1.eval()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    summary(model, (2, 1, 8, 8), measure=True)
    assert model.training and not model.inception1.training and model.stem.training
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert autograd.Function.__dict__["apply"] is apply_before
    assert nnlite.is_grad_enabled()


def test_summary_restores_after_a_failing_forward():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(5, 2))
    apply_before = autograd.Function.__dict__["apply"]
    with pytest.raises(Exception):
        summary(model, (1, 3, 6, 6))
    assert autograd.Function.__dict__["apply"] is apply_before
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert model.training and nnlite.is_grad_enabled()


@pytest.mark.parametrize("shape,exc", [(3, TypeError), ((1, 2.5, 3), TypeError), ((), TypeError),
                                       ((1, -3, 4, 4), ValueError), ("abc", TypeError)])
def test_bad_input_shape(shape, exc):
    with pytest.raises(exc, match="input_shape"):
        summary(nn.Conv2d(3, 4, 3), shape)


def test_bad_model_and_dtype():
    with pytest.raises(TypeError, match="Module"):
        summary(lambda x: x, (1, 3, 4, 4))
    with pytest.raises(TypeError, match="float32 or float64"):
        summary(nn.Conv2d(3, 4, 3), (1, 3, 4, 4), dtype=np.int32)


# --------------------------------------------------------------------------------- formatting
@pytest.fixture(scope="module")
def report():
    return summary(nnlite.models.small_cnn(), (3, 1, 8, 8), count_all=True, measure=True)


def test_str_is_an_aligned_table(report):
    assert isinstance(report, CostReport)
    text = str(report)
    lines = text.splitlines()
    header, rule = lines[0], lines[1]
    assert header.split()[:2] == ["Layer", "Type"] and set(rule) == {"-"}
    assert f"{report.macs:,}" in text and f"{report.params:,}" in text
    # numeric columns are right-aligned: every table row ends at the same column
    body = lines[2:2 + len(report.rows)]
    assert len({len(line) for line in body}) == 1
    assert "Time ms" in header


def test_markdown_and_csv(report):
    md = report.to_markdown().splitlines()
    assert md[0].startswith("| Layer |") and set(md[1].replace("|", "").split()) <= {"---",
                                                                                      "---:"}
    assert len([line for line in md if line.startswith("|")]) == len(report.rows) + 3
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert len(rows) == len(report.rows) + 1
    for r, c in zip(report.rows, rows):
        assert (c["name"], int(c["params"]), int(c["macs"]), int(c["flops"])) == (
            r.name, r.params, r.macs, r.flops)
    total = rows[-1]
    assert (int(total["params"]), int(total["macs"]), int(total["flops"])) == (
        report.params, report.macs, report.flops)
    assert all(isinstance(v, int) for v in (report.params, report.macs, report.flops))


def test_measure_times(report):
    timed = [r for r in report if r.calls and ":" not in r.name]
    assert timed and all(r.time_s is not None and r.time_s >= 0 for r in timed)
    assert report.time_s > 0
    assert summary(nn.Conv2d(1, 1, 1), (1, 1, 2, 2)).rows[0].time_s is None
