"""``nnlite bench``: the 1×1 vs k×k cost study — theory from ``nnlite.summary`` beside measurement.

What it runs (every case is a real nnlite module; bias-free convs, so params and MACs are the
weight counts the classic write-ups quote):

- **pairs** — the classic comparisons: Inception 3a naive vs 1×1-reduced; a 5×5 conv 128→256
  direct vs through a 1×1 to 32; the Inception 5×5 branch 192→32 direct vs through a 1×1 to 16;
  a plain 3×3 256→256 vs the ResNet bottleneck 256→64→64→256; a standard 3×3 16→32 vs
  depthwise-separable; a 5×5 vs two 3×3; a 7×7 vs 1×7 + 7×1; a dense vs a 32-group 3×3. For each
  variant: params, MACs, FLOPs, bytes moved and arithmetic intensity (all from ``nnlite.summary``)
  beside the measured forward time, GFLOP/s and forward+backward time; for each pair the theory
  ratio (MACs) beside the measured ratio (time).
- **k-sweep** — conv time vs kernel size k ∈ {1, 3, 5, 7} at fixed channels, with the time of the
  im2col step alone (the ``im2col`` kernel on the same geometry) and its share of the conv.
- **channels** — 1×1 vs 3×3 vs depthwise 3×3 as the channel count grows.
- **algorithms** — the same convs under each conv algorithm the build offers that really runs
  for the layer (``nnlite.conv_algorithm(name)``; 'direct' for the depthwise conv and the
  stride-1 dense convs, by the small-map kernel); a build
  without the compiled extension has one algorithm (im2col + GEMM), which the k-sweep measures.

``quick`` keeps every input of the classic comparisons at the write-ups' own sizes (so the table
shows their exact params and MACs); it only shortens the timing (fewer rounds, shorter samples)
and the sweeps (fewer points).

Timing protocol: every callable is warmed up, calibrated (repeated inside a sample until a sample
lasts ``min_time``), then the variants of one comparison run round-robin (interleaved) for
``repeat`` rounds; the median is reported with its spread (interquartile range / median), and a
ratio is the median of the per-round ratios (paired samples, so load that hits one round hits
both sides). Forward runs in eval mode under ``no_grad``; forward+backward runs in train mode and
back-propagates ``output.sum()`` to the weights and the input (the work of a layer inside a
network).

    >>> study = nnlite.bench.run(Config(quick=True, only=("dwsep",)))
    >>> print(study.to_text())
"""
import os
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np

from . import kernels
from . import nn
from ._convgeom import conv2d_geometry
from .autograd import no_grad
from .summary import summary
from .tensor import Tensor

__all__ = ["Config", "Study", "run", "SECTIONS", "PAIR_KEYS", "SWEEP_KEYS", "conv_algorithms",
           "runs_as"]

PAIR_KEYS = ("inception3a", "5x5-via-1x1", "5x5-branch", "bottleneck", "dwsep", "5x5-vs-3x3",
             "7x7-factorized", "grouped")
SWEEP_KEYS = ("k-sweep", "channels", "algorithms")
SECTIONS = PAIR_KEYS + SWEEP_KEYS

#: what nnlite.summary's FLOPs include here (count_all=True)
FLOPS_DEFINITION = ("FLOPs = 2 x MACs + one per bias add, BN output (x2), pool tap, activation "
                    "and elementwise op (nnlite.summary count_all=True)")


@dataclass(frozen=True)
class Config:
    """Sizes and timing of one study run.

    ``scale`` multiplies every spatial size (default 1.0, also with ``quick``: the classic
    comparisons keep the write-ups' geometries); ``repeat`` interleaved rounds (default 5,
    ``quick`` 3); ``only`` a tuple of section keys (``SECTIONS``) to run;
    ``min_time`` seconds per timed sample (short calls are looped to reach it).
    """

    quick: bool = False
    batch: int = 1
    repeat: int = None
    warmup: int = 1
    scale: float = None
    only: tuple = ()
    min_time: float = None
    progress: bool = True
    seed: int = 0

    def resolved(self):
        """A copy with the quick/full defaults filled in; raises ValueError on bad values."""
        cfg = replace(
            self,
            repeat=self.repeat if self.repeat is not None else (3 if self.quick else 5),
            scale=self.scale if self.scale is not None else 1.0,
            min_time=self.min_time if self.min_time is not None
            else (0.01 if self.quick else 0.02),
            only=tuple(self.only or ()))
        for name in ("batch", "repeat"):
            v = getattr(cfg, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"bench: {name} must be a positive int, got {v!r}")
        if isinstance(cfg.warmup, bool) or not isinstance(cfg.warmup, int) or cfg.warmup < 0:
            raise ValueError(f"bench: warmup must be an int >= 0, got {cfg.warmup!r}")
        if not (isinstance(cfg.scale, (int, float)) and 0 < cfg.scale <= 4):
            raise ValueError(f"bench: scale must be a number in (0, 4], got {cfg.scale!r}")
        if not (isinstance(cfg.min_time, (int, float)) and cfg.min_time >= 0):
            raise ValueError(f"bench: min_time must be >= 0 seconds, got {cfg.min_time!r}")
        unknown = [k for k in cfg.only if k not in SECTIONS]
        if unknown:
            raise ValueError(f"bench: unknown section(s) {unknown}; choose from {list(SECTIONS)}")
        return cfg

    def wants(self, key):
        return not self.only or key in self.only

    def hw(self, side):
        """A spatial size scaled by ``scale`` (at least 1)."""
        return max(1, int(side * self.scale + 0.5))


# ------------------------------------------------------------------------------ the cases
@dataclass
class Variant:
    """One module to count and time: ``build()`` -> Module, input (C, H, W) (batch from Config)."""

    label: str
    build: object
    chw: tuple
    kernel: int = None
    channels: int = None
    algorithm: str = None


@dataclass
class Pair:
    key: str
    title: str
    base: Variant
    alt: Variant


def _conv(cin, cout, k, **kw):
    """A bias-free Conv2d with 'same' output size for odd k (weights only, as the write-ups)."""
    kh, kw_ = (k, k) if isinstance(k, int) else k
    return nn.Conv2d(cin, cout, (kh, kw_), padding=(kh // 2, kw_ // 2), bias=False, **kw)


def _plain_block(cin, cout, kernel_size=1, padding=0, **kw):
    """conv_block for the blocks: one bias-free Conv2d (no BN/ReLU)."""
    return nn.Conv2d(cin, cout, kernel_size, padding=padding, bias=False, **kw)


def _seq(*mods):
    return nn.Sequential(*mods)


def pairs(cfg):
    """The classic comparisons at ``cfg``'s sizes: list of ``Pair`` (baseline first)."""
    out = []
    s = cfg.hw(28)
    out.append(Pair("inception3a", f"Inception 3a, {s}x{s}x192: naive vs 1x1 reductions",
                    Variant("naive (1x1, 3x3, 5x5, pool)", lambda: nn.Inception(
                        192, 64, 96, 128, 16, 32, 32, conv_block=_plain_block, reduce=False,
                        branch3_kernel_size=5), (192, s, s)),
                    Variant("with 1x1 reductions", lambda: nn.Inception(
                        192, 64, 96, 128, 16, 32, 32, conv_block=_plain_block,
                        branch3_kernel_size=5), (192, s, s))))
    s = cfg.hw(100)
    out.append(Pair("5x5-via-1x1", f"5x5 conv 128->256, {s}x{s}: direct vs 1x1 to 32 first",
                    Variant("5x5 direct", lambda: _conv(128, 256, 5), (128, s, s)),
                    Variant("1x1 128->32, 5x5 32->256",
                            lambda: _seq(_conv(128, 32, 1), _conv(32, 256, 5)), (128, s, s))))
    s = cfg.hw(28)
    out.append(Pair("5x5-branch", f"Inception 5x5 branch 192->32, {s}x{s}: direct vs 1x1 to 16",
                    Variant("5x5 direct", lambda: _conv(192, 32, 5), (192, s, s)),
                    Variant("1x1 192->16, 5x5 16->32",
                            lambda: _seq(_conv(192, 16, 1), _conv(16, 32, 5)), (192, s, s))))
    s = cfg.hw(56)
    out.append(Pair("bottleneck", f"ResNet 256 channels, {s}x{s}: plain 3x3 vs bottleneck",
                    Variant("3x3 256->256", lambda: _conv(256, 256, 3), (256, s, s)),
                    Variant("Bottleneck 256->64->64->256 (+BN, ReLU, add)",
                            lambda: nn.Bottleneck(256, 64), (256, s, s))))
    s = cfg.hw(112)
    out.append(Pair("dwsep", f"3x3 16->32, {s}x{s}: standard vs depthwise-separable",
                    Variant("3x3 16->32", lambda: _conv(16, 32, 3), (16, s, s)),
                    Variant("depthwise 3x3 + pointwise 1x1", lambda: nn.DepthwiseSeparableConv2d(
                        16, 32, 3, padding=1, bias=False), (16, s, s))))
    s = cfg.hw(28)
    out.append(Pair("5x5-vs-3x3", f"64->64, {s}x{s}: one 5x5 vs two stacked 3x3",
                    Variant("5x5", lambda: _conv(64, 64, 5), (64, s, s)),
                    Variant("3x3 then 3x3", lambda: nn.StackedConv3x3(
                        64, 64, conv_block=_plain_block), (64, s, s))))
    s = cfg.hw(17)
    out.append(Pair("7x7-factorized", f"128->128, {s}x{s}: 7x7 vs 1x7 then 7x1",
                    Variant("7x7", lambda: _conv(128, 128, 7), (128, s, s)),
                    Variant("1x7 then 7x1", lambda: nn.AsymmetricConv2d(
                        128, 128, 7, conv_block=_plain_block), (128, s, s))))
    s = cfg.hw(56)
    out.append(Pair("grouped", f"3x3 128->128, {s}x{s}: dense vs 32 groups (ResNeXt)",
                    Variant("dense (groups=1)", lambda: _conv(128, 128, 3), (128, s, s)),
                    Variant("groups=32", lambda: _conv(128, 128, 3, groups=32), (128, s, s))))
    return [p for p in out if cfg.wants(p.key)]


def k_sweep_variants(cfg, algorithm=None):
    """k x k convs 64 -> 64 for k in 1, 3, 5, 7 (under ``algorithm`` when given)."""
    s, c = cfg.hw(56), 64
    return [Variant(f"{k}x{k} {c}->{c}", (lambda k=k: _conv(c, c, k)), (c, s, s), kernel=k,
                    channels=c, algorithm=algorithm) for k in (1, 3, 5, 7)]


def channel_sweep_variants(cfg):
    s = cfg.hw(28)
    chans = (16, 64, 256) if cfg.quick else (16, 32, 64, 128, 256, 512)
    out = []
    for c in chans:
        out.append(Variant(f"1x1 {c}->{c}", (lambda c=c: _conv(c, c, 1)), (c, s, s), 1, c))
        out.append(Variant(f"3x3 {c}->{c}", (lambda c=c: _conv(c, c, 3)), (c, s, s), 3, c))
        out.append(Variant(f"depthwise 3x3 {c}", (lambda c=c: _conv(c, c, 3, groups=c)),
                           (c, s, s), 3, c))
    return out


# ------------------------------------------------------------------- conv algorithms
def conv_algorithms():
    """The conv algorithms this build can select (``nnlite.available_conv_algorithms()`` without
    'auto'): ``['im2col', 'implicit', 'direct']`` with the compiled extension, else ``['im2col']``."""
    from ._algorithms import available_conv_algorithms

    return [a for a in available_conv_algorithms() if a != "auto"]


def _algorithm_context(name):
    import contextlib

    from ._algorithms import conv_algorithm

    return contextlib.nullcontext() if name is None else conv_algorithm(name)


def runs_as(conv, chw, batch, algorithm):
    """The algorithm a bias-free ``conv`` (an ``nn.Conv2d``) really runs on a (batch, *chw) input
    when ``algorithm`` is asked for ('direct' exists for depthwise and stride-1 convs; any
    other conv asked for 'direct' runs 'implicit'); None when the conv cannot run it
    ('winograd' on a conv that is not 3x3 with stride and dilation 1)."""
    from ._algorithms import resolve

    geom = conv2d_geometry((batch,) + tuple(chw), conv.weight.shape, None, conv.stride,
                           conv.padding, conv.dilation, conv.groups)
    try:
        return resolve(geom, algorithm)
    except ValueError:          # 'winograd' asked for a conv it cannot compute: not listed
        return None


def algorithm_variants(cfg, algorithms):
    """Each conv of the algorithm sweep under each algorithm that really runs for it (an
    algorithm the layer would silently replace by another is not listed twice)."""
    s, c = cfg.hw(56), 64
    ks = (1, 3, 5) if cfg.quick else (1, 3, 5, 7)
    builds = [(f"{k}x{k} {c}->{c}", (lambda k=k: _conv(c, c, k)), k) for k in ks]
    builds.append((f"depthwise 3x3 {c}", (lambda: _conv(c, c, 3, groups=c)), 3))
    out = []
    for label, build, k in builds:
        conv = build()
        for a in algorithms:
            if runs_as(conv, (c, s, s), cfg.batch, a) == a:
                out.append(Variant(label, build, (c, s, s), kernel=k, channels=c, algorithm=a))
    return out


# ------------------------------------------------------------------------------ timing
class Progress:
    """tqdm when installed (and stderr is a terminal), else one updating line on stderr."""

    def __init__(self, total, enabled=True, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.done, self.text = total, 0, ""
        self.enabled = bool(enabled) and total > 0
        self._bar = None
        self._last = 0.0
        if self.enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, file=self.stream, leave=False, unit="step",
                                 dynamic_ncols=True)
            except ImportError:
                self._bar = None

    def stage(self, text):
        self.text = text
        if self._bar is not None:
            self._bar.set_description_str(text[:40])
        self._draw(force=True)

    def tick(self, n=1):
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        self._draw()

    def _draw(self, force=False):
        if not self.enabled or self._bar is not None:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        pct = 100 * self.done // max(self.total, 1)
        line = f"nnlite bench [{self.done}/{self.total} {pct:3d}%] {self.text}"[:79]
        self.stream.write("\r" + line.ljust(79))
        self.stream.flush()

    def close(self):
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()


def _steps(cfg, n_entries):
    return n_entries * (max(cfg.warmup, 1) + cfg.repeat)


def interleave(entries, cfg, progress):
    """Time ``entries`` (list of (name, fn)) round-robin; dict name -> list of seconds.

    Warm-up (the first warm-up call also calibrates how many calls make one sample of at least
    ``cfg.min_time``), then ``cfg.repeat`` rounds calling every entry once per round in order.
    """
    loops = {}
    for name, fn in entries:
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        for _ in range(cfg.warmup - 1):
            fn()
        progress.tick(max(cfg.warmup, 1))
        loops[name] = min(1000, max(1, int(cfg.min_time / t))) if t > 0 else 1
    times = {name: [] for name, _ in entries}
    for _ in range(cfg.repeat):
        for name, fn in entries:
            k = loops[name]
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            times[name].append((time.perf_counter() - t0) / k)
            progress.tick()
    return times


def median(xs):
    return float(np.median(xs)) if len(xs) else float("nan")


def spread(xs):
    """Interquartile range / median (0 for fewer than 2 samples)."""
    if len(xs) < 2:
        return 0.0
    q1, q2, q3 = np.percentile(xs, [25, 50, 75])
    return float((q3 - q1) / q2) if q2 > 0 else float("nan")


def paired_ratio(base, alt):
    """Median over rounds of base[i] / alt[i] (the rounds are interleaved, so paired)."""
    r = [b / a for b, a in zip(base, alt) if a > 0]
    return median(r)


# ------------------------------------------------------------------------ measurement
@dataclass
class Measured:
    """A variant with its cost report and timings (seconds per call, one entry per round)."""

    variant: Variant
    section: str
    batch: int
    report: object
    fwd: list = field(default_factory=list)
    fwdbwd: list = None
    im2col: list = None
    im2col_note: str = ""
    error: str = ""

    @property
    def fwd_s(self):
        return median(self.fwd)

    @property
    def fwdbwd_s(self):
        return median(self.fwdbwd) if self.fwdbwd else float("nan")

    @property
    def gflops(self):
        t = self.fwd_s
        return self.report.flops / t / 1e9 if t > 0 else float("nan")

    @property
    def im2col_s(self):
        return median(self.im2col) if self.im2col else float("nan")

    @property
    def im2col_share(self):
        """Median per-round im2col time / conv forward time (0.0 when im2col is skipped)."""
        if self.im2col is None:
            return 0.0 if self.im2col_note else float("nan")
        return median([i / f for i, f in zip(self.im2col, self.fwd) if f > 0])


def _inputs(model_chw, batch, seed):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((batch,) + tuple(model_chw)).astype(np.float32)
    return Tensor(data), Tensor(data.copy(), requires_grad=True)


def _forward_fn(model, x, algorithm=None):
    def fwd():
        with _algorithm_context(algorithm), no_grad():
            model(x)
    return fwd


def _fwdbwd_fn(model, xg):
    params = list(model.parameters())

    def fwdbwd():
        model.train()
        try:
            for p in params:
                p.grad = None
            xg.grad = None
            model(xg).sum().backward()
        finally:
            model.eval()
    return fwdbwd


def _im2col_fn(conv, x):
    """The im2col step the conv forward does on ``x`` (same chunking), or a reason it has none."""
    geom = conv2d_geometry(x.shape, conv.weight.shape, None, conv.stride, conv.padding,
                           conv.dilation, conv.groups)
    if geom.is_pointwise:
        return None, "skipped (1x1 reads the image as the column matrix)"
    try:
        im2col = kernels.impl("im2col")
    except KeyError as exc:
        return None, f"no im2col kernel for this backend ({exc})"
    data = np.ascontiguousarray(x.data)
    nb = geom.batch_chunk(data.dtype.itemsize)
    ws = np.empty(geom.col_shape(nb), dtype=data.dtype)  # (NB, C*KH*KW, OH*OW)

    def run():
        for n0 in range(0, geom.n, nb):
            n1 = min(n0 + nb, geom.n)
            im2col(data[n0:n1], geom, out=ws[:n1 - n0])
    return run, ""


def _prepare(variant, section, cfg, progress):
    """Build the module, count it with nnlite.summary, and make its inputs."""
    import nnlite

    nnlite.manual_seed(cfg.seed)
    model = variant.build()
    model.eval()
    shape = (cfg.batch,) + tuple(variant.chw)
    report = summary(model, shape, count_all=True)
    progress.tick()
    x, xg = _inputs(variant.chw, cfg.batch, cfg.seed)
    return model, x, xg, Measured(variant, section, cfg.batch, report)


def measure_pair(pair, cfg, progress):
    progress.stage(pair.key)
    entries, ms = [], []
    for tag, v in (("base", pair.base), ("alt", pair.alt)):
        model, x, xg, m = _prepare(v, pair.key, cfg, progress)
        ms.append(m)
        entries.append((f"{tag}:fwd", _forward_fn(model, x)))
        entries.append((f"{tag}:fb", _fwdbwd_fn(model, xg)))
    t = interleave(entries, cfg, progress)
    ms[0].fwd, ms[0].fwdbwd = t["base:fwd"], t["base:fb"]
    ms[1].fwd, ms[1].fwdbwd = t["alt:fwd"], t["alt:fb"]
    return PairResult(pair, ms[0], ms[1])


def measure_sweep(section, variants, cfg, progress, with_im2col=True):
    """Forward time of each variant (and its im2col step), all interleaved in one group."""
    progress.stage(section)
    entries, ms = [], []
    for i, v in enumerate(variants):
        model, x, _, m = _prepare(v, section, cfg, progress)
        ms.append(m)
        fwd = _forward_fn(model, x, v.algorithm)
        try:
            fwd()
        except Exception as exc:  # noqa: BLE001 - an algorithm may not take this geometry
            m.error = f"{type(exc).__name__}: {exc}"
            progress.tick(_steps(cfg, 2 if with_im2col else 1))
            continue
        entries.append((f"{i}:fwd", fwd))
        if with_im2col and v.algorithm in (None, "im2col"):
            fn, note = _im2col_fn(model, x)
            m.im2col_note = note
            if fn is not None:
                entries.append((f"{i}:im2col", fn))
            else:
                progress.tick(_steps(cfg, 1))
        elif with_im2col:
            progress.tick(_steps(cfg, 1))
    t = interleave(entries, cfg, progress)
    for i, m in enumerate(ms):
        m.fwd = t.get(f"{i}:fwd", [])
        m.im2col = t.get(f"{i}:im2col")
    return ms


@dataclass
class PairResult:
    pair: Pair
    base: Measured
    alt: Measured

    @property
    def theory_ratio(self):
        """Baseline MACs / alternative MACs (how many times fewer multiplies)."""
        return self.base.report.macs / self.alt.report.macs if self.alt.report.macs else np.nan

    @property
    def fwd_ratio(self):
        return paired_ratio(self.base.fwd, self.alt.fwd)

    @property
    def fwdbwd_ratio(self):
        return paired_ratio(self.base.fwdbwd, self.alt.fwdbwd)


# ------------------------------------------------------------------------------ the run
@dataclass
class Study:
    """Everything one run measured: ``pairs`` (PairResult), ``k_sweep``, ``channels``,
    ``algorithms`` (lists of Measured), ``algorithm_names``, ``config``, ``header`` lines and
    ``wall_s``. Format with ``to_text()``, ``to_markdown()``, ``to_csv(path)``, ``plot(path)``."""

    config: Config
    header: list
    pairs: list = field(default_factory=list)
    k_sweep: list = field(default_factory=list)
    channels: list = field(default_factory=list)
    algorithms: list = field(default_factory=list)
    algorithm_names: list = field(default_factory=list)
    wall_s: float = 0.0

    def measured(self):
        """Every Measured in output order."""
        out = []
        for p in self.pairs:
            out += [p.base, p.alt]
        return out + self.k_sweep + self.channels + self.algorithms

    def to_text(self):
        from ._benchout import text
        return text(self)

    def to_markdown(self):
        from ._benchout import markdown
        return markdown(self)

    def to_csv(self, path=None):
        from ._benchout import csv_text
        return csv_text(self, path)

    def plot(self, path):
        from ._benchout import plot
        return plot(self, path)


def header_lines(cfg):
    """Machine/build facts (as ``nnlite info``) and the timing protocol."""
    from .cli import info_lines

    keep = ("nnlite", "numpy", "backend", "OpenMP", "threads", "BLAS", "CPU", "SIMD")
    rows = [(k, v) for k, v in info_lines() if k in keep]
    warning = None
    try:
        loads = os.getloadavg()
        rows.append(("load average", ", ".join(f"{v:.1f}" for v in loads)
                     + " (1/5/15 min) at start"))
        warning = oversubscription_warning(loads[0])
    except OSError:  # pragma: no cover - not on Linux
        pass
    rows.append(("timing", f"{cfg.warmup} warm-up, {cfg.repeat} interleaved rounds, median; "
                           f"spread = IQR/median; ratios = median of per-round ratios"))
    rows.append(("sizes", f"batch {cfg.batch}, spatial scale {cfg.scale:g}"
                          + (" (--quick)" if cfg.quick else "") + ", float32"))
    if warning:
        rows.append(("WARNING", warning))
    width = max(len(k) for k, _ in rows)
    return [f"# {k:<{width}}  {v}" for k, v in rows]


def oversubscription_warning(load, cores=None, threads=None):
    """A warning when other processes keep more CPUs busy than there are cores and nnlite uses
    several threads (multi-threaded BLAS/OpenMP calls then wait for descheduled threads); else
    None."""
    from ._config import _cpu_count, get_num_threads

    cores = _cpu_count() if cores is None else cores
    threads = get_num_threads() if threads is None else threads
    if threads > 1 and load > cores:
        return (f"load average {load:.1f} > {cores} cores with {threads} threads: "
                "multi-threaded kernels wait for descheduled threads, so times are inflated "
                "and noisy; compare ratios, or rerun with --threads 1 / on an idle machine")
    return None


def total_steps(cfg, algorithms):
    """Progress steps of a run (one per warm-up/round call of every timed callable, one per
    summary)."""
    n = 0
    per = max(cfg.warmup, 1) + cfg.repeat
    n += len(pairs(cfg)) * (2 + 4 * per)
    if cfg.wants("k-sweep"):
        vs = k_sweep_variants(cfg)
        n += len(vs) * (1 + 2 * per)
    if cfg.wants("channels"):
        vs = channel_sweep_variants(cfg)
        n += len(vs) * (1 + per)
    if cfg.wants("algorithms") and len(algorithms) > 1:
        vs = algorithm_variants(cfg, algorithms)
        n += len(vs) * (1 + 2 * per)
    return n


def run(config=None, progress_stream=None):
    """Run the study described by ``config`` (a ``Config``; default: the full run).

    Returns a ``Study``. Progress goes to ``progress_stream`` (default stderr) when
    ``config.progress`` and the stream is a terminal.
    """
    cfg = (config or Config()).resolved()
    t_start = time.perf_counter()
    algorithms = conv_algorithms()
    stream = progress_stream or sys.stderr
    tty = getattr(stream, "isatty", lambda: False)()
    progress = Progress(total_steps(cfg, algorithms), cfg.progress and tty, stream)
    study = Study(cfg, header_lines(cfg), algorithm_names=algorithms)
    try:
        for pair in pairs(cfg):
            study.pairs.append(measure_pair(pair, cfg, progress))
        if cfg.wants("k-sweep"):
            # with selectable algorithms, pin im2col so that its share is the share of this conv
            algo = "im2col" if len(algorithms) > 1 and "im2col" in algorithms else None
            study.k_sweep = measure_sweep("k-sweep", k_sweep_variants(cfg, algo), cfg, progress)
        if cfg.wants("channels"):
            study.channels = measure_sweep("channels", channel_sweep_variants(cfg), cfg,
                                           progress, with_im2col=False)
        if cfg.wants("algorithms") and len(algorithms) > 1:
            study.algorithms = measure_sweep("algorithms", algorithm_variants(cfg, algorithms),
                                             cfg, progress)
    finally:
        progress.close()
    study.wall_s = time.perf_counter() - t_start
    return study
