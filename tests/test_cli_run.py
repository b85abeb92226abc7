"""``nnlite run``: ONNX files and built-in models with .npz weights; output, top-5, latency."""
import re
import subprocess
import sys

import numpy as np
import pytest

import nnlite
from nnlite import cli, models


@pytest.fixture(autouse=True)
def restore_threads():
    prev = nnlite.get_num_threads()
    yield
    nnlite.set_num_threads(prev)


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    """resnet18 weights (.npz) and a 32x32 input (.npy)."""
    d = tmp_path_factory.mktemp("run")
    nnlite.manual_seed(0)
    model = models.resnet18()
    nnlite.save(model.state_dict(), d / "r18.npz")
    x = np.random.default_rng(0).standard_normal((3, 32, 32)).astype(np.float32)
    np.save(d / "x.npy", x)
    return d, model.eval(), x


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_builtin_with_weights_prints_shape_top5_latency(small_weights, capsys):
    d, model, x = small_weights
    code, out, err = run(["run", "resnet18", "--weights", str(d / "r18.npz"), "--input",
                          str(d / "x.npy"), "--threads", "1", "--repeat", "2"], capsys)
    assert code == 0, err
    assert "output      (1, 1000) float32" in out
    with nnlite.no_grad():
        ref = model(nnlite.tensor(x[None])).data[0]
    top = [int(i) for i in re.findall(r"(\d+) \(", out.split("top-5 [0]")[1].splitlines()[0])]
    assert top == list(np.argsort(-ref, kind="stable")[:5])
    m = re.search(r"latency     median ([\d.]+) ms, min ([\d.]+) ms over 2 runs \(1 threads", out)
    assert m and float(m.group(2)) <= float(m.group(1))


def test_batch_tiles_the_input_and_plain_mode(small_weights, capsys):
    d, _, _ = small_weights
    code, out, err = run(["run", "resnet18", "--weights", str(d / "r18.npz"), "--input",
                          str(d / "x.npy"), "--batch", "3", "--repeat", "1", "--plain"], capsys)
    assert code == 0, err
    assert "(3, 3, 32, 32)" in out and "output      (3, 1000)" in out and ", plain" in out
    assert out.count("top-5 [") == 3


def test_onnx_model(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import helper as oh, numpy_helper as onh, TensorProto as TP

    w = np.random.default_rng(0).standard_normal((10, 12)).astype(np.float32)
    nodes = [oh.make_node("Flatten", ["x"], ["f"]),
             oh.make_node("Gemm", ["f", "w"], ["y"], transB=1)]
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", TP.FLOAT, ["n", 3, 2, 2])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, None)],
                          [onh.from_array(w, "w")])
    path = tmp_path / "m.onnx"
    path.write_bytes(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
                     .SerializeToString())
    x = np.random.default_rng(1).standard_normal((3, 2, 2))       # float64: cast to float32
    np.save(tmp_path / "x.npy", x)
    code, out, err = run(["run", str(path), "--input", str(tmp_path / "x.npy"), "--repeat", "1",
                          "--batch", "2"], capsys)
    assert code == 0, err
    assert "(ONNX, opset 17)" in out and "output      (2, 10) float32" in out
    ref = w @ x.reshape(-1).astype(np.float32)
    best = int(re.search(r"top-5 \[0\]   (\d+)", out).group(1))
    assert best == int(np.argmax(ref))
    assert onnx is not None


@pytest.mark.parametrize("argv, message", [
    (["run", "resnet18", "--input", "X"], "needs --weights"),
    (["run", "vgg99", "--input", "X", "--random-init"], "unknown model 'vgg99'"),
    (["run", "missing.onnx", "--input", "X"], "no such ONNX file"),
    (["run", "resnet18", "--random-init", "--input", "/nonexistent.npy"], "no such file"),
    (["run", "resnet18", "--random-init", "--input", "X", "--repeat", "0"], "--repeat"),
    (["run", "resnet18", "--random-init", "--input", "X", "--threads", "0"], "--threads"),
])
def test_errors_exit_2_with_a_message(argv, message, small_weights, capsys):
    d, _, _ = small_weights
    argv = [str(d / "x.npy") if a == "X" else a for a in argv]
    code, out, err = run(argv, capsys)
    assert code == 2 and message in err, err


def test_bad_input_array(tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((2, 2)))
    code, _, err = run(["run", "resnet18", "--random-init", "--input",
                        str(tmp_path / "bad.npy")], capsys)
    assert code == 2 and "(C, H, W) or (N, C, H, W)" in err
    (tmp_path / "empty.npy").write_bytes(b"")
    code, _, err = run(["run", "resnet18", "--random-init", "--input",
                        str(tmp_path / "empty.npy")], capsys)
    assert code == 2 and "not a readable .npy" in err
    (tmp_path / "junk.npy").write_bytes(b"junk")
    code, _, err = run(["run", "resnet18", "--random-init", "--input",
                        str(tmp_path / "junk.npy")], capsys)
    assert code == 2 and "not a readable .npy" in err


def test_wrong_weights_file(small_weights, capsys):
    d, _, _ = small_weights
    code, _, err = run(["run", "resnet50", "--weights", str(d / "r18.npz"), "--input",
                        str(d / "x.npy")], capsys)
    assert code == 2 and "Missing key(s)" in err


def test_info_lists_onnx_support_and_run_help():
    r = subprocess.run([sys.executable, "-m", "nnlite", "info"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "ONNX import" in r.stdout
    r = subprocess.run([sys.executable, "-m", "nnlite", "run", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "--weights" in r.stdout and "--repeat" in r.stdout


# ------------------------------------------------------------------ issue #19: real models
def _onnx_file(tmp_path, nodes, inputs, inits, outputs, name="m.onnx"):
    onnx = pytest.importorskip("onnx")
    from onnx import helper as oh, numpy_helper as onh, TensorProto as TP

    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info(n, TP.FLOAT, s)
                                       for n, s in inputs],
                          [oh.make_tensor_value_info(o, TP.FLOAT, None) for o in outputs],
                          [onh.from_array(v, k) for k, v in inits.items()])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 10)
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return str(path)


def _conv_model(tmp_path, shape=("n", 3, 6, 5)):
    pytest.importorskip("onnx")
    from onnx import helper as oh

    rng = np.random.default_rng(3)
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "k": rng.standard_normal((1, 4, 1, 1)).astype(np.float32)}
    nodes = [oh.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="se_conv"),
             oh.make_node("Add", ["c", "k"], ["y"])]
    return _onnx_file(tmp_path, nodes, [("x", list(shape))], inits, ["y"])


def test_plan_failure_names_the_node_and_points_to_plain(tmp_path, capsys, monkeypatch):
    from nnlite._infer import kernels as K

    path = _conv_model(tmp_path)
    np.save(tmp_path / "x.npy", np.ones((3, 6, 5), np.float32))
    code, out, err = run(["run", path, "--input", str(tmp_path / "x.npy"), "--repeat", "1"],
                         capsys)
    assert code == 0, err
    assert "output      (1, 4, 6, 5) float32  'y'" in out

    def broken(self, *args):
        raise ValueError("simulated kernel limitation")
    monkeypatch.setattr(K.ConvKernel, "__init__", broken)
    code, out, err = run(["run", path, "--input", str(tmp_path / "x.npy"), "--repeat", "1"],
                         capsys)
    assert code == 2 and not out
    assert "inference plan failed" in err and "Conv node 'se_conv'" in err, err
    assert "simulated kernel limitation" in err and "--plain" in err, err
    code, out, err = run(["run", path, "--input", str(tmp_path / "x.npy"), "--repeat", "1",
                          "--plain"], capsys)
    assert code == 0 and ", plain" in out, err


def test_a_model_error_is_not_blamed_on_the_plan(tmp_path, capsys):
    path = _conv_model(tmp_path, shape=[1, 3, 6, 5])
    np.save(tmp_path / "x.npy", np.ones((3, 7, 5), np.float32))   # wrong H: the model fails
    code, out, err = run(["run", path, "--input", str(tmp_path / "x.npy")], capsys)
    assert code == 2 and "expects shape (1, 3, 6, 5)" in err and "--plain" not in err, err


def _numbers(line):
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", line)]


def test_every_output_is_shown_as_what_it_is_and_saved(tmp_path, capsys):
    """Logits (2-D: softmax p=), probabilities (2-D rows summing to 1: no p=), a 4-D map
    (min/max/mean and its top values with their (c, h, w) index) and a 1-D output."""
    pytest.importorskip("onnx")
    from onnx import helper as oh

    rng = np.random.default_rng(5)
    inits = {"w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
             "g": rng.standard_normal((7, 24)).astype(np.float32),
             "flat": np.array([-1], np.int64)}
    nodes = [oh.make_node("Conv", ["x", "w"], ["feat/map"], pads=[1, 1, 1, 1]),
             oh.make_node("Flatten", ["x"], ["f"]),
             oh.make_node("Gemm", ["f", "g"], ["logits"], transB=1),
             oh.make_node("Softmax", ["logits"], ["probs"], axis=1),
             oh.make_node("Reshape", ["logits", "flat"], ["best"])]
    path = _onnx_file(tmp_path, nodes, [("x", ["n", 2, 3, 4])], inits,
                      ["logits", "probs", "feat/map", "best"])
    x = rng.standard_normal((2, 2, 3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    npz = tmp_path / "outs.npz"
    code, out, err = run(["run", path, "--input", str(tmp_path / "x.npy"), "--repeat", "1",
                          "--output", str(npz)], capsys)
    assert code == 0, err
    import nnlite.onnx

    want = nnlite.onnx.load(path)(x)
    want = [t.data for t in want]
    sections = re.split(r"\n(?=output\[\d\])", out.split("input       ")[1])[1:]
    assert len(sections) == 4, out
    logits, probs, fmap, best = sections
    assert logits.startswith("output[0]   (2, 7) float32  'logits'")
    assert logits.count("p=") == 2 * 5
    top = int(re.search(r"top-5 \[1\]   (\d+) ", logits).group(1))
    assert top == int(np.argmax(want[0][1]))
    assert probs.startswith("output[1]   (2, 7) float32  'probs'") and "p=" not in probs
    assert "rows are probabilities" in probs
    first = re.search(r"top-5 \[0\]   (\d+) \(([-\d.e]+)\)", probs)
    assert int(first.group(1)) == int(np.argmax(want[1][0]))
    assert float(first.group(2)) == pytest.approx(want[1][0].max(), rel=1e-3)
    assert fmap.startswith("output[2]   (2, 3, 3, 4) float32  'feat/map'") and "p=" not in fmap
    lo, hi, mean = _numbers(re.search(r"values +(.*)", fmap).group(1))
    assert (lo, hi, mean) == pytest.approx(
        (want[2].min(), want[2].max(), want[2].mean()), rel=1e-3, abs=1e-4)
    m = re.search(r"top-5 \[1\]   ([-\d.e]+) at \((\d+), (\d+), (\d+)\)", fmap)
    assert float(m.group(1)) == pytest.approx(want[2][1].max(), rel=1e-3)
    assert want[2][1][tuple(int(v) for v in m.groups()[1:])] == want[2][1].max()
    assert best.startswith("output[3]   (14,) float32  'best'") and "p=" not in best
    j = int(np.argmax(want[0]))
    assert f"top-5       {want[0].flat[j]:.4g} at {j}," in best
    assert f"saved       {npz} (logits, probs, feat_map, best)" in out
    saved = np.load(npz)
    assert list(saved.keys()) == ["logits", "probs", "feat_map", "best"]
    for key, ref in zip(saved.keys(), want):
        np.testing.assert_allclose(saved[key], ref, rtol=1e-5, atol=1e-6)


def test_output_report_edge_cases():
    import io
    from nnlite.commands import run as R

    def text(y, k=3):
        buf = io.StringIO()
        R._report_output(np.asarray(y), k, buf)
        return buf.getvalue()
    t = text(np.array([[1.0, np.nan, 3.0, np.inf]], np.float32), k=4)
    assert "min 1, max 3, mean 2; 2 NaN/inf" in t
    assert "top-4 [0]   3 (inf, p=nan), 2 (3, p=nan), 0 (1, p=nan), 1 (nan, p=nan)" in t
    assert "no finite values (2 NaN/inf)" in text(np.array([np.nan, np.nan]))
    t = text(np.array([[3, 0, 7]], np.uint8))
    assert "min 0, max 7, mean 3.333" in t and "not scores" in t and "p=" not in t
    assert "top-3 [0]   2 (7), 0 (3), 1 (0)" in t
    assert text(np.float32(2.5)).strip() == "values      min 2.5, max 2.5, mean 2.5"
    assert text(np.zeros((0, 4), np.float32)).strip() == "values      empty"
    t = text(np.arange(10, dtype=np.float32).reshape(5, 1, 2, 1), k=1)
    assert "top-1 [3]   7 at (0, 1, 0)" in t and "(1 more images not shown)" in t


@pytest.mark.parametrize("path, message", [("out.npy", "must name an .npz file"),
                                           ("nodir/out.npz", "no such directory")])
def test_output_file_errors(path, message, tmp_path, capsys):
    model = _conv_model(tmp_path)
    np.save(tmp_path / "x.npy", np.ones((3, 6, 5), np.float32))
    code, out, err = run(["run", model, "--input", str(tmp_path / "x.npy"), "--output",
                          str(tmp_path / path)], capsys)
    assert code == 2 and message in err and not out, err


def test_info_lists_every_supported_onnx_op(capsys):
    import nnlite.onnx

    code, out, _ = run(["info"], capsys)
    assert code == 0
    listed = out.split("ONNX ops", 1)[1]
    ops = re.findall(r"[A-Za-z][A-Za-z0-9]*", listed)
    assert ops == nnlite.onnx.supported_ops()
    assert all(len(line) <= 100 for line in out.splitlines() if "ONNX ops" in line
               or line.startswith("    "))
