"""Conv algorithm selection (a study switch, like ``nnlite.using_backend``).

    'im2col'    explicit column matrix (C*KH*KW x OH*OW per image, chunked) + one GEMM
    'implicit'  implicit GEMM: the GEMM's B panels are packed straight from the image, so a
                k x k conv needs a few panels of extra memory instead of the column matrix
    'direct'    direct loops without a GEMM: the depthwise kernel (groups == in_channels),
                and for any other conv of stride 1 the small-map kernel
                (csrc/convfast_small.c: each image zero-padded into a flat plane, so that
                every tap of a whole output plane is one contiguous stream, multiplied in
                register blocks of filters x output vectors); a strided or 1x1 conv that is
                not depthwise, and a large-map conv of few input channels, the
                few-channel kernel (csrc/convfast_phase.c: the same flat streams over
                stride-phase planes, P[c][py][px][r][q] = x_pad[c][r*SH + py][q*SW + px], per
                band of output rows; ``direct_kernel`` picks between the two)
    'winograd'  Winograd F(4x4, 3x3) for 3x3 convs with stride 1 and dilation 1: the input
                is cut into overlapping 6x6 tiles, transformed (B^T d B), multiplied with the
                transformed filters (G g G^T) by 36 GEMMs summing over the channels, and
                transformed back (A^T m A): 36 instead of 144 multiplies per 4x4 outputs and
                channel pair (nnlite/kernels/winograd_reference.py explains it). Any other
                kernel size, stride or dilation raises ValueError naming it.
    'auto'      per layer: depthwise -> 'direct' (groups == C > 1; a one-channel input, C ==
                groups == 1, is a dense conv: the implicit GEMM ran it 1.1-2.4x faster than
                the direct kernel, e.g. 16 filters 3x3 on 8x8 digits at batch 32: 36 vs 60 us,
                32 filters 3x3/2 on one 224x224 image: 169 vs 409 us; one Zen 4 core);
                1x1 -> 'im2col' (stride 1, no padding: the
                GEMM runs on the image itself, no columns at all; otherwise its columns are a
                strided copy no larger than the image, made once, while the implicit GEMM would
                gather them again for every block of output channels); every other conv ->
                'implicit', except small single images (batch < 4 and fewer than 392 output
                pixels over the batch, e.g. one 14x14 map): there the implicit GEMM's panel
                split loses to the column matrix (measured on 2 threads, batch 1: 14x14 maps
                1.1-3x slower, 28x28 maps 0.5-0.85x the im2col time; batch 2 at 14x14 and
                batch 4 at 7x7 already 0.4-0.75x), so they run 'im2col'; and large convs
                (>= 32 MFLOP) on batches of small maps (at most 64 output pixels per image,
                2+ images): 'im2col' lays the
                columns of a chunk of images side by side and runs ONE GEMM per chunk
                (N = images*OH*OW, where the implicit GEMM's N per image is OH*OW), e.g.
                ResNet-18's 4x4 layers at batch 64 (2 threads, Zen 4): forward and input
                gradient about half the implicit time (below 32 MFLOP, e.g. 16-channel 8x8
                digits at batch 32 on one thread, the extra regrouping steps cost more than
                the wider GEMM gains: 10% slower training); a stride-1 conv that the next
                rule takes with CG*KH*KW <= SMALL_BEFORE_ROWS_MAX_K runs 'direct' instead
                (2-3.5x faster than these rows on 8-128 channels, even at 256).
                Before the last two rules: a dense stride-1 k x k conv (k > 1) with at most
                SMALL_MAX_PIXELS output pixels per image runs 'direct', the small-map kernel
                (``small_pays``), on 2+ images or below SMALL_SPLIT_FLOPS (it splits the
                images over threads, so a single larger image keeps the GEMM's threading),
                in an inference plan too (whose im2col/implicit GEMMs run on weights packed
                once; one image below SMALL_SPLIT_FLOPS_PREPARED, on maps up to 28x28 and
                before the Winograd rule: SMALL_MAX_PIXELS_PREPARED): GoogLeNet's narrow 3x3
                convs, plan step, 2 threads, AMD EPYC Zen 4, im2col -> direct at batch 1:
                16->48 at 14x14 57 -> 41 us, 24->64 120 -> 74, 32->64 138 -> 92, 32->128 at
                7x7 73 -> 57, 16->32 5x5 at 14x14 455 -> 72; implicit -> direct at batch 8:
                0.87-0.97x, 32->128 at 7x7 311 -> 209 (the whole GoogLeNet from ONNX,
                in-process interleaved medians: batch 1 14.05 -> 13.60 ms, batch 8 92.1 ->
                89.8 ms).
                F.conv2d, one Zen 4 core, float32, per call, 'auto' before -> 'direct': the
                digits net's 8x8 and 4x4
                layers at batch 32, 16->32 3x3 4x4 243 -> 155 us, 8->16 5x5 4x4 154 -> 78,
                8->16 3x3 8x8 105 -> 82; batch 8, 16->32 3x3 4x4 79 -> 33, 8x8 91 -> 69;
                one 16x16 image 64->64 3x3 274 -> 214 (im2col before); equal at 16x16 with
                batch 8-32 (0.95-1.02), slower from 28x28 on (1.0-1.05), hence the limit.
                A 3x3 stride-1 dilation-1 conv runs 'winograd' (checked before the rules above)
                when its estimated cost is at most 1/_WINOGRAD_MIN_GAIN of the direct one
                (``winograd_pays``): multiply-adds 9 * N*OH*OW * F*CG directly, against
                36 * tiles * F*CG in the GEMMs plus 36 * tiles * (C + F) transformed
                elements at _TRANSFORM_COST multiply-adds each, plus, when the weights are
                transformed per call (F.conv2d; an inference plan does it once per layer),
                36 * F*CG weight elements at _WEIGHT_TRANSFORM_COST each. Wide layers with
                maps of a few tiles or more qualify; depthwise convs, few channels and (in
                F.conv2d) tiny maps do not.
                Last, a conv that would run 'implicit' with at most PHASE_MAX_CG input
                channels per group and a kernel larger than 1x1 (``phase_pays``: the first
                conv of an image model) runs 'direct', the few-channel kernel: its GEMM depth
                CG*KH*KW (27 for a 3x3 on RGB, 147 for a 7x7) is too shallow for the implicit
                GEMM's panel gathering to pay. Batch 1, 224x224, float32, activation fused,
                interleaved medians on a busy 2-core AMD EPYC Zen 4 (benchmarks/bench_stem.py;
                implicit -> direct): 3->32 3x3/2 0.89 -> 0.51 ms, 3->64 7x7/2 6.7 -> 3.9 ms,
                3->64 3x3/1 11.2 -> 7.7 ms; one thread, quieter: 0.49 -> 0.37 ms and 2.95 ->
                2.49 ms; batches too (one thread, CPU time): 128 x 3->64 3x3 32x32 17.8 -> 8.3
                ms, 32 x 1->16 5x5 28x28 0.42 -> 0.30 ms, 8 x 3->64 7x7/2 224 24.3 -> 21.4 ms.
                At 8 and 16 channels the two were equal (0.21 ms, 0.37-0.38 ms for a 3x3/2 to
                56x56 at 2 threads), hence the limit.
                In an inference plan, a strided k x k conv of more images than threads with
                many filters and an image whose stride-phase copy outgrows a quarter of the L2
                runs 'im2col' instead of 'implicit' (``strided_batch_pays``: ResNet-50's
                3x3/2 convs at batch 8 in 0.80x the time).

Only the 'cython' backend has 'implicit', 'direct' and 'winograd'; under the 'numpy' backend every choice
runs im2col + GEMM (NumPy has nothing better to offer), and the 'reference' backend always runs
its naive loops. Backward runs under the choice made at forward time: the input gradient of a
stride-1 conv is a conv2d forward (of gy with the flipped weight) and follows it, like the
input gradient of conv_transpose2d; other input gradients (GEMM + col2im), the weight
gradient (explicit columns + nnlite's GEMM) and conv_transpose2d's forward do not depend on it.

Resolution: innermost ``nnlite.conv_algorithm(...)`` context in this thread, then the
``NNLITE_CONV_ALGORITHM`` environment variable (read once at import), then 'auto'.
"""
import contextlib
import os

from ._config import ThreadSetting, get_num_threads

ALGORITHMS = ("auto", "im2col", "implicit", "direct", "winograd")
_NATIVE = ("implicit", "direct", "winograd")
# 'auto' runs a dense k x k conv as im2col + GEMM below both of these (see the module docstring)
_IMPLICIT_MIN_BATCH, _IMPLICIT_MIN_PIXELS = 4, 392
# 'auto''s Winograd cost model (winograd_pays), in GEMM multiply-add equivalents. One
# transformed input or output element: about 8 additions / multiplies by 2, 4, 5 or 8 over
# two 1-D passes in L-lane vectors, against a GEMM whose FMA units do two L-lane multiply-adds
# per cycle: ~16, doubled for the scalar patch gather and the scattered tile write-out (with
# 16 the model picked a 16->32-channel 28x28 layer that then ran 0.7-0.8x of the implicit
# GEMM's speed; benchmarks/bench_conv.py --winograd). One weight element transformed and
# packed per call (F.conv2d): a computed element, a store, then a packing copy, each a memory
# pass over the alpha^2/9 times larger transformed weights: ~64.
_TRANSFORM_COST, _WEIGHT_TRANSFORM_COST = 32, 64
# Winograd's GEMMs (36 of them, K = C/groups, N = tiles) run further from the peak than one
# large implicit GEMM, and its transforms are memory-bound: demand this estimated gain.
_WINOGRAD_MIN_GAIN = 1.5
_WINOGRAD_TILE = 4
# an inference plan's Winograd conv reads each element of its transformed weights once per
# call, from L3 or DRAM (a model's layers evict each other's): ``winograd_tile`` weighs such a
# read as this many multiply-adds per thread of the team (the threads share the products, not
# the time of the reads)
_WINOGRAD_WEIGHT_READ = 7
# 'auto' runs a dense conv of 2+ images with at most this many output pixels per image as
# im2col with the images side by side (nnlite/kernels/conv_cython.py:_rows_forward)
ROWS_MAX_PIXELS, ROWS_MIN_FLOPS = 64, 1 << 25


# 'auto' runs a dense stride-1 conv with at most this many output pixels per image as 'direct'
# (the small-map kernel), on 2+ images or a conv below SMALL_SPLIT_FLOPS (``small_pays``)
SMALL_MAX_PIXELS, SMALL_SPLIT_FLOPS = 256, 1 << 22
# ... and in an inference plan (weights packed once for the GEMM paths) below this for one
# image: there the one-thread small-map kernel still beats the 2-thread column GEMM (plan
# step, AMD EPYC Zen 4, im2col -> direct: 24->128 3x3 at 14x14, 10.8 MFLOP, 145 -> 136 us;
# 40->96, 13.5 MFLOP, 195 -> 162; 32->128, 14.5 MFLOP, 183 -> 177; 32->192, 21.7 MFLOP, 220 ->
# 260, slower)
SMALL_SPLIT_FLOPS_PREPARED = 1 << 24
# ... where, for one image, it also takes maps of up to this many output pixels (28x28) and
# comes before Winograd: its weights packed once and its epilogue on the registers, it beat the
# alternatives there (plan step alone, 2 threads, Intel Emerald Rapids, medians of 9 x 100 calls,
# us, direct vs Winograd vs implicit): 48->128 3x3 @7 48 / 72 / 116, 64->128 @7 54 / 84 / 165,
# 96->96 @7 65 / 92 / 199, 64->64 @14 104 / 125 / 522, 48->96 @14 110 / 125 / 384, 16->32 @28
# 56 / 130 / 90, 24->48 @28 110 / 195 / 119, 16->64 @28 113 / 293 / 119; 32->32 @28 94 / 197 /
# 92 (even). In GoogLeNet's plan: 48->128 @7 0.106 -> 0.063 ms, 16->32 @28 0.112 -> 0.083.
SMALL_MAX_PIXELS_PREPARED = 784
# ... and before the batch-rows rule (``rows_pay``) when its reduction CG*KH*KW is at most this:
# forward, float32, stride 1, Winograd off, rows -> direct (AMD EPYC Zen 4; 1 thread / 2
# threads): batch 256 8->16 3x3 8x8 2967 -> 944 us (the digits net's evaluation), 16->32 3x3 4x4
# 3169 -> 1250; batch 64 32->32 3x3 8x8 4129 -> 1252 / 3264 -> 861, 128->128 3x3 8x8 26137 ->
# 14946 / 13174 -> 7639, 256->256 3x3 4x4 29282 -> 28267 / 16205 -> 13972, 64->64 5x5 4x4
# 8777 -> 5142; at 512 channels (K = 4608) the direct kernel took twice the column GEMM's time
SMALL_BEFORE_ROWS_MAX_K = 2304


def small_conv_ok(geom):
    """True when the small-map direct kernel computes ``geom``: stride 1 (a stride that never
    multiplies a nonzero output index counts as 1)."""
    return (geom.sh == 1 or geom.oh <= 1) and (geom.sw == 1 or geom.ow <= 1)


def small_pays(geom, weights_prepared=False):
    """'auto''s rule for the small-map direct kernel (see the module docstring): a dense
    stride-1 conv with a kernel larger than 1x1, at most SMALL_MAX_PIXELS output pixels per
    image, and 2+ images or fewer than SMALL_SPLIT_FLOPS (in an inference plan,
    ``weights_prepared``: SMALL_SPLIT_FLOPS_PREPARED, and one image's map up to
    SMALL_MAX_PIXELS_PREPARED pixels)."""
    limit = SMALL_SPLIT_FLOPS_PREPARED if weights_prepared else SMALL_SPLIT_FLOPS
    pixels = (SMALL_MAX_PIXELS_PREPARED if weights_prepared and geom.n == 1
              else SMALL_MAX_PIXELS)
    return (small_conv_ok(geom) and geom.kh * geom.kw > 1 and not is_depthwise(geom)
            and 0 < geom.oh * geom.ow <= pixels
            and (geom.n > 1 or geom.flops() < limit))


# the small-map kernel's weight gradient (``small_weight_grad_pays``): its work memory (gy and
# the padded planes of every image) at most this many bytes
SMALL_WGRAD_MAX_BYTES = 16 << 20


def small_weight_grad_pays(geom, itemsize, algorithm=None):
    """True when the weight gradient of ``geom`` runs the small-map kernel
    (``_convfast.conv2d_small_weight_grad``): 'direct' asked for (not 'auto') on a dense
    stride-1 conv whose work memory fits SMALL_WGRAD_MAX_BYTES.

    Not under 'auto' yet: on narrow layers it is faster (one Zen 4 core, float32, batch 32,
    columns + GEMM -> this kernel: 1->16 3x3 8x8 63 -> 33 us, 8->16 3x3 8x8 240 -> 156, 4->8
    5x5 8x8 256 -> 104, 8->16 5x5 4x4 208 -> 158; 16->32 3x3 4x4 185 -> 265 slower), and as
    exact (float32 errors against a float64 sum 0.8-1.3e-7 relative, the GEMM path's 1.0-2.9e-7),
    but its different rounding moves the 20-step Adam trajectory of the digits net at batch 2
    (tests/test_train_parity.py) by 4.3e-3 on a parameter, beyond that test's 3e-3: a
    BatchNorm bias whose gradient hangs on ReLU masks of values at rounding level."""
    name = get_conv_algorithm() if algorithm is None else algorithm
    if name != "direct" or geom.n == 0 or is_depthwise(geom) or not small_conv_ok(geom):
        return False
    wp = geom.ow + (geom.kw - 1) * geom.dw
    rows = geom.oh + (geom.kh - 1) * geom.dh + 1
    work = geom.n * (geom.c * rows * wp + geom.f * (geom.oh + 1) * wp + 32) * itemsize
    return work <= SMALL_WGRAD_MAX_BYTES


# 'auto' runs a dense conv (kernel larger than 1x1) with at most this many input channels per
# group by the direct few-channel kernel (``phase_pays``) where it would run the implicit GEMM
PHASE_MAX_CG = 4

# An inference plan runs a strided k x k conv of more images than threads as 'im2col' when it
# has at least this many filters and one image's stride-phase copy (the implicit GEMM's "wide"
# layout, csrc/convfast_implicit.c) is larger than this share of the L2 (``strided_batch_pays``)
STRIDED_IM2COL_MIN_F, STRIDED_IM2COL_L2_SHARE = 128, 0.25


def phase_pays(geom):
    """'auto''s rule for the direct few-channel kernel (csrc/convfast_phase.c): a dense conv
    with a kernel larger than 1x1 and at most PHASE_MAX_CG input channels per group, the first
    conv of an image model (RGB, RGBA, grey). Its GEMM depth K = CG*KH*KW (27 for a 3x3, 147
    for a 7x7 on RGB) is too shallow for a GEMM: the implicit GEMM gathers a K x OH*OW panel
    for every image, about as much work as the multiply-adds when F is 32-64, where the direct
    kernel reads each tap as a contiguous stream of a stride-phase plane."""
    return (not (is_depthwise(geom) and geom.g > 1) and geom.kh * geom.kw > 1
            and 0 < geom.cg <= PHASE_MAX_CG)


def phase_image_bytes(geom, itemsize=4):
    """Bytes of one image's (and group's) copy in the implicit GEMM's wide layout (its
    channels split into the stride phases the taps read: ``_convfast.implicit_wide_bytes``,
    computed where that layout is made), or None without the extension."""
    try:
        from . import _convfast
    except ImportError:  # pragma: no cover - depends on the build
        return None
    return _convfast.implicit_wide_bytes(geom.n, geom.c, geom.h, geom.w, geom.f, geom.g,
                                         geom.kh, geom.kw, geom.sh, geom.sw, geom.pt, geom.pl,
                                         geom.dh, geom.dw, geom.oh, geom.ow, itemsize)


def _l2_bytes():
    """This core's L2 as the GEMM blocking read it (nnlite._gemm.cache_sizes), or None
    without the GEMM extension."""
    try:
        from . import _gemm
    except ImportError:  # pragma: no cover - depends on the build
        return None
    return _gemm.cache_sizes()["l2"]


def strided_batch_pays(geom, threads=None):
    """'auto''s rule for a strided k x k dense conv in an inference plan: more (image, group)
    items than threads, at least STRIDED_IM2COL_MIN_F filters and one image's stride-phase
    copy larger than STRIDED_IM2COL_L2_SHARE of the L2 run 'im2col' (one image's column
    matrix, then one GEMM on all threads, the weights packed once) instead of 'implicit'.
    There the implicit GEMM gives each thread whole images (a unit per item: cutting them
    would read the weights again per unit), so each thread copies a whole image's phases and
    reads its panels from beyond the L2; one item per thread or fewer cuts the image into
    L2-sized bands instead, and keeps the implicit GEMM. Few filters leave too little work per
    copied column for the column matrix to pay. Intel Emerald Rapids, 2 threads, batch 8,
    plan step, in-process interleaved medians, implicit -> im2col: 128->128 3x3/2 @56 (phase
    copy 1.7 MB) 0.80-0.84x the time, 256->256 3x3/2 @28 (0.9 MB) 0.81x, 256->256 @56 (3.4 MB)
    0.70x, 64->128 @56 (0.9 MB) 0.96x, batch 4 128->128 @56 0.84x; kept: 64->64 @56 (0.9 MB,
    64 filters) 1.15x, 32->64 @112 (1.7 MB) 0.97x, 64->64 5x5/2 @56 1.03x, 128->128 @28
    (0.5 MB) 1.02x; ResNet-50 at batch 8, its two steps 0.80 and 0.81x. At batch 1 the
    implicit GEMM stays ahead (128->128 @56 1.07x slower as im2col). float32 sizes (a float64
    image is twice as large: the rule then errs toward the implicit GEMM)."""
    if geom.sh * geom.sw == 1 or geom.kh * geom.kw == 1 or geom.g != 1 or is_depthwise(geom):
        return False
    threads = get_num_threads() if threads is None else threads
    if geom.n <= threads or geom.f < STRIDED_IM2COL_MIN_F:
        return False
    l2, wide = _l2_bytes(), phase_image_bytes(geom)
    return l2 is not None and wide is not None and wide > STRIDED_IM2COL_L2_SHARE * l2


def direct_kernel(geom):
    """Which kernel runs a conv under 'direct': 'depthwise' (groups == C > 1, or one channel
    where the few-channel kernel does not pay), 'small' (the small-map kernel, stride 1 only)
    where ``small_pays`` or where the few-channel kernel would not be 'auto''s choice, else
    'phase' (the few-channel kernel, any stride; every 1x1 conv too: unpadded, it reads the
    image in place and splits the rows of one image over threads, where the small-map kernel
    copies every image into a plane and splits only the images)."""
    if is_depthwise(geom) and (geom.g > 1 or not phase_pays(geom)):
        return "depthwise"
    one = geom.kh * geom.kw == 1
    if small_conv_ok(geom) and (small_pays(geom) or not (phase_pays(geom) or one)):
        return "small"
    return "phase"


def rows_pay(geom):
    """True for a batch (2+ images) of maps of at most ROWS_MAX_PIXELS output pixels and a conv
    of at least ROWS_MIN_FLOPS: there im2col with the images side by side beats the implicit
    GEMM and the per-image im2col (see the module docstring)."""
    return geom.n > 1 and geom.oh * geom.ow <= ROWS_MAX_PIXELS and geom.flops() >= ROWS_MIN_FLOPS

_chosen = ThreadSetting()


def _fast_built():
    """True when the extension with the implicit and direct kernels (nnlite._convfast) imports."""
    from ._config import cython_built

    if not cython_built():
        return False
    try:
        from . import _convfast  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the build
        return False
    return True


def _check(name):
    if not isinstance(name, str) or name not in ALGORITHMS:
        raise ValueError(f"unknown conv algorithm {name!r}; expected one of {ALGORITHMS}")
    if name in _NATIVE and not _fast_built():
        raise RuntimeError(f"conv algorithm {name!r} needs nnlite's compiled extension "
                           "(nnlite._convfast), which this installation does not have")
    return name


_default = os.environ.get("NNLITE_CONV_ALGORITHM", "auto") or "auto"
if _default not in ALGORITHMS:
    raise ValueError(f"NNLITE_CONV_ALGORITHM={_default!r} is not one of {ALGORITHMS}")


def available_conv_algorithms():
    """Algorithm names this installation accepts ('auto' first)."""
    return list(ALGORITHMS) if _fast_built() else ["auto", "im2col"]


def get_conv_algorithm():
    """The conv algorithm a conv2d called now would be asked to use (before per-layer 'auto')."""
    chosen = _chosen.get()
    if chosen is not None:
        return chosen
    return _default if _default in ("auto", "im2col") or _fast_built() else "auto"


@contextlib.contextmanager
def conv_algorithm(name):
    """Context manager selecting the conv algorithm for conv2d calls made in this thread.

    ``name``: 'auto' (per layer), 'im2col', 'implicit', 'direct' or 'winograd' (see
    ``nnlite._algorithms``). Raises ValueError for an unknown name and RuntimeError for
    'implicit'/'direct'/'winograd' without the compiled extension; a conv that 'winograd'
    cannot compute (not 3x3, stride or dilation not 1) raises ValueError when it runs.

    >>> with nnlite.conv_algorithm("im2col"):
    ...     y = F.conv2d(x, w, padding=1)      # explicit column matrix + GEMM, for study
    """
    with _chosen.use(_check(name)) as chosen:
        yield chosen


def is_depthwise(geom):
    """groups == in_channels (each filter sees one channel; F may be a multiple of C)."""
    return geom.g == geom.c and geom.g > 0 and geom.cg == 1


def _winograd_tiles(geom, m):
    """The m x m output tiles of every image of a conv (edges the tile does not divide count
    whole)."""
    return geom.n * -(-geom.oh // m) * -(-geom.ow // m)


def _cheaper_tile(threads, terms):
    """2 or _WINOGRAD_TILE, whichever costs less as (m + 2)^2 (cols + threads x
    _WINOGRAD_WEIGHT_READ x reads) with (cols, reads) = terms(m) (see ``winograd_tile``)."""
    def cost(m):
        cols, reads = terms(m)
        return (m + 2) ** 2 * (cols + threads * _WINOGRAD_WEIGHT_READ * reads)
    return 2 if cost(2) < cost(_WINOGRAD_TILE) else _WINOGRAD_TILE


def winograd_cost(geom, weights_prepared=False):
    """(direct, winograd) estimated cost of a 3x3 stride-1 conv in GEMM multiply-adds (the
    model of the module docstring); F(4x4, 3x3) tiles."""
    m = _WINOGRAD_TILE
    a2 = (m + 2) ** 2
    tiles = _winograd_tiles(geom, m)
    direct = 9 * geom.n * geom.oh * geom.ow * geom.f * geom.cg
    wino = a2 * tiles * (geom.f * geom.cg + _TRANSFORM_COST * (geom.c + geom.f))
    if not weights_prepared:
        wino += a2 * geom.f * geom.cg * _WEIGHT_TRANSFORM_COST
    return direct, wino


# tile keys (``_tile_key``) an inference plan runs as F(2x2) to bound its memory
# (``winograd_tiles_capped``, set while a plan is compiled)
_tiles_capped = ThreadSetting()


def _tile_key(geom):
    """A Winograd conv's input geometry (not its filter count: a conv's split parts share it)."""
    return (geom.n, geom.c, geom.h, geom.w, geom.g, geom.pt, geom.pl, geom.oh, geom.ow)


@contextlib.contextmanager
def winograd_tiles_capped(geoms):
    """Within the block, ``winograd_tile`` answers 2 for the convs of these geometries (an
    inference plan's memory bound: nnlite/_infer/kernels.py, ``winograd_memory_cap``)."""
    keys = frozenset(_tile_key(g) for g in geoms)
    with _tiles_capped.use(keys):
        yield


def winograd_tile_is_close(geom, threads=None):
    """Whether F(4x4) is preferred only by the chunk and ragged-panel terms: the plain count
    (tiles, one weight read) would take F(2x2), e.g. 14x14 maps at batch 1 on two threads."""
    nt = get_num_threads() if threads is None else threads
    return _cheaper_tile(nt, lambda m: (_winograd_tiles(geom, m), 1)) == 2


def winograd_tile(geom, threads=None, itemsize=4):
    """The output tile m of an inference plan's Winograd conv, whose weights are transformed
    once: the cheaper of F(2x2, 3x3) and F(4x4, 3x3) as (m + 2)^2 products of (cols + threads
    x _WINOGRAD_WEIGHT_READ x reads) columns each. ``cols``: the GEMM columns the micro-kernel
    computes, the tiles of each chunk the call cuts them into with its ragged last panel
    rounded up to whole vectors (16 floats on AVX-512: 49 tiles cost 64, 17 cost 32);
    ``reads``: the passes over the transformed weights, one per chunk, (m + 2)^2 / 9 times the
    3x3 weights (F(2x2): 16/9, F(4x4): 4x), which take as long on any number of threads
    (default: nnlite's). Both come from the C plan of the call (``_convfast.winograd_cost``:
    its chunking, this CPU's L2 and GEMM family, elements of ``itemsize`` bytes).
    With few tiles the conv is bound by the weight reads and F(2x2) wins: 7x7 maps at batch 1
    (batch 2 is a tie). ResNet-50's 512-channel 7x7 conv, 2 threads, interleaved medians (AMD
    EPYC Zen 4):
    batch 1 (4 F(4x4) tiles) F(2x2) 1.9-3.4 ms vs F(4x4) 6.1-7.8 ms; batch 2 7.9 vs 7.9;
    batch 3 9.0 vs 8.1 (F(2x2)'s 48 tiles run as two chunks, each thread reading all 17 MB
    of weights); batch 8 28.0 vs 16.8.
    14x14 maps at batch 1 take F(4x4): F(2x2)'s 49 tiles become two chunks of 32 and 17 tiles
    (their transformed input and products outgrow the L2), 64 computed columns and two reads
    of the weights, where F(4x4) has 16 tiles in one. AMD EPYC Zen 4, 2 threads, interleaved
    medians: 256->256 alone 0.81 ms (F(2x2)) vs 0.52 (F(4x4)), GoogLeNet's 160->320 0.67 vs
    0.42, 96->208 0.29 vs 0.19; whole plans at batch 1 0.946-0.966 (ResNet-50) and 0.932
    (GoogLeNet) of the time with F(2x2) there, which the earlier rule (tiles, not columns,
    one read) chose; the prepared weights grow by 25 MB (ResNet-50) and 13 MB (GoogLeNet,
    past ONNX Runtime's footprint: a plan takes such close calls only within its model's
    weight bytes, nnlite/_infer/kernels.py ``winograd_memory_cap``).
    (Intel Emerald Rapids, measured before the vector gather of the input transform: F(2x2)
    1.1-1.34x slower alone on 2 threads, level in the models.)"""
    capped = _tiles_capped.get()
    if capped and _tile_key(geom) in capped:
        return 2
    nt = get_num_threads() if threads is None else threads
    if not _fast_built():   # no native Winograd to run: the tiles, one read
        return _cheaper_tile(nt, lambda m: (_winograd_tiles(geom, m), 1))
    from . import _convfast
    from .kernels import gemm_ops
    isa = gemm_ops._isa()
    return _cheaper_tile(nt, lambda m: _convfast.winograd_cost(
        geom.n, geom.c, geom.h, geom.w, geom.f, geom.g, m, geom.pt, geom.pl, geom.oh, geom.ow,
        itemsize, nt, isa))


def winograd_pays(geom, weights_prepared=False):
    """'auto''s rule: a 3x3, stride-1, dilation-1 conv whose estimated Winograd cost is at most
    1/_WINOGRAD_MIN_GAIN of the direct multiply-adds (``weights_prepared``: the transformed
    weights are made once, as in an inference plan, not per call)."""
    if (geom.kh, geom.kw, geom.sh, geom.sw, geom.dh, geom.dw) != (3, 3, 1, 1, 1, 1):
        return False
    if geom.n * geom.oh * geom.ow * geom.f == 0:
        return False
    direct, wino = winograd_cost(geom, weights_prepared)
    return direct >= _WINOGRAD_MIN_GAIN * wino


def resolve(geom, name=None, weights_prepared=False):
    """The algorithm a conv2d with geometry ``geom`` runs under the cython backend
    (``weights_prepared``: an inference plan, whose weights are transformed once per layer).
    ValueError when 'winograd' is asked for a conv it cannot compute."""
    name = get_conv_algorithm() if name is None else name
    if name == "winograd":
        from .kernels.conv_winograd import check
        check(geom)
        return name
    if name == "auto":
        if is_depthwise(geom) and geom.g > 1:
            return "direct"
        if weights_prepared and geom.n == 1 and small_pays(geom, True):
            return "direct"     # before Winograd: see SMALL_MAX_PIXELS_PREPARED
        if winograd_pays(geom, weights_prepared):
            return "winograd"
        if geom.kh == geom.kw == 1:
            return "im2col"
        small = small_pays(geom, weights_prepared)
        if small and geom.k <= SMALL_BEFORE_ROWS_MAX_K:
            return "direct"
        if rows_pay(geom):
            return "im2col"
        if small:
            return "direct"
        if geom.n < _IMPLICIT_MIN_BATCH and geom.n * geom.oh * geom.ow < _IMPLICIT_MIN_PIXELS:
            return "im2col"
        if phase_pays(geom):
            return "direct"
        if weights_prepared and _fast_built() and strided_batch_pays(geom):
            return "im2col"
        return "implicit"
    return name
