"""Training step: nnlite vs PyTorch, same initial weights, interleaved (issue #17).

    python benchmarks/bench_train.py [--nets small_b64,small_b8,resnet18] [--threads 2]
        [--repeat 9] [--quick] [--no-memory] [--csv out.csv]

One step = forward + cross-entropy + backward + SGD (lr 0.01, momentum 0.9, weight decay 5e-4)
step + zero_grad, float32, train mode (BatchNorm batch statistics). Nets:

    small_b64   conv3x3 + BN + ReLU (3->32, 32->32), max pool 2, (32->64, 64->64), max pool 2,
                conv 1x1 64->128, depthwise 3x3 (128 groups), adaptive avg pool 1, linear 128->10;
                batch 64 at 32x32
    small_b8    the same net, batch 8 at 64x64
    resnet18    torchvision's ResNet-18 with the CIFAR stem (conv1 3x3/1, no max pool),
                10 classes, batch 64 at 32x32

Both frameworks start from the same weights (nnlite's seeded init copied into torch) and see the
same batch; "loss0 rel" is the relative difference of the first-step losses. Steps of the two
frameworks alternate (interleaved rounds, warm-up first); median and best of --repeat rounds.
"peak MB" is the peak growth of the resident set over the first 4 training steps (from the built
model and batch: includes what an allocator keeps cached), measured in a fresh subprocess per framework and net (peak RSS reset via
/proc/self/clear_refs where Linux allows, else getrusage's lifetime peak). Never asserts.

Run with ``OMP_WAIT_POLICY=passive`` on a busy machine; the header prints the load average.
"""
import os
import subprocess
import sys

import nnlite  # noqa: I001  (before NumPy: sets the idle-thread policy of OpenMP and OpenBLAS)
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _timing  # noqa: E402
import nnlite.nn as nn  # noqa: E402
import nnlite.nn.functional as F  # noqa: E402

NETS = {"small_b64": ("small", 64, 32), "small_b8": ("small", 8, 64),
        "resnet18": ("resnet18", 64, 32)}
LR, MOMENTUM, WD = 0.01, 0.9, 5e-4


# ------------------------------------------------------------------------------------- nets
def _small_layers(lib):
    """The small CNN's layer list for ``lib`` (nnlite.nn or torch.nn): same names both sides."""
    def cbr(i, o):
        return [lib.Conv2d(i, o, 3, padding=1, bias=False), lib.BatchNorm2d(o), lib.ReLU()]
    return (cbr(3, 32) + cbr(32, 32) + [lib.MaxPool2d(2)] + cbr(32, 64) + cbr(64, 64)
            + [lib.MaxPool2d(2), lib.Conv2d(64, 128, 1), lib.Conv2d(128, 128, 3, padding=1,
                                                                   groups=128),
               lib.AdaptiveAvgPool2d(1), lib.Flatten(), lib.Linear(128, 10)])


def build_nnlite(kind, seed=0):
    nnlite.manual_seed(seed)
    if kind == "small":
        return nn.Sequential(*_small_layers(nn))
    from nnlite import models

    m = models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


def build_torch(torch, kind):
    if kind == "small":
        return torch.nn.Sequential(*_small_layers(torch.nn))
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from test_models import _torchvision_architectures

    m = _torchvision_architectures(torch)["resnet18"]()
    m.fc = torch.nn.Linear(512, 10)
    m.conv1 = torch.nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    m.maxpool = torch.nn.Identity()
    return m


def batch(n, size, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    return x, y


# ------------------------------------------------------------------------------------ steps
def nnlite_stepper(model, x, y):
    opt = nnlite.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    xt, yt = nnlite.tensor(x), nnlite.tensor(y)
    model.train()

    def step():
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return float(loss.data)
    return step


def torch_stepper(torch, model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()

    def step():
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return float(loss.detach())
    return step


def make_steppers(net, torch):
    kind, n, size = NETS[net]
    x, y = batch(n, size)
    model = build_nnlite(kind)
    out = {"nnlite": nnlite_stepper(model, x, y)}
    if torch is not None:
        tmodel = build_torch(torch, kind)
        tmodel.load_state_dict({k: torch.from_numpy(v.copy())
                                for k, v in model.state_dict().items()})
        out["torch"] = torch_stepper(torch, tmodel, x, y)
    return out


# ----------------------------------------------------------------------------------- memory
def _memory_child(net, framework, threads):
    """In a fresh process: peak RSS growth (MB) over 4 steps from the built model."""
    torch = None
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
    nnlite.set_num_threads(threads)
    step = make_steppers(net, torch)[framework]

    def steps():
        for _ in range(4):
            step()
    mb, _ = _timing.peak_rss_growth_mb(steps)
    print(f"{mb:.1f}")


def peak_memory(net, framework, threads):
    try:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child",
                              f"{net}:{framework}", "--threads", str(threads)],
                             capture_output=True, text=True, timeout=900, check=True)
        return out.stdout.strip().splitlines()[-1]
    except (subprocess.SubprocessError, IndexError) as exc:
        return f"n/a ({type(exc).__name__})"


# ------------------------------------------------------------------------------------- main
def main(argv=None):
    p = _timing.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--nets", default="small_b64,small_b8,resnet18")
    p.add_argument("--no-memory", action="store_true", help="skip the RSS subprocesses")
    p.add_argument("--no-torch", action="store_true", help="nnlite only")
    p.add_argument("--memory-child", default=None, help=argparse_hidden())
    p.set_defaults(threads=2, repeat=9)
    args = p.parse_args(argv)
    if args.memory_child:
        net, framework = args.memory_child.split(":")
        return _memory_child(net, framework, args.threads)
    if args.quick:
        args.repeat, args.nets = 3, "small_b8"
    _timing.apply_threads(args)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None
    if torch is not None:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    extra = [("torch", torch.__version__ if torch else "not installed"),
             ("threads", f"{args.threads} (nnlite, BLAS, torch)"),
             ("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "(unset: spin, then sleep)")),
             ("load average", " ".join(f"{v:.2f}" for v in os.getloadavg()))]
    print(_timing.header(extra))
    rows = []
    for net in args.nets.split(","):
        steppers = make_steppers(net, torch)
        first = {k: fn() for k, fn in steppers.items()}          # identical weights: step 1
        times = _timing.interleave(steppers, repeat=args.repeat, warmup=1)
        med = {k: _timing.median(v) for k, v in times.items()}
        del steppers
        for k, ts in times.items():
            row = {"net": net, "framework": k, "median ms": f"{med[k] * 1e3:.1f}",
                   "min ms": f"{_timing.best(ts) * 1e3:.1f}", "loss0": f"{first[k]:.6f}"}
            if "torch" in med:
                row["/torch"] = f"{med[k] / med['torch']:.2f}"
                row["loss0 rel"] = f"{abs(first[k] - first['torch']) / abs(first['torch']):.1e}"
            if not args.no_memory:
                row["peak MB"] = peak_memory(net, k, args.threads)
            rows.append(row)
            print(f"# {net} {k}: {row['median ms']} ms", flush=True)
    cols = ["net", "framework", "median ms", "min ms", "/torch", "loss0", "loss0 rel", "peak MB"]
    print(f"# load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print()
    _timing.print_table(rows, cols)
    if args.csv:
        _timing.write_csv(args.csv, rows, cols)


def argparse_hidden():
    import argparse
    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
