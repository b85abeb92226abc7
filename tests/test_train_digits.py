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


def test_short_training_run_learns_digits(example, capsys):
    res = example.train(epochs=3, batch_size=64, lr=6e-3, seed=0, verbose=True)
    out = capsys.readouterr().out
    assert "final test accuracy" in out and "epoch   3/3" in out
    losses = [loss for loss, _ in res["history"]]
    assert losses[-1] < losses[0]
    assert res["test_accuracy"] >= 0.90, res["history"]
