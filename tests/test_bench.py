"""``nnlite bench`` and ``nnlite summary``: CLI runs at tiny sizes, exact CSV counts (equal to
nnlite.summary on the same modules and to closed-form formulas), markdown/plot options, the
timing helpers, algorithm discovery and error paths. No timed assertions."""
import csv
import io
import re
import sys

import numpy as np
import pytest

import nnlite
from nnlite import bench
from nnlite.cli import main

# tiny sizes: every spatial side x0.2, one timed round; seconds, not minutes
TINY = ["--quick", "--scale", "0.2", "--repeat", "1", "--no-progress"]


@pytest.fixture
def restore_threads():
    n = nnlite.get_num_threads()
    yield
    nnlite.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny CLI run (batch 2, 1 thread) shared by the tests that read its outputs."""
    path = tmp_path_factory.mktemp("bench") / "out.csv"
    threads = nnlite.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        rc = main(["bench"] + TINY + ["--batch", "2", "--threads", "1", "--csv", str(path),
                                      "--markdown"])
    finally:
        sys.stdout, sys.stderr = old
        nnlite.set_num_threads(threads)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rc, out.getvalue(), err.getvalue(), rows


def _hw(row):
    n, c, h, w = (int(v) for v in row["input_shape"].split("x"))
    return n, c, h * w


# closed-form (params, MACs per output pixel per image) of every pair, bias-free convs
HAND = {
    ("inception3a", "baseline"): (192 * 64 + 192 * 128 * 9 + 192 * 32 * 25,) * 2,
    ("inception3a", "alternative"): (192 * 64 + (192 * 96 + 96 * 128 * 9)
                                     + (192 * 16 + 16 * 32 * 25) + 192 * 32,) * 2,
    ("5x5-via-1x1", "baseline"): (128 * 256 * 25,) * 2,
    ("5x5-via-1x1", "alternative"): (128 * 32 + 32 * 256 * 25,) * 2,
    ("5x5-branch", "baseline"): (192 * 32 * 25,) * 2,
    ("5x5-branch", "alternative"): (192 * 16 + 16 * 32 * 25,) * 2,
    ("bottleneck", "baseline"): (256 * 256 * 9,) * 2,
    # + BatchNorm weight and bias on 64 + 64 + 256 channels (no MACs)
    ("bottleneck", "alternative"): (256 * 64 + 64 * 64 * 9 + 64 * 256 + 2 * (64 + 64 + 256),
                                    256 * 64 + 64 * 64 * 9 + 64 * 256),
    ("dwsep", "baseline"): (16 * 32 * 9,) * 2,
    ("dwsep", "alternative"): (16 * 9 + 16 * 32,) * 2,
    ("5x5-vs-3x3", "baseline"): (25 * 64 * 64,) * 2,
    ("5x5-vs-3x3", "alternative"): (18 * 64 * 64,) * 2,
    ("7x7-factorized", "baseline"): (49 * 128 * 128,) * 2,
    ("7x7-factorized", "alternative"): (14 * 128 * 128,) * 2,
    ("grouped", "baseline"): (128 * 128 * 9,) * 2,
    ("grouped", "alternative"): (128 * 128 * 9 // 32,) * 2,
}


def test_tiny_run_exits_zero_and_prints_markdown(tiny_run):
    rc, out, err, _ = tiny_run
    assert rc == 0
    assert err == ""                                      # --no-progress: nothing on stderr
    for title in ("### Classic comparisons", "### Theory ratio vs measured ratio",
                  "### Conv time vs kernel size", "### 1x1 vs 3x3 vs depthwise 3x3"):
        assert title in out
    assert "| Case | Variant |" in out and "| --- |" in out
    for fact in ("# nnlite ", "# backend ", "# threads ", "# BLAS ", "# CPU "):
        assert fact in out
    assert re.search(r"^# threads +1$", out, flags=re.M)
    assert "batch 2" in out


def test_csv_pairs_have_exact_hand_formula_counts(tiny_run):
    rows = [r for r in tiny_run[3] if r["section"] == "pairs"]
    assert {(r["case"], r["role"]) for r in rows} == set(HAND)
    for r in rows:
        n, c, hw = _hw(r)
        params, per_pixel = HAND[(r["case"], r["role"])]
        assert n == 2
        assert int(r["params"]) == params, r["case"]
        assert int(r["macs"]) == n * hw * per_pixel, r["case"]     # 'same' convs: OH*OW == H*W
        assert r["macs"].isdigit() and r["params"].isdigit()       # exact integers, no floats
        assert float(r["fwd_s"]) > 0 and float(r["fwdbwd_s"]) > 0


def test_csv_counts_equal_nnlite_summary_on_the_same_modules(tiny_run):
    cfg = bench.Config(quick=True, scale=0.2, batch=2).resolved()
    rows = {(r["case"], r["role"]): r for r in tiny_run[3] if r["section"] == "pairs"}
    for pair in bench.pairs(cfg):
        for role, v in (("baseline", pair.base), ("alternative", pair.alt)):
            rep = nnlite.summary(v.build(), (2,) + v.chw, count_all=True)
            row = rows[(pair.key, role)]
            assert (int(row["params"]), int(row["macs"]), int(row["flops"]),
                    int(row["bytes_moved"])) == (rep.params, rep.macs, rep.flops,
                                                 rep.bytes_moved)
            assert row["output_shape"] == "x".join(map(str, rep.output_shape))


def test_csv_sweeps_have_exact_counts(tiny_run):
    rows = tiny_run[3]
    ks = [r for r in rows if r["section"] == "k-sweep"]
    assert [int(r["kernel"]) for r in ks] == [1, 3, 5, 7]
    for r in ks:
        n, c, hw = _hw(r)
        k = int(r["kernel"])
        assert int(r["params"]) == 64 * 64 * k * k
        assert int(r["macs"]) == n * hw * 64 * 64 * k * k
        assert float(r["macs_vs_ref"]) == pytest.approx(k * k)
        if k == 1:
            assert r["im2col_s"] == "" and float(r["im2col_share"]) == 0.0
        else:
            assert float(r["im2col_s"]) > 0 and 0 < float(r["im2col_share"])
    chans = [r for r in rows if r["section"] == "channels"]
    assert len(chans) == 9
    for r in chans:
        n, c, hw = _hw(r)
        per = {"1x1": c * c, "3x3": 9 * c * c, "depthwise": 9 * c}[r["variant"].split()[0]]
        assert int(r["params"]) == per and int(r["macs"]) == n * hw * per


def test_ratios_are_from_the_counts(tiny_run):
    rows = {(r["case"], r["role"]): r for r in tiny_run[3] if r["section"] == "pairs"}
    for case in {c for c, _ in rows}:
        base, alt = rows[(case, "baseline")], rows[(case, "alternative")]
        assert float(alt["macs_vs_ref"]) == pytest.approx(int(alt["macs"]) / int(base["macs"]),
                                                          rel=1e-5)
        assert float(base["macs_vs_ref"]) == 1.0
        assert float(alt["time_vs_ref"]) > 0


def test_plot_writes_a_png(tmp_path, restore_threads):
    pytest.importorskip("matplotlib")
    png = tmp_path / "out.png"
    rc = main(["bench"] + TINY + ["--only", "dwsep,grouped,k-sweep,channels", "--threads", "1",
                                  "--plot", str(png)])
    assert rc == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1300, 900)


def test_plot_without_matplotlib_fails_before_measuring(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    rc = main(["bench", "--quick", "--plot", str(tmp_path / "x.png")])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "matplotlib" in err and "pip install" in err
    assert out == "" and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("args, words", [
    (["--batch", "0"], ["batch", "0"]),
    (["--repeat", "0"], ["repeat", "0"]),
    (["--scale", "-1"], ["scale", "-1"]),
    (["--only", "dwsep,nope"], ["nope", "inception3a"]),
])
def test_bad_options_are_rejected_with_the_values(args, words, capsys):
    rc = main(["bench", "--no-progress"] + args)
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    for w in words:
        assert w in err


# ------------------------------------------------------------------------------ helpers
def test_interleave_runs_round_robin_after_warmup():
    calls = []
    entries = [(name, (lambda name=name: calls.append(name))) for name in "abc"]
    cfg = bench.Config(repeat=3, warmup=2, min_time=0).resolved()
    times = bench.interleave(entries, cfg, bench.Progress(0, enabled=False))
    assert calls == list("aabbcc") + list("abc") * 3
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_median_spread_and_paired_ratio():
    assert bench.median([3.0, 1.0, 2.0]) == 2.0
    assert bench.spread([1.0]) == 0.0
    assert bench.spread([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx((4 - 2) / 3)
    # paired: the per-round ratios are all 2 although the rounds differ 10x
    assert bench.paired_ratio([2.0, 20.0, 4.0], [1.0, 10.0, 2.0]) == 2.0


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_counts_every_step(monkeypatch, restore_threads):
    nnlite.set_num_threads(1)
    monkeypatch.setitem(sys.modules, "tqdm", None)         # the plain updating line
    seen = {}

    class Spy(bench.Progress):
        def close(self):
            seen["done"], seen["total"] = self.done, self.total
            super().close()

    monkeypatch.setattr(bench, "Progress", Spy)
    stream = _TTY()
    cfg = bench.Config(quick=True, scale=0.2, repeat=1, only=("dwsep", "k-sweep", "channels"),
                       min_time=0)
    bench.run(cfg, progress_stream=stream)
    assert seen["done"] == seen["total"] > 0
    text = stream.getvalue()
    assert text.count("\r") >= 2 and "nnlite bench [" in text and text.endswith("\r")


# the write-ups' own numbers (GoogLeNet's Inception 3a and its 5x5 branch on 28x28x192, the
# 1x1-convolution article's 5x5 on 100x100x128, the ResNet bottleneck on 56x56x256), typed in as
# the articles and docs/classic_costs.md print them; depthwise-separable 16->32 on the bench's
# 112x112 map by the closed-form count (standard: H*W*F*C*9; separable: H*W*C*9 + H*W*C*F)
WRITEUPS = {
    "inception3a": (303_464_448, 128_049_152),
    "5x5-via-1x1": (8_192_000_000, 2_088_960_000),
    "5x5-branch": (120_422_400, 12_443_648),
    "bottleneck": (1_849_688_064, 218_365_952),
    "dwsep": (112 * 112 * 32 * 16 * 9, 112 * 112 * 16 * 9 + 112 * 112 * 16 * 32),
}


def test_quick_config_keeps_the_writeups_geometries():
    cfg = bench.Config(quick=True).resolved()
    assert cfg.scale == 1.0 and cfg.repeat == 3
    chw = {p.key: p.base.chw for p in bench.pairs(cfg)}
    assert chw["inception3a"] == chw["5x5-branch"] == (192, 28, 28)
    assert chw["5x5-via-1x1"] == (128, 100, 100)
    assert chw["bottleneck"] == (256, 56, 56)
    assert chw["dwsep"] == (16, 112, 112)
    for pair in bench.pairs(bench.Config(quick=True, only=tuple(WRITEUPS)).resolved()):
        macs = tuple(nnlite.summary(v.build(), (1,) + v.chw).macs for v in (pair.base, pair.alt))
        assert macs == WRITEUPS[pair.key], pair.key


def test_quick_cli_table_and_csv_carry_the_writeups_numbers(tmp_path, capsys, restore_threads):
    path = tmp_path / "q.csv"
    assert main(["bench", "--quick", "--repeat", "1", "--no-progress", "--only",
                 ",".join(WRITEUPS), "--csv", str(path)]) == 0
    out = capsys.readouterr().out
    rows = {(r["case"], r["role"]): r for r in csv.DictReader(open(path, newline=""))}
    for case, (base, alt) in WRITEUPS.items():
        assert int(rows[(case, "baseline")]["macs"]) == base
        assert int(rows[(case, "alternative")]["macs"]) == alt
        assert f"{base:,}" in out and f"{alt:,}" in out


def test_algorithm_sweep_lists_only_the_algorithms_that_run(monkeypatch, restore_threads):
    """'direct' for the depthwise conv and, by the small-map or the stride-phase kernel, for the
    dense convs; each listed (conv, algorithm) really calls that algorithm's kernel (spied on at the
    kernel entry points, not through the resolver)."""
    if "direct" not in nnlite.available_conv_algorithms():
        pytest.skip("this build has no implicit/direct kernels")
    from nnlite.kernels import _conv_gemm, conv_cython, conv_winograd

    nnlite.set_num_threads(1)
    cfg = bench.Config(quick=True, scale=0.2, repeat=1, min_time=0, progress=False,
                       only=("algorithms",)).resolved()
    variants = bench.algorithm_variants(cfg, bench.conv_algorithms())
    listed = {(v.label, v.algorithm) for v in variants}
    assert {a for lab, a in listed if lab.startswith("depthwise")} == {"im2col", "implicit",
                                                                       "direct", "winograd"}
    assert {a for lab, a in listed if lab.startswith("3x3")} == {"im2col", "implicit",
                                                                 "direct", "winograd"}
    assert {a for lab, a in listed if lab[0] in "157"} == {"im2col", "implicit", "direct"}
    assert len(listed) == len(variants)

    called = []
    fast = conv_cython._convfast

    class Spy:
        def __getattr__(self, name):
            return getattr(fast, name)

        def conv2d_implicit(self, *a, **k):
            called.append("implicit")
            return fast.conv2d_implicit(*a, **k)

        def conv2d_depthwise(self, *a, **k):
            called.append("direct")
            return fast.conv2d_depthwise(*a, **k)

        def conv2d_small(self, *a, **k):
            called.append("direct")
            return fast.conv2d_small(*a, **k)

        def conv2d_phase(self, *a, **k):
            called.append("direct")
            return fast.conv2d_phase(*a, **k)

        def conv2d_winograd(self, *a, **k):
            called.append("winograd")
            return fast.conv2d_winograd(*a, **k)

    gemm_forward = _conv_gemm.forward

    def im2col_forward(*a, **k):
        called.append("im2col")
        return gemm_forward(*a, **k)

    pointwise_forward = conv_cython._pointwise_forward

    def pointwise_im2col(*a, **k):
        # 'im2col' on a 1x1 stride-1 conv: the GEMM on the image, the whole batch at once
        called.append("im2col")
        return pointwise_forward(*a, **k)

    monkeypatch.setattr(conv_cython, "_convfast", Spy())
    monkeypatch.setattr(conv_winograd, "_convfast", Spy())
    monkeypatch.setattr(_conv_gemm, "forward", im2col_forward)
    monkeypatch.setattr(conv_cython, "_pointwise_forward", pointwise_im2col)
    for v in variants:
        called.clear()
        model = v.build().eval()
        x = nnlite.tensor(np.ones((1,) + v.chw, np.float32))
        with nnlite.conv_algorithm(v.algorithm), nnlite.no_grad():
            model(x)
        assert called == [v.algorithm], (v.label, v.algorithm, called)

    study = bench.run(cfg)
    assert [(m.variant.label, m.variant.algorithm) for m in study.algorithms] == [
        (v.label, v.algorithm) for v in variants]
    assert all(not m.error for m in study.algorithms)


def test_conv_algorithms_are_the_builds_selectable_ones():
    assert bench.conv_algorithms() == [a for a in nnlite.available_conv_algorithms()
                                       if a != "auto"]


def test_oversubscription_warning():
    assert bench.oversubscription_warning(5.0, cores=2, threads=2).startswith("load average 5.0")
    assert bench.oversubscription_warning(5.0, cores=2, threads=1) is None
    assert bench.oversubscription_warning(1.0, cores=2, threads=2) is None


# ------------------------------------------------------------------------------ summary
def test_summary_cli_builtin_model_matches_the_report(capsys):
    assert main(["summary", "small_cnn", "--input-shape", "2,1,8,8"]) == 0
    out = capsys.readouterr().out
    rep = nnlite.summary(nnlite.models.small_cnn(), (2, 1, 8, 8))
    assert f"params {rep.params:,}" in out and f"MACs {rep.macs:,}" in out
    assert out.splitlines()[0].split()[:3] == ["Layer", "Type", "Output"]


def test_summary_cli_markdown_and_csv(tmp_path, capsys):
    path = tmp_path / "s.csv"
    assert main(["summary", "tutorial_inception_net", "--markdown", "--count-all",
                 "--csv", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| Layer | Type |")
    rep = nnlite.summary(nnlite.models.tutorial_inception_net(), (1, 1, 28, 28), count_all=True)
    total = [r for r in csv.DictReader(open(path)) if r["name"] == "total"][0]
    assert (int(total["params"]), int(total["macs"]), int(total["flops"])) == (
        rep.params, rep.macs, rep.flops)


@pytest.mark.parametrize("args, words", [
    (["nosuchnet"], ["nosuchnet", "googlenet"]),
    (["resnet18", "--input-shape", "1,x"], ["1,x", "--input-shape"]),
    (["resnet18", "--input-shape", "1,3"], ["resnet18", "(1, 3)"]),
    (["missing.onnx"], ["no such file", "missing.onnx"]),
])
def test_summary_cli_errors(args, words, capsys):
    assert main(["summary"] + args) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err


def _tiny_onnx(path):
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["y"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_summary_cli_onnx_file(tmp_path, capsys):
    path = tmp_path / "tiny.onnx"
    _tiny_onnx(path)
    assert main(["summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1x4x8x8" in out and "params 108" in out
    # 'same' 3x3 conv 3->4 on 8x8: 64 pixels x 4 filters x 27 taps
    assert f"MACs {64 * 4 * 27:,}" in out
    assert re.search(r"^Conv_0 +Conv +1x4x8x8 +108 +6,912 ", out, flags=re.M)


def test_summary_of_an_onnx_graph_counts_every_node():
    """Per-node MACs/FLOPs of an imported graph against closed-form counts, and against
    nnlite.summary of the same network built from nnlite layers (the module-level formulas)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    import nnlite.nn as nn
    import nnlite.onnx as nnonnx

    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    inits = [init("w1", 6, 1, 3, 5), init("b1", 6),                     # grouped 3->6, 3x5
             init("g", 6), init("be", 6), init("mu", 6), init("var", 6),
             init("wt", 6, 2, 2, 3),                                    # ConvTranspose 6->4, g=2
             init("wf", 10, 4), init("bf", 10), init("wm", 10, 7)]
    inits[5] = numpy_helper.from_array(np.abs(numpy_helper.to_array(inits[5])) + 0.5, "var")
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], group=3, strides=[2, 1],
                         pads=[1, 2, 1, 2], name="conv1"),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "mu", "var"], ["bn"],
                         name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("ConvTranspose", ["r", "wt"], ["ct"], group=2, strides=[2, 2],
                         name="deconv"),
        helper.make_node("GlobalAveragePool", ["ct"], ["gp"], name="gap"),
        helper.make_node("Flatten", ["gp"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["fc"], transB=1, name="fc"),
        helper.make_node("MatMul", ["fc", "wm"], ["y"], name="mm"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [2, 3, 9, 7])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [2, 7])], inits)
    model = nnonnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
                        .SerializeToString())
    rep = nnlite.summary(model, (2, 3, 9, 7), count_all=True)
    rows = {r.name: r for r in rep.rows}
    assert list(rows) == ["conv1", "bn", "relu", "deconv", "gap", "flat", "fc", "mm"]
    # conv1: out (2, 6, 5, 7); each output element takes (3/3)*3*5 products
    assert rows["conv1"].output_shape == (2, 6, 5, 7)
    assert rows["conv1"].macs == 2 * 6 * 5 * 7 * 15 and rows["conv1"].params == 6 * 15 + 6
    # deconv: every input element (2*6*5*7) scattered through (4/2)*2*3 taps
    assert rows["deconv"].output_shape == (2, 4, 10, 15)
    assert rows["deconv"].macs == 2 * 6 * 5 * 7 * 12
    assert rows["fc"].macs == 2 * 4 * 10 and rows["mm"].macs == 2 * 10 * 7
    assert rows["bn"].params == 24 and rows["bn"].flops == 2 * 2 * 6 * 5 * 7
    assert rows["gap"].flops == 2 * 4 * 10 * 15 and rows["flat"].flops == 0
    assert rep.macs == sum(r.macs for r in rows.values()) and rep.params == sum(
        int(np.prod(numpy_helper.to_array(t).shape)) for t in inits)

    # the same network from nnlite layers: the module formulas agree
    net = nn.Sequential(nn.Conv2d(3, 6, (3, 5), stride=(2, 1), padding=(1, 2), groups=3),
                        nn.BatchNorm2d(6), nn.ReLU(),
                        nn.ConvTranspose2d(6, 4, (2, 3), stride=2, groups=2, bias=False),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10),
                        nn.Linear(10, 7, bias=False))
    ref = nnlite.summary(net, (2, 3, 9, 7), count_all=True)
    assert (ref.macs, ref.output_shape) == (rep.macs, rep.output_shape)
    assert rep.params == ref.params + 2 * 6    # ONNX holds BN's running mean/var as initializers
    assert ref.flops == rep.flops


def test_summary_cli_onnx_without_the_onnx_package(tmp_path, monkeypatch, capsys):
    path = tmp_path / "tiny.onnx"
    _tiny_onnx(path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["summary", str(path)]) == 2
    assert "pip install" in capsys.readouterr().err


def test_timing_interleave_shuffles_the_order_and_times_each_candidate():
    # benchmarks/_timing.interleave: every round is a permutation of the candidates, no
    # candidate runs twice in a row, over many rounds each one follows every other; a fake
    # clock advanced by each call by its own amount checks that times land under their names
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    try:
        import _timing
    finally:
        sys.path.pop(0)
    now, calls = [0.0], []

    def make(name, cost):
        def fn():
            calls.append(name)
            now[0] += cost
        return fn
    costs = {"a": 1.0, "b": 2.0, "c": 4.0, "d": 8.0}
    times = _timing.interleave({k: make(k, v) for k, v in costs.items()}, repeat=40,
                               warmup=1, clock=lambda: now[0])
    assert times == {k: [v] * 40 for k, v in costs.items()}
    timed = calls[8:]                                     # after warm-up and sizing
    rounds = [timed[i:i + 4] for i in range(0, len(timed), 4)]
    assert len(rounds) == 40 and all(sorted(r) == list("abcd") for r in rounds)
    assert all(x != y for x, y in zip(timed, timed[1:]))
    assert set(zip(timed, timed[1:])) == {(x, y) for x in "abcd" for y in "abcd" if x != y}
    assert len({tuple(r) for r in rounds}) > 4            # not a fixed order or a rotation
    assert _timing.interleave({}, repeat=3) == {}
