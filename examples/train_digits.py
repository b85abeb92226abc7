"""Train a small Inception-style CNN on scikit-learn's bundled 8x8 digits with nnlite alone.

    python examples/train_digits.py            # full run (reaches >= 97% test accuracy)
    python examples/train_digits.py --epochs 3 # shorter

The 1,797 digit images ship with scikit-learn (no download); scikit-learn is used only to load
them and split train/test (stratified, 80/20). The network is ``nnlite.models.small_cnn``: a
BasicConv2d stem, two Inception modules around a 2x2 max-pool, global average pool, dropout and
a linear classifier. Training: Adam, cross-entropy, mini-batches, random 1-pixel shifts as
augmentation, cosine learning-rate decay. Pixels are scaled to [0, 1].

Threads: each op here works on a few kilobytes, far too little to split across threads, so the
run uses one thread by default (``--threads``); on a busy machine two threads were 10x slower
(every parallel region waits for a second core).
"""
import argparse
import sys
import time

import numpy as np
from numpy.lib.stride_tricks import as_strided

import nnlite
import nnlite.nn.functional as F
from nnlite import models, optim


def load_digits(seed=0, test_fraction=0.2):
    """(x_train, y_train, x_test, y_test): float32 (N, 1, 8, 8) in [0, 1] and int64 labels."""
    try:
        from sklearn.datasets import load_digits as _load
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise SystemExit("this example needs scikit-learn for its bundled digits data: "
                         "pip install scikit-learn") from None
    data = _load()
    x = (data.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed,
                                              stratify=y)
    return x_tr, y_tr, x_te, y_te


def random_shift(x, rng, max_shift=1):
    """Shift each image by up to ``max_shift`` pixels in each direction (zero fill)."""
    n, c, h, w = x.shape
    p = max_shift
    padded = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=x.dtype)
    padded[:, :, p:p + h, p:p + w] = x
    dy, dx = rng.integers(0, 2 * p + 1, size=(2, n))
    # image i's window padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]: a read-only strided view
    # of every window of every image, (n, dy, dx, c, h, w), then one gather of all n windows
    sn, sc, sh, sw = padded.strides
    windows = as_strided(padded, (n, 2 * p + 1, 2 * p + 1, c, h, w), (sn, sh, sw, sc, sh, sw),
                         writeable=False)
    return windows[np.arange(n), dy, dx]


def evaluate(model, x, y, batch_size=256):
    """Accuracy of ``model`` (eval mode) on (x, y)."""
    model.eval()
    correct = 0
    with nnlite.no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(nnlite.tensor(x[i:i + batch_size])).data
            correct += int((logits.argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(x)


def _progress(epoch, epochs, done, total, loss, width=24):
    filled = int(width * done / total)
    bar = "#" * filled + "." * (width - filled)
    sys.stdout.write(f"\repoch {epoch:>3}/{epochs} [{bar}] {done:>4}/{total} loss {loss:.4f}")
    sys.stdout.flush()


def train(epochs=15, batch_size=32, lr=3e-3, width=16, seed=0, train_limit=None,
          verbose=True, threads=1):
    """Train and return a dict with ``test_accuracy``, ``train_accuracy``, ``seconds``,
    ``history`` (per-epoch mean loss and test accuracy) and the ``model``.

    ``train_limit`` uses only the first that many training images (for quick runs); ``threads``
    is nnlite's thread count during the run (restored afterwards; None leaves it alone).
    """
    previous = nnlite.get_num_threads()
    if threads is not None:
        nnlite.set_num_threads(threads)
    try:
        return _train(epochs, batch_size, lr, width, seed, train_limit, verbose)
    finally:
        if threads is not None:
            nnlite.set_num_threads(previous)


def _train(epochs, batch_size, lr, width, seed, train_limit, verbose):
    nnlite.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_tr, y_tr, x_te, y_te = load_digits(seed)
    if train_limit is not None:
        x_tr, y_tr = x_tr[:train_limit], y_tr[:train_limit]
    model = models.small_cnn(in_channels=1, num_classes=10, width=width)
    opt = optim.Adam(model.parameters(), lr=lr)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    if verbose:
        n_params = sum(p.data.size for p in model.parameters())
        print(f"digits: {len(x_tr)} train / {len(x_te)} test images (8x8); small_cnn with "
              f"{n_params:,} parameters; backend {nnlite.backend()}, "
              f"{nnlite.get_num_threads()} thread(s)")
    history = []
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(x_tr))
        losses = []
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:  # BatchNorm needs more than one value per channel in training
                continue
            xb = nnlite.tensor(random_shift(x_tr[idx], rng))
            loss = F.cross_entropy(model(xb), nnlite.tensor(y_tr[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if verbose and sys.stdout.isatty():
                _progress(epoch, epochs, min(start + batch_size, len(order)), len(order),
                          float(np.mean(losses)))
        sched.step()
        acc = evaluate(model, x_te, y_te)
        history.append((float(np.mean(losses)), acc))
        if verbose:
            sys.stdout.write("\r" if sys.stdout.isatty() else "")
            print(f"epoch {epoch:>3}/{epochs}  loss {np.mean(losses):.4f}  test acc "
                  f"{acc:.2%}  ({time.perf_counter() - t0:.1f} s)" + " " * 20)
    seconds = time.perf_counter() - t0
    result = {"test_accuracy": evaluate(model, x_te, y_te),
              "train_accuracy": evaluate(model, x_tr, y_tr), "seconds": seconds,
              "history": history, "model": model}
    if verbose:
        print(f"final test accuracy: {result['test_accuracy']:.2%} "
              f"({round(result['test_accuracy'] * len(x_te))}/{len(x_te)}), train accuracy "
              f"{result['train_accuracy']:.2%}, {seconds:.1f} s")
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--width", type=int, default=16, help="stem channels (multiple of 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    res = train(args.epochs, args.batch_size, args.lr, args.width, args.seed,
                threads=args.threads)
    return 0 if res["test_accuracy"] >= 0.97 else 1


if __name__ == "__main__":
    sys.exit(main())
