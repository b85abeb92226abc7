"""A shortened run of examples/train_digits.py (scikit-learn's bundled 8x8 digits): 3 epochs at
batch 64 must reach >= 90% test accuracy (the full example, 15 epochs, reaches >= 97%)."""
import importlib.util
import pathlib

import numpy as np
import pytest

pytest.importorskip("sklearn")

_PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("train_digits", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_digits_data(example):
    x_tr, y_tr, x_te, y_te = example.load_digits()
    assert x_tr.shape[1:] == (1, 8, 8) and len(x_tr) + len(x_te) == 1797
    assert x_tr.dtype == np.float32 and 0 <= x_tr.min() and x_tr.max() <= 1
    assert set(np.unique(y_te)) == set(range(10))
    shifted = example.random_shift(x_tr[:5], np.random.default_rng(0))
    assert shifted.shape == (5, 1, 8, 8)


@pytest.mark.parametrize("n,c,h,w,p", [(5, 1, 8, 8, 1), (7, 3, 5, 6, 2), (1, 2, 4, 3, 1)])
def test_random_shift_against_a_loop(example, n, c, h, w, p):
    """The strided-window gather equals shifting each image by its own (dy, dx) in a loop."""
    x = np.random.default_rng(n).standard_normal((n, c, h, w)).astype(np.float32)
    got = example.random_shift(x, np.random.default_rng(3), max_shift=p)
    dy, dx = np.random.default_rng(3).integers(0, 2 * p + 1, size=(2, n))   # the same draws
    want = np.zeros_like(x)
    for i in range(n):
        # output pixel (r, s) reads input pixel (r + dy - p, s + dx - p) when inside
        for r in range(h):
            for s in range(w):
                sr, ss = r + dy[i] - p, s + dx[i] - p
                if 0 <= sr < h and 0 <= ss < w:
                    want[i, :, r, s] = x[i, :, sr, ss]
    np.testing.assert_array_equal(got, want)


def test_short_training_run_learns_digits(example, capsys):
    res = example.train(epochs=3, batch_size=64, lr=6e-3, seed=0, verbose=True)
    out = capsys.readouterr().out
    assert "final test accuracy" in out and "epoch   3/3" in out
    losses = [loss for loss, _ in res["history"]]
    assert losses[-1] < losses[0]
    assert res["test_accuracy"] >= 0.90, res["history"]
