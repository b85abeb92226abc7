"""The float32 row and elementwise kernels (nnlite/kernels/rowops.py, csrc/rowops_kernels.c)
against independent float64 oracles: math.erf / math.erfc per value, NumPy float64 formulas
for softmax, log_softmax and layer norm, plus IEEE special values, in-place and strided rows,
thread-count independence and the wrappers' argument checks."""
import math

import numpy as np
import pytest

import nnlite
from nnlite.kernels import rowops

try:
    from nnlite import _rowops
except ImportError:  # pragma: no cover - depends on the build
    _rowops = None

native_only = pytest.mark.skipif(_rowops is None or nnlite.backend() != "cython",
                                 reason="the native kernels: built and the 'cython' backend")

TINY = 2.0 ** -149        # the smallest float32 subnormal
NORMAL = 2.0 ** -126      # the smallest normal float32
GELU_ULPS = 3.5           # the float32 gelu kernels' bound (both forms)


def _ulps(y, ref):
    """|y - ref| in units of the float32 spacing at ref (ref float64)."""
    sp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    return np.abs(y.astype(np.float64) - ref) / sp


def _grid(top, step):
    """Every step-th positive float32 up to top (bit patterns: dense in ulps, from the
    subnormals up), their negatives and the signed zeros."""
    pos = np.arange(1, np.float32(top).view(np.uint32) + 1, step, dtype=np.uint32)
    pos = pos.view(np.float32)
    return np.concatenate([pos, -pos, np.float32([0.0, -0.0])])


def _check_ulps(y, ref, bound, tiny=TINY):
    """Within ``bound`` ulp where ref is a normal float32, within ``tiny`` below (default
    one subnormal spacing: half for the rounding plus the oracle's)."""
    normal = np.abs(ref) >= NORMAL
    assert _ulps(y[normal], ref[normal]).max() <= bound
    if (~normal).any():
        assert np.abs(y[~normal] - ref[~normal]).max() <= tiny


# ------------------------------------------------------------------ erf / gelu


@native_only
def test_erf_within_one_ulp_of_math_erf():
    x = _grid(10.0, 4099)
    ref = np.array([math.erf(v) for v in x.astype(np.float64)])
    y = rowops.erf(x)
    assert y.dtype == np.float32
    # float lanes, erfc's rational part in double: measured 0.89 ulp (every 7th float)
    _check_ulps(y, ref, 1.0)
    # erf(x) = x * 2/sqrt(pi) rounds once in the subnormals: exact to the spacing
    assert np.array_equal(np.signbit(y), np.signbit(x))


@native_only
def test_erf_special_values():
    x = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, 3.92, -3.92, 1e-45, -1e-45, 1.0, -1.0])
    y = rowops.erf(x)
    assert np.array_equal(np.signbit(y[:2]), [False, True]) and not y[:2].any()
    assert y[2] == 1.0 and y[3] == -1.0 and np.isnan(y[4])
    assert y[5] == 1.0 and y[6] == -1.0      # erfc(3.92) < 2^-25: rounds to 1
    assert y[7] == np.float32(1e-45) and y[8] == -np.float32(1e-45)   # 2/sqrt(pi) * TINY
    assert y[9] == np.float32(math.erf(1.0)) and y[10] == -y[9]


def _gelu_tanh_ref(x):
    x = x.astype(np.float64)
    v = 2.0 * math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
    e = np.exp(-np.abs(v))
    return x * np.where(v >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@native_only
def test_gelu_within_few_ulps_of_float64():
    x = _grid(30.0, 16411)
    x = x[np.isfinite(x)]
    ref = np.array([v * 0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x.astype(np.float64)])
    # float lanes (exp, products) around a double erfc(a) exp(a^2) / a double v: measured
    # 3.03 and 2.98 ulp (every 7th float); subnormal results within 1.7 spacings
    _check_ulps(rowops.gelu(x), ref, GELU_ULPS, tiny=2 * TINY)
    _check_ulps(rowops.gelu(x, "tanh"), _gelu_tanh_ref(x), GELU_ULPS, tiny=2 * TINY)


@native_only
def test_gelu_keeps_relative_accuracy_far_left():
    # x Phi(x) for x << 0 (Phi ~ 1e-20 .. 1e-44): no cancellation, no premature underflow
    x = np.linspace(-14.0, -9.0, 2001).astype(np.float32)
    ref = np.array([v * 0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x.astype(np.float64)])
    y = rowops.gelu(x)
    assert (y < 0).all()
    _check_ulps(y, ref, GELU_ULPS, tiny=2 * TINY)


@native_only
def test_gelu_special_values():
    x = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, -1e30, 1e30])
    for form in ("none", "tanh"):
        y = rowops.gelu(x, form)
        with np.errstate(all="ignore"):
            want = rowops.gelu_formula(x.astype(np.float64), form)[0]
        # the NumPy formula's IEEE results: gelu(-inf) = -inf * 0 = NaN
        assert np.array_equal(y, want.astype(np.float32), equal_nan=True), form
        assert np.signbit(y[5]) and y[5] == 0.0


# ------------------------------------------------------------------ exp of the softmax


@native_only
def test_exp_hook_within_one_ulp():
    x = -_grid(110.0, 1031)
    x = x[x <= 0]
    y = np.empty_like(x)
    _rowops.exp_nonpos(x, y)
    ref = np.exp(x.astype(np.float64))
    _check_ulps(y, ref, 1.0)
    assert (y[x <= -104.0] == 0).all()
    z = np.float32([0.0, -0.0, -np.inf, np.nan, -103.97])
    e = np.empty_like(z)
    _rowops.exp_nonpos(z, e)
    assert e[0] == 1.0 and e[1] == 1.0 and e[2] == 0.0 and np.isnan(e[3])
    assert 0 < e[4] <= 2 * TINY


# ------------------------------------------------------------------ softmax


def _softmax_ref(x, log_form=False):
    """float64 softmax of d = x - max rounded to float32 (as NumPy's float32 formula and the
    kernel round it): exp(d) / sum exp(d), or d - log(sum exp(d))."""
    with np.errstate(invalid="ignore"):
        d = (x - x.max(axis=-1, keepdims=True)).astype(np.float64)
        e = np.exp(d)
        s = e.sum(axis=-1, keepdims=True)
        return (d - np.log(s), np.log(s)) if log_form else (e / s, None)


def _check_softmax(y, x, log_form=False):
    ref, _ = _softmax_ref(x, log_form)
    if log_form:
        # one rounding of the result; the sum's relative error (about 1 ulp: the exps' own)
        # becomes an absolute error of log(sum)
        tol = 2.0 ** -23 * np.abs(ref) + 2.0 ** -21
        assert (np.abs(y - ref) <= tol).all()
    else:
        # exp (1 ulp), the sum (float lanes of 8 terms), 1 / sum and the product; a
        # subnormal result: its own rounding and that of the subnormal exp
        _check_ulps(y, ref, 4.0, tiny=2 * TINY)


@native_only
@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 255, 256, 257, 1000])
@pytest.mark.parametrize("log_form", [False, True])
def test_softmax_rows_random(n, log_form):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((7, n)) * np.float32([1, 5, 30, 1e-3, 1, 1, 50])[:, None])
    x = x.astype(np.float32)
    x[5] += 1e6                    # a large offset: only the differences matter
    fn = rowops.log_softmax_lastaxis if log_form else rowops.softmax_lastaxis
    y = fn(x)
    _check_softmax(y, x, log_form)
    if not log_form:
        assert np.abs(y.sum(axis=-1) - 1).max() < 1e-5


@native_only
@pytest.mark.parametrize("log_form", [False, True])
def test_softmax_underflow_rows(log_form):
    # differences of -80 .. -110: subnormal and flushed-to-zero exps next to the max
    n = 40
    x = np.zeros((3, n), np.float32)
    x[0, 1:] = -np.linspace(80, 110, n - 1)
    x[1, :] = -np.linspace(0, 200, n)[::-1]
    x[2, 7] = 1e30
    fn = rowops.log_softmax_lastaxis if log_form else rowops.softmax_lastaxis
    y = fn(x)
    _check_softmax(y, x, log_form)
    if not log_form:
        assert y[0, 0] == 1.0 and (y[0, x[0] < -104] == 0).all()
        assert y[2, 7] == 1.0 and (np.delete(y[2], 7) == 0).all()


@native_only
@pytest.mark.parametrize("n", [1, 5, 16, 33])
def test_softmax_ieee_rows_match_the_numpy_formula(n):
    rows = []
    base = np.linspace(-3, 3, n).astype(np.float32)
    for pos in {0, n // 2, n - 1}:
        for v in (np.nan, np.inf, -np.inf):
            r = base.copy()
            r[pos] = v
            rows.append(r)
    rows.append(np.full(n, -np.inf, np.float32))
    rows.append(np.full(n, np.inf, np.float32))
    rows.append(np.full(n, np.nan, np.float32))
    x = np.stack(rows)
    with np.errstate(all="ignore"):
        d = x - x.max(axis=-1, keepdims=True)
        e = np.exp(d)
        want = e / e.sum(axis=-1, keepdims=True)
        want_log = d - np.log(e.sum(axis=-1, keepdims=True))
    for got, ref in ((rowops.softmax_lastaxis(x), want),
                     (rowops.log_softmax_lastaxis(x), want_log)):
        assert np.array_equal(np.isnan(got), np.isnan(ref))
        assert np.array_equal(np.isneginf(got), np.isneginf(ref))
        fin = np.isfinite(ref)
        assert np.allclose(got[fin], ref[fin], rtol=1e-6, atol=1e-7)


@native_only
@pytest.mark.parametrize("log_form", [False, True])
def test_softmax_in_place_strided_and_nd(log_form):
    rng = np.random.default_rng(3)
    big = rng.standard_normal((6, 4, 53)).astype(np.float32) * 4
    fn = rowops.log_softmax_lastaxis if log_form else rowops.softmax_lastaxis
    want = fn(big.copy())
    _check_softmax(want, big, log_form)
    # rows of 37 values 53 apart (a view), into a strided output and in place
    x = big.reshape(24, 53)[:, 3:40]
    out = np.full((24, 60), 7.0, np.float32)
    fn(x, out=out[:, 5:42])
    _check_softmax(out[:, 5:42], x, log_form)
    assert (out[:, :5] == 7).all() and (out[:, 42:] == 7).all()
    y = x.copy()
    _rowops.softmax_rows(x, y, log_form, 1)
    z = x.copy()
    assert fn(z, out=z) is z
    assert np.array_equal(z, y)
    # a non-unit last stride runs on a contiguous copy: the same bits
    xs = big[:, :, ::2]
    _check_softmax(fn(xs), xs, log_form)
    assert np.array_equal(fn(xs), fn(np.ascontiguousarray(xs)))


@native_only
@pytest.mark.parametrize("log_form", [False, True])
def test_softmax_reversed_broadcast_and_overlapping_rows(log_form):
    # rows that run backwards (x[::-1], found by the loss fuzzer: a column of logits; the
    # extension refused its row stride), repeat (a broadcast) or overlap (a sliding window)
    # run on a contiguous copy: the same bits as the copy's
    fn = rowops.log_softmax_lastaxis if log_form else rowops.softmax_lastaxis
    rng = np.random.default_rng(11)
    col = rng.standard_normal((7, 1)).astype(np.float32)
    base = rng.standard_normal((9, 5)).astype(np.float32) * 3
    flat = rng.standard_normal(40).astype(np.float32)
    views = [col[::-1], base[::-1], base[::-2, 1:4],
             np.broadcast_to(base[2], (4, 5)),
             np.lib.stride_tricks.as_strided(flat, (30, 8), (4, 4), writeable=False)]
    for x in views:
        got = fn(x)
        _check_softmax(got, np.ascontiguousarray(x), log_form)
        assert np.array_equal(got, fn(np.ascontiguousarray(x)))


@native_only
@pytest.mark.parametrize("log_form", [False, True])
def test_softmax_threads_bit_identical(log_form):
    x = np.random.default_rng(4).standard_normal((301, 1000)).astype(np.float32) * 8
    outs = []
    for nt in (1, 2, 3):
        y = np.empty_like(x)
        _rowops.softmax_rows(x, y, log_form, nt)
        outs.append(y)
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
    _check_softmax(outs[0], x, log_form)


# ------------------------------------------------------------------ layer norm


def _layer_norm_ref(x, w, b, eps):
    x = x.astype(np.float64)
    m = x.mean(axis=-1, keepdims=True)
    v = ((x - m) ** 2).mean(axis=-1, keepdims=True)
    xhat = (x - m) / np.sqrt(v + np.float64(np.float32(eps)))
    y = xhat * (1.0 if w is None else w) + (0.0 if b is None else b)
    return y, xhat, m[..., 0], 1.0 / np.sqrt(v[..., 0] + np.float32(eps))


def _check_layer_norm(y, x, w, b, eps, mean=None, rstd=None):
    ref, xhat, m, r = _layer_norm_ref(x, w, b, eps)
    scale = np.abs(xhat) * (1.0 if w is None else np.abs(w)) + (0.0 if b is None else np.abs(b))
    assert (np.abs(y - ref) <= 4 * 2.0 ** -24 * (scale + 1e-3)).all()
    if mean is not None:
        assert _ulps(mean, m).max() <= 0.5 + 1e-9 and _ulps(rstd, r).max() <= 0.5 + 1e-6


@native_only
@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 256, 1000])
def test_layer_norm_random(n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((5, n)) * [[1], [100], [1e-3], [1], [3]]).astype(np.float32)
    x[3] += 1e4      # an offset 1e6 times the spread of the other rows' noise
    w = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    for ww, bb in ((w, b), (None, None), (w, None), (None, b)):
        y, mean, rstd = rowops.layer_norm_lastaxis(x, ww, bb, 1e-5, stats=True)
        _check_layer_norm(y, x, ww, bb, 1e-5, mean, rstd)


@native_only
def test_layer_norm_large_offset_keeps_the_variance():
    rng = np.random.default_rng(7)
    x = (1e4 + rng.standard_normal((8, 256)) * 1e-2).astype(np.float32)
    y, mean, rstd = rowops.layer_norm_lastaxis(x, eps=0.0, stats=True)
    _check_layer_norm(y, x, None, None, 0.0, mean, rstd)
    assert np.abs(y.std(axis=-1) - 1).max() < 1e-5


@native_only
def test_layer_norm_special_rows_in_place_and_strided():
    x = np.random.default_rng(8).standard_normal((6, 40)).astype(np.float32)
    x[1, 3] = np.nan
    x[2, 39] = np.inf
    x[3] = 5.0              # constant row: 0 * 1/sqrt(eps)
    y = rowops.layer_norm_lastaxis(x)
    assert np.isnan(y[1]).all() and np.isnan(y[2]).all() and (y[3] == 0).all()
    ok = [0, 4, 5]
    _check_layer_norm(y[ok], x[ok], None, None, 1e-5)
    big = np.random.default_rng(9).standard_normal((10, 50)).astype(np.float32)
    view = big[:, 5:38]
    want = rowops.layer_norm_lastaxis(view.copy())
    out = np.zeros((10, 40), np.float32)
    rowops.layer_norm_lastaxis(view, out=out[:, 2:35])
    assert np.array_equal(out[:, 2:35], want)
    inplace = view.copy()
    assert rowops.layer_norm_lastaxis(inplace, out=inplace) is inplace
    assert np.array_equal(inplace, want)


@native_only
def test_layer_norm_reversed_and_broadcast_rows():
    rng = np.random.default_rng(12)
    base = rng.standard_normal((9, 6)).astype(np.float32)
    w = rng.standard_normal(6).astype(np.float32)
    for x in (base[::-1], base[::-3, ::2][:, :2], np.broadcast_to(base[4], (3, 6))):
        y, mean, rstd = rowops.layer_norm_lastaxis(x, w[:x.shape[-1]], None, 1e-5, stats=True)
        _check_layer_norm(y, np.ascontiguousarray(x), w[:x.shape[-1]], None, 1e-5, mean, rstd)
        got = rowops.layer_norm_lastaxis(np.ascontiguousarray(x), w[:x.shape[-1]])
        assert np.array_equal(y, got)


@native_only
def test_layer_norm_threads_bit_identical():
    x = np.random.default_rng(10).standard_normal((400, 257)).astype(np.float32)
    w = np.linspace(-1, 1, 257, dtype=np.float32)
    outs = []
    for nt in (1, 2, 3):
        y = np.empty_like(x)
        m = np.empty(400, np.float32)
        r = np.empty(400, np.float32)
        _rowops.layer_norm_rows(x, y, w, None, 1e-5, m, r, nt)
        outs.append(np.concatenate([y.ravel(), m, r]))
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])


@native_only
def test_elementwise_threads_bit_identical_and_tails():
    x = np.random.default_rng(11).standard_normal(70001).astype(np.float32) * 3
    for kernel in (_rowops.erf, lambda a, b, nt: _rowops.gelu(a, b, False, nt),
                   lambda a, b, nt: _rowops.gelu(a, b, True, nt)):
        outs = []
        for nt in (1, 2, 3):
            y = np.empty_like(x)
            kernel(x, y, nt)
            outs.append(y)
        assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
        for m in (1, 7, 8, 9, 15, 16, 17):      # a short array is its own tail
            y = np.empty(m, np.float32)
            kernel(x[:m], y, 1)
            assert np.array_equal(y, outs[0][:m])


# ------------------------------------------------------------------ wrappers


def test_float64_and_other_backends_take_the_numpy_formula():
    x = np.random.default_rng(12).standard_normal((3, 17))
    with np.errstate(all="ignore"):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
    assert np.array_equal(rowops.softmax_lastaxis(x), e / e.sum(axis=-1, keepdims=True))
    assert rowops.erf(x).dtype == np.float64
    x32 = x.astype(np.float32)
    with nnlite.using_backend("numpy"):
        assert not rowops.native(x32)
        y = rowops.gelu(x32)
    assert np.array_equal(y, rowops.gelu_formula(x32, "none")[0])


def test_argument_errors():
    x = np.ones((4, 8), np.float32)
    with pytest.raises(TypeError, match="int32"):
        rowops.erf(np.ones(3, np.int32))
    with pytest.raises(TypeError, match="float64"):
        rowops.softmax_lastaxis(x, out=np.empty((4, 8)))
    with pytest.raises(ValueError, match=r"\(4, 7\)"):
        rowops.gelu(x, out=np.empty((4, 7), np.float32))
    with pytest.raises(ValueError, match="approximate"):
        rowops.gelu(x, "fast")
    with pytest.raises(ValueError, match="overlaps"):
        rowops.log_softmax_lastaxis(x[:, :4], out=x[:, 2:6])
    with pytest.raises(ValueError, match="scalar"):
        rowops.softmax_lastaxis(np.float32(1.0))
    with pytest.raises(ValueError, match=r"w has shape \(7,\)"):
        rowops.layer_norm_lastaxis(x, np.ones(7, np.float32))
    with pytest.raises(TypeError, match="b has dtype float64"):
        rowops.layer_norm_lastaxis(x, None, np.ones(8))
    with pytest.raises(ValueError, match="read-only"):
        ro = np.empty((4, 8), np.float32)
        ro.flags.writeable = False
        rowops.erf(x, out=ro)


@native_only
def test_extension_argument_errors():
    x = np.ones((4, 8), np.float32)
    with pytest.raises(ValueError, match="unit stride"):
        _rowops.softmax_rows(x[:, ::2], np.empty((4, 4), np.float32), False, 1)
    with pytest.raises(ValueError, match="output shape"):
        _rowops.layer_norm_rows(x, np.empty((4, 7), np.float32), None, None, 1e-5, None,
                                None, 1)
    with pytest.raises(ValueError, match="w has 7 values"):
        _rowops.layer_norm_rows(x, x.copy(), np.ones(7, np.float32), None, 1e-5, None, None,
                                1)


def test_empty_arrays():
    for shape in ((0, 5), (3, 0), (0,)):
        x = np.empty(shape, np.float32)
        assert rowops.softmax_lastaxis(x).shape == shape
        assert rowops.erf(x).shape == shape
    y, m, r = rowops.layer_norm_lastaxis(np.empty((3, 0), np.float32), stats=True)
    assert y.shape == (3, 0) and np.isnan(m).all() and np.isnan(r).all()
