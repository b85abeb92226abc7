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
