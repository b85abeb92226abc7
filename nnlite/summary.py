"""``nnlite.summary``: a per-layer cost report (params, MACs, FLOPs, bytes) from one forward pass.

What is counted (all integers, per forward pass of the whole batch):

- **MACs** (multiply-accumulates) — only the weight products of convolution and linear layers:
  Conv2d: N·F·OH·OW·(C/groups)·kH·kW (every kernel tap, including taps that land on zero
  padding, as the dense im2col product computes them; dilation changes where taps land, not how
  many there are). ConvTranspose2d: N·H·W·C·(F/groups)·kH·kW (each input pixel is scattered
  through its kernel). Conv1d/ConvTranspose1d: the same with one spatial axis. Linear:
  rows·in_features·out_features.
- **FLOPs** = 2·MACs, plus, only when their switch is on:
  ``count_bias``: one add per output element of a conv/linear layer that has a bias;
  ``count_bn``: 2 per output element of a BatchNorm (the folded affine x·a + b), and of a
  LayerNorm/GroupNorm/InstanceNorm (its normalise-and-affine; the statistics are not counted);
  ``count_pool``: one per window tap per output element of a pooling layer (compares for max,
  adds for average and LP pools; adaptive pools use their exact bin sizes; LocalResponseNorm:
  ``size`` channels per output), and one per input element of a
  ``mean``/``sum`` written inline in a forward;
  ``count_act``: one per output element of ReLU/ReLU6/Sigmoid/Tanh/... modules and of relu/clamp/
  sigmoid/tanh called inline in a parent's forward (e.g. ``BasicConv2d``'s ReLU);
  ``count_elementwise``: one per output element of +, −, ×, ÷ written inline in a parent's
  forward (residual additions). ``count_all=True`` turns every switch on.
  Concatenation, reshapes, dropout, flatten and identity cost 0 FLOPs.
- **activation bytes**: bytes of the layer's output; **bytes moved**: input + parameter + output
  bytes per call (each tensor touched once — a lower bound on memory traffic); **arithmetic
  intensity** = FLOPs / bytes moved.

Rows: one per leaf module (a module with no children), in order of first call, with its own
parameters; a module called several times (ResNet's shared ``relu``) has one row summing all
calls. Work a non-leaf module does in its own ``forward`` (inline relu, residual add) gets a row
named ``parent:op``. Parents of leaves never get a row of their own, so nothing is counted twice.
Counts come from the module attributes (kernel_size, groups, in/out channels/features) and the
tensor shapes observed during the pass, so they scale with the batch.

An imported ONNX graph (``nnlite.onnx.load``) gets one row per node (named by the node, else
``Op:first_output``), counted by the same formulas on the node's tensors (``ONNX_COUNTERS``):
Conv from its weight (F, C/group, kH, kW), ConvTranspose from its input, Gemm/MatMul as
rows x K x columns; each initializer's parameters count in the row of the first node using it.
"""
import csv
import io
import time

import numpy as np

from . import autograd as _autograd
from ._shape import pair
from .nn.module import Module
from .tensor import Tensor

__all__ = ["summary", "CostReport", "LayerCost"]

_CATEGORIES = ("bias", "bn", "pool", "act", "elementwise")


# ------------------------------------------------------------------------------ cost formulas
def _taps(m):
    """Kernel taps of a conv/pool module: prod(kernel_size); an int kernel_size counts once per
    spatial axis (k*k for the 2-D layers, k for the ``...1d`` ones)."""
    k = m.kernel_size
    if isinstance(k, (int, np.integer)):
        return int(k) ** (1 if type(m).__name__.endswith("1d") else 2)
    return int(np.prod(k))


def _conv(m, inputs, out):
    # out.size = N*F*(spatial outputs); each output element takes (C/groups)*prod(kernel) products
    cg = m.in_channels // m.groups
    bias = out.size if getattr(m, "bias", None) is not None else 0
    return out.size * cg * _taps(m), {"bias": bias}


def _conv_transpose(m, inputs, out):
    # inputs[0].size = N*C*(spatial inputs); each input element is scattered through
    # (F/groups)*prod(kernel) taps
    fg = m.out_channels // m.groups
    bias = out.size if getattr(m, "bias", None) is not None else 0
    return inputs[0].size * fg * _taps(m), {"bias": bias}


def _linear(m, inputs, out):
    rows = inputs[0].size // m.in_features if m.in_features else 0
    bias = rows * m.out_features if getattr(m, "bias", None) is not None else 0
    return rows * m.in_features * m.out_features, {"bias": bias}


def _batchnorm(m, inputs, out):
    return 0, {"bn": 2 * out.size}


def _pool(m, inputs, out):
    return 0, {"pool": out.size * _taps(m)}


def _bin_total(inp, outp):
    """Sum of adaptive-pool bin lengths along one axis (bins [floor(iI/O), ceil((i+1)I/O)))."""
    return sum(-((-(i + 1) * inp) // outp) - (i * inp) // outp for i in range(outp))


def _adaptive_pool(m, inputs, out):
    dims = 1 if type(m).__name__.endswith("1d") else 2
    ins, outs = inputs[0].shape[-dims:], out.shape[-dims:]
    planes = out.size // int(np.prod(outs)) if np.prod(outs) else 0
    taps = planes
    for i, o in zip(ins, outs):
        taps *= _bin_total(i, o)
    return 0, {"pool": taps}


def _norm(m, inputs, out):
    # the normalisation and affine, x * a + b per element (the statistics are not counted)
    return 0, {"bn": 2 * out.size}


def _lrn(m, inputs, out):
    # each output sums the squares of a window of ``size`` channels
    return 0, {"pool": out.size * m.size}


def _spp(m, inputs, out):
    h, w = inputs[0].shape[-2:]
    planes = inputs[0].size // (h * w) if h * w else 0
    return 0, {"pool": sum(planes * _bin_total(h, n) * _bin_total(w, n) for n in m.levels)}


def _activation(m, inputs, out):
    return 0, {"act": out.size}


def _free(m, inputs, out):
    return 0, {}


#: cost formula by module class name (looked up along the MRO, so subclasses inherit).
COUNTERS = {
    "Conv2d": _conv, "Conv1d": _conv, "ConvTranspose2d": _conv_transpose,
    "ConvTranspose1d": _conv_transpose, "Linear": _linear,
    "BatchNorm1d": _batchnorm, "BatchNorm2d": _batchnorm,
    "LayerNorm": _norm, "GroupNorm": _norm, "InstanceNorm1d": _norm, "InstanceNorm2d": _norm,
    "LocalResponseNorm": _lrn,
    "MaxPool2d": _pool, "AvgPool2d": _pool, "MaxPool1d": _pool, "AvgPool1d": _pool,
    "LPPool1d": _pool, "LPPool2d": _pool,
    "AdaptiveAvgPool2d": _adaptive_pool, "AdaptiveMaxPool2d": _adaptive_pool,
    "AdaptiveAvgPool1d": _adaptive_pool, "AdaptiveMaxPool1d": _adaptive_pool,
    "SpatialPyramidPooling": _spp, "MaxUnpool2d": _free,
    **{name: _activation for name in (
        "ReLU", "ReLU6", "LeakyReLU", "PReLU", "Sigmoid", "Tanh", "Hardtanh", "GELU", "SiLU",
        "ELU", "CELU", "SELU", "Mish", "Hardsigmoid", "Hardswish", "Softplus", "Softsign",
        "Hardshrink", "Softshrink", "Tanhshrink", "LogSigmoid")},
    "Dropout": _free, "Dropout2d": _free, "Flatten": _free, "Identity": _free,
    "PixelShuffle": _free, "PixelUnshuffle": _free,
    "Sequential": _free,  # only an empty Sequential is a leaf: the identity
}

#: inline autograd ops (by Function class name) counted when a non-leaf module's forward calls them
_INLINE = {
    "ReLU": "act", "Clamp": "act", "Sigmoid": "act", "Tanh": "act", "HardtanhFn": "act",
    **{fn: "act" for fn in (
        "LeakyReluFn", "EluFn", "ErfFn", "GeluFn", "SoftplusFn", "SoftsignFn", "SiluFn",
        "MishFn", "HardsigmoidFn", "HardswishFn", "PreluFn", "ShrinkFn", "TanhshrinkFn",
        "LogsigmoidFn")},
    "Add": "elementwise", "Sub": "elementwise", "Mul": "elementwise", "Div": "elementwise",
    "Mean": "pool", "Sum": "pool",
}


#: ONNX ops (an imported graph, ``nnlite.onnx.load``): one row per node, same formulas as the
#: layers above written on the node's tensors. ``ins`` are the input arrays (None for an absent
#: optional input), ``out`` the first output array.
def _onnx_conv(node, ins, out):
    # W (F, C/group, kH[, kW]): each output element takes (C/group)*kH*kW products
    w = ins[1]
    return out.size * int(np.prod(w.shape[1:])), {"bias": _onnx_bias(ins, 2, out)}


def _onnx_conv_transpose(node, ins, out):
    # W (C, F/group, kH[, kW]): each input element is scattered through (F/group)*kH*kW taps
    w = ins[1]
    return ins[0].size * int(np.prod(w.shape[1:])), {"bias": _onnx_bias(ins, 2, out)}


def _onnx_gemm(node, ins, out):
    a = ins[0]
    k = a.shape[0] if node.attrs.get("transA", 0) else a.shape[-1]
    return out.size * int(k), {"bias": _onnx_bias(ins, 2, out)}


def _onnx_matmul(node, ins, out):
    return out.size * int(ins[0].shape[-1]), {}


def _onnx_bias(ins, i, out):
    return out.size if len(ins) > i and ins[i] is not None else 0


def _onnx_pool(node, ins, out):
    return 0, {"pool": out.size * int(np.prod(node.attrs.get("kernel_shape", (1,))))}


def _onnx_global_pool(node, ins, out):
    return 0, {"pool": ins[0].size}


def _onnx_category(category, per="out"):
    def count(node, ins, out):
        return 0, {category: ins[0].size if per == "in" else out.size}
    return count


_ONNX_ACT = ("Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid",
             "HardSwish", "Tanh", "Softplus", "Softsign", "Gelu", "Mish", "Erf",
             "ThresholdedRelu", "Clip", "Softmax", "LogSoftmax")
_ONNX_ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Pow", "Sum", "Mean", "Max", "Min")

#: data movement and shape arithmetic: 0 FLOPs, like Flatten/Dropout/concatenation above
_ONNX_FREE = frozenset((
    "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice",
    "Gather", "GatherElements", "Expand", "Tile", "Shape", "Size", "Constant", "ConstantOfShape",
    "Identity", "Dropout", "Cast", "CastLike", "Range", "Pad", "DepthToSpace", "SpaceToDepth"))

ONNX_COUNTERS = {
    "Conv": _onnx_conv, "ConvTranspose": _onnx_conv_transpose, "Gemm": _onnx_gemm,
    "MatMul": _onnx_matmul, "BatchNormalization": lambda n, i, o: (0, {"bn": 2 * o.size}),
    "MaxPool": _onnx_pool, "AveragePool": _onnx_pool, "LpPool": _onnx_pool,
    "GlobalAveragePool": _onnx_global_pool, "GlobalMaxPool": _onnx_global_pool,
    "GlobalLpPool": _onnx_global_pool, "ReduceMean": _onnx_global_pool,
    "ReduceSum": _onnx_global_pool,
    **{op: _onnx_category("act") for op in _ONNX_ACT},
    **{op: _onnx_category("elementwise") for op in _ONNX_ELEMENTWISE},
}


def _counter_for(module):
    for cls in type(module).__mro__:
        fn = COUNTERS.get(cls.__name__)
        if fn is not None:
            return fn
    return None


# ------------------------------------------------------------------------------------ report
class LayerCost:
    """One row of a ``CostReport``: ``name`` (qualified module name; ``parent:op`` for inline
    work), ``type``, ``output_shape`` (of the last call), ``params`` (the module's own),
    ``macs``, ``flops`` (following the report's switches), ``parts`` (the non-MAC counts by
    category: bias, bn, pool, act, elementwise — all of them, whether switched on or not),
    ``activation_bytes``, ``bytes_moved``, ``arithmetic_intensity``, ``calls`` and ``time_s``
    (None unless measured). Counts sum over all calls."""

    __slots__ = ("name", "type", "output_shape", "params", "macs", "parts", "flops",
                 "activation_bytes", "bytes_moved", "calls", "time_s")

    def __init__(self, name, type_, params):
        self.name, self.type, self.params = name, type_, params
        self.output_shape = None
        self.macs = 0
        self.parts = dict.fromkeys(_CATEGORIES, 0)
        self.flops = 0
        self.activation_bytes = 0
        self.bytes_moved = 0
        self.calls = 0
        self.time_s = None

    @property
    def arithmetic_intensity(self):
        """FLOPs per byte moved (0.0 when nothing is moved)."""
        return self.flops / self.bytes_moved if self.bytes_moved else 0.0

    def __repr__(self):
        return (f"LayerCost({self.name!r}, {self.type}, out={self.output_shape}, "
                f"params={self.params}, macs={self.macs}, flops={self.flops})")


_COLUMNS = ("Layer", "Type", "Output shape", "Params", "MACs", "FLOPs", "Act. bytes",
            "Bytes moved", "FLOP/B")


class CostReport:
    """Result of ``nnlite.summary``: ``rows`` (list of ``LayerCost``) and integer totals
    ``params`` (all distinct parameters of the model), ``trainable_params``, ``macs``, ``flops``,
    ``activation_bytes``, ``bytes_moved``; ``time_s`` (forward wall time) when measured.

    ``str(report)`` is an aligned table; ``to_markdown()`` and ``to_csv()`` give the same rows.
    ``report["layer1.0.conv1"]`` looks a row up by name.
    """

    def __init__(self, rows, params, trainable_params, input_shape, output_shape, dtype,
                 switches, uncounted, time_s):
        self.rows = rows
        self.params = int(params)
        self.trainable_params = int(trainable_params)
        self.macs = int(sum(r.macs for r in rows))
        self.flops = int(sum(r.flops for r in rows))
        self.activation_bytes = int(sum(r.activation_bytes for r in rows))
        self.bytes_moved = int(sum(r.bytes_moved for r in rows))
        self.input_shape = tuple(input_shape)
        self.output_shape = output_shape
        self.dtype = np.dtype(dtype)
        self.switches = dict(switches)
        self.uncounted = sorted(uncounted)
        self.time_s = time_s
        self.measured = time_s is not None

    @property
    def arithmetic_intensity(self):
        return self.flops / self.bytes_moved if self.bytes_moved else 0.0

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, key):
        if isinstance(key, str):
            for r in self.rows:
                if r.name == key:
                    return r
            raise KeyError(f"no row named {key!r}; rows: {[r.name for r in self.rows]}")
        return self.rows[key]

    def __repr__(self):
        return (f"CostReport(input={self.input_shape}, params={self.params:,}, "
                f"macs={self.macs:,}, flops={self.flops:,}, rows={len(self.rows)})")

    # ---------------------------------------------------------------------------- formatting
    def _flops_definition(self):
        on = [k for k in _CATEGORIES if self.switches[k]]
        off = [k for k in _CATEGORIES if not self.switches[k]]
        text = "FLOPs = 2 x MACs (conv, linear)"
        if on:
            text += " + " + " + ".join(on)
        if off:
            text += "; not counted: " + ", ".join(off)
        return text

    def _cells(self, fmt_int):
        """Table cells (strings), header first, total last."""
        measured = self.measured
        head = list(_COLUMNS) + (["Time ms"] if measured else [])
        body = []
        for r in self.rows:
            typ = r.type if r.calls <= 1 else f"{r.type} x{r.calls}"
            shape = "x".join(map(str, r.output_shape)) if r.output_shape is not None else "-"
            cells = [r.name, typ, shape, fmt_int(r.params), fmt_int(r.macs), fmt_int(r.flops),
                     fmt_int(r.activation_bytes), fmt_int(r.bytes_moved),
                     f"{r.arithmetic_intensity:.2f}"]
            if measured:
                cells.append("-" if r.time_s is None else f"{r.time_s * 1e3:.3f}")
            body.append(cells)
        out_shape = "x".join(map(str, self.output_shape)) if self.output_shape else "-"
        total = ["Total", "", out_shape, fmt_int(self.params), fmt_int(self.macs),
                 fmt_int(self.flops), fmt_int(self.activation_bytes), fmt_int(self.bytes_moved),
                 f"{self.arithmetic_intensity:.2f}"]
        if measured:
            total.append(f"{self.time_s * 1e3:.3f}")
        return head, body, total

    def _footer(self):
        lines = [f"Input {self.input_shape} {self.dtype.name}; params {self.params:,} "
                 f"(trainable {self.trainable_params:,}); MACs {self.macs:,}; "
                 f"FLOPs {self.flops:,}.", self._flops_definition() + "."]
        if self.uncounted:
            lines.append("No cost formula (counted as 0): " + ", ".join(self.uncounted) + ".")
        return lines

    def __str__(self):
        head, body, total = self._cells(lambda v: f"{v:,}")
        table = [head] + body + [total]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        left = {0, 1, 2}

        def line(cells):
            return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        rule = "-" * len(line(head))
        return "\n".join([line(head), rule] + [line(c) for c in body]
                         + [rule, line(total)] + self._footer())

    def to_markdown(self):
        """A GitHub-flavoured markdown table (numbers with thousands separators)."""
        head, body, total = self._cells(lambda v: f"{v:,}")
        total = [f"**{c}**" if c else c for c in total]
        align = ["---" if i < 3 else "---:" for i in range(len(head))]
        rows = [head, align] + body + [total]
        text = "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"
                         for r in rows)
        return text + "\n\n" + " ".join(self._footer()) + "\n"

    def to_csv(self, path=None):
        """CSV text (plain integers, one row per layer, then a ``total`` row); written to
        ``path`` as well when given."""
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        wr.writerow(["name", "type", "calls", "output_shape", "params", "macs", "flops",
                     "activation_bytes", "bytes_moved", "arithmetic_intensity", "time_s"])
        for r in self.rows:
            shape = "x".join(map(str, r.output_shape)) if r.output_shape is not None else ""
            wr.writerow([r.name, r.type, r.calls, shape, r.params, r.macs, r.flops,
                         r.activation_bytes, r.bytes_moved, f"{r.arithmetic_intensity:.6g}",
                         "" if r.time_s is None else f"{r.time_s:.6g}"])
        out_shape = "x".join(map(str, self.output_shape)) if self.output_shape else ""
        wr.writerow(["total", "", "", out_shape, self.params, self.macs, self.flops,
                     self.activation_bytes, self.bytes_moved,
                     f"{self.arithmetic_intensity:.6g}",
                     "" if self.time_s is None else f"{self.time_s:.6g}"])
        text = buf.getvalue()
        if path is not None:
            with open(path, "w", newline="") as fh:
                fh.write(text)
        return text


# ------------------------------------------------------------------------------ the pass
def _tensors(obj):
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _nbytes(tensors):
    return sum(int(t.data.nbytes) for t in tensors)


def _check_shape(input_shape):
    if isinstance(input_shape, (int, np.integer)) or not hasattr(input_shape, "__iter__"):
        raise TypeError(f"summary: input_shape must be a tuple of ints including the batch "
                        f"dimension, e.g. (1, 3, 224, 224); got {input_shape!r}")
    shape = tuple(input_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                        for s in shape):
        raise TypeError(f"summary: input_shape must be a non-empty tuple of ints, "
                        f"got {input_shape!r}")
    if any(s < 0 for s in shape):
        raise ValueError(f"summary: input_shape entries must be >= 0, got {shape}")
    return tuple(int(s) for s in shape)


class _Recorder:
    def __init__(self, measure):
        self.measure = measure
        self.rows = {}      # key -> LayerCost, in first-call order
        self.stack = []     # (name, module, is_leaf) of the modules currently running
        self.uncounted = set()
        self.seen_params = set()

    def _row(self, key, type_, params):
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = LayerCost(key, type_, params)
        return row

    def leaf(self, name, mod, args, out, dt):
        params = [p for p in mod._parameters.values() if p is not None]
        n_params = sum(int(p.data.size) for p in params)
        row = self._row(name or "(model)", type(mod).__name__, n_params)
        outs = _tensors(out)
        counter = _counter_for(mod)
        if counter is None:
            self.uncounted.add(type(mod).__name__)
            macs, parts = 0, {}
        else:
            ins = [t.data for t in _tensors(args)]
            macs, parts = counter(mod, ins, outs[0].data if outs else np.empty(0))
        self._add(row, macs, parts, _tensors(args), outs, _nbytes(params))
        if dt is not None:
            row.time_s = (row.time_s or 0.0) + dt

    def onnx_node(self, module, prefix, node, args, outs):
        """A row for one node of an imported ONNX graph (``module`` an ``OnnxModule``)."""
        label = node.name or f"{node.op}:{node.outputs[0] if node.outputs else ''}"
        key = f"{prefix}.{label}" if prefix else label
        new = [v for v in node.inputs
               if v and v in module._parameters and v not in self.seen_params]
        self.seen_params.update(new)
        params = [module._parameters[v] for v in new]
        row = self._row(key, node.op, sum(int(p.data.size) for p in params))
        ins = [a for a in args if isinstance(a, Tensor)]
        outs = _tensors(list(outs))
        counter = ONNX_COUNTERS.get(node.op)
        if counter is None or not outs:
            macs, parts = 0, {}
            if counter is None and node.op not in _ONNX_FREE:
                self.uncounted.add(node.op)
        else:
            arrays = [a.data if isinstance(a, Tensor) else a for a in args]
            macs, parts = counter(node, arrays, outs[0].data)
        param_ins = [a for a, v in zip(args, node.inputs) if v in module._parameters]
        acts = [t for t in ins if not any(t is p for p in param_ins)]
        self._add(row, macs, parts, acts, outs, _nbytes(param_ins))

    def inline(self, parent, op, category, inputs, out):
        key = f"{parent or '(model)'}:{op.lower()}"
        row = self._row(key, f"{op} (inline)", 0)
        outs = _tensors(out)
        ins = [t for t in inputs if isinstance(t, Tensor)]
        size = sum(t.data.size for t in ins) if category == "pool" else outs[0].data.size
        self._add(row, 0, {category: int(size)}, ins, outs, 0)

    @staticmethod
    def _add(row, macs, parts, ins, outs, param_bytes):
        row.calls += 1
        row.macs += int(macs)
        for k, v in parts.items():
            row.parts[k] += int(v)
        if outs:
            row.output_shape = tuple(outs[0].shape)
        out_bytes = _nbytes(outs)
        row.activation_bytes += out_bytes
        row.bytes_moved += _nbytes(ins) + param_bytes + out_bytes


def _instrument(model, rec):
    """Wrap every module's forward (restored by the returned undo function)."""
    saved = []
    for name, mod in model.named_modules():
        is_leaf = not any(True for _ in mod.children())
        had = "forward" in mod.__dict__
        orig = mod.forward
        saved.append((mod, had, mod.__dict__.get("forward")))

        graph_nodes = is_leaf and hasattr(mod, "node_observer")   # an imported ONNX graph

        def wrapped(*args, _orig=orig, _name=name, _mod=mod, _leaf=is_leaf, _nodes=graph_nodes,
                    **kwargs):
            rec.stack.append((_name, _mod, _leaf))
            if _nodes:
                object.__setattr__(_mod, "node_observer", lambda node, a, o: rec.onnx_node(
                    _mod, _name, node, a, o))
            t0 = time.perf_counter()
            try:
                out = _orig(*args, **kwargs)
            finally:
                rec.stack.pop()
                if _nodes:
                    object.__setattr__(_mod, "node_observer", None)
            if _leaf and not _nodes:
                dt = time.perf_counter() - t0 if rec.measure else None
                rec.leaf(_name, _mod, (args, kwargs), out, dt)
            return out

        object.__setattr__(mod, "forward", wrapped)

    fn_apply = _autograd.Function.__dict__["apply"]

    def apply(cls, *inputs, **params):
        out = fn_apply.__func__(cls, *inputs, **params)
        if rec.stack and not rec.stack[-1][2]:
            category = _INLINE.get(cls.__name__)
            if category is not None:
                rec.inline(rec.stack[-1][0], cls.__name__, category, inputs, out)
        return out

    _autograd.Function.apply = classmethod(apply)

    def undo():
        _autograd.Function.apply = fn_apply
        for mod, had, value in saved:
            if had:
                object.__setattr__(mod, "forward", value)
            else:
                mod.__dict__.pop("forward", None)

    return undo


def summary(model, input_shape, *, dtype=None, count_bias=False, count_bn=False,
            count_pool=False, count_act=False, count_elementwise=False, count_all=False,
            measure=False):
    """Run one forward pass of ``model`` on a random input and report its cost per layer.

    Args:
        model: an ``nnlite.nn.Module``.
        input_shape: the full input shape including the batch, e.g. ``(1, 3, 224, 224)``; every
            count scales with the batch.
        dtype: input dtype, float32 or float64 (it sets the byte counts); default: the dtype of
            the model's first floating parameter, else float32.
        count_bias, count_bn, count_pool, count_act, count_elementwise: add these operations to
            ``flops`` (see the module docstring for exactly what each counts); ``count_all``
            turns all on. MACs never include them.
        measure: also time each leaf layer (one warm-up pass first, then the instrumented pass
            with ``time.perf_counter``); the table then has a "Time ms" column and
            ``report.time_s`` is the forward wall time (including the instrumentation).

    The pass runs under ``nnlite.no_grad()`` in eval mode (BatchNorm uses and keeps its running
    statistics, dropout is the identity); every module's training flag is restored afterwards.
    To observe the pass, the modules' ``forward`` and ``Function.apply`` are wrapped for its
    duration (restored even if the forward raises): do not run other nnlite work in another
    thread meanwhile.

    Returns:
        ``CostReport`` with ``rows`` and integer totals ``.params``, ``.macs``, ``.flops``.

    Example:
        >>> rep = nnlite.summary(nn.Conv2d(192, 32, 5, padding=2, bias=False), (1, 192, 28, 28))
        >>> rep.macs, rep.params
        (120422400, 153600)
    """
    from .autograd import exact_ops, no_grad

    if not isinstance(model, Module):
        raise TypeError(f"summary: model must be an nnlite.nn.Module, got {type(model).__name__}")
    shape = _check_shape(input_shape)
    if dtype is None:
        floats = [p.dtype for p in model.parameters() if p.dtype.kind == "f"]
        dtype = floats[0] if floats else np.float32
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"summary: dtype must be float32 or float64, got {dtype}")
    switches = {"bias": count_bias, "bn": count_bn, "pool": count_pool, "act": count_act,
                "elementwise": count_elementwise}
    if count_all:
        switches = dict.fromkeys(switches, True)
    x = Tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype))

    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    rec = _Recorder(measure)
    try:
        # exact_ops: every op as its own Function (no fused eval shortcuts), as counted
        with no_grad(), exact_ops():
            if measure:
                model(x)  # warm-up, not recorded
            undo = _instrument(model, rec)
            try:
                t0 = time.perf_counter()
                out = model(x)
                elapsed = time.perf_counter() - t0
            finally:
                undo()
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)

    # leaves never called still get a row (their parameters, no cost)
    for name, mod in model.named_modules():
        if (not any(True for _ in mod.children()) and (name or "(model)") not in rec.rows
                and not hasattr(mod, "node_observer")):   # an ONNX graph has its node rows
            params = sum(int(p.data.size) for p in mod._parameters.values() if p is not None)
            rec._row(name or "(model)", type(mod).__name__, params)
    rows = list(rec.rows.values())
    for r in rows:
        r.flops = 2 * r.macs + sum(v for k, v in r.parts.items() if switches[k])
    all_params = list(model.parameters())
    outs = _tensors(out)
    return CostReport(
        rows,
        params=sum(int(p.data.size) for p in all_params),
        trainable_params=sum(int(p.data.size) for p in all_params if p.requires_grad),
        input_shape=shape, output_shape=tuple(outs[0].shape) if outs else None, dtype=dtype,
        switches=switches, uncounted=rec.uncounted, time_s=elapsed if measure else None)
