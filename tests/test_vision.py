"""nnlite.vision: load_image and the torchvision-named transforms, against independent oracles
(Pillow called directly, hand-computed crop offsets and padding, per-pixel getpixel loops, a
scalar float32 normalize loop) and torchvision itself when it happens to be installed."""
import io
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnlite

Image = pytest.importorskip("PIL.Image")
V = pytest.importorskip("nnlite.vision")


def rgb(h, w, seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)


# ------------------------------------------------------------------------- Resize
def oracle_size(h, w, s, max_size=None):
    """torchvision's rule written with integer arithmetic (shorter side -> s)."""
    if h <= w:
        nh, nw = s, (s * w) // h
        if max_size is not None and nw > max_size:
            nh, nw = (max_size * nh) // nw, max_size
    else:
        nw, nh = s, (s * h) // w
        if max_size is not None and nh > max_size:
            nw, nh = (max_size * nw) // nh, max_size
    return nh, nw


@given(h=st.integers(1, 900), w=st.integers(1, 900), s=st.integers(1, 400))
def test_resized_size_matches_integer_rule(h, w, s):
    assert V.resized_size(h, w, (s,)) == oracle_size(h, w, s)
    assert V.resized_size(h, w, (s,), max_size=s + 37) == oracle_size(h, w, s, s + 37)


def test_resize_documented_examples_and_pil_pixels():
    # a 500x375 (W x H) photo: the shorter side 375 -> 256, the longer int(256 * 500 / 375) = 341
    img = rgb(375, 500)
    out = V.Resize(256)(img)
    assert out.size == (341, 256)
    expect = img.resize((341, 256), Image.Resampling.BILINEAR)
    assert np.array_equal(np.asarray(out), np.asarray(expect))
    # portrait, sequence of length 1, bicubic
    img = rgb(90, 61, seed=1)
    out = V.Resize([40], interpolation="bicubic")(img)
    assert out.size == (40, 59)                        # int(40 * 90 / 61) = 59
    assert np.array_equal(np.asarray(out), np.asarray(
        img.resize((40, 59), Image.Resampling.BICUBIC)))
    # (h, w) exactly; max_size caps the longer side: 300x100 -> short 100 -> long 300 > 120
    assert V.Resize((13, 7))(img).size == (7, 13)
    assert V.Resize(100, max_size=120)(rgb(100, 300)).size == (120, 40)
    # size=None: the longer side becomes max_size
    assert V.Resize(None, max_size=50)(rgb(100, 300)).size == (50, 16)
    # already the right size: returned unchanged
    same = rgb(32, 40)
    assert V.Resize(32)(same) is same


def test_resize_bad_arguments():
    with pytest.raises(ValueError, match="max_size = 10 must be strictly greater"):
        V.Resize(10, max_size=10)
    with pytest.raises(ValueError, match="max_size applies only"):
        V.Resize((3, 4), max_size=20)
    with pytest.warns(UserWarning, match="antialias=False is ignored"):
        r = V.Resize(8, antialias=False)
    img = rgb(20, 30)
    assert np.array_equal(np.asarray(r(img)), np.asarray(V.Resize(8)(img)))
    with pytest.raises(ValueError, match="positive"):
        V.Resize(0)
    with pytest.raises(TypeError, match="size must be an int"):
        V.Resize((1, 2, 3))
    with pytest.raises(ValueError, match="interpolation"):
        V.Resize(8, interpolation="cubic-ish")
    with pytest.raises(TypeError, match="PIL images"):
        V.Resize(8)(np.zeros((3, 10, 10), np.float32))
    assert repr(V.Resize(256)) == ("Resize(size=256, interpolation=bilinear, max_size=None, "
                                   "antialias=True)")


# --------------------------------------------------------------------- CenterCrop
@pytest.mark.parametrize("h, w, th, tw, top, left", [
    (7, 10, 4, 4, 2, 3),      # (7-4)/2 = 1.5 -> 2 ; (10-4)/2 = 3
    (9, 9, 4, 4, 2, 2),       # 2.5 rounds half to even -> 2
    (11, 12, 4, 5, 4, 4),     # 3.5 -> 4 ; 3.5 -> 4
    (5, 6, 5, 6, 0, 0),       # whole image
    (8, 3, 1, 1, 4, 1),       # 3.5 -> 4 ; 1
])
def test_center_crop_offsets(h, w, th, tw, top, left):
    img = rgb(h, w, seed=h * w)
    a = np.asarray(img)
    out = V.CenterCrop((th, tw))(img)
    assert np.array_equal(np.asarray(out), a[top:top + th, left:left + tw])
    chw = a.transpose(2, 0, 1).copy()
    assert np.array_equal(V.CenterCrop((th, tw))(chw), chw[:, top:top + th, left:left + tw])
    t = V.CenterCrop((th, tw))(nnlite.tensor(chw.astype(np.float32)))
    assert isinstance(t, nnlite.Tensor)
    assert np.array_equal(t.data, chw[:, top:top + th, left:left + tw])


def test_center_crop_pads_when_larger():
    # h 3 -> 6: 3 rows of zeros, 1 above and 2 below; w 5 > 4: crop left int(round(0.5)) = 0
    img = rgb(3, 5, seed=3)
    a = np.asarray(img)
    expect = np.zeros((6, 4, 3), np.uint8)
    expect[1:4] = a[:, 0:4]
    assert np.array_equal(np.asarray(V.CenterCrop((6, 4))(img)), expect)
    # both larger: w 5 -> 8: 1 left, 2 right; h 3 -> 4: 0 above, 1 below
    expect = np.zeros((4, 8, 3), np.uint8)
    expect[0:3, 1:6] = a
    assert np.array_equal(np.asarray(V.CenterCrop((4, 8))(img)), expect)
    chw = a.transpose(2, 0, 1)
    assert np.array_equal(V.CenterCrop((4, 8))(chw), expect.transpose(2, 0, 1))
    # a palette image keeps its palette
    p = img.convert("P")
    got = V.CenterCrop(7)(p)
    assert got.mode == "P" and got.getpalette() == p.getpalette()


def test_center_crop_errors():
    with pytest.raises(TypeError, match="CenterCrop expects"):
        V.CenterCrop(3)([[1, 2]])
    with pytest.raises(ValueError, match="positive"):
        V.CenterCrop((0, 3))


# ----------------------------------------------------------------------- ToTensor
def test_to_tensor_modes_against_getpixel():
    base = rgb(4, 5, seed=4, mode="RGBA")
    for mode, dtype, scale in [("RGB", np.float32, 255), ("RGBA", np.float32, 255),
                               ("L", np.float32, 255), ("P", np.float32, 255),
                               ("LA", np.float32, 255), ("1", np.float32, 255),
                               ("I", np.int32, 1), ("F", np.float32, 1)]:
        img = base.convert(mode)
        t = V.ToTensor()(img)
        assert isinstance(t, nnlite.Tensor) and t.dtype == dtype, mode
        c = len(img.getbands())
        assert t.shape == (c, 4, 5), mode
        for i in range(4):
            for j in range(5):
                px = img.getpixel((j, i))
                px = px if isinstance(px, tuple) else (px,)
                for k in range(c):
                    v = px[k]
                    if mode == "1":
                        v = 255 if v else 0
                    assert t.data[k, i, j] == dtype(np.float32(v) / np.float32(scale)
                                                    if scale != 1 else v), (mode, k, i, j)


def test_to_tensor_16bit_keeps_values():
    a = np.array([[0, 1, 40000], [65535, 32768, 7]], dtype=np.uint16)
    img = Image.fromarray(a)
    assert img.mode.startswith("I;16")
    t = V.ToTensor()(img)
    assert t.dtype == np.int32 and t.shape == (1, 2, 3)
    assert t.data[0].tolist() == a.astype(np.int64).tolist()


def test_to_tensor_ndarrays():
    a = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    t = V.ToTensor()(a)
    assert t.shape == (3, 2, 4) and t.dtype == np.float32
    assert t.data[2, 1, 3] == np.float32(a[1, 3, 2]) / np.float32(255)
    f = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float64)
    t = V.ToTensor()(f)
    assert t.dtype == np.float64 and np.array_equal(t.data[0], f)        # not scaled
    with pytest.raises(ValueError, match="4 dimensions"):
        V.ToTensor()(np.zeros((1, 2, 3, 4), np.uint8))
    with pytest.raises(TypeError, match="PIL image or an ndarray"):
        V.ToTensor()([1, 2])


# ---------------------------------------------------------------------- Normalize
def normalize_loop(x, mean, std):
    out = np.empty_like(x)
    c = x.shape[-3]
    mean = [mean[0]] * c if len(mean) == 1 else mean
    std = [std[0]] * c if len(std) == 1 else std
    for idx in np.ndindex(x.shape):
        k = idx[-3]
        out[idx] = (x[idx] - x.dtype.type(mean[k])) / x.dtype.type(std[k])
    return out


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 1, 6), (1, 2, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_matches_scalar_loop(shape, dtype):
    x = np.random.default_rng(5).random(shape).astype(dtype)
    c = shape[-3]
    mean, std = V.IMAGENET_MEAN[:c], V.IMAGENET_STD[:c]
    got = V.Normalize(mean, std)(nnlite.tensor(x))
    assert isinstance(got, nnlite.Tensor) and got.dtype == dtype
    assert np.array_equal(got.data, normalize_loop(x, mean, std))
    assert np.array_equal(V.Normalize(0.5, [2.0])(x), normalize_loop(x, [0.5], [2.0]))


def test_normalize_inplace_and_checks():
    x = np.random.default_rng(6).random((3, 2, 2)).astype(np.float32)
    keep = x.copy()
    t = nnlite.tensor(x)
    out = V.Normalize([0.1, 0.2, 0.3], [1, 2, 3])(t)
    assert out is not t and np.array_equal(t.data, keep)
    out = V.Normalize([0.1, 0.2, 0.3], [1, 2, 3], inplace=True)(t)
    assert out is t and np.array_equal(t.data, normalize_loop(keep, [0.1, 0.2, 0.3], [1, 2, 3]))
    with pytest.raises(ValueError, match="division by zero"):
        V.Normalize([0, 0, 0], [1, 0, 1])(x)
    with pytest.raises(ValueError, match="division by zero"):             # 1e-50 -> 0 in float32
        V.Normalize(0, 1e-50)(x)
    assert np.isfinite(V.Normalize(0, 1e-50)(x.astype(np.float64))).all()
    with pytest.raises(ValueError, match=r"std has 2 values for 3 channels"):
        V.Normalize([0, 0, 0], [1, 1])(x)
    with pytest.raises(TypeError, match="float tensor"):
        V.Normalize(0, 1)(np.zeros((3, 2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"\(\.\.\., C, H, W\)"):
        V.Normalize(0, 1)(np.zeros((2, 2), np.float32))


# --------------------------------------------------------- Compose, ImageNet preset
def test_imagenet_transform_equals_manual_pipeline():
    img = rgb(50, 41, seed=7)
    tf = V.imagenet_transform(32)
    got = tf(img)
    assert [type(t).__name__ for t in tf.transforms] == ["Resize", "CenterCrop", "ToTensor",
                                                         "Normalize"]
    # resize 36 (int(32 * 256 / 224)): 41 -> 36, 50 -> int(36 * 50 / 41) = 43
    r = np.asarray(img.resize((36, 43), Image.Resampling.BILINEAR))
    top, left = int(round((43 - 32) / 2.0)), int(round((36 - 32) / 2.0))
    crop = r[top:top + 32, left:left + 32].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    assert np.array_equal(got.data, normalize_loop(crop, V.IMAGENET_MEAN, V.IMAGENET_STD))
    assert V.imagenet_transform(224).transforms[0].size == (256,)
    assert "CenterCrop(size=(32, 32))" in repr(tf)
    with pytest.raises(TypeError, match="not callable"):
        V.Compose([V.ToTensor(), 3])


def test_torchvision_parity_if_installed():
    tv = pytest.importorskip("torchvision.transforms")
    img = rgb(61, 83, seed=8)
    ours = V.imagenet_transform(48)(img).data
    ref = tv.Compose([tv.Resize(54), tv.CenterCrop(48), tv.ToTensor(),
                      tv.Normalize(V.IMAGENET_MEAN, V.IMAGENET_STD)])(img).numpy()
    assert np.array_equal(ours, ref)


# ---------------------------------------------------------------------- load_image
@pytest.fixture
def files(tmp_path):
    img = rgb(20, 30, seed=9, mode="RGBA")
    img.save(tmp_path / "ok.png")
    img.convert("RGB").save(tmp_path / "ok.jpg", quality=90)
    img.convert("L").save(tmp_path / "gray.png")
    png = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(png[:len(png) // 2])
    jpg = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(jpg[:len(jpg) // 2])
    (tmp_path / "text.jpg").write_text("not an image at all\n")
    (tmp_path / "empty.png").write_bytes(b"")
    bad = bytearray(png)
    bad[60:200] = os.urandom(140)                                       # corrupt IDAT data
    (tmp_path / "corrupt.png").write_bytes(bytes(bad))
    return tmp_path, img


def test_load_image_modes(files):
    d, img = files
    a = V.load_image(d / "ok.png")
    assert a.mode == "RGB" and a.size == (30, 20)
    assert np.array_equal(np.asarray(a), np.asarray(img.convert("RGB")))
    assert V.load_image(d / "ok.png", mode=None).mode == "RGBA"
    assert V.load_image(str(d / "gray.png")).mode == "RGB"
    assert V.load_image(d / "gray.png", mode="L").mode == "L"


@pytest.mark.parametrize("name, reason", [
    ("trunc.png", "truncated"), ("trunc.jpg", "truncated"), ("text.jpg", "not an image"),
    ("empty.png", "not an image"), ("corrupt.png", "corrupt|truncated")])
def test_load_image_unreadable_files_name_the_file(files, name, reason):
    d, _ = files
    with pytest.raises(V.UnreadableImageError, match=reason) as info:
        V.load_image(d / name)
    assert str(d / name) in str(info.value) and isinstance(info.value, ValueError)
    assert info.value.path == str(d / name)


def test_load_image_missing_directory_bomb(files, monkeypatch):
    d, _ = files
    with pytest.raises(FileNotFoundError, match="nope.png"):
        V.load_image(d / "nope.png")
    with pytest.raises(V.UnreadableImageError, match="directory"):
        V.load_image(d)
    with pytest.raises(TypeError, match="file path"):
        V.load_image(io.BytesIO(b""))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)           # 600 px > 2 * 100: a bomb
    with pytest.raises(V.UnreadableImageError, match="too many pixels") as info:
        V.load_image(d / "ok.png")
    assert "ok.png" in str(info.value)


# ------------------------------------------------------------------ nnlite run
def test_cli_run_accepts_an_image(files, capsys):
    from nnlite import cli, models

    d, _ = files
    nnlite.manual_seed(0)
    model = models.resnet18()
    nnlite.save(model.state_dict(), d / "r18.npz")
    code = cli.main(["run", "resnet18", "--weights", str(d / "r18.npz"), "--input",
                     str(d / "ok.jpg"), "--size", "40", "--repeat", "1", "--plain"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "(1, 3, 40, 40) float32" in out
    x = V.imagenet_transform(40)(Image.open(d / "ok.jpg").convert("RGB")).data[None]
    with nnlite.no_grad():
        ref = model.eval()(x).data[0]
    top = out.split("top-5 [0]")[1].splitlines()[0]
    assert [int(t.split(" (")[0]) for t in top.strip().split("), ")] == list(
        np.argsort(-ref, kind="stable")[:5])
    code = cli.main(["run", "resnet18", "--weights", str(d / "r18.npz"), "--input",
                     str(d / "trunc.jpg"), "--repeat", "1"])
    out, err = capsys.readouterr()
    assert code == 2 and "trunc.jpg" in err and "truncated" in err
