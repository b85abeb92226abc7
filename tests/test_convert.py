"""python -m nnlite.convert: PyTorch checkpoints -> nnlite .npz (torch only at conversion)."""
import subprocess
import sys

import numpy as np
import pytest

import nnlite
from nnlite import convert, nn


def test_missing_torch_gives_a_clear_message(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    ck = tmp_path / "m.pt"
    ck.write_bytes(b"x")
    assert convert.main([str(ck), str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert "needs PyTorch" in err and "pip install torch" in err


def test_help_runs_without_torch():
    r = subprocess.run([sys.executable, "-m", "nnlite.convert", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "--trust-pickle" in r.stdout


# ------------------------------------------------------------------ with torch
@pytest.fixture(scope="module")
def torch_model():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tnn = torch.nn
    m = tnn.Sequential(tnn.Conv2d(3, 4, 3, padding=1), tnn.BatchNorm2d(4), tnn.ReLU(),
                       tnn.Flatten(), tnn.Linear(4 * 5 * 5, 3))
    with torch.no_grad():
        m[1].running_mean.copy_(torch.randn(4) * 0.1)
        m[1].running_var.copy_(torch.rand(4) + 0.5)
        m[1].num_batches_tracked.fill_(5)
    return torch, m.eval()


def _nnlite_twin():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 5 * 5, 3)).eval()


def _check_arrays(arrays, tmodel):
    sd = tmodel.state_dict()
    assert list(arrays) == list(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(arrays[k], v.numpy(), err_msg=k)
        assert arrays[k].dtype == v.numpy().dtype
    assert arrays["1.num_batches_tracked"].shape == () and int(arrays["1.num_batches_tracked"]) \
        == 5


@pytest.mark.torch
def test_state_dict_file_converts_and_gives_identical_outputs(torch_model, tmp_path):
    torch, tm = torch_model
    ck, out = tmp_path / "sd.pt", tmp_path / "sd.npz"
    torch.save(tm.state_dict(), ck)
    assert convert.main([str(ck), str(out)]) == 0
    arrays = nnlite.load(out)
    _check_arrays(arrays, tm)
    model = _nnlite_twin()
    model.load_state_dict(arrays)
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    with torch.no_grad():
        ref = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(nnlite.tensor(x)).data, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.torch
def test_checkpoint_dict_dataparallel_prefix_and_key(torch_model, tmp_path):
    torch, tm = torch_model
    sd = {"module." + k: v for k, v in tm.state_dict().items()}
    ck = tmp_path / "ck.pt"
    torch.save({"epoch": 3, "state_dict": sd, "optimizer": {"lr": 0.1}}, ck)
    assert convert.main([str(ck), str(tmp_path / "a.npz")]) == 0
    _check_arrays(nnlite.load(tmp_path / "a.npz"), tm)
    torch.save({"nets": {"student": tm.state_dict()}}, ck)
    assert convert.main([str(ck), str(tmp_path / "b.npz"), "--key", "nets.student"]) == 0
    _check_arrays(nnlite.load(tmp_path / "b.npz"), tm)
    assert convert.main([str(ck), str(tmp_path / "c.npz"), "--key", "nets.teacher"]) == 2


@pytest.mark.torch
def test_whole_module_needs_trust_pickle(torch_model, tmp_path, capsys):
    torch, tm = torch_model
    ck = tmp_path / "whole.pt"
    torch.save(tm, ck)
    assert convert.main([str(ck), str(tmp_path / "w.npz")]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert not (tmp_path / "w.npz").exists()
    assert convert.main([str(ck), str(tmp_path / "w.npz"), "--trust-pickle"]) == 0
    _check_arrays(nnlite.load(tmp_path / "w.npz"), tm)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive(torch_model, tmp_path):
    torch, tm = torch_model
    ck = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(tm), ck)
    assert convert.main([str(ck), str(tmp_path / "ts.npz")]) == 0
    _check_arrays(nnlite.load(tmp_path / "ts.npz"), tm)


@pytest.mark.torch
def test_half_precision_becomes_float32(torch_model, tmp_path):
    torch, tm = torch_model
    ck = tmp_path / "h.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in tm.state_dict().items()},
               ck)
    assert convert.main([str(ck), str(tmp_path / "h.npz")]) == 0
    arrays = nnlite.load(tmp_path / "h.npz")
    assert arrays["0.weight"].dtype == np.float32
    np.testing.assert_allclose(arrays["0.weight"], tm.state_dict()["0.weight"].numpy(),
                               rtol=1e-3, atol=1e-3)


@pytest.mark.torch
def test_float8_and_sparse_tensors_convert(torch_model, tmp_path, capsys):
    # float8 weights became float32 like half ones, and a sparse tensor dense; both raised a
    # bare TypeError from Tensor.numpy() (a traceback, no key named)
    torch, tm = torch_model
    f8 = getattr(torch, "float8_e4m3fn", None)
    if f8 is None:
        pytest.skip("this torch has no float8")
    sd = tm.state_dict()
    ck = tmp_path / "f8.pt"
    torch.save({"0.weight": sd["0.weight"].to(f8), "4.weight": sd["4.weight"].to_sparse(),
                "0.bias": sd["0.bias"]}, ck)
    assert convert.main([str(ck), str(tmp_path / "f8.npz")]) == 0, capsys.readouterr().err
    arrays = nnlite.load(tmp_path / "f8.npz")
    assert arrays["0.weight"].dtype == np.float32
    np.testing.assert_array_equal(arrays["0.weight"], sd["0.weight"].to(f8).float().numpy())
    np.testing.assert_array_equal(arrays["4.weight"], sd["4.weight"].numpy())


@pytest.mark.torch
def test_model_check_reports_mismatch(torch_model, tmp_path, capsys):
    torch, tm = torch_model
    ck = tmp_path / "sd.pt"
    torch.save(tm.state_dict(), ck)
    assert convert.main([str(ck), str(tmp_path / "x.npz"), "--model", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert "do not fit nnlite.models.resnet18" in err
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.torch
def test_unreadable_inputs(tmp_path, capsys):
    pytest.importorskip("torch")
    assert convert.main([str(tmp_path / "missing.pt"), str(tmp_path / "o.npz")]) == 2
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello world")
    assert convert.main([str(junk), str(tmp_path / "o.npz")]) == 2
    assert "not a PyTorch checkpoint" in capsys.readouterr().err


@pytest.mark.torch
def test_module_entry_point(torch_model, tmp_path):
    torch, tm = torch_model
    ck = tmp_path / "sd.pt"
    torch.save(tm.state_dict(), ck)
    r = subprocess.run([sys.executable, "-m", "nnlite.convert", str(ck),
                        str(tmp_path / "o.npz")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "wrote 9 arrays" in r.stdout
