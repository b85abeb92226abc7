"""Array kernels of the inference plan: every step writes into a preallocated ``out`` view.

``make_kernel(node, metas, consts, opset)`` returns a ``Kernel`` (built by the builder
registered for the node's op in ``KERNELS``) with ``scratch_bytes`` and
``bind(ins, outs, scratch) -> callable``: binding happens once per thread arena, so the hot loop
is a list of zero-argument calls on fixed arrays. ``out`` may be a strided view (a channel slice
of a concatenation buffer): kernels write it per image or through ufunc ``out=``.

Conv: BatchNorm already folded into (weight, bias); bias, a residual operand (``beta = 1`` with
the operand pre-copied into ``out`` unless it already lives there) and ReLU/ReLU6 are applied in
the write-out. Depthwise convs and the k x k convs F.conv2d runs by the implicit GEMM call
F.conv2d's own forward (``nnlite.kernels.conv_cython.fast_forward``, the kernel call of
``conv2d_forward``, with the algorithm F.conv2d picks, geometry from ``nnlite._convgeom``, the
epilogue as arguments); the others run im2col + the GEMM of
``nnlite.kernels.gemm`` (NumPy without the extension); at batch > 1 a pointwise conv is one
``gemm_batched`` call. Max pools run F.max_pool2d's kernel (``nnlite._pool``, without indices),
or, without the extension, KH*KW NumPy maxima over whole (N, C, OH, OW) tap views (as average
pools always do). Ops without a dedicated kernel run the Tensor executor under no_grad and copy
into ``out``.

The inputs of a planner Conv node are read by role (``conv_inputs``), never by position: the
ONNX form is (x, weight[, bias]); a conv that absorbed a residual Add has exactly four,
(x, weight, bias or "", residual).

Errors while building or binding a kernel are ``PlanError``s naming the node.

Legend: N batch, C in-channels, F out-channels, G groups, K = C/G*KH*KW, L = OH*OW.
"""
import copy
import threading
from collections import namedtuple
from dataclasses import replace

import numpy as np

from .. import kernels as _kernels
from ..kernels import _conv_gemm, specialized
from ..kernels import rowops as _rowops
from .._algorithms import direct_kernel, winograd_tile, winograd_tile_is_close
from .._constants import POOL_SERIAL_WORK
from ..autograd import no_grad
from ..onnx import geometry as G
from ..onnx.ops import avg_divisor, run_node
from .._registry import Registry
from ..tensor import Tensor
from .trace import GENERIC

try:
    from ..kernels.gemm_ops import gemm as _gemm, gemm_batched as _gemm_batched
    from ..kernels.gemm_ops import _gemm as _gemm_ext, pack as _pack
    from ..kernels.gemm_ops import _ACTS as _ACT_CODES, _isa as _gemm_isa
except ImportError:  # pragma: no cover - depends on the checkout
    _gemm = _gemm_batched = _gemm_ext = _pack = _gemm_isa = None
    _ACT_CODES = {None: 0, "relu": 1, "relu6": 2}

from .._convgeom import conv2d_geometry_pads

try:
    from .. import _im2col as _im2col_ext
except ImportError:  # pragma: no cover - a pure-Python install
    _im2col_ext = None

try:
    from ..kernels import conv_cython as _conv_cython
    if _conv_cython._convfast is None:
        raise ImportError("nnlite._convfast not built")
except ImportError:  # pragma: no cover - depends on the build
    _conv_cython = None

try:
    from .._config import cython_built as _built, get_num_threads
    if not _built():
        raise ImportError("nnlite built without extensions")
    from ..kernels.pool_cython import _pool
except ImportError:  # pragma: no cover - depends on the build
    _pool = None
    from .._config import get_num_threads

try:
    from .. import _attention as _attention_ext
except ImportError:  # pragma: no cover - depends on the build
    _attention_ext = None

_ACT_CODE = {None: 0, "relu": 1, "relu6": 2}


def _threads_for(work):
    """Max pools below this much work (taps x outputs) run on one thread (nnlite/_constants.py,
    the eager pools' rule)."""
    if work >= POOL_SERIAL_WORK:
        return get_num_threads
    return lambda: 1


def _unit_w(*arrays):
    """True for 4-D float32/float64 arrays with unit stride along W (what the C kernels take)."""
    return all(a.ndim == 4 and a.dtype in _ITEM and a.strides[3] == a.itemsize for a in arrays)


__all__ = ["make_kernel", "KERNELS", "split_conv", "SharedColumns", "Kernel", "FUSABLE", "PlanError",
           "IR_OP", "IR_INPUTS", "SPLIT_OP", "InvertedResidualKernel",
           "inverted_residual_available", "is_head_conv", "ConvInputs", "conv_inputs",
           "CONV_POOL_OP", "ConvMaxPoolKernel", "conv_pool_fusable"]

# producers that accept a fused activation (attr "activation": 'relu' | 'relu6')
FUSABLE = ("Conv", "Gemm", "nnlite.Affine", "Add")

_ITEM = {np.dtype(np.float32): 4, np.dtype(np.float64): 8}
# One image's im2col conv (a strided 1x1 conv whose rows are too short to read in place,
# ``ConvKernel.maps``, or a k x k conv on a small map): the native im2col into the column
# buffer, then the pointwise path's one native GEMM call (``_bind_pointwise``) instead of
# ``_conv_gemm.forward``'s im2col + ``gemm_into`` through Python. Switch for A/B runs (read
# when a plan is bound).
IM2COL_DIRECT = True
_NARROW = 64  # GEMMs with fewer output columns (and at least this many rows) run transposed


class PlanError(ValueError):
    """The inference plan cannot run a node it was given (a planner or kernel limitation; the
    unoptimized module still runs the model). ``node`` is the node's label."""

    def __init__(self, node, message):
        super().__init__(f"{node}: {message}")
        self.node = node


# ------------------------------------------------------------------------------ conv roles
ConvInputs = namedtuple("ConvInputs", "x weight bias residual")
_RESIDUAL = ConvInputs._fields.index("residual")  # the slot of a fused residual


def conv_inputs(node, values=None):
    """The inputs of a planner Conv node by role, ``ConvInputs(x, weight, bias, residual)``:
    taken from ``values`` (a sequence aligned with ``node.inputs``: metas, constants, bound
    arrays), by default the value names; an absent role is None. Raises PlanError for a
    layout that is neither the ONNX form (x, w[, b]) nor the fused one (x, w, b or "", r)."""
    ins, fused = node.inputs, bool(node.attrs.get("residual"))
    if (len(ins) != 4) if fused else not 2 <= len(ins) <= 3:
        form = "(x, weight, bias or '', residual)" if fused else "(x, weight[, bias])"
        raise PlanError(node.label(), f"a{' residual' if fused else ''} Conv of the plan takes "
                        f"inputs {form}, got {tuple(ins)}")
    values = ins if values is None else values

    def at(i):
        return values[i] if i < len(ins) and ins[i] else None
    return ConvInputs(at(0), at(1), at(2), at(_RESIDUAL) if fused else None)


def with_conv_inputs(node, output, weight=None, bias=None, residual=None):
    """``node`` (a Conv) writing ``output``, with the values named ``weight`` / ``bias`` /
    ``residual`` in those roles (None keeps what the node has; a residual sets the fused
    layout and ``attrs['residual']``)."""
    r = conv_inputs(node)
    weight = r.weight if weight is None else weight
    bias = r.bias if bias is None else bias
    residual = r.residual if residual is None else residual
    attrs = dict(node.attrs)
    if residual is None:
        inputs = (r.x, weight) + ((bias,) if bias else ())
    else:
        inputs = (r.x, weight, bias or "", residual)
        attrs["residual"] = True
    return replace(node, inputs=inputs, outputs=(output,), attrs=attrs)


class Kernel:
    """A node's array kernel; subclasses implement ``_bind``. ``label`` names the node (set by
    ``make_kernel``) in the PlanError of a failed bind."""

    scratch_bytes = 0
    # bytes of arena memory the bound call may use as work memory while its step runs, placed
    # by liveness like a value (``storage.assign_offsets``); ``_bind`` then gets ``work``
    work_bytes = 0
    weight_bytes = 0   # bytes of the weights ``prepare`` makes its prepared form of
    label = "inference plan step"

    def prepare(self):
        """Make what the kernel derives from its weights once (``Plan.bind`` calls it for
        every kernel, largest weights first, before it allocates the arena)."""

    def bind(self, ins, outs, scratch, work=None):
        """The zero-argument call computing ``outs`` from ``ins`` (fixed arrays); ``work``:
        ``work_bytes`` of the arena for this kernel alone while it runs (or None)."""
        try:
            if work is not None:
                return self._bind(ins, outs, scratch, work=work)
            return self._bind(ins, outs, scratch)
        except PlanError:
            raise
        except (ValueError, TypeError, IndexError) as exc:
            raise PlanError(self.label, f"cannot bind its kernel: {exc}") from exc

    def _bind(self, ins, outs, scratch):  # pragma: no cover - abstract
        raise NotImplementedError


def _scratch(scratch, shape, dtype, offset=0):
    """A view of ``shape`` in the scratch bytes, starting at byte ``offset`` (64-aligned)."""
    n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return scratch[offset:offset + n].view(dtype).reshape(shape)


def _view(a, shape):
    """``a.reshape(shape)`` that must be a view (a copy would silently drop the writes)."""
    v = a.reshape(shape)
    if v.size and not np.shares_memory(v, a):
        raise RuntimeError(f"inference plan: a {a.shape} buffer with strides {a.strides} cannot "
                           f"be viewed as {shape}")
    return v


def _align(n):
    return (int(n) + 63) // 64 * 64


def _activate(y, act):
    if act == "relu":
        np.maximum(y, 0, out=y)
    elif act == "relu6":
        np.clip(y, 0, 6, out=y)


# ------------------------------------------------------------------------------ GEMM
def _few_columns(m, n):
    """True for an (m, n) product with a constant left operand of few columns and many rows
    (a 7x7 map into 64+ channels): one image's product is narrow."""
    return n < _NARROW and m >= _NARROW


_TAIL_COLUMNS = {}   # (isa code, itemsize) -> whether its micro-kernels have a column-tail kernel


def _narrow(m, n, itemsize=4):
    """True when an (m, n) product with a constant left operand runs transposed (see
    gemm_into): few columns (``_few_columns``), on a GEMM family without a column-tail kernel
    (the generic C one). With one (AVX-512, AVX2 float32: a ragged last panel of up to
    ``blocking()['tail_n']`` columns runs with the rows in the lanes), the plain orientation
    measured faster: Intel Emerald Rapids, AVX-512, 2 threads, A pre-packed, in-process
    alternated medians, plain / transposed: 512x4608x49 0.84, 512x2048x49 0.81, 2048x512x49
    0.89, 2048x1024x49 0.92 (one thread 0.82-0.89); other widths at 512x1024: 25 columns 0.94,
    36 0.95, 63 0.95, 40 1.08; whole plans at batch 1 (ResNet-50's 7x7 steps 0.85-0.94,
    GoogLeNet's 0.85-0.88; the sums of the steps 0.981 and 0.978). AVX2 on AMD EPYC Zen 4, 2
    threads, the same method: 512x2048x49 0.86, 2048x512x49 0.86, 512x4608x49 0.89, 1024x512x49
    0.89; plans at batch 1, 40 alternated runs: ResNet-50 0.980, GoogLeNet 0.995, MobileNetV2
    1.011 (without its tail kernel the AVX2 family measured level either way and ran
    transposed)."""
    if not _few_columns(m, n) or _gemm_ext is None:
        return False
    key = (_family(), itemsize)
    tail = _TAIL_COLUMNS.get(key)
    if tail is None:
        tail = _TAIL_COLUMNS[key] = _gemm_ext.blocking(*key).get("tail_n", 0) > 0
    return not tail


def _pixel_major_pays(f, pixels):
    """True when a (f, pixels) product with constant (f, K) weights computes enough fewer
    padded elements as pixels x f (f cut into vector panels) than as f x pixels (the pixels
    cut into vector panels), on the GEMM family in use. Rows cost by their count either way
    (the micro-kernel has a variant for every row count up to MR); the columns of a panel by
    whole vectors. E.g. AVX-512 (8 x 48 tiles, 16 lanes): a fused block's 98-pixel band into
    64 channels 6272 vs 7168 elements, a 49-pixel one into 160 6272 vs 10240. Zen 4, the fused
    block alone, one thread: 5-10% faster on 7x7 maps, 3-5% on 98-pixel bands (14x14 maps); at
    batch 8 on two threads 5-9% and 1-8%.

    Enough is 5% fewer where MR is a multiple of 8, and 10% fewer otherwise: pixel-major packs
    the pixels as the A operand in MR-row panels through 8 x 8 transposes, which with AVX2's
    MR = 6 load two empty rows and store each column in two pieces. Zen 4 running the AVX2
    kernels (6 x 16 tiles, 8 lanes), MobileNetV2 at batch 1: the 98-pixel bands into 64-96
    channels (5.8% fewer elements) ran 11-15% slower pixel-major; the 49-pixel ones into
    160-320 (12.5% fewer) 4-13% faster; the 112x112 stem's bands into 16 and the 28x28
    blocks' into 32 (no fewer) 4-9% slower."""
    if _gemm_ext is None:
        return False
    code = _family()
    margin = 0.95 if _gemm_ext.blocking(code, 4)["mr"] % 8 == 0 else 0.90
    plain = f * _gemm_ext.cost_cols(code, 4, pixels)   # whole panels, the last in vectors
    return pixels * _gemm_ext.cost_cols(code, 4, f) < margin * plain


def pack_weights(w, n):
    """The constant left operand w (M, K) of products with n columns, packed once for nnlite's
    GEMM in the role ``gemm_into`` gives it (None without the extension)."""
    if _gemm_ext is None:
        return None
    w = np.ascontiguousarray(w)
    return (_pack(w, "b", trans=True) if _narrow(w.shape[0], n, w.dtype.itemsize)
            else _pack(w, "a"))


# Output rows shorter than this run a strided pointwise conv by im2col + GEMM: the in-place
# packer copies each row's pixels as a run, and runs of 14 (512->1024 1x1/2 @28) made the
# product 1-3% slower than im2col + GEMM (Zen 4, AVX-512, batch 1 and 8; runs of 28: 2-5%
# faster)
_MAPS_MIN_OW = 24
_PANEL_BYTES = {}   # (isa code, itemsize) -> bytes of a packed B panel row (NR elements)


def _maps_pay(isa, itemsize):
    """Whether a strided pointwise conv reads its pixels in place (``ConvKernel.maps``) on
    micro-kernel family ``isa`` (a code): its B panels' rows must span two cache lines (the
    stride-2 runs are packed row by row, cut at the panels' edges). AMD EPYC Zen 4, one thread,
    interleaved medians, 256->512 @56 and 512->1024 @28: AVX-512 (48 floats) 4-6% faster
    than im2col + GEMM at batch 1, AVX2 (16 floats) 5-7% slower."""
    key = (isa, itemsize)
    got = _PANEL_BYTES.get(key)
    if got is None:
        got = _PANEL_BYTES[key] = _gemm_ext.blocking(isa, itemsize)["nr"] * itemsize
    return got >= 128


_BEST_FAMILY = []


def _family():
    """The GEMM micro-kernel family (isa code) in use in this thread, 'auto' resolved to the
    best one this CPU runs."""
    code = _gemm_isa()
    if code >= 0:
        return code
    if not _BEST_FAMILY:
        _BEST_FAMILY.append(_gemm_ext.isa_code(_gemm_ext.best_isa()))
    return _BEST_FAMILY[0]


def _packed_for(wpk):
    """(isa code, packed data or None) for a product on ``pack_weights``' A-side operand in the
    micro-kernel family active in this thread: the data serve only the family they were packed
    for (else the call packs per call)."""
    code = _family()
    if wpk is not None and wpk.data is not None and wpk.isa == code and wpk.side == "a":
        return code, wpk.data
    return code, None


def gemm_into(a, b, out, bias=None, bias_axis=0, act=None, beta=0.0, trans_b=False,
              packed=None):
    """out = act(a @ op(b) + beta*out + bias) through nnlite's GEMM (NumPy without it);
    ``packed`` is ``pack_weights(a, N)``, used in place of a.

    Shape: a (M, K), op(b) (K, N), out (M, N) (any row stride), bias (M,) or (N,).
    """
    if _gemm is not None and (_gemm_ext is not None or beta == 0.0):
        # the orientation the weights were packed for, else this product's own
        transposed = (packed.side == "b" if packed is not None
                      else not trans_b and bias_axis == 0
                      and _narrow(*out.shape, out.dtype.itemsize))
        if transposed and not trans_b and bias_axis == 0:
            # a narrow product (few columns, e.g. a 7x7 map) on a family without a
            # column-tail kernel (``_narrow``) blocks better transposed:
            # out.T (N, M) = b.T (N, K) @ a.T (K, M), the bias now per column
            if packed is not None:
                _gemm(b, packed, out.T, beta=beta, trans_a=True, bias=bias, bias_axis=1,
                      activation=act)
            else:
                _gemm(b, a, out.T, beta=beta, trans_a=True, trans_b=True, bias=bias,
                      bias_axis=1, activation=act)
            return
        _gemm(a if packed is None or trans_b or bias_axis != 0 else packed, b, out, beta=beta,
              trans_b=trans_b, bias=bias, bias_axis=bias_axis, activation=act)
        return
    bb = b.T if trans_b else b
    if beta == 0.0:
        np.matmul(a, bb, out=out)
    else:
        out += a @ bb
    if bias is not None:
        out += bias[:, None] if bias_axis == 0 else bias[None, :]
    _activate(out, act)


# ------------------------------------------------------------------------------ convolution
class ConvKernel(Kernel):
    """Conv2d with folded BN, bias, residual and activation fused into the write-out, run by
    F.conv2d's own routines as its 'auto' rule picks them for the layer: the direct depthwise
    kernel or the implicit GEMM (``conv_cython.fast_forward``, the epilogue as arguments),
    Winograd on weights transformed once (``conv_winograd.WinogradWeights``), else im2col +
    GEMM (``_conv_gemm.forward`` with this plan's column buffer and GEMM hook ``_mm``: weights
    packed once, activation fused; a pointwise conv multiplies the image itself)."""

    def __init__(self, x_shape, w, b, attrs, residual, dtype, algorithm="auto"):
        N, C, H, W = x_shape
        F, cg, kh, kw = w.shape
        k, s, d = G.window(attrs, (kh, kw))
        if tuple(k) != (kh, kw):
            raise ValueError(f"kernel_shape {tuple(k)} does not match the {tuple(w.shape)} weight")
        pads = G.conv_pads(attrs, (H, W), k, s, d)                    # (top, left, bottom, right)
        self.g = g = int(attrs.get("group", 1))
        # the one geometry of conv2d (nnlite/_convgeom.py), validated there
        self.geom = geom = conv2d_geometry_pads((N, C, H, W), tuple(w.shape),
                                                (pads[0], pads[2], pads[1], pads[3]), s, d, g)
        oh, ow = geom.oh, geom.ow
        self.shape = (N, C, H, W, F, oh, ow)
        if b is not None and np.shape(b) != (F,):
            raise ValueError(f"the conv bias has shape {np.shape(b)}; it must be ({F},), one "
                             f"value per output channel of the {tuple(w.shape)} weight")
        self.k, self.s, self.d, self.pads = k, s, d, pads
        self.act = attrs.get("activation")
        self.residual = residual
        self.dtype = dtype
        self.bias = None if b is None else np.ascontiguousarray(b, dtype)
        self.pointwise = (kh, kw) == (1, 1) and s == (1, 1) and not any(pads)
        self.depthwise = g == C and cg == 1 and F == C and not self.pointwise
        # F.conv2d's choice for this layer ('direct', 'implicit', 'winograd' or 'im2col'; the
        # plan transforms Winograd weights once, which 'auto' counts)
        self.algorithm, self.fast_args = (
            ("im2col", None) if self.pointwise or _conv_cython is None or dtype not in _ITEM
            else _conv_cython.native_algorithm(geom, algorithm, weights_prepared=True))
        self.implicit = self.algorithm == "implicit"
        # prepared weights (Winograd-transformed, GEMM-packed) are made by the first bind
        # (``prepare``): a conv the plan splits into parts never makes its own
        self.winograd = self.w_packed = self.w_native = None
        self._unprepared, self._prepare_lock = w, threading.Lock()
        self.w_flat = np.ascontiguousarray(w.reshape(F, cg * kh * kw), dtype)  # (F, K)
        self.weight_bytes = self.w_flat.nbytes
        # the im2col path below (also taken at bind time by arrays the fast kernels cannot
        # take; its scratch is np.empty pages the fast kernels never touch)
        self.wg = self.w_flat.reshape(g, F // g, cg * kh * kw)              # (G, FG, K) view
        self.cols = None if self.pointwise else (C * kh * kw, oh * ow)
        self.scratch_bytes = 0 if self.pointwise else _align(C * kh * kw * oh * ow
                                                            * dtype.itemsize)
        if self.algorithm == "winograd":
            # Winograd's work memory (the transformed input and the GEMM outputs of a tile
            # chunk) in the arena, over values dead by then, instead of a block malloc'd per
            # call that the allocator keeps (GoogLeNet at batch 1: 3.2 MB for its 56x56 conv)
            # its tile, chosen once (``winograd_tile`` weighs the threads in use now)
            self.wino_m = winograd_tile(geom, itemsize=dtype.itemsize)
            self.work_bytes = _align(64 + _conv_cython.conv_winograd.workspace_bytes(
                geom, dtype, self.wino_m))
        # One image's pointwise conv multiplies the weights packed once (``prepare``). Reading
        # them as they are, packed by the GEMM per call, saves that copy (ResNet-50: 16 MB) but
        # costs time, most where the weights come from L3/DRAM (a plan's layers evict each
        # other's) and that packing pass is not hidden behind the products: Intel
        # Emerald Rapids, 2 threads, ONNX models at batch 1, in-process interleaved medians,
        # read in place -> packed once: ResNet-50 46.9 -> 44.2 ms (0.942, twice), GoogLeNet
        # 16.41 -> 16.14 ms (0.98); AMD EPYC Zen 4: 39.0 -> 38.1 ms, 13.88 -> 13.57 ms.
        self.geom1 = replace(geom, n=1)                                     # one image
        # a pointwise conv over a batch whose per-image products would be narrow (7x7 maps)
        # runs as ONE product over every (image, pixel) column (gemm_split), in place.
        # ResNet-50 / MobileNetV2 at batch 8, one thread, AMD EPYC Zen 4, in-process
        # alternated medians, per-image -> one product: 7x7 320->1280 5.39 -> 4.31 ms,
        # 512->2048 11.6 -> 8.7 ms, 160->960 1.85 -> 1.47 ms; on 14x14 maps 3-4% slower (kept
        # per image there)
        self.split_batch = (self.pointwise and g == 1 and _gemm_ext is not None
                            and oh * ow < _NARROW)
        # A strided pointwise conv (ResNet's 1x1/2 downsample) is a pointwise conv of every
        # s-th pixel of every s-th row. With output rows of at least _MAPS_MIN_OW pixels it
        # runs as one product per image reading those pixels in place (``gemm_maps``: the B
        # packer does the gather the column matrix did, the weights packed once), all images
        # in one call (else a batch takes batch_cols below). Same K order as im2col + GEMM, so
        # the same bits. AMD EPYC Zen 4, in-process interleaved medians, one thread: 256->512
        # @56 b1 2.16 -> 2.06 ms, b8 17.1 -> 16.3 ms; 1024->2048 @14 b8 18.6 -> 17.9 ms (AVX2:
        # 21.5 -> 18.2 ms)
        strided_pw = ((kh, kw) == (1, 1) and s != (1, 1) and not any(pads) and g == 1
                      and self.algorithm == "im2col" and _gemm_ext is not None
                      and dtype in _ITEM)
        self.maps = (strided_pw and N == 1 and not _few_columns(F, oh * ow)
                     and ow >= _MAPS_MIN_OW)
        # An im2col conv of a batch whose per-image products would be narrow (a 7x7 map:
        # ResNet's 3x3/2 and 1x1/2 convs onto it), or a strided 1x1 conv of a batch, puts every
        # image's columns in one buffer (im2col's threaded gather) and runs the products of
        # all images in one call: each thread takes whole images on the weights packed once
        # (``batch_packed``; the same K slices and order as one image's product, so the same
        # bits). Before, ONE product over every (image, pixel) column on the weights as they
        # are (``_mm``'s split path, which packs them per unit), and the strided 1x1 convs onto
        # 28x28 maps read their pixels in place (``maps``, whose stride-2 B packing streams the
        # whole image per product). AMD EPYC Zen 5, 2 threads, batch 8, interleaved medians,
        # ResNet-50's downsample 1x1/2 convs, in place / gather + one product / gather +
        # per-image products: 256->512 @56 7.09 / 6.68 / 5.88 ms, 512->1024 @28 7.80 / 6.35 /
        # 5.74, 1024->2048 @14 6.93 / 6.15 / 5.39; the products alone, one product -> per
        # image on packed weights, 512x4608x49 (the 3x3/2 onto 7x7) 293 -> 339 GFLOP/s (one
        # thread 147 -> 162), 2048x1024x49-like shapes 5-13% faster. The packed copies add
        # about 19 MB to ResNet-50's prepared weights at batch 8. (On Intel Emerald Rapids
        # the one product had replaced one image's product at a time: 512->512 3x3/2 onto 7x7
        # 14.26 -> 12.44 ms.)
        self.batch_cols = (self.algorithm == "im2col" and not self.pointwise and g == 1
                           and N > 1 and _gemm_ext is not None and dtype in _ITEM
                           and (_few_columns(F, oh * ow) or strided_pw))
        if self.batch_cols:
            self.scratch_bytes = _align(N * C * kh * kw * oh * ow * dtype.itemsize)

    def batch_packed(self):
        """True when ``batch_cols``'s products run per image on the weights packed once as
        the left operand: the family in use computes a ragged last column panel in place
        (``_narrow``: else a product with few columns runs transposed, and the batch takes the
        one-product split path on the weights as they are)."""
        g = self.geom
        return self.batch_cols and not _narrow(g.f, g.oh * g.ow, self.dtype.itemsize)

    def winograd_bytes(self, m):
        """Bytes of this conv's transformed and packed F(m x m, 3x3) weights."""
        g = self.geom
        return _conv_cython._convfast.winograd_packed_size(
            m, g.f, g.g, g.c // g.g, self.dtype.itemsize, _family()) * self.dtype.itemsize

    def prepare(self):
        """Make the prepared weights once (thread-safe): Winograd's transformed and packed
        weights, or the one-group weights packed for the im2col GEMM (see pack_weights)."""
        with self._prepare_lock:
            w, self._unprepared = self._unprepared, None
            if w is None:
                return
            if self.algorithm == "winograd":
                self.winograd = _conv_cython.conv_winograd.WinogradWeights(
                    w, self.geom, self.dtype, m=self.wino_m)
            elif (self.g == 1 and self.algorithm == "im2col"
                  and not (self.geom.n > 1 and self.split_batch)
                  and not (self.batch_cols and not self.batch_packed())):
                # (a batch's pointwise conv on a narrow map runs as one product over every
                # (image, pixel) column, ``_mm``'s split path, on the weights as they are: a
                # copy packed for one image's product would never be read. Packing them once
                # for the batch's product instead measured no gain: ResNet-50 and MobileNetV2
                # at batch 8, 15 interleaved rounds, 286.1 vs 286.7 ms and 29.8 vs 29.9 ms.)
                self.w_packed = pack_weights(self.wg[0], self.geom.oh * self.geom.ow)
            elif self.algorithm == "implicit" and self.dtype in _ITEM:
                # the implicit GEMM's weight panels, packed once (each call packed them, and
                # at 2 threads each of its units: 128->128 3x3/2 @56, one image, Zen 4, 12%
                # more CPU time on 2 threads than on one)
                self.w_native = _conv_cython.implicit_pack(self.w_flat, self.geom,
                                                           self.fast_args)
            elif (self.algorithm == "direct" and self.dtype in _ITEM
                  and direct_kernel(self.geom) == "small"):
                # the small-map kernel's register-block weights, packed once (each call packed
                # them: a third of its kernel time at batch 1, GoogLeNet's narrow 3x3 convs)
                self.w_native = _conv_cython.small_pack(self.w_flat, self.geom)

    # -- im2col of one image into cols (C*KH*KW, OH*OW)
    def _im2col(self, x1, cols):
        _kernels.impl("im2col")(x1, self.geom1, out=cols[None])

    def _bind(self, ins, outs, scratch, work=None):
        self.prepare()
        x, y = ins[0], outs[0]
        N, C, H, W, F, oh, ow = self.shape
        if tuple(x.shape) != (N, C, H, W) or tuple(y.shape) != (N, F, oh, ow):
            raise ValueError(f"conv kernel for input {(N, C, H, W)} -> output {(N, F, oh, ow)} "
                             f"bound to arrays of shape {tuple(x.shape)} -> {tuple(y.shape)}")
        r = ins[_RESIDUAL] if self.residual else None
        if r is not None and (r.shape != y.shape or r.dtype != y.dtype):
            raise ValueError(f"the residual operand ({tuple(r.shape)}, {r.dtype}) must have the "
                             f"conv output's shape and dtype ({tuple(y.shape)}, {y.dtype})")
        if self.algorithm != "im2col" and _unit_w(x, y):
            return self._bind_convfast(x, y, r, scratch, work)
        if self.maps and _unit_w(y):
            return self._bind_maps(x, y, r, self._bind_im2col(x, y, r, scratch))
        return self._bind_im2col(x, y, r, scratch)

    def _bind_im2col(self, x, y, r, scratch):
        """im2col + GEMM: F.conv2d's own forward routine, with this plan's column buffer (one
        image, or every image for ``batch_cols``: one product), its GEMM hook (packed weights,
        fused activation) and the residual accumulated."""
        N, C, H, W, F, oh, ow = self.shape
        y3 = _view(y, (N, F, oh * ow))
        r3 = None if r is None or np.shares_memory(r, y) else r.reshape(N, F, oh * ow)
        batch = self.batch_cols and _unit_w(y)    # the split product writes rows in place
        cols = (None if self.pointwise
                else _scratch(scratch, (N,) + self.cols, self.dtype) if batch
                else _scratch(scratch, self.cols, self.dtype)[None])
        # a batch's products per image on the weights packed once (``batch_packed``, as
        # prepared), else ONE product over every (image, pixel) column
        per_image = self.w_packed is not None and self.w_packed.side == "a"
        mm, geom = self._mm((not per_image) if batch else None), self.geom
        w_flat, bias = self.w_flat, self.bias
        forward, accumulate = _conv_gemm.forward, r is not None

        def im2col(xs, geom, out):        # the backend active when the plan runs
            return _kernels.impl("im2col")(xs, geom, out=out)

        def run():
            if r3 is not None:
                np.copyto(y3, r3)
            forward(x, w_flat, bias, geom, im2col, mm=mm, out=y3, workspace=cols,
                    accumulate=accumulate)
        if self.pointwise and N == 1:
            return self._bind_pointwise(x, y3, r3, accumulate, run)
        if (IM2COL_DIRECT and _im2col_ext is not None and N == 1 and x.dtype == self.dtype
                and x[0].flags.c_contiguous):   # the rest _bind_pointwise checks
            # one image (IM2COL_DIRECT): its columns by the native im2col, then the pointwise
            # path's one native GEMM on them (packed weights, epilogue), the same bits.
            # ResNet-50's 1x1/2 convs onto 14x14 and 7x7 maps, AMD EPYC Zen 4, 2 threads,
            # the pool held: 1.24 -> 1.13 ms and 1.41 -> 1.32 ms; its 3x3/2 convs onto them
            # 1.38 -> 1.31 ms and 1.45 -> 1.38 ms; whole plans at batch 1, alternated in one
            # process: 0.982-0.992 (the 1x1 convs alone), 0.988 (both)
            gemm = self._bind_pointwise(cols, y3, r3, accumulate, run)
            if gemm is not run:
                gather = specialized(_im2col_ext.im2col, self.dtype)
                g1 = self.geom1

                def gathered():
                    gather(x, cols, g1.kh, g1.kw, g1.sh, g1.sw, g1.pt, g1.pl, g1.dh, g1.dw,
                           oh, ow, num_threads=get_num_threads())
                    gemm()
                return gathered
        return run

    def _bind_pointwise(self, x, y3, r3, accumulate, general):
        """One image's 1x1 conv (one group, stride 1; ``x`` the image), or the GEMM of an
        im2col conv (``x`` its filled column buffer, (1, C*KH*KW, OH*OW)), as ONE call of the
        native GEMM on views made here: the product ``gemm_into`` runs, in its orientation
        (``_narrow``: out.T = x.T @ W.T for a few pixels), on the same packed weights, so the
        same bits, without the Python between (``_conv_gemm.forward``, ``gemm_into``,
        ``gemm_ops.gemm``'s checks: about 10 us a call on Zen 4, a third of a 14x14 layer's
        GEMM time at small widths).
        ``general`` (the path above) runs instead where the views do not fit the kernel, or
        when the GEMM family in use at run time is not the one the weights were packed for."""
        wpk = self.w_packed
        if (_gemm_ext is None or wpk is None or self.g != 1
                or x.dtype != self.dtype or not x[0].flags.c_contiguous
                or y3.strides[2] != y3.itemsize or np.shares_memory(x, y3)):
            return general
        N, C, H, W, F, oh, ow = self.shape
        L = oh * ow
        xb = x.reshape(1, -1, L)      # (1, C, L), or a column buffer (1, C*KH*KW, L)
        bias = None if self.bias is None else self.bias[None]
        if wpk.side == "b":   # packed for the transposed product (``pack_weights``)
            # out.T (L, F) = x.T (L, C) @ W.T (C, F): C written column-major, bias per column
            a, b, c, kind = xb.transpose(0, 2, 1), self.w_flat.T[None], y3.transpose(0, 2, 1), 2
            apk, bpk = None, wpk.data
        else:
            a, b, c, kind = self.w_flat[None], xb, y3, 1
            apk, bpk = wpk.data, None
        kind = 0 if bias is None else kind
        beta, act = (1.0 if accumulate else 0.0), _ACT_CODES[self.act]
        isa, gemm = wpk.isa, specialized(_gemm_ext.gemm_strided, self.dtype)

        def run():
            family = _family()
            if family != isa:                      # the packed weights serve their family only
                general()
                return
            if r3 is not None:
                np.copyto(y3, r3)
            gemm(a, b, c, 1.0, beta, bias, kind, act, get_num_threads(), family, apk, bpk)
        return run

    def _strided_pixels(self, x):
        """The pixels a strided pointwise conv reads: x[:, :, ::SH, ::SW] cut to (OH, OW)."""
        (sh, sw), (N, C, H, W, F, oh, ow) = self.s, self.shape
        return x[:, :, ::sh, ::sw][:, :, :oh, :ow]

    def _bind_maps(self, x, y, r, im2col_run):
        """A strided pointwise conv as one product per image reading its pixels in place
        (``gemm_maps``), the weights packed once, bias, residual (beta = 1 on the operand
        copied into y) and activation fused; ``im2col_run`` (the bound im2col path) where the
        micro-kernel family in use has narrow panels (``_maps_pay``)."""
        xs, a, wpk = self._strided_pixels(x), self.w_flat, self.w_packed
        r4 = None if r is None or np.shares_memory(r, y) else r
        beta = 0.0 if r is None else 1.0
        act, bias = _ACT_CODES[self.act], self.bias
        maps = specialized(_gemm_ext.gemm_maps, self.dtype)
        itemsize = self.dtype.itemsize

        def run():
            isa, apk = _packed_for(wpk)
            if not _maps_pay(isa, itemsize):
                return im2col_run()
            if r4 is not None:
                np.copyto(y, r4)
            maps(a, xs, y, 1.0, beta, bias, act, get_num_threads(), isa, apk)
        return run

    def _mm(self, split=None):
        """The GEMM hook ``_conv_gemm.forward`` calls in this plan (``numpy_mm``'s contract):
        nnlite's GEMM on the weights packed once, the activation fused; a (G, FG, K),
        b (M, G, K, L), out (M, G, FG, L), bias (G, FG) or None. ``split``: a batch runs as
        one product over every (image, pixel) column (default: ``split_batch``)."""
        g, act, wpk = self.g, self.act, self.w_packed
        split = self.split_batch if split is None else split
        act_code = _ACT_CODES[act]

        def mm(a, b, out, bias=None, accumulate=False, reduce=False):
            beta = 1.0 if accumulate else 0.0
            native = _gemm_batched is not None and (_gemm_ext is not None or beta == 0.0)
            if g == 1:
                a0, b0, out0 = a[0], b[:, 0], out[:, 0]
                bias0 = None if bias is None else bias[0]
                if split and len(out0) > 1 and native and b0.strides[2] == b0.itemsize:
                    _gemm_ext.gemm_split(a0[:, None, :], b0.transpose(1, 0, 2)[None],
                                         out0.transpose(1, 0, 2), 1.0, beta, bias0,
                                         0 if bias0 is None else 1, act_code,
                                         get_num_threads(), _gemm_isa())
                    return out
                if len(out0) > 1 and native:
                    # (1, F, K) @ (M, K, L) -> (M, F, L): one call, threads split the images
                    packed = wpk if wpk is not None and wpk.side == "a" else a
                    _gemm_batched(packed, b0, out0, beta=beta, bias=bias0, activation=act)
                    return out
                for i in range(len(out0)):
                    # (F, K) @ (K, L) -> (F, L)
                    gemm_into(a0, b0[i], out0[i], bias0, 0, act, beta, packed=wpk)
                return out
            for i in range(len(out)):
                if native:
                    # (G, FG, K) @ (G, K, L) -> (G, FG, L)
                    _gemm_batched(a, b[i], out[i], beta=beta, bias=bias, activation=act)
                    continue
                acc = np.matmul(a, b[i])
                if beta:
                    acc += out[i]
                if bias is not None:
                    acc += bias[:, :, None]
                _activate(acc, act)
                out[i][...] = acc
            return out
        return mm

    def _bind_convfast(self, x, y, r, scratch, work=None):
        """F.conv2d's direct depthwise kernel or implicit GEMM, or Winograd F(4x4, 3x3) (F(2x2,
        3x3) for few tiles: ``_algorithms.winograd_tile``) on the weights transformed once and
        its work memory in ``work`` (None: its own per call), with bias, residual (beta = 1 on
        the operand copied into y) and activation fused."""
        N, C, H, W, F, oh, ow = self.shape
        y3 = _view(y, (N, F, oh * ow))
        r3 = None if r is None or np.shares_memory(r, y) else r
        beta = 0.0 if r is None else 1.0
        act, bias, w2, geom = _ACT_CODE[self.act], self.bias, self.w_flat, self.geom
        algo, args, packed = self.algorithm, self.fast_args, self.w_native
        if self.winograd is not None:
            wino, finite = self.winograd, _conv_cython.conv_winograd.finite
            # an input holding a NaN or inf runs by im2col + GEMM: Winograd would spread it
            # over whole output tiles (``conv_winograd.finite``), as F.conv2d does
            exact = self._bind_im2col(x, y, r, scratch)

            def run_winograd():
                if not finite(x):
                    exact()
                    return
                if r3 is not None:
                    np.copyto(y, r3)
                wino.run(x, y3, bias, act, beta, work=work)
            return run_winograd

        call = _conv_cython.bind_fast_forward(algo, x, w2, bias, geom, args, y3, act, beta,
                                              packed)
        if r3 is None:
            return call

        def run():
            np.copyto(y, r3)
            call()
        return run


# ------------------------------------------------------------------------------ conv + max pool
CONV_POOL_OP = "nnlite.ConvMaxPool"


def conv_pool_fusable(conv):
    """Whether ConvKernel ``conv`` (no residual) may take the MaxPool that alone reads its
    output into its call (``ConvMaxPoolKernel``): the conv is one 'auto' runs by the
    few-channel kernel ('direct' -> ``_algorithms.direct_kernel`` 'phase': an image model's
    first conv, 3 -> 64 7x7/2 in ResNet-50 and GoogLeNet, whose max pool follows), float32 or
    float64, on a build with that kernel."""
    return (_conv_cython is not None and hasattr(_conv_cython._convfast, "conv2d_phase_maxpool")
            and not conv.residual and conv.dtype in _ITEM and conv.algorithm == "direct"
            and direct_kernel(conv.geom) == "phase")


class ConvMaxPoolKernel(Kernel):
    """Conv (+ bias, activation) -> MaxPool in one native call (``_convfast.
    conv2d_phase_maxpool``): each band of pooled rows computes the conv rows its windows read
    into a per-thread buffer and pools them there, so the conv's map never goes to memory
    (ResNet-50's 112x112x64 stem output, 3.2 MB an image, written and read back by the max
    pool). The same values as the two unfused steps: the few-channel kernel's sums, then the
    max pool's plane kernel. Arrays the native kernel cannot take run those two steps
    (ConvKernel into a buffer of this bind, then PoolKernel)."""

    def __init__(self, x_shape, w, b, attrs, dtype):
        conv_attrs = {k: v for k, v in attrs.items() if k != "pool"}
        self.conv = conv = ConvKernel(x_shape, w, b, conv_attrs, False, dtype)
        N, C, H, W, F, oh, ow = conv.shape
        self.pool = PoolKernel("MaxPool", (N, F, oh, ow), attrs["pool"], dtype)
        (pkh, pkw), (psh, psw), (pdh, pdw) = self.pool.k, self.pool.s, self.pool.d
        self.pool_args = (pkh, pkw, psh, psw, self.pool.pads[0], self.pool.pads[1], pdh, pdw
                          ) + tuple(self.pool.out)
        self.shape = (N, F) + tuple(self.pool.out)
        self.dtype, self.weight_bytes = dtype, conv.weight_bytes
        # the unfused fallback's scratch (the conv's and the pool's, used one after the other)
        self.scratch_bytes = max(conv.scratch_bytes, self.pool.scratch_bytes)
        self.fused = conv_pool_fusable(conv)

    def _bind(self, ins, outs, scratch):
        x, y = ins[0], outs[0]
        conv = self.conv
        N, C, H, W, F, oh, ow = conv.shape
        if tuple(x.shape) != (N, C, H, W) or tuple(y.shape) != self.shape:
            raise ValueError(f"conv + max pool kernel for input {(N, C, H, W)} -> output "
                             f"{self.shape} bound to arrays of shape {tuple(x.shape)} -> "
                             f"{tuple(y.shape)}")
        if self.fused and _unit_w(x, y) and x.dtype == y.dtype == self.dtype:
            y3 = _view(y, (N, F, self.shape[2] * self.shape[3]))
            g = conv.geom
            fn = specialized(_conv_cython._convfast.conv2d_phase_maxpool, self.dtype)
            w2, bias, act, args = conv.w_flat, conv.bias, _ACT_CODE[conv.act], self.pool_args
            kh, kw = conv.k
            (sh, sw), (dh, dw), (pt, pl) = conv.s, conv.d, (g.pt, g.pl)

            def run():
                fn(x, w2, bias, y3, g.g, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, args, act=act,
                   num_threads=get_num_threads())
            return run
        mid = np.empty((N, F, oh, ow), self.dtype)
        run_conv = conv.bind([x], [mid], scratch)
        run_pool = self.pool.bind([mid], [y], scratch)

        def run_both():
            run_conv()
            run_pool()
        return run_both


class ConvPart(Kernel):
    """Output channels [f0, f1) of a one-group Conv (no residual): a ConvKernel on those
    filters writing that channel slice of the conv's output. Two parts of one conv run on the
    two lanes of a branch group (plan.py) to balance them."""

    def __init__(self, x_shape, w, b, attrs, dtype, f0, f1, algorithm="auto"):
        self.f0, self.f1 = f0, f1
        self.inner = ConvKernel(x_shape, w[f0:f1], None if b is None else b[f0:f1], attrs,
                                False, dtype, algorithm)
        self.scratch_bytes = self.inner.scratch_bytes
        self.weight_bytes = self.inner.weight_bytes
        self.shape = self.inner.shape

    def prepare(self):
        self.inner.prepare()

    def _bind(self, ins, outs, scratch):
        return self.inner.bind(ins, [outs[0][:, self.f0:self.f1]], scratch)


class SharedColumns:
    """An im2col conv (one group, no residual) split by output channels over two lanes that
    share one column matrix: part 'a' gathers the columns of every image (``stages``: gather,
    then its rows' GEMM) and part 'b' multiplies its rows once the gather is done (the plan
    sets an event between part a's stages). Filters [0, f) go to part a, [f, F) to part b."""

    def __init__(self, conv, f):
        N, C, H, W, F, oh, ow = conv.shape
        # the parts run im2col on their own packed halves: what the whole conv prepared for its
        # algorithm (Winograd-transformed weights, packed weights) is not kept with them
        conv = copy.copy(conv)
        conv.winograd = conv.w_packed = conv.w_native = conv._unprepared = None
        self.conv, self.f = conv, f
        w2 = conv.wg[0]
        self.w = (w2[:f], w2[f:])
        self.packed = (pack_weights(w2[:f], oh * ow), pack_weights(w2[f:], oh * ow))
        b = conv.bias
        self.bias = (None, None) if b is None else (b[:f], b[f:])
        self.cols_shape = (N, C * conv.k[0] * conv.k[1], oh * ow)
        self._tl = threading.local()  # the column buffer of the Plan.bind in progress
        self.parts = (_ColumnsPart(self, 0), _ColumnsPart(self, 1))
        for part in self.parts:
            part.label = conv.label


class _ColumnsPart(Kernel):
    """Part 'a' (side 0) needs ``scratch_bytes`` for the columns of every image in an area of
    its own (``private_scratch``): part 'b' reads them on the other lane while the caller's lane
    goes on using its scratch. ``Plan.bind`` gives every such part one area (sized for the
    largest): lane groups run one after the other, and a group splits at most one conv."""
    scratch_bytes = 0
    private_scratch = False

    def __init__(self, pair, side):
        self.pair, self.side = pair, side
        self.shape = pair.conv.shape
        if side == 0:
            self.private_scratch = True
            self.scratch_bytes = _align(int(np.prod(pair.cols_shape, dtype=np.int64))
                                        * pair.conv.dtype.itemsize)

    def _bind(self, ins, outs, scratch):
        pair, side = self.pair, self.side
        conv = pair.conv
        N, C, H, W, F, oh, ow = conv.shape
        if side == 0:  # bound first (lower step index): the columns in its private scratch
            pair._tl.cols = cols = _scratch(scratch, pair.cols_shape, conv.dtype)
        else:          # part b takes them over (the pair keeps no buffer between bindings)
            cols = pair._tl.__dict__.pop("cols")
        rows = slice(0, pair.f) if side == 0 else slice(pair.f, F)
        x, y = ins[0], outs[0]
        xs = [x[n:n + 1] for n in range(N)]
        ys = [_view(y[n], (F, oh * ow))[rows] for n in range(N)]
        w, wpk, bias, act = pair.w[side], pair.packed[side], pair.bias[side], conv.act

        def gemm():
            for n in range(N):
                gemm_into(w, cols[n], ys[n], bias, 0, act, 0.0, packed=wpk)
        if side == 1:
            return gemm

        def gather():
            for n in range(N):
                conv._im2col(xs[n], cols[n])

        def run():
            gather()
            gemm()
        run.stages = (gather, gemm)
        return run


def winograd_memory_cap(steps, constants):
    """The geometries of the Winograd convs a plan runs as F(2x2, 3x3) to keep its transformed
    weights within the model's own weights (float constants), an empty list when they fit.

    F(4x4)'s transformed 3x3 filters hold 36 values, F(2x2)'s 16. Where F(4x4) wins only by
    the chunk and ragged-panel terms of ``winograd_tile`` (``winograd_tile_is_close``: the
    plain multiply-add count prefers F(2x2), e.g. 14x14 maps at batch 1) its extra memory is
    taken only within that bound, the largest such convs giving it back first; F(4x4)
    choices the plain count makes too (large maps, batches) are not capped. GoogLeNet from
    ONNX at batch 1 (AMD EPYC Zen 4, 2 threads): F(4x4) on its five 14x14 3x3 convs would
    take 38 MB of transformed weights for 25 MB of model weights and the plan's peak RSS to
    91 MB, past ONNX Runtime's 81 MB (bench_inference.py); capped, they run F(2x2) (peak
    78 MB). ResNet-50 at batch 1 keeps F(4x4) there (85 MB for 98 MB of weights)."""
    model = sum(a.nbytes for a in constants.values()
                if isinstance(a, np.ndarray) and a.dtype.kind == "f")
    convs = [s.kernel for s in steps
             if isinstance(s.kernel, ConvKernel) and s.kernel.algorithm == "winograd"]
    total = sum(k.winograd_bytes(k.wino_m) for k in convs)
    # the close calls with the bytes F(4x4) takes beyond F(2x2), the largest first (in step
    # order among equals)
    close = [(k.winograd_bytes(4) - k.winograd_bytes(2), k) for k in convs
             if k.wino_m == 4 and winograd_tile_is_close(k.geom)]
    capped = []
    for extra, k in sorted(close, key=lambda c: -c[0]):
        if total <= model:
            break
        total -= extra
        capped.append(k.geom)
    return capped


def split_conv(node, in_metas, consts, f0, f1, algorithm="auto"):
    """ConvPart of ``node`` for channels [f0, f1) run by ``algorithm`` (as F.conv2d's: 'auto'
    picks per part), or None when the conv cannot be split."""
    at = node.attrs
    if (node.op != "Conv" or at.get("residual") or int(at.get("group", 1)) != 1
            or len(in_metas[0][0]) != 4):
        return None
    names, cs = conv_inputs(node), conv_inputs(node, consts)
    if cs.weight is None or (names.bias is not None and cs.bias is None):
        return None
    part = ConvPart(in_metas[0][0], cs.weight, cs.bias, at, np.dtype(in_metas[0][1]), f0, f1,
                    algorithm)
    part.label = part.inner.label = node.label()
    return part


# ------------------------------------------------------------------------------ fused block
IR_OP = "nnlite.InvertedResidual"
IR_INPUTS = ("x", "w1", "b1", "wd", "bd", "w3", "b3", "residual")


# How a fused block's threads share its work (``inverted_residual``'s split): "auto" (the
# kernel's cost model picks bands of output rows or the channel split, call by call), "bands"
# or "channels" (forced: for studies and A/B runs; read when a plan is bound).
IR_SPLIT = "auto"


def is_head_conv(conv):
    """Whether the fused block takes ConvKernel ``conv`` as its head (its output, the block's
    input, computed row by row in the block's bands): float32, one group, ReLU6, no residual,
    run alone by the few-channel kernel ('direct' -> ``_algorithms.direct_kernel`` 'phase': a
    kernel larger than 1x1 over at most PHASE_MAX_CG input channels, an image model's first
    conv, where 'auto' picks it on this build), whose arithmetic the fused head repeats: the
    same bits fused or not."""
    return (conv.dtype == np.float32 and conv.g == 1 and conv.act == "relu6"
            and not conv.residual and conv.algorithm == "direct"
            and direct_kernel(conv.geom) == "phase")


def inverted_residual_available():
    """True when the fused inverted residual kernel is built (nnlite._convfast, nnlite._gemm)."""
    return (_conv_cython is not None and _gemm_ext is not None
            and hasattr(_conv_cython._convfast, "bind_inverted_residual"))


def _images_contiguous(a):
    """True when every image a[n] of ``a`` is C-contiguous (what the fused kernel takes)."""
    return a.ndim >= 2 and a[:1].flags.c_contiguous and (a.shape[0] < 2 or (
        a.strides[0] >= a[0].nbytes and a.strides[0] % a.itemsize == 0))


class InvertedResidualKernel(Kernel):
    """MobileNetV2's inverted residual, expand 1x1 (+ ReLU6) -> depthwise 3x3 stride 1 or 2,
    padding 1 (+ ReLU6) -> project 1x1 [+ residual], float32, in one native call
    (without the expand for a block of expansion ratio 1: ``parts[0]`` None)
    (``_convfast.inverted_residual``, csrc/convfast_fused.c): bands of output rows per thread,
    the expanded rows in that thread's cache, one OpenMP team wake-up per block. The expand and
    project weights are packed once (``prepare``); the three ConvKernels of the parts hold the
    same weight arrays (no copy) and run the block unfused where the fused call cannot take the
    arrays (an output overlapping its input, images that are not contiguous), with the two
    intermediates then allocated by that binding. The work memory of the fused call (two band
    buffers per thread, at most half of the L2 each) is malloc'd by the call, as the depthwise
    kernel's and the GEMM's packing buffers are; ``scratch_bytes`` is the parts' (unfused
    fallback's) need."""

    def __init__(self, x_shape, parts, residual, dtype):
        expand, (wd, bd, a2), (w3, b3, a3) = parts
        N, C, H, W = x_shape
        E, F = wd.shape[0], w3.shape[0]
        p1 = None if expand is None else ConvKernel(x_shape, *expand[:3], False, dtype)
        # a first part that is no 1x1 conv is a head conv: the block's input map is its output
        self.head = p1 is not None and not p1.pointwise
        bh, bw = (p1.geom.oh, p1.geom.ow) if self.head else (H, W)
        p2 = ConvKernel((N, E, bh, bw), wd, bd, a2, False, dtype)
        geom = p2.geom
        p3 = ConvKernel((N, E, geom.oh, geom.ow), w3, b3, a3, residual, dtype)
        self.parts = (p1, p2, p3)
        head_ok = (C == E if p1 is None else
                   p1.w_flat.shape[0] == E and (
                       is_head_conv(p1) if self.head else p1.act == "relu6" and p1.g == 1))
        if not (head_ok and p3.pointwise and p2.act == "relu6"
                and p3.act is None and p2.g == E and tuple(wd.shape[1:]) == (1, 3, 3)
                and p2.s[0] == p2.s[1] and p2.s[0] in (1, 2) and tuple(p2.d) == (1, 1)
                and tuple(p2.pads) == (1, 1, 1, 1) and p3.g == 1
                and w3.shape[1] == E and dtype == np.float32):
            raise ValueError("the layers are not an inverted residual the fused kernel takes "
                             "([1x1 ReLU6, or a head conv (is_head_conv) ->] 3x3 "
                             "depthwise stride 1 or 2, padding 1, ReLU6 -> 1x1, float32; "
                             "without the expand, C == E)")
        self.stride, self.residual, self.dtype = p2.s[0], residual, dtype
        self.expand, self.project_t = p1 is not None, False
        # set by the plan (storage.channels_last_blocks) for the tensors a chain of blocks
        # passes channels-last: x (N, H, W, C), y and the residual (N, OH*OW, F)
        self.x_channels_last = self.y_channels_last = False
        self.shape = (N, C, H, W, E, F, geom.oh, geom.ow)
        self.weight_bytes = sum(p.weight_bytes for p in self.parts if p is not None)
        self.scratch_bytes = max(p.scratch_bytes for p in self.parts if p is not None)
        self.packed = None
        self._prepare_lock = threading.Lock()

    def prepare(self):
        """Pack the expand and project weights once for the GEMM (thread-safe): W1^T as the B
        operand (the fused block expands pixel-major, x^T @ W1^T); W3 as the A operand, or,
        where a band's pixel count fills the GEMM's vector panels badly (``project_t``,
        ``_pixel_major_pays``), W3^T as the B operand: the project then runs pixel-major,
        y^T = d^T @ W3^T, the GEMM cutting F into vector panels instead of the pixels."""
        with self._prepare_lock:
            if self.packed is None:
                N, C, H, W, E, F, oh, ow = self.shape
                _, rows, _, _ = _conv_cython._convfast.inverted_residual_plan(
                    N, C, H, W, E, F, self.stride, get_num_threads(), expand=self.expand,
                    isa=_family(), head=self._head_geometry())
                # a channels-last y is the pixel-major product's row-major C
                self.project_t = self.y_channels_last or _pixel_major_pays(F, rows * ow)
                p1, w3 = self.parts[0], self.parts[2].w_flat
                self.packed = (None if p1 is None or self.head
                               else _pack(p1.w_flat, "b", trans=True),
                               _pack(w3, "b", trans=True) if self.project_t else _pack(w3, "a"))

    def _head_geometry(self):
        """The head conv's (kh, kw, sh, sw, pt, pb, pl, pr, dh, dw), or None."""
        if not self.head:
            return None
        g = self.parts[0].geom
        return (g.kh, g.kw, g.sh, g.sw, g.pt, g.pb, g.pl, g.pr, g.dh, g.dw)

    def _bind(self, ins, outs, scratch):
        x, y = ins[0], outs[0]
        N, C, H, W, E, F, oh, ow = self.shape
        if tuple(x.shape) != (N, C, H, W) or tuple(y.shape) != (N, F, oh, ow):
            raise ValueError(f"inverted residual kernel for input {(N, C, H, W)} -> output "
                             f"{(N, F, oh, ow)} bound to arrays of shape {tuple(x.shape)} -> "
                             f"{tuple(y.shape)}")
        r = ins[IR_INPUTS.index("residual")] if self.residual else None
        if r is not None and (r.shape != y.shape or r.dtype != y.dtype):
            raise ValueError(f"the residual operand ({tuple(r.shape)}, {r.dtype}) must have the "
                             f"block output's shape and dtype ({tuple(y.shape)}, {y.dtype})")
        fused = (x.dtype == y.dtype == np.float32 and _images_contiguous(x)
                 and _images_contiguous(y) and not np.shares_memory(x, y)
                 and (r is None or (_images_contiguous(r) and (
                     not np.shares_memory(r, y) or (r.ctypes.data == y.ctypes.data
                                                    and r.strides == y.strides)))))
        xcl, ycl = self.x_channels_last, self.y_channels_last
        if not fused:
            if xcl or ycl:
                raise PlanError(self.label, "a block with channels-last tensors must run fused "
                                "(contiguous images, an output apart from its input)")
            return self._bind_unfused(x, y, r, scratch)
        self.prepare()
        p1, p2, p3 = self.parts
        pk1, pk3 = self.packed
        ydims = (N, oh * ow, F) if ycl else (N, F, oh * ow)
        y3 = _view(y, ydims)
        r3 = None if r is None else _view(r, ydims)
        if xcl:
            x = _view(x, (N, H, W, C))
        w1, b1, pk1d = ((None, None, None) if p1 is None else
                        (p1.w_flat, p1.bias, None if pk1 is None else pk1.data))
        bd, b3 = p2.bias, p3.bias
        wd, w3, s = p2.w_flat, p3.w_flat, self.stride
        block = _conv_cython._convfast.bind_inverted_residual(
            x, w1, pk1d, b1, wd, bd, w3, pk3.data, b3, y3, s, r3, pk3.isa, self.project_t,
            IR_SPLIT, self._head_geometry(), xcl, ycl)
        return lambda: block(get_num_threads())

    def _bind_unfused(self, x, y, r, scratch):
        """The three convs one after the other, the intermediates in arrays of this binding."""
        N, _, _, _, E, _, oh, ow = self.shape
        d = np.empty((N, E, oh, ow), self.dtype)
        p1, p2, p3 = self.parts
        calls = []
        if p1 is not None:
            e = np.empty((N, E) + tuple(p2.shape[2:4]), self.dtype)
            calls.append(p1.bind([x], [e], scratch))
            x = e
        calls += [p2.bind([x], [d], scratch), p3.bind([d, None, None, r], [y], scratch)]

        def run():
            for call in calls:
                call()
        return run


# ------------------------------------------------------------------------------ pooling
class PoolKernel(Kernel):
    """MaxPool (padding = -inf, NaN propagates) / AveragePool (zero padding, divisor map)."""

    def __init__(self, op, x_shape, attrs, dtype):
        N, C, H, W = x_shape
        k, s, d, pads, out = G.pool_geometry(attrs, (H, W))
        self.op, self.k, self.s, self.d, self.pads, self.out = op, k, s, d, pads, out
        self.dtype = dtype
        hp = max(H + pads[0], (out[0] - 1) * s[0] + d[0] * (k[0] - 1) + 1)
        wp = max(W + pads[1], (out[1] - 1) * s[1] + d[1] * (k[1] - 1) + 1)
        self.need_pad = (hp, wp) != (H, W) or pads[0] or pads[1]
        self.padded = (N, C, hp, wp)
        self.scratch_bytes = _align(N * C * hp * wp * dtype.itemsize) if self.need_pad else 0
        if op == "AveragePool":
            cip = bool(int(attrs.get("count_include_pad", 0)))
            div = avg_divisor((H, W), k, s, pads, out, cip, d)
            self.inv = (1.0 / div).astype(dtype)

    def _bind(self, ins, outs, scratch):
        x, y = ins[0], outs[0]
        N, C, H, W = x.shape
        (kh, kw), (sh, sw), (dh, dw) = self.k, self.s, self.d
        pt, pl = self.pads[0], self.pads[1]
        oh, ow = self.out
        if self.op == "MaxPool" and _pool is not None and _unit_w(x, y):
            # F.max_pool2d's kernel, without indices
            threads = _threads_for(N * C * oh * ow * kh * kw)
            pool = specialized(_pool.max_pool2d_forward, x.dtype)
            return lambda: pool(x, y, None, kh, kw, sh, sw, pt, pl, dh, dw, threads())
        fill = -np.inf if self.op == "MaxPool" else 0.0
        if self.need_pad:
            xp = _scratch(scratch, self.padded, self.dtype)
            inner = xp[:, :, pt:pt + H, pl:pl + W]
            borders = [v for v in (xp[:, :, :pt], xp[:, :, pt + H:], xp[:, :, pt:pt + H, :pl],
                                   xp[:, :, pt:pt + H, pl + W:]) if v.size]
        else:
            xp, inner, borders = x, None, []
        taps = [xp[:, :, a * dh:a * dh + sh * (oh - 1) + 1:sh, b * dw:b * dw + sw * (ow - 1) + 1:sw]
                for a in range(kh) for b in range(kw)]
        combine = np.maximum if self.op == "MaxPool" else np.add
        inv = getattr(self, "inv", None)

        def run():
            if inner is not None:
                for v in borders:
                    v[...] = fill
                np.copyto(inner, x)
            np.copyto(y, taps[0])
            for t in taps[1:]:
                combine(y, t, out=y)
            if inv is not None:
                np.multiply(y, inv, out=y)
        return run


class GlobalPoolKernel(Kernel):
    """GlobalAveragePool / GlobalMaxPool over every axis after the channels. The average of
    contiguous non-empty float maps is F.adaptive_avg_pool2d's kernel (its global case: each
    plane summed in vector lanes, csrc/pool_avg.c) on the plan's threads. The maps are short
    (7x7 at the end of ResNet-50 and MobileNetV2), so the cost is per plane: np.mean took 132
    us for ResNet-50's 2048 x 7 x 7 (NumPy's BLAS for the product with a 1/(H*W) vector woke
    its sleeping workers); nnlite's GEMM, the few-row dot form, took 13 us for 1280 x 7 x 7 and
    85 us for 8 x 1280 x 7 x 7, this kernel 3.5 and 31-37 us (AMD EPYC Zen 4, 2 threads)."""

    def __init__(self, op):
        self.op = op
        self.reduce = np.mean if op == "GlobalAveragePool" else np.max

    def _bind(self, ins, outs, scratch):
        x, y = ins[0], outs[0]
        axes = tuple(range(2, x.ndim))
        reduce = self.reduce
        size = int(np.prod(x.shape[2:], dtype=np.int64))
        if (self.op == "GlobalAveragePool" and x.ndim > 2 and size
                and x.dtype in (np.float32, np.float64)
                and x.flags.c_contiguous and y.flags.c_contiguous):
            planes = x.reshape(-1, size, 1)
            out = y.reshape(-1, 1, 1)          # views: x and y are C-contiguous
            if _pool is not None:
                threads = _threads_for(planes.size)
                pool = specialized(_pool.adaptive_avg_pool2d_forward, x.dtype)
                return lambda: pool(planes, out, threads())
            rows = x.reshape(x.shape[0], x.shape[1], size)
            mean = np.full(size, 1.0 / size, x.dtype)
            return lambda: np.matmul(rows, mean, out=_view(y, x.shape[:2]))
        return lambda: np.copyto(y, reduce(x, axis=axes, keepdims=True))


# ------------------------------------------------------------------------------ elementwise
class AffineKernel(Kernel):
    """Standalone (inference) BatchNorm: y = act(x * scale[c] + shift[c])."""

    def __init__(self, scale, shift, ndim, act):
        shape = (1, -1) + (1,) * (ndim - 2)
        self.scale, self.shift, self.act = scale.reshape(shape), shift.reshape(shape), act

    def _bind(self, ins, outs, scratch):
        x, y = ins[0], outs[0]
        scale, shift, act = self.scale, self.shift, self.act

        def run():
            np.multiply(x, scale, out=y)
            np.add(y, shift, out=y)
            _activate(y, act)
        return run


_UFUNCS = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


class BinaryKernel(Kernel):
    def __init__(self, op, act):
        self.fn, self.act = _UFUNCS[op], act

    def _bind(self, ins, outs, scratch):
        a, b, y = ins[0], ins[1], outs[0]
        fn, act = self.fn, self.act

        def run():
            fn(a, b, out=y)
            _activate(y, act)
        return run


class UnaryKernel(Kernel):
    def __init__(self, op, lo=None, hi=None):
        self.op, self.lo, self.hi = op, lo, hi

    def _bind(self, ins, outs, scratch):
        x, y = ins[0], outs[0]
        op, lo, hi = self.op, self.lo, self.hi
        if op == "Relu":
            return lambda: np.maximum(x, 0, out=y)
        if op == "Clip":
            if lo is not None and hi is not None:
                return lambda: np.clip(x, lo, hi, out=y)
            if lo is not None:
                return lambda: np.maximum(x, lo, out=y)
            if hi is not None:
                return lambda: np.minimum(x, hi, out=y)
            return lambda: np.copyto(y, x)
        if op == "Tanh":
            return lambda: np.tanh(x, out=y)
        if op == "Sigmoid":
            def sigmoid():
                # 1 / (1 + exp(-x)) without overflow warnings on either tail
                with np.errstate(over="ignore"):
                    np.negative(x, out=y)
                    np.exp(y, out=y)
                    np.add(y, 1, out=y)
                    np.reciprocal(y, out=y)
            return sigmoid
        raise KeyError(op)


class SoftmaxKernel(Kernel):
    def __init__(self, axis, ndim, opset):
        self.axis, self.flat = axis, opset < 13 and axis != ndim - 1

    def _bind(self, ins, outs, scratch):
        x, y = ins[0], outs[0]
        axis = self.axis
        if self.flat:  # pre-13: softmax over the flattened trailing block
            lead = int(np.prod(x.shape[:axis], dtype=np.int64))
            x, y2 = x.reshape(lead, -1), y.reshape(lead, -1)
            axis = 1
        else:
            y2 = y

        if axis == x.ndim - 1:
            # the last axis: one pass per row (``rowops.softmax_lastaxis``; float32 natively)
            return lambda: _rowops.softmax_lastaxis(x, out=y2)

        def run():
            # IEEE results without warnings (inf - inf is NaN), as run_node gives them
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                np.subtract(x, x.max(axis=axis, keepdims=True), out=y2)
                np.exp(y2, out=y2)
                np.divide(y2, y2.sum(axis=axis, keepdims=True), out=y2)
        return run


class RowKernel(Kernel):
    """Erf, Gelu (``approximate`` 'none' or 'tanh') and LayerNormalization over the trailing
    axes from ``axis`` on (scale and bias of those axes' shape, or None; its Mean and
    InvStdDev outputs when read) by the kernels of ``nnlite.kernels.rowops``."""

    def __init__(self, op, approximate="none", axis=-1, eps=1e-5, scale=None, bias=None):
        self.op, self.approximate, self.axis, self.eps = op, approximate, axis, eps
        self.scale = None if scale is None else np.ascontiguousarray(scale).reshape(-1)
        self.bias = None if bias is None else np.ascontiguousarray(bias).reshape(-1)

    def _bind(self, ins, outs, scratch):
        x, y = ins[0], outs[0]
        if self.op == "Erf":
            return lambda: _rowops.erf(x, out=y)
        if self.op == "Gelu":
            approximate = self.approximate
            return lambda: _rowops.gelu(x, approximate, out=y)
        rows = int(np.prod(x.shape[:self.axis], dtype=np.int64))
        n = int(np.prod(x.shape[self.axis:], dtype=np.int64))
        x2, y2 = _view(x, (rows, n)), _view(y, (rows, n))
        w, b, eps = self.scale, self.bias, self.eps
        stats = [None if o is None else _view(o, (rows,)) for o in outs[1:3]]
        stats += [None] * (2 - len(stats))
        if all(o is None for o in stats):
            return lambda: _rowops.layer_norm_lastaxis(x2, w, b, eps, out=y2)

        def run():
            _, mean, rstd = _rowops.layer_norm_lastaxis(x2, w, b, eps, out=y2, stats=True)
            for dst, src in zip(stats, (mean, rstd)):
                if dst is not None:
                    np.copyto(dst, src)
        return run


# ------------------------------------------------------------------------------ dense
class GemmKernel(Kernel):
    """ONNX Gemm: act(alpha * op(A) @ op(B) + beta * C), bias-vector C fused in the write-out."""

    def __init__(self, attrs, c, act, n_inputs, b_const=False):
        self.alpha = float(attrs.get("alpha", 1.0))
        self.beta = float(attrs.get("beta", 1.0))
        self.ta, self.tb = bool(int(attrs.get("transA", 0))), bool(int(attrs.get("transB", 0)))
        self.act = act
        self.c = c  # static C, or None when C is a runtime input
        self.has_c = n_inputs > 2
        # a constant B (a classifier's weights) is packed once, by the first bind whose
        # product takes the GEMM's packed path (batches of more than 4 rows)
        self.b_const, self._b_packed, self._pack_lock = b_const, None, threading.Lock()

    def _packed_b(self, b):
        """op(b) packed once as the GEMM's right operand (the constant weights: each call of a
        classifier at batch 8 packed all of them, 1280 -> 1000 transposing 5 MB per call)."""
        with self._pack_lock:
            if self._b_packed is None:
                self._b_packed = _pack(b, "b", trans=self.tb)
            return self._b_packed

    def _bind(self, ins, outs, scratch):
        a, b, y = ins[0], ins[1], outs[0]
        a2 = a.T if self.ta else a
        b2 = b.T if self.tb else b
        alpha, beta, act = self.alpha, self.beta, self.act
        c = ins[2] if self.has_c else None
        bias = None
        if c is not None and c.ndim == 1 and c.shape[0] == y.shape[1] and self.c is not None:
            bias = np.ascontiguousarray(c * beta, dtype=y.dtype)
            c = None
        # a matrix-vector product (a classifier at batch <= 4) runs on the GEMM's unpacked
        # few-row path (no work units, no copy of the weights: the family's dot micro-kernel)
        # called here directly: NumPy's matmul would wake its BLAS workers, which sleep
        # between calls under nnlite's thread policy. In the plan, MobileNetV2's 1280 -> 1000
        # at batch 1: 0.32 ms through NumPy, 0.14-0.16 ms (Zen 4, 2 threads)
        m, k = a2.shape
        few_rows = (_gemm_ext is not None and y.dtype in _ITEM and min(m, k, y.shape[1]) > 0
                    and _gemm_ext.work_units(_family(), y.dtype.itemsize, 1, m, y.shape[1],
                                             k, 1)["mu"] == 0)
        if (few_rows and c is None and act in _ACT_CODES and a.dtype == b.dtype == y.dtype
                and y.strides[1] == y.itemsize):
            gemm, act_code = specialized(_gemm_ext.gemm_strided, y.dtype), _ACT_CODES[act]
            a3, b3, y3 = a2[None], b2[None], y[None]
            bias2, kind = (None, 0) if bias is None else (bias[None], 2)
            return lambda: gemm(a3, b3, y3, alpha, 0.0, bias2, kind, act_code,
                                get_num_threads(), _family(), None, None)
        use_gemm = _gemm is not None and alpha == 1.0 and c is None and not few_rows
        bop = b2
        if use_gemm and self.b_const and _pack is not None and _gemm_ext is not None:
            bop = self._packed_b(b)

        def run():
            if use_gemm:
                _gemm(a2, bop, y, bias=bias, bias_axis=1, activation=act)
                return
            np.matmul(a2, b2, out=y)
            if alpha != 1.0:
                np.multiply(y, alpha, out=y)
            if bias is not None:
                np.add(y, bias, out=y)
            if c is not None:
                np.add(y, c * beta if beta != 1.0 else c, out=y)
            _activate(y, act)
        return run


# a MatMul that reads its operands through views of other values and/or writes its output
# through a transposed view, with a scale and a bias vector fused (``passes._fuse_matmuls``):
# attrs "view_a", "view_b" (view steps, ``operand_view``), "out_perm" (the Transpose it writes
# for), "alpha", "activation"; inputs (a, b[, bias])
MATMUL_OP = "nnlite.MatMul"


def view_layout(shape, steps):
    """(shape, element strides) of ``operand_view`` applied to a C-contiguous array of
    ``shape``, or None where a step would need a copy (a reshape across axes that no longer
    follow on in memory). Steps: ("T", perm) a transpose, ("S", axis, start, stop) a slice,
    ("R", shape) a reshape."""
    shape = tuple(int(d) for d in shape)
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    strides = tuple(strides)
    for step in steps:
        if step[0] == "T":
            shape = tuple(shape[p] for p in step[1])
            strides = tuple(strides[p] for p in step[1])
        elif step[0] == "S":
            axis, start, stop = step[1:]
            shape = shape[:axis] + (stop - start,) + shape[axis + 1:]
        else:
            strides = _reshaped_strides(shape, strides, tuple(step[1]))
            if strides is None:
                return None
            shape = tuple(step[1])
    return shape, strides


def _reshaped_strides(shape, strides, new):
    """The strides of ``new`` over the same elements as (shape, strides) without a copy, or
    None. Size-1 axes carry no stride; the others are matched in groups of equal products,
    each group's old axes following on in memory."""
    if int(np.prod(new, dtype=np.int64)) != int(np.prod(shape, dtype=np.int64)):
        return None
    if 0 in new:
        return tuple(0 for _ in new)
    old = [(d, s) for d, s in zip(shape, strides) if d != 1]
    out, i = [], 0
    dims = [d for d in new if d != 1]
    j = 0
    while j < len(dims):
        # one group: old axes i..i2 and new axes j..j2 of the same product
        po, pn, i2, j2 = old[i][0], dims[j], i + 1, j + 1
        while po != pn:
            if po < pn:
                po *= old[i2][0]
                i2 += 1
            else:
                pn *= dims[j2]
                j2 += 1
        for k in range(i, i2 - 1):
            if old[k][1] != old[k + 1][1] * old[k + 1][0]:
                return None
        st = old[i2 - 1][1]
        group = []
        for d in reversed(dims[j:j2]):
            group.append(st)
            st *= d
        out += group[::-1]
        i, j = i2, j2
    it = iter(out)
    return tuple(0 if d == 1 else next(it) for d in new)


def operand_view(a, steps):
    """``a`` through the view steps of ``view_layout`` (transposes, slices, reshapes), a view
    of it (a step that would copy raises RuntimeError: ``view_layout`` said it would not)."""
    for step in steps:
        if step[0] == "T":
            a = a.transpose(step[1])
        elif step[0] == "S":
            axis, start, stop = step[1:]
            a = a[(slice(None),) * axis + (slice(start, stop),)]
        else:
            a = _view(a, tuple(step[1]))
    return a


def _batch_rows(arr, lead):
    """``arr`` (..., R, C) broadcast over the leading shape ``lead`` as a 3-D view (B, R, C)
    with one batch stride (0 where it serves every item), or None where its leading axes do
    not merge into one stride."""
    full = lead + arr.shape[-2:]
    if arr.shape != full:
        arr = np.broadcast_to(arr, full)
    st = [s for d, s in zip(lead, arr.strides) if d != 1]
    dims = [d for d in lead if d != 1]
    for k in range(len(dims) - 1):
        if st[k] != st[k + 1] * dims[k + 1]:
            return None
    nb = int(np.prod(lead, dtype=np.int64))
    bs = st[-1] if st else 0
    return np.lib.stride_tricks.as_strided(arr, (nb,) + arr.shape[-2:],
                                           (bs,) + arr.strides[-2:],
                                           writeable=arr.flags.writeable)


# softmax(alpha * q @ kt) @ v in one step (``passes._fuse_attention``): attrs "view_q",
# "view_k", "view_v" (the two products' operand views), "alpha", "out_perm"; inputs (q, k, v)
ATTENTION_OP = "nnlite.Attention"


class AttentionKernel(Kernel):
    """y = softmax(alpha * q @ kt) @ v along the last axis (two MatMuls and the Softmax between
    them, the scores read by nothing else): ``nnlite._attention`` computes each block of query
    rows' scores into a per-thread buffer of the scratch area (``scratch_bytes``), turns them
    into probabilities there and multiplies them by v, so the (..., M, L) scores never go to
    memory (each item's k^T and v packed once, in the scratch area too); every element gets
    the bits of the three unfused steps. Operand views as ``MatMulKernel``'s; without the
    extension, or for views with no single batch stride, the three steps run one after the
    other."""

    def __init__(self, attrs, q_shape, k_shape, v_shape):
        self.view_q, self.view_k = attrs.get("view_q", ()), attrs.get("view_k", ())
        self.view_v, self.out_perm = attrs.get("view_v", ()), attrs.get("out_perm")
        self.alpha = float(attrs.get("alpha", 1.0))
        m, length = int(q_shape[-2]), int(k_shape[-1])
        items = int(np.prod(np.broadcast_shapes(q_shape[:-2], k_shape[:-2], v_shape[:-2]),
                            dtype=np.int64))
        self.threads = max(1, get_num_threads())
        self.rows = _attention_rows(m, length, items, self.threads)
        self.scores = self.packs = 0      # float32 values of the two parts of the scratch
        if _attention_ext is not None and m and length:
            self.scores = self.threads * _attention_ext.scores_per_thread(m, length, self.rows)
            # each item's k^T and v packed once for the GEMM family in use at compile time
            # (another family at run time: each block packs its own, the same bits)
            self.packs = items * _attention_ext.packed_per_item(
                int(q_shape[-1]), length, int(v_shape[-1]), _family())
            self.scratch_bytes = 4 * (self.scores + self.packs)

    def _bind(self, ins, outs, scratch):
        q, kt = operand_view(ins[0], self.view_q), operand_view(ins[1], self.view_k)
        v, y = operand_view(ins[2], self.view_v), outs[0]
        if self.out_perm is not None:
            y = y.transpose(np.argsort(self.out_perm))
        alpha, lead = self.alpha, y.shape[:-2]
        views = [_batch_rows(t, lead) for t in (q, kt, v, y)]
        if (_attention_ext is not None and self.scratch_bytes and all(t is not None for t in views)
                and y.dtype == np.float32 and y.strides[-1] == 4):
            q3, k3, v3, y3 = views
            area = _scratch(scratch, (self.scores + self.packs,), np.float32)
            scores, packs = area[:self.scores], area[self.scores:]
            fn, rows, cap = _attention_ext.attention, self.rows, self.threads

            def fused():
                fn(q3, k3, v3, y3, alpha, rows, scores, _family(), min(get_num_threads(), cap),
                   packs)
            return fused

        def steps():
            s = np.matmul(q, kt)
            if alpha != 1.0:
                np.multiply(s, s.dtype.type(alpha), out=s)
            _rowops.softmax_lastaxis(s, out=s)
            np.matmul(s, v, out=y)
        return steps


def _attention_rows(m, length, items, threads):
    """Query rows per block of ``AttentionKernel``: a block's scores (rows x length floats)
    fill about a quarter of this CPU's L2 cache (read at import by the GEMM), in multiples of
    8, 8 to 256; fewer where that leaves less than 4 blocks per thread."""
    l2 = _gemm_ext.cache_sizes()["l2"] if _gemm_ext is not None else 1 << 20
    rows = max(8, min(256, l2 // 4 // max(4 * length, 1) // 8 * 8))
    per_item = -(-4 * threads // max(items, 1))            # blocks per item for 4 per thread
    if per_item > 1:
        block = -(-m // per_item)                            # ceil(m / per_item)
        rows = min(rows, max(8, -(-block // 8) * 8))
    return rows


class MatMulKernel(Kernel):
    """y = act(alpha * a @ b + bias) (ONNX MatMul; ``MATMUL_OP`` adds the fused views, scale,
    bias vector along the last axis and activation) by nnlite's GEMM where the operands, as
    3-D views with one batch stride each (broadcast items stride 0), allow it, a constant 2-D
    ``b`` packed once; else NumPy's matmul on the same views. Rank-1 operands and other
    dtypes: NumPy."""

    def __init__(self, attrs=None, b_const=None, bias=None):
        attrs = attrs or {}
        self.view_a, self.view_b = attrs.get("view_a", ()), attrs.get("view_b", ())
        self.out_perm = attrs.get("out_perm")
        self.alpha = float(attrs.get("alpha", 1.0))
        self.act = attrs.get("activation")
        self.bias = None if bias is None else np.ascontiguousarray(bias).reshape(1, -1)
        self.b_const, self._b_packed, self._pack_lock = b_const, None, threading.Lock()

    def _packed_b(self, b):
        with self._pack_lock:
            if self._b_packed is None:
                self._b_packed = _pack(np.ascontiguousarray(b), "b")
            return self._b_packed

    def _bind(self, ins, outs, scratch):
        a, b = operand_view(ins[0], self.view_a), operand_view(ins[1], self.view_b)
        y = outs[0]
        if self.out_perm is not None:
            y = y.transpose(np.argsort(self.out_perm))
        alpha, bias, act = self.alpha, self.bias, self.act
        gemm = self._gemm_call(a, b, y)
        if gemm is not None:
            return gemm

        def run():
            np.matmul(a, b, out=y)
            if alpha != 1.0:
                np.multiply(y, y.dtype.type(alpha), out=y)
            if bias is not None:
                np.add(y, bias[0], out=y)
            _activate(y, act)
        return run

    def _gemm_call(self, a, b, y):
        """The bound GEMM call, or None where the views do not fit it."""
        dt = y.dtype
        if (_gemm_ext is None or dt not in _ITEM or a.dtype != dt or b.dtype != dt
                or a.ndim < 2 or b.ndim < 2 or y.strides[-1] != dt.itemsize
                or np.may_share_memory(a, y) or np.may_share_memory(b, y)):
            return None
        lead = y.shape[:-2]
        if b.ndim == 2 and a.flags.c_contiguous and y.flags.c_contiguous:
            # (..., M, K) @ (K, N): every row of every item in one product
            rows = int(np.prod(y.shape[:-1], dtype=np.int64))
            a3, b3 = a.reshape(1, rows, a.shape[-1]), b[None]
            y3 = y.reshape(1, rows, y.shape[-1])
        else:
            a3, b3, y3 = _batch_rows(a, lead), _batch_rows(b, lead), _batch_rows(y, lead)
            if a3 is None or b3 is None or y3 is None:
                return None
            if a3.strides[0] == 0 and a3.shape[0] > 1:
                a3 = a3[:1]
            if b3.strides[0] == 0 and b3.shape[0] > 1:
                b3 = b3[:1]
        fn = specialized(_gemm_ext.gemm_strided, dt)
        alpha, bias, act = self.alpha, self.bias, _ACT_CODES[self.act]
        kind = 0 if bias is None else 2
        packed = None
        if (self.b_const is not None and b.ndim == 2 and not self.view_b and y3.size
                and a.shape[-1] and _gemm_ext.work_units(
                    _family(), dt.itemsize, 1, y3.shape[1], y3.shape[2], a.shape[-1], 1)["mu"]):
            # the weights of a linear layer, packed once (a product of a few rows reads them
            # unpacked: work_units' mu = 0)
            packed = self._packed_b(b)

        def run():
            family, bpk = _family(), None
            if packed is not None and packed.isa == family:
                bpk = packed.data
            fn(a3, b3, y3, alpha, 0.0, bias, kind, act, get_num_threads(), family, None, bpk)
        return run


# ------------------------------------------------------------------------------ data movement
class CopyKernel(Kernel):
    """Reshape/Flatten/Squeeze/Unsqueeze/Identity that could not alias, and Transpose."""

    def __init__(self, perm=None):
        self.perm = perm

    def _bind(self, ins, outs, scratch):
        x, y = ins[0], outs[0]
        if self.perm is not None:
            src = x.transpose(self.perm)
        else:
            src = x.reshape(y.shape) if x.flags.c_contiguous else None
        if src is None:
            return lambda: np.copyto(y, x.reshape(y.shape))
        return lambda: np.copyto(y, src)


# the node that hands out channel slices of its input (passes' merged sibling convs): attrs
# "sizes" (channels of each output, in order) and "axis" (1); the plan makes its outputs
# views of the input (storage.plan_views), else SplitKernel copies them
SPLIT_OP = "nnlite.ChannelSplit"


class SplitKernel(Kernel):
    """Copies consecutive slices of the input along ``axis`` into the outputs."""

    def __init__(self, axis, sizes):
        self.axis, self.sizes = axis, sizes

    def _bind(self, ins, outs, scratch):
        x, jobs, start = ins[0], [], 0
        for y, size in zip(outs, self.sizes):
            if y is not None:
                jobs.append((y, x[(slice(None),) * self.axis + (slice(start, start + size),)]))
            start += size

        def run():
            for dst, src in jobs:
                np.copyto(dst, src)
        return run


class ConcatKernel(Kernel):
    """Copies the inputs that producers did not already write into their slice."""

    def __init__(self, axis, copy_mask):
        self.axis, self.copy_mask = axis, copy_mask

    def _bind(self, ins, outs, scratch):
        y = outs[0]
        jobs, start = [], 0
        for x, copy in zip(ins, self.copy_mask):
            size = x.shape[self.axis]
            index = (slice(None),) * self.axis + (slice(start, start + size),)
            if copy:
                jobs.append((y[index], x))
            start += size

        def run():
            for dst, src in jobs:
                np.copyto(dst, src)
        return run


class FallbackKernel(Kernel):
    """Any other op: the Tensor executor (or the traced Function) under no_grad, then a copy."""

    def __init__(self, node, opset):
        self.node, self.opset = node, opset

    def _bind(self, ins, outs, scratch):
        node, opset = self.node, self.opset
        if node.op == GENERIC:
            fn, params = node.attrs["fn"], node.attrs["params"]

            def compute():
                ctx = fn()
                ctx.needs_input_grad = (False,) * len(ins)
                res = ctx.forward(*ins, **params)
                return list(res) if isinstance(res, tuple) else [res]
        else:
            def compute():
                with no_grad():
                    res = run_node(node, [None if a is None else Tensor(a) for a in ins], opset)
                return [r.data for r in res]
        pairs = [(i, o) for i, o in enumerate(outs) if o is not None]

        def run():
            res = compute()
            for i, o in pairs:
                if np.shape(res[i]) != o.shape:
                    # a value the plan was compiled for decides this shape (copyto would
                    # broadcast the result into the old buffer)
                    raise PlanError(node.label(), f"output {i} has shape {np.shape(res[i])} "
                                    f"in this run, {o.shape} when the plan was compiled")
                np.copyto(o, res[i])
        return run


# ------------------------------------------------------------------------------ factory
# op -> builder(node, in_metas, consts, opset) -> Kernel, or None where the builder does not
# cover this node (then the Tensor executor runs it: FallbackKernel)
KERNELS = Registry("inference plan kernel")


def make_kernel(node, in_metas, consts, opset):
    """The Kernel for ``node``; ``in_metas`` are ``dryrun.Meta(shape, dtype)`` per input,
    ``consts`` the static input arrays (None where the input is computed at run time). Raises
    PlanError naming the node when its kernel cannot be built."""
    label = node.label()
    build = KERNELS.get(node.op)
    try:
        kernel = None if build is None else build(node, in_metas, consts, opset)
    except PlanError:
        raise
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise PlanError(label, f"cannot build its kernel: {exc}") from exc
    if kernel is None:
        kernel = FallbackKernel(node, opset)
    kernel.label = label
    return kernel


@KERNELS.register("Conv")
def _conv_kernel(node, in_metas, consts, opset):
    if len(in_metas[0].shape) != 4:
        return None
    names, cs = conv_inputs(node), conv_inputs(node, consts)
    if cs.weight is not None and (names.bias is None or cs.bias is not None):
        return ConvKernel(in_metas[0].shape, cs.weight, cs.bias, node.attrs,
                          names.residual is not None, np.dtype(in_metas[0].dtype))
    if names.residual is not None:
        raise PlanError(node.label(), "a conv fused with a residual needs a constant weight "
                        "and bias")
    return None


@KERNELS.register(CONV_POOL_OP)
def _conv_pool_kernel(node, in_metas, consts, opset):
    """Inputs (x, weight[, bias]); attrs: the conv's, and 'pool' the MaxPool's."""
    names, cs = conv_inputs(node), conv_inputs(node, consts)
    if cs.weight is None or (names.bias is not None and cs.bias is None):
        raise PlanError(node.label(), "a conv fused with its max pool needs a constant weight "
                        "and bias")
    return ConvMaxPoolKernel(in_metas[0].shape, cs.weight, cs.bias, node.attrs,
                             np.dtype(in_metas[0].dtype))


@KERNELS.register(IR_OP)
def _inverted_residual_kernel(node, in_metas, consts, opset):
    """Inputs by IR_INPUTS: x, then (weight, bias or "") of the expand, depthwise and project
    convs, then the residual when attrs['residual']; attrs['parts'] holds the three convs'
    attributes (None for a block without expand, whose w1 and b1 are "")."""
    c = dict(zip(IR_INPUTS, consts))
    parts = tuple(None if a is None else (c[w], c[b], a) for (w, b), a in
                  zip((("w1", "b1"), ("wd", "bd"), ("w3", "b3")), node.attrs["parts"]))
    return InvertedResidualKernel(in_metas[0].shape, parts, bool(node.attrs.get("residual")),
                                  np.dtype(in_metas[0].dtype))


@KERNELS.register("MaxPool", "AveragePool")
def _pool_kernel(node, in_metas, consts, opset):
    if len(in_metas[0].shape) != 4:
        return None
    return PoolKernel(node.op, in_metas[0].shape, node.attrs, np.dtype(in_metas[0].dtype))


@KERNELS.register("GlobalAveragePool", "GlobalMaxPool")
def _global_pool_kernel(node, in_metas, consts, opset):
    return GlobalPoolKernel(node.op)


@KERNELS.register("nnlite.Affine")
def _affine_kernel(node, in_metas, consts, opset):
    return AffineKernel(consts[1], consts[2], len(in_metas[0].shape), node.attrs.get("activation"))


@KERNELS.register(*_UFUNCS)
def _binary_kernel(node, in_metas, consts, opset):
    if in_metas[0].dtype != in_metas[1].dtype or np.dtype(in_metas[0].dtype).kind != "f":
        return None
    return BinaryKernel(node.op, node.attrs.get("activation"))


@KERNELS.register("Relu", "Tanh", "Sigmoid")
def _unary_kernel(node, in_metas, consts, opset):
    return UnaryKernel(node.op)


@KERNELS.register("Clip")
def _clip_kernel(node, in_metas, consts, opset):
    if np.dtype(in_metas[0].dtype).kind != "f":
        return None
    if opset < 11:
        lo, hi = node.attrs.get("min"), node.attrs.get("max")
    else:
        lo = consts[1].item() if len(consts) > 1 and consts[1] is not None else None
        hi = consts[2].item() if len(consts) > 2 and consts[2] is not None else None
        if any(node.inputs[i] and consts[i] is None for i in (1, 2) if i < len(consts)):
            return None
    return UnaryKernel("Clip", lo, hi)


@KERNELS.register("Softmax")
def _softmax_kernel(node, in_metas, consts, opset):
    ndim = len(in_metas[0].shape)
    axis = int(node.attrs.get("axis", -1 if opset >= 13 else 1)) % ndim
    return SoftmaxKernel(axis, ndim, opset)


def _float32(meta):
    return np.dtype(meta.dtype) == np.float32


@KERNELS.register("Erf", "Gelu")
def _elementwise_row_kernel(node, in_metas, consts, opset):
    if not _float32(in_metas[0]):
        return None
    return RowKernel(node.op, approximate=node.attrs.get("approximate", "none"))


@KERNELS.register("LayerNormalization")
def _layer_norm_kernel(node, in_metas, consts, opset):
    """The last axes from ``axis`` on, float32, constant scale (and bias) of exactly those
    axes' shape (other broadcasts: the executor's path)."""
    shape = in_metas[0].shape
    if not _float32(in_metas[0]) or not shape:
        return None
    axis = int(node.attrs.get("axis", -1)) % len(shape)
    if int(node.attrs.get("stash_type", 1)) != 1:
        return None
    params = [consts[i] if i < len(consts) and node.inputs[i] else None for i in (1, 2)]
    for i, c in zip((1, 2), params):
        if i < len(node.inputs) and node.inputs[i] and (
                c is None or tuple(np.shape(c)) != tuple(shape[axis:])
                or np.asarray(c).dtype != np.float32):
            return None
    return RowKernel("LayerNormalization", axis=axis, eps=float(node.attrs.get("epsilon", 1e-5)),
                     scale=params[0], bias=params[1])


@KERNELS.register("Gemm")
def _gemm_kernel(node, in_metas, consts, opset):
    if not all(len(m.shape) == 2 for m in in_metas[:2]):
        return None
    return GemmKernel(node.attrs, consts[2] if len(consts) > 2 else None,
                      node.attrs.get("activation"), len(node.inputs),
                      b_const=len(consts) > 1 and consts[1] is not None)


@KERNELS.register(ATTENTION_OP)
def _attention_kernel(node, in_metas, consts, opset):
    q = view_layout(in_metas[0].shape, node.attrs.get("view_q", ()))[0]
    k = view_layout(in_metas[1].shape, node.attrs.get("view_k", ()))[0]
    v = view_layout(in_metas[2].shape, node.attrs.get("view_v", ()))[0]
    return AttentionKernel(node.attrs, q, k, v)


@KERNELS.register("MatMul", MATMUL_OP)
def _matmul_kernel(node, in_metas, consts, opset):
    bias = consts[2] if len(consts) > 2 else None
    return MatMulKernel(node.attrs, consts[1], bias)


@KERNELS.register("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
def _copy_kernel(node, in_metas, consts, opset):
    return CopyKernel()


@KERNELS.register("Transpose")
def _transpose_kernel(node, in_metas, consts, opset):
    ndim = len(in_metas[0].shape)
    return CopyKernel(tuple(int(p) for p in node.attrs.get("perm", range(ndim)[::-1])))


@KERNELS.register(SPLIT_OP)
def _split_kernel(node, in_metas, consts, opset):
    return SplitKernel(int(node.attrs["axis"]), tuple(node.attrs["sizes"]))


@KERNELS.register("Concat")
def _concat_kernel(node, in_metas, consts, opset):
    return ConcatKernel(int(node.attrs["axis"]) % len(in_metas[0].shape),
                        node.attrs.get("copy_mask"))
