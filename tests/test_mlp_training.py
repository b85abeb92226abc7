"""End to end: MLPs trained with nnlite's autograd, losses and optimisers on synthetic 2-D tasks
reach stated accuracies (fixed seeds; each run takes well under a second here).

Targets: 3-class spirals (CS231n's generator), Adam, 60 epochs -> train accuracy >= 0.97 and
held-out >= 0.95, while a linear softmax classifier stays below 0.70 (so the task needs the
hidden layers); 4-blob XOR with BatchNorm1d + Dropout + SGD(momentum) -> held-out >= 0.95 in
eval mode.
"""
import numpy as np

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
import nnlite.optim as optim


def _spirals(n_per, k, rng, noise=0.2):
    xs, ys = [], []
    for c in range(k):
        r = np.linspace(0.05, 1, n_per)
        t = np.linspace(c * 4, (c + 1) * 4, n_per) + rng.normal(0, noise, n_per)
        xs.append(np.c_[r * np.sin(t), r * np.cos(t)])
        ys.append(np.full(n_per, c))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def _xor_blobs(n, rng):
    centers = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], np.float32)
    k = rng.integers(0, 4, n)
    x = centers[k] + rng.normal(0, 0.35, (n, 2)).astype(np.float32)
    return x, (k >= 2).astype(np.int64)


def _fit(model, opt, x, y, epochs, batch, rng):
    for _ in range(epochs):
        perm = rng.permutation(len(x))
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = F.cross_entropy(model(nnlite.tensor(x[idx])), y[idx])
            loss.backward()
            opt.step()
    return loss.item()


def _accuracy(model, x, y):
    with nnlite.no_grad():
        return float((model(nnlite.tensor(x)).data.argmax(1) == y).mean())


def test_mlp_learns_spirals_with_adam():
    rng = np.random.default_rng(0)
    x, y = _spirals(200, 3, rng)
    xt, yt = _spirals(100, 3, np.random.default_rng(1))
    nnlite.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                        nn.Linear(64, 3))
    loss = _fit(mlp, optim.Adam(mlp.parameters(), lr=1e-2), x, y, 60, 100, rng)
    assert np.isfinite(loss)
    assert _accuracy(mlp, x, y) >= 0.97
    assert _accuracy(mlp, xt, yt) >= 0.95

    nnlite.manual_seed(0)
    linear = nn.Linear(2, 3)
    _fit(linear, optim.Adam(linear.parameters(), lr=1e-2), x, y, 60, 100, rng)
    assert _accuracy(linear, x, y) < 0.70


def test_mlp_with_batchnorm_and_dropout_learns_xor_with_sgd():
    rng = np.random.default_rng(2)
    x, y = _xor_blobs(400, rng)
    xt, yt = _xor_blobs(400, np.random.default_rng(3))
    nnlite.manual_seed(1)
    mlp = nn.Sequential(nn.Linear(2, 32), nn.BatchNorm1d(32), nn.Tanh(), nn.Dropout(0.1),
                        nn.Linear(32, 2))
    opt = optim.SGD(mlp.parameters(), lr=0.1, momentum=0.9)
    sched = optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)
    for _ in range(40):
        _fit(mlp, opt, x, y, 1, 50, rng)
        sched.step()
    mlp.eval()
    assert int(mlp[1].num_batches_tracked.data) == 40 * 8
    assert _accuracy(mlp, xt, yt) >= 0.95
