"""``nnlite demo``: what nnlite does, in one short run.

1. a 1×1 and a 3×3 convolution on the same 28×28×192 map: params and MACs (theory) beside
   measured time and GFLOP/s — the 1×1 does 9× less work but is memory-bound;
2. the fast backend checked against the naive-loop reference on the same input;
3. GoogLeNet's Inception 3a, naive vs with 1×1 reductions, counted by ``nnlite.summary``;
4. a whole model's cost report and one timed forward pass.
"""
import time

import numpy as np

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F


def _median_time(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _header():
    from . import _blas

    print(f"nnlite {nnlite.__version__} | backend {nnlite.backend()} | "
          f"threads {nnlite.get_num_threads()} | {_blas.info().split(' (')[0]}")


def conv_cost_table(batch, repeat):
    """1×1 vs 3×3 on 28×28×192 -> 64 channels: theory beside measurement."""
    rng = np.random.default_rng(0)
    x = nnlite.tensor(rng.standard_normal((batch, 192, 28, 28)).astype(np.float32))
    rows = []
    for k in (1, 3):
        conv = nn.Conv2d(192, 64, k, padding=k // 2)
        params = sum(p.data.size for p in conv.parameters())
        macs = batch * 64 * 192 * k * k * 28 * 28
        with nnlite.no_grad():
            t = _median_time(lambda: conv(x), repeat)
        rows.append((f"{k}x{k} conv 192->64", params, macs, t, 2 * macs / t / 1e9))
    print(f"\n1. 1x1 vs 3x3 convolution on a {batch}x192x28x28 input")
    print(f"   {'layer':<20}{'params':>10}{'MACs':>16}{'time ms':>10}{'GFLOP/s':>10}")
    for name, params, macs, t, gf in rows:
        print(f"   {name:<20}{params:>10,}{macs:>16,}{t * 1e3:>10.2f}{gf:>10.1f}")
    (_, p1, m1, t1, _), (_, p3, m3, t3, _) = rows
    print(f"   3x3 / 1x1: {m3 / m1:.1f}x the MACs, {t3 / t1:.1f}x the time "
          "(a 1x1 conv moves as many bytes per MAC as it computes: memory-bound)")


def reference_check():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 9, 7))
    w = rng.standard_normal((6, 2, 3, 2))
    kw = dict(stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=2)
    fast = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), None, **kw).data
    with nnlite.using_backend("reference"):
        ref = F.conv2d(nnlite.tensor(x), nnlite.tensor(w), None, **kw).data
    print("\n2. fast backend vs naive-loop reference (grouped, strided, dilated, 3x2 kernel):")
    print(f"   output {fast.shape}, max |difference| = {np.max(np.abs(fast - ref)):.2e}")


def inception_costs():
    print("\n3. GoogLeNet Inception 3a on 28x28x192 (counted by nnlite.summary on real modules)")
    # the paper's 5x5 in both variants (torchvision's GoogLeNet uses a 3x3 there)
    naive = nn.Inception(192, 64, 96, 128, 16, 32, 32, reduce=False, branch3_kernel_size=5)
    reduced = nn.Inception(192, 64, 96, 128, 16, 32, 32, branch3_kernel_size=5)
    rows = []
    for name, block in (("naive (no 1x1 reductions)", naive), ("with 1x1 reductions", reduced)):
        rep = nnlite.summary(block, (1, 192, 28, 28))
        rows.append((name, rep.params, rep.macs))
    print(f"   {'variant':<28}{'params*':>12}{'MACs':>16}")
    for name, p, m in rows:
        print(f"   {name:<28}{p:>12,}{m:>16,}")
    print(f"   reductions save {rows[0][2] / rows[1][2]:.1f}x the multiplies "
          "(*params include each conv's BatchNorm, as in GoogLeNet's BasicConv2d)")


def model_summary(quick):
    from . import models

    name, model, shape = (("small_cnn", models.small_cnn(), (1, 1, 28, 28)) if quick
                          else ("googlenet", models.googlenet(), (1, 3, 224, 224)))
    model.eval()
    rep = nnlite.summary(model, shape)
    text = str(rep).splitlines()
    print(f"\n4. {name} cost report ({len(text)} lines; first and last rows shown)")
    for line in text[:8] + ["   ..."] + text[-4:]:
        print("   " + line)
    x = nnlite.tensor(np.random.default_rng(2).standard_normal(shape).astype(np.float32))
    with nnlite.no_grad():
        t = _median_time(lambda: model(x), 1 if not quick else 3)
    print(f"   forward pass of {shape}: {t * 1e3:.1f} ms ({2 * rep.macs / t / 1e9:.1f} GFLOP/s)")


def run(quick=False):
    _header()
    conv_cost_table(batch=1 if quick else 4, repeat=3 if quick else 5)
    reference_check()
    inception_costs()
    model_summary(quick)
    print("\nMore: `nnlite info`, the benchmarks in benchmarks/, and the guide in docs/.")
    return 0
