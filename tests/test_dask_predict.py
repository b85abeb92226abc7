"""nnlite.dask and ``nnlite predict`` on a real distributed scheduler: a LocalCluster of two
worker processes on loopback. Predictions are compared with the plain (not optimized) model run
locally on images prepared by an independent chain of Pillow calls; a worker is killed mid-run;
an interrupted run is resumed; corrupt files are reported; compilations are counted per worker.
"""
import csv
import os
import signal
import sys
import time

import numpy as np
import pytest

import nnlite

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("distributed")
nd = pytest.importorskip("nnlite.dask")
V = pytest.importorskip("nnlite.vision")
import cloudpickle  # noqa: E402  (a dependency of distributed)
from distributed import Client, LocalCluster  # noqa: E402

from nnlite import cli, nn  # noqa: E402

SIZE = 32
N_GOOD = 66
TIMEOUT = 60


# --------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", silence_logs=40) as cluster, \
            Client(cluster, timeout="30s") as c:
        c.wait_for_workers(2, timeout=30)
        yield c


def make_model(seed=0, classes=10):
    nnlite.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, kernel_size=(3, 5), stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 12, kernel_size=3, padding=2, dilation=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, classes))
    bn = model[1]
    rng = np.random.default_rng(seed)
    bn.running_mean.data[:] = rng.standard_normal(8).astype(np.float32) * 0.1
    bn.running_var.data[:] = 0.5 + rng.random(8).astype(np.float32)
    return model.eval()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """66 readable images (PNG and JPEG, RGB/RGBA/L, sizes the crop does not tile) and 4
    unreadable files mixed in."""
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N_GOOD):
        h, w = 30 + (i * 7) % 29, 33 + (i * 5) % 31
        base = rng.integers(0, 256, 3)
        yy, xx = np.mgrid[0:h, 0:w]
        a = (base + np.stack([yy * (i % 5), xx * (i % 3), (yy + xx) * (i % 4)], -1)
             + rng.integers(0, 40, (h, w, 3))) % 256
        img = Image.fromarray(a.astype(np.uint8))
        if i % 7 == 3:
            img = img.convert("L")
        if i % 2:
            p = d / f"img{i:03d}.png"
            (img.convert("RGBA") if i % 5 == 1 else img).save(p)
        else:
            p = d / f"img{i:03d}.jpg"
            img.save(p, quality=92)
        paths.append(str(p))
    good = list(paths)
    png = open(paths[1], "rb").read()
    jpg = open(paths[0], "rb").read()
    bad = {str(d / "trunc.png"): png[:len(png) // 3], str(d / "trunc.jpg"): jpg[:len(jpg) // 3],
           str(d / "notes.jpg"): b"just some text\n"}
    for p, data in bad.items():
        open(p, "wb").write(data)
    missing = str(d / "gone.png")
    paths[10:10] = [str(d / "trunc.png")]
    paths[40:40] = [str(d / "trunc.jpg"), missing]
    paths.append(str(d / "notes.jpg"))
    return paths, good, sorted(list(bad) + [missing])


def oracle_outputs(model, paths):
    """The plain model, one image at a time, on images prepared with Pillow calls only."""
    outs = []
    resize = int(SIZE * 256 / 224)
    mean = np.array(V.IMAGENET_MEAN, np.float32).reshape(3, 1, 1)
    std = np.array(V.IMAGENET_STD, np.float32).reshape(3, 1, 1)
    for p in paths:
        with Image.open(p) as f:
            img = f.convert("RGB")
        w, h = img.size
        nw, nh = (resize, resize * h // w) if w <= h else (resize * w // h, resize)
        a = np.asarray(img.resize((nw, nh), Image.Resampling.BILINEAR))
        top, left = int(round((nh - SIZE) / 2.0)), int(round((nw - SIZE) / 2.0))
        x = a[top:top + SIZE, left:left + SIZE].transpose(2, 0, 1).astype(np.float32) / 255
        x = (x - mean) / std
        with nnlite.no_grad():
            outs.append(model(x[None]).data[0])
    return np.stack(outs)


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def check_topk_rows(rows, paths, ref, k):
    """Rows in ``paths`` order, each image once, classes = oracle ranking, softmax scores."""
    assert rows[0] == ["path"] + [f"{n}_{j}" for j in range(1, k + 1) for n in ("class",
                                                                              "score")]
    assert [r[0] for r in rows[1:]] == paths
    z = np.exp(ref - ref.max(1, keepdims=True))
    prob = z / z.sum(1, keepdims=True)
    for r, logits, p in zip(rows[1:], ref, prob):
        cls = [int(c) for c in r[1::2]]
        score = np.array([float(s) for s in r[2::2]])
        order = np.argsort(-logits, kind="stable")[:k]
        for c, o in zip(cls, order):           # a rank may only differ at a numerical tie
            assert c == o or abs(logits[c] - logits[o]) < 1e-4 * np.abs(logits).max()
        np.testing.assert_allclose(score, p[cls], rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def model_and_reference(images):
    paths, good, _ = images
    model = make_model()
    return model, oracle_outputs(model, good)


# ------------------------------------------------------------------------ tests
def test_predict_to_file_matches_local_model_and_reports_bad_files(client, images, tmp_path,
                                                                    model_and_reference):
    paths, good, bad = images
    model, ref = model_and_reference
    out = str(tmp_path / "preds.csv")
    stats = nd.predict_to_file(model, paths, out, client, batch_size=8, topk=3, size=SIZE,
                               progress=False, timeout=TIMEOUT)
    assert stats["images"] == len(paths) and stats["errors"] == 4
    assert stats["shards_computed"] == -(-len(paths) // 8) and stats["shards_done_before"] == 0
    check_topk_rows(read_csv(out), good, ref, 3)
    errors = read_csv(nd.errors_path(out))
    assert errors[0] == ["path", "reason"]
    assert sorted(r[0] for r in errors[1:]) == bad
    reasons = {os.path.basename(r[0]): r[1] for r in errors[1:]}
    assert "truncated" in reasons["trunc.png"] and "truncated" in reasons["trunc.jpg"]
    assert "not an image" in reasons["notes.jpg"] and reasons["gone.png"] == "no such file"
    assert not os.path.exists(nd.shards_dir(out))                 # cleaned after the merge
    # full outputs to .npy: NaN rows exactly where the unreadable files are
    out_npy = str(tmp_path / "preds.npy")
    nd.predict_to_file(model, paths, out_npy, client, batch_size=8, size=SIZE, progress=False,
                       timeout=TIMEOUT)
    y = np.load(out_npy)
    assert y.shape == (len(paths), 10) and y.dtype == np.float32
    is_bad = np.array([p in bad for p in paths])
    assert np.isnan(y[is_bad]).all() and not np.isnan(y[~is_bad]).any()
    np.testing.assert_allclose(y[~is_bad], ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_lazy_predict_on_dask_arrays_and_paths(client, images, model_and_reference):
    import dask.array as da

    paths, good, _ = images
    model, ref = model_and_reference
    x = np.random.default_rng(3).standard_normal((19, 3, SIZE, SIZE)).astype(np.float32)
    with nnlite.no_grad():
        want = model(x).data
    arr = da.from_array(x, chunks=((6, 6, 5, 2), 3, (20, 12), SIZE))   # chunks along H too
    y = nd.predict(model, arr, batch_size=4)
    assert y.shape == (19, 10) and y.chunks[0] == (6, 6, 5, 2)
    np.testing.assert_allclose(y.compute(), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    cls, score = nd.predict(model, arr, batch_size=4, topk=2, softmax=False)
    cls, score = client.compute([cls, score], sync=True)
    order = np.argsort(-want, axis=1, kind="stable")[:, :2]
    assert np.array_equal(cls, order)
    np.testing.assert_allclose(score, np.take_along_axis(want, order, 1), rtol=1e-4, atol=1e-5)
    # one channel, a chunk of one image and an empty chunk
    gray = nn.Sequential(nn.Conv2d(1, 4, kernel_size=(1, 3), stride=(2, 1)), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 3 * 3, 3)).eval()
    g = np.random.default_rng(4).standard_normal((4, 1, 5, 5)).astype(np.float32)
    with nnlite.no_grad():
        want = gray(g).data
    y = nd.predict(gray, da.from_array(g, chunks=((1, 0, 3), 1, 5, 5)), batch_size=2)
    np.testing.assert_allclose(y.compute(), want, rtol=1e-4, atol=1e-6)
    # a list of paths: one task per batch_size images
    y = nd.predict(model, good[:13], batch_size=5, size=SIZE)
    assert y.numblocks == (3, 1)
    np.testing.assert_allclose(y.compute(), ref[:13], rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    bad = [p for p in paths if p not in good]                            # the array API raises
    with pytest.raises(ValueError, match="trunc.png.*truncated"):
        nd.predict(model, [good[0], bad[0]], size=SIZE).compute()
    with pytest.raises(FileNotFoundError, match="gone.png"):
        nd.predict(model, [good[0], [p for p in bad if "gone" in p][0]], size=SIZE).compute()


def test_model_compiled_once_per_worker_and_threads_follow_worker(client, images):
    paths, good, _ = images
    model = make_model(seed=5)
    payload, _ = nd.as_payload(model)
    before = client.run(nd.compile_counts)
    assert all(payload.key not in c for c in before.values())
    y = nd.predict(model, good, batch_size=3, size=SIZE)                 # 22 tasks
    assert y.numblocks[0] == 22
    y.compute()
    nd.predict_to_file(model, good, str(os.path.dirname(good[0]) + "/again.csv"), client,
                       batch_size=4, size=SIZE, progress=False, timeout=TIMEOUT)  # 17 more
    counts = {w: c.get(payload.key, 0) for w, c in client.run(nd.compile_counts).items()}
    assert len(counts) == 2 and set(counts.values()) <= {0, 1} and sum(counts.values()) >= 1
    # one plan per batch size: the last shard (66 = 16 * 4 + 2) is padded to 4, not planned
    plans = [b.get(payload.key, []) for b in client.run(nd.plan_batches).values()]
    assert all(set(p) <= {3, 4} for p in plans) and {3, 4} <= set(sum(plans, [])), plans
    # the model bytes are one graph node, not part of each task
    graph = dict(nd.predict(model, good, batch_size=3, size=SIZE).__dask_graph__())
    import pickle
    sizes = [len(pickle.dumps(v)) for v in graph.values()]
    assert sum(s > len(payload.data) for s in sizes) == 1
    assert client.run(nnlite.get_num_threads) == {w: 1 for w in counts}


def test_threads_follow_a_two_thread_worker(images):
    paths, good, _ = images
    model = make_model(seed=6)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address=":0", silence_logs=40) as cluster, \
            Client(cluster, timeout="30s") as c:
        nd.predict(model, good[:8], batch_size=4, size=SIZE).compute()
        assert list(c.run(nnlite.get_num_threads).values()) == [2]
        key = nd.as_payload(model)[0].key
        assert [d[key] for d in c.run(nd.compile_counts).values()] == [1]


class SlowTransform:
    """The ImageNet transform plus a pause, so that shards are still running when a worker is
    killed. Pickled by value (the workers cannot import this test module)."""

    def __init__(self, size, pause):
        self.tf, self.pause = V.imagenet_transform(size), pause

    def __call__(self, img):
        time.sleep(self.pause)
        return self.tf(img)

    def __repr__(self):
        return f"SlowTransform({self.tf!r}, {self.pause})"


cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_worker_killed_mid_run_loses_nothing(client, images, tmp_path, model_and_reference):
    paths, good, _ = images
    model, ref = model_and_reference
    tf = SlowTransform(SIZE, 0.01)
    clean = str(tmp_path / "clean.npy")
    nd.predict_to_file(model, good, clean, client, batch_size=4, transform=tf, progress=False,
                       timeout=TIMEOUT)
    killed = {}

    def kill_one(index, finished, total):
        if killed:
            return
        busy = {w: ts for w, ts in client.processing().items() if ts}
        if not busy:
            return
        victim = sorted(busy)[0]
        pid = client.run(os.getpid, workers=[victim])[victim]
        killed.update(pid=pid, at=finished, total=total, running=len(busy[victim]))
        os.kill(pid, signal.SIGKILL)

    out = str(tmp_path / "killed.npy")
    pids = set(client.run(os.getpid).values())
    stats = nd.predict_to_file(model, good, out, client, batch_size=4, transform=tf,
                               progress=False, timeout=TIMEOUT, on_shard=kill_one)
    assert killed and killed["at"] < killed["total"] and killed["running"] >= 1, killed
    assert stats["shards_computed"] == killed["total"] and stats["errors"] == 0
    a, b = np.load(out), np.load(clean)
    assert a.shape == (len(good), 10)
    assert np.array_equal(a, b)                                    # same as the clean run
    np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    client.wait_for_workers(2, timeout=30)                          # the nanny restarted it
    now = set(client.run(os.getpid).values())
    assert killed["pid"] not in now and len(now - pids) == 1


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes(client, images, tmp_path, model_and_reference):
    paths, good, bad = images
    model, ref = model_and_reference
    out = str(tmp_path / "resume.csv")

    def stop_after_3(index, finished, total):
        if finished >= 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        nd.predict_to_file(model, paths, out, client, batch_size=6, topk=4, size=SIZE,
                           progress=False, timeout=TIMEOUT, on_shard=stop_after_3)
    assert not os.path.exists(out)
    shards = [f for f in os.listdir(nd.shards_dir(out)) if f.startswith("shard-")]
    assert len(shards) == 3 and not any(f.startswith(".") for f in os.listdir(
        nd.shards_dir(out)))
    with open(os.path.join(nd.shards_dir(out), sorted(shards)[0]), "r+b") as fh:
        fh.truncate(100)                         # a damaged shard is recomputed, not trusted
    seen = []
    stats = nd.predict_to_file(model, paths, out, client, batch_size=6, topk=4, size=SIZE,
                               progress=False, timeout=TIMEOUT,
                               on_shard=lambda i, f, t: seen.append(i))
    total = -(-len(paths) // 6)
    assert stats["shards_done_before"] == 2 and stats["shards_computed"] == total - 2
    assert sorted(seen + [int(f[6:14]) for f in sorted(shards)[1:]]) == list(range(total))
    check_topk_rows(read_csv(out), good, ref, 4)
    assert sorted(r[0] for r in read_csv(nd.errors_path(out))[1:]) == bad
    # shards of a different job under the same --out are refused unless restart
    with pytest.raises(Interrupt):
        nd.predict_to_file(model, paths, out, client, batch_size=6, topk=4, size=SIZE,
                           progress=False, timeout=TIMEOUT, on_shard=stop_after_3)
    with pytest.raises(ValueError, match="different job"):
        nd.predict_to_file(model, paths, out, client, batch_size=5, topk=4, size=SIZE,
                           progress=False, timeout=TIMEOUT)
    stats = nd.predict_to_file(model, paths, out, client, batch_size=5, topk=4, size=SIZE,
                               progress=False, timeout=TIMEOUT, restart=True)
    assert stats["shards_done_before"] == 0
    check_topk_rows(read_csv(out), good, ref, 4)


def test_cli_predict_on_scheduler_and_local_cluster(client, images, tmp_path, capsys):
    paths, good, bad = images
    nnlite.manual_seed(1)
    model = nnlite.models.mobilenet_v2(num_classes=1000)
    nnlite.save(model.state_dict(), tmp_path / "m.npz")
    ref = oracle_outputs(model.eval(), good[:21])           # paths[:22]: good[:21], trunc.png
    address = client.scheduler.address
    out = str(tmp_path / "p.npy")
    code = cli.main(["predict", "mobilenet_v2", *paths[:22], "--weights",
                     str(tmp_path / "m.npz"), "--out", out, "--scheduler", address,
                     "--batch", "6", "--size", str(SIZE)])
    o, e = capsys.readouterr()
    assert code == 0, e
    assert "21 images predicted, 1 unreadable" in o and "on 2 workers" in o
    assert "images/s" in e and "22/22 images" in e                      # the progress bar
    y = np.load(out)
    ok = ~np.isnan(y).any(1)
    assert ok.sum() == 21 and not ok[10]
    np.testing.assert_allclose(y[ok], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # a directory of images on a local cluster of 1 worker, top-k to CSV
    sub = tmp_path / "dir"
    (sub / "nested").mkdir(parents=True)
    for i, p in enumerate(good[:5]):
        dst = sub / ("nested" if i % 2 else "") / os.path.basename(p)
        dst.write_bytes(open(p, "rb").read())
    (sub / "readme.txt").write_text("not listed: not an image name")
    out = str(tmp_path / "p.csv")
    code = cli.main(["predict", "mobilenet_v2", str(sub), "--weights", str(tmp_path / "m.npz"),
                     "--out", out, "--workers", "1", "--threads-per-worker", "1", "--batch",
                     "2", "--size", str(SIZE), "--topk", "2", "--no-progress"])
    o, e = capsys.readouterr()
    assert code == 0, e
    rows = read_csv(out)
    want = sorted(str(sub / ("nested" if i % 2 else "") / os.path.basename(p))
                  for i, p in enumerate(good[:5]))
    assert [r[0] for r in rows[1:]] == want and e == ""


def test_bad_arguments_are_clear(client, images, tmp_path, capsys):
    paths, good, _ = images
    model = make_model()
    with pytest.raises(ValueError, match=r"\.csv, \.parquet or \.npy"):
        nd.predict_to_file(model, good, str(tmp_path / "x.txt"), client)
    with pytest.raises(ValueError, match="topk must be between 1 and the 10"):
        nd.predict_to_file(model, good, str(tmp_path / "x.csv"), client, topk=11, size=SIZE)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        nd.predict(model, good, batch_size=0)
    with pytest.raises(ValueError, match="needs weights"):
        nd.predict("resnet18", good)
    with pytest.raises(ValueError, match="unknown model 'resnet9'"):
        nd.predict("resnet9", good)
    with pytest.raises(TypeError, match="dask.array"):
        nd.predict(model, np.zeros((2, 3, 8, 8), np.float32))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pyarrow"):
            nd.predict_to_file(model, good, str(tmp_path / "x.parquet"), client)
    assert cli.main(["predict", "resnet18", good[0], "--out", str(tmp_path / "x.csv"),
                     "--batch", "0"]) == 2
    assert "--batch must be >= 1" in capsys.readouterr().err


def test_parquet_output(client, images, tmp_path, model_and_reference):
    pq = pytest.importorskip("pyarrow.parquet")
    paths, good, _ = images
    model, ref = model_and_reference
    out = str(tmp_path / "p.parquet")
    nd.predict_to_file(model, paths, out, client, batch_size=8, topk=2, size=SIZE,
                       progress=False, timeout=TIMEOUT)
    t = pq.read_table(out).to_pydict()
    assert t["path"] == good
    assert np.array_equal(np.array([t["class_1"], t["class_2"]]).T,
                          np.argsort(-ref, axis=1, kind="stable")[:, :2])


def test_onnx_model_file_against_onnxruntime(client, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import dask.array as da
    from onnx import TensorProto as TP
    from onnx import helper as oh
    from onnx import numpy_helper as onh

    rng = np.random.default_rng(7)
    w = rng.standard_normal((6, 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    fc = rng.standard_normal((5, 6)).astype(np.float32)
    nodes = [oh.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 0, 1, 0], strides=[2, 1]),
             oh.make_node("Relu", ["c"], ["r"]),
             oh.make_node("GlobalAveragePool", ["r"], ["g"]),
             oh.make_node("Flatten", ["g"], ["f"]),
             oh.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    graph = oh.make_graph(nodes, "tiny", [oh.make_tensor_value_info("x", TP.FLOAT,
                                                                    ["n", 3, 9, 7])],
                          [oh.make_tensor_value_info("y", TP.FLOAT, None)],
                          [onh.from_array(w, "w"), onh.from_array(b, "b"),
                           onh.from_array(fc, "fc")])
    path = tmp_path / "tiny.onnx"
    path.write_bytes(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
                     .SerializeToString())
    x = rng.standard_normal((11, 3, 9, 7)).astype(np.float32)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    y = nd.predict(str(path), da.from_array(x, chunks=4), batch_size=3)
    np.testing.assert_allclose(y.compute(), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="weights= applies to built-in"):
        nd.predict(str(path), da.from_array(x, chunks=4), weights="w.npz")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        nd.predict(str(tmp_path / "missing.onnx"), da.from_array(x, chunks=4))
