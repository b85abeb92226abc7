"""An SPP-net style classifier: images of any size -> conv trunk -> spatial pyramid pooling ->
a fixed-length vector -> Linear.

    python examples/spp_head.py              # 150 Adam steps (default)
    python examples/spp_head.py --steps 50

He et al. (2014) put a spatial pyramid pooling layer between the last conv layer and the first
fully connected layer, so one network accepts every input size: each pyramid level n pools the
(C, h, w) map into n x n bins whatever h and w are, giving C * sum(n**2) features. Training
uses "multi-size" batches as the paper does: every mini-batch has one random side length.

The task is synthetic (no download): a 3x3 "+" or "x" stamp at a random place on a noisy
canvas of random size; the label is the stamp. A translation-invariant max pyramid solves it
at any size, including sizes never seen in training (tested on 17x17 and 57x43 below).
"""
import argparse

import numpy as np

import nnlite
import nnlite.functional as F
import nnlite.nn as nn
from nnlite import optim

STAMPS = np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]],    # class 0: "+"
                   [[1, 0, 1], [0, 1, 0], [1, 0, 1]]],   # class 1: "x"
                  dtype=np.float32)


def make_batch(rng, n, h, w):
    """(n, 1, h, w) float32 images and (n,) int64 labels."""
    x = rng.normal(0, 0.3, (n, 1, h, w)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i in range(n):
        r, c = rng.integers(0, h - 2), rng.integers(0, w - 2)
        x[i, 0, r:r + 3, c:c + 3] += 2 * STAMPS[y[i]]
    return nnlite.tensor(x), nnlite.tensor(y.astype(np.int64))


def spp_net(levels=(4, 2, 1), channels=16, classes=2):
    """Conv trunk + SPP + linear head; the head's input size is fixed by the pyramid alone."""
    spp = nn.SpatialPyramidPooling(levels, mode="max")
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, channels, 3, padding=1), nn.ReLU(),
        spp,                                                  # (N, C*sum(n**2)) for any h, w
        nn.Linear(spp.num_features(channels), classes),
    )


def accuracy(model, rng, h, w, n=128):
    x, y = make_batch(rng, n, h, w)
    with nnlite.no_grad():
        pred = model(x).data.argmax(axis=1)
    return float((pred == y.data).mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    nnlite.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = spp_net()
    print(model)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    sizes = [(20, 20), (24, 32), (32, 24), (28, 28), (36, 30)]  # multi-size training
    for step in range(1, args.steps + 1):
        h, w = sizes[rng.integers(len(sizes))]
        x, y = make_batch(rng, args.batch, h, w)
        feats = model[4](model[3](model[2](model[1](model[0](x)))))  # trunk + SPP
        loss = F.cross_entropy(model[5](feats), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 1 or step % 50 == 0:
            print(f"step {step:4d}  input {h}x{w}  features {tuple(feats.shape)}  "
                  f"loss {loss.item():.4f}")
    for h, w in [(20, 20), (28, 28), (17, 17), (57, 43)]:
        print(f"accuracy on {h}x{w} inputs: {accuracy(model, rng, h, w):.3f}")


if __name__ == "__main__":
    main()
