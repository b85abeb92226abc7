"""nnlite.save / nnlite.load: .npz round trips, load_state_dict, and malformed files."""
import io
import os
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import nnlite
from nnlite import nn


def _state():
    rng = np.random.default_rng(0)
    return OrderedDict([
        ("conv.weight", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
        ("bn.num_batches_tracked", np.array(7, dtype=np.int64)),
        ("fc.bias", rng.standard_normal(5)),                      # float64
        ("mask", np.array([True, False])),
        ("strided", np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]),
        ("empty", np.zeros((0, 3), np.float32)),
    ])


def test_save_load_round_trip_keeps_order_shapes_dtypes(tmp_path):
    sd = _state()
    path = tmp_path / "w.npz"
    nnlite.save(sd, path)
    back = nnlite.load(path)
    assert list(back) == list(sd)
    for k in sd:
        assert back[k].dtype == sd[k].dtype and back[k].shape == sd[k].shape, k
        np.testing.assert_array_equal(back[k], sd[k])
    assert back["bn.num_batches_tracked"].ndim == 0


def test_save_uses_path_exactly_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "weights.bin"
    nnlite.save({"a": np.ones(2)}, str(path))
    assert sorted(os.listdir(tmp_path)) == ["weights.bin"]
    nnlite.save({"b": np.zeros(1)}, path)  # overwrite
    assert list(nnlite.load(path)) == ["b"]


def test_save_load_file_objects():
    buf = io.BytesIO()
    nnlite.save({"x": np.arange(3.0)}, buf)
    buf.seek(0)
    np.testing.assert_array_equal(nnlite.load(buf)["x"], np.arange(3.0))


def test_files_are_plain_numpy_npz(tmp_path):
    path = tmp_path / "w.npz"
    nnlite.save(_state(), path)
    with np.load(path, allow_pickle=False) as z:
        assert list(z.files) == list(_state())


def test_tensors_and_model_state_dict_round_trip_into_load_state_dict(tmp_path):
    nnlite.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 2))
    model[1].running_mean.data[:] = np.arange(4)
    model[1].num_batches_tracked.data = np.array(3, np.int64)
    path = tmp_path / "m.npz"
    nnlite.save({k: nnlite.tensor(v) if v.dtype.kind == "f" else v
                 for k, v in model.state_dict().items()}, path)
    nnlite.manual_seed(1)
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 2))
    other.load_state_dict(nnlite.load(path))
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    x = nnlite.tensor(np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype("f4"))
    model.eval(), other.eval()
    np.testing.assert_array_equal(model(x).data, other(x).data)


@pytest.mark.parametrize("bad, err, text", [
    ({"a": np.array([object()], dtype=object)}, TypeError, "no pickled objects"),
    ({"a": {"nested": np.ones(1)}}, TypeError, "only arrays"),
    ({"": np.ones(1)}, TypeError, "non-empty"),
    ({"a/b": np.ones(1)}, TypeError, "without '/'"),
    ({3: np.ones(1)}, TypeError, "non-empty strings"),
    ([("a", np.ones(1))], TypeError, "mapping"),
])
def test_save_rejects_what_cannot_be_loaded_safely(tmp_path, bad, err, text):
    with pytest.raises(err, match=text):
        nnlite.save(bad, tmp_path / "x.npz")
    assert not os.listdir(tmp_path)


def test_save_rejects_a_module(tmp_path):
    with pytest.raises(TypeError, match="state_dict"):
        nnlite.save(nn.Linear(2, 2), tmp_path / "x.npz")


def test_load_missing_file():
    with pytest.raises(FileNotFoundError, match="no such file"):
        nnlite.load("/nonexistent/w.npz")


def test_load_rejects_non_zip(tmp_path):
    p = tmp_path / "w.npz"
    p.write_bytes(b"definitely not a zip archive")
    with pytest.raises(ValueError, match="not an .npz weights file"):
        nnlite.load(p)


def test_load_refuses_pickled_objects(tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, a=np.array([{"x": 1}], dtype=object))  # numpy pickles object arrays
    with pytest.raises(ValueError, match="refusing to unpickle"):
        nnlite.load(p)


def test_load_rejects_truncated_archive(tmp_path):
    p = tmp_path / "w.npz"
    nnlite.save(_state(), p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="w.npz"):
        nnlite.load(p)


def test_load_rejects_corrupt_member(tmp_path):
    p = tmp_path / "w.npz"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("a.npy", b"\x93NUMPY\x01\x00garbage header")
    with pytest.raises(ValueError, match="entry 'a' is corrupt"):
        nnlite.load(p)


def test_load_rejects_member_without_npy_header(tmp_path):
    p = tmp_path / "w.npz"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("a.npy", b"plain bytes")
    with pytest.raises(ValueError, match="entry 'a' is corrupt"):
        nnlite.load(p)


def test_load_rejects_foreign_members_and_torch_checkpoints(tmp_path):
    p = tmp_path / "w.npz"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("notes.txt", b"hello")
    with pytest.raises(ValueError, match="not an .npy array"):
        nnlite.load(p)
    pt = tmp_path / "model.pt"
    with zipfile.ZipFile(pt, "w") as zf:  # the layout of torch.save's zip format
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(ValueError, match="nnlite.convert"):
        nnlite.load(pt)


def test_load_rejects_bad_crc(tmp_path):
    p = tmp_path / "w.npz"
    nnlite.save({"a": np.arange(1000, dtype=np.float64)}, p)
    data = bytearray(p.read_bytes())
    i = data.index(np.arange(1000, dtype=np.float64)[500:501].tobytes())
    data[i] ^= 0xFF                                 # flip payload bits: the CRC check fails
    p.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        nnlite.load(p)
