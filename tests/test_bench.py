"""``nnlite bench`` and ``nnlite summary``: CLI runs at tiny sizes, exact CSV counts (equal to
nnlite.summary on the same modules and to closed-form formulas), markdown/plot options, the
timing helpers, algorithm discovery and error paths. No timed assertions."""
import csv
import io
import re
import sys

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


def test_algorithm_sweep_picks_up_selectable_algorithms(monkeypatch, restore_threads):
    nnlite.set_num_threads(1)
    import contextlib

    used = []

    @contextlib.contextmanager
    def conv_algorithm(name):
        if name not in ("im2col", "direct"):
            raise ValueError(f"unknown conv algorithm {name!r}")
        used.append(name)
        yield

    monkeypatch.setattr(nnlite, "conv_algorithm", conv_algorithm, raising=False)
    assert bench.conv_algorithms() == ["im2col", "direct"]
    study = bench.run(bench.Config(quick=True, scale=0.2, repeat=1,
                                   only=("algorithms", "k-sweep", "dwsep"), min_time=0,
                                   progress=False))
    algos = [(m.variant.label, m.variant.algorithm) for m in study.algorithms]
    assert ("3x3 64->64", "direct") in algos and ("3x3 64->64", "im2col") in algos
    assert {"im2col", "direct"} <= set(used)
    assert "Per conv algorithm (forward)" in study.to_text()
    # the k-sweep pins im2col (its im2col share is then the share of that algorithm); the pairs
    # run with the default algorithm (no selector call with None)
    assert {m.variant.algorithm for m in study.k_sweep} == {"im2col"}
    assert "fixed channels, im2col algorithm" in study.to_text()
    assert study.pairs[0].base.fwd and study.pairs[0].alt.fwdbwd
    rows = [r for r in csv.DictReader(io.StringIO(study.to_csv()))]
    assert {r["algorithm"] for r in rows if r["section"] == "algorithms"} == {"im2col", "direct"}


def test_without_a_selector_the_one_algorithm_is_reported():
    if hasattr(nnlite, "conv_algorithm"):
        pytest.skip("this build has nnlite.conv_algorithm")
    assert bench.conv_algorithms() == ["im2col"]


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
    assert "counts its parameters exactly but not its MACs" in out


def test_summary_cli_onnx_without_the_onnx_package(tmp_path, monkeypatch, capsys):
    path = tmp_path / "tiny.onnx"
    _tiny_onnx(path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["summary", str(path)]) == 2
    assert "pip install" in capsys.readouterr().err
