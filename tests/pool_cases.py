"""Hypothesis strategies for the pooling and ROI tests: valid-by-construction geometries and
inputs that force ties (integer values) or avoid them (distinct values, for gradchecks)."""
import numpy as np
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st

from nnlite import _poolgeom as geo

DTYPES = (np.float32, np.float64)


def make_input(shape, kind, dtype, seed):
    """'int': small integers (many ties); 'float': normals; 'distinct': no ties, gaps >= 0.1."""
    rng = np.random.default_rng(seed)
    if kind == "int":
        return rng.integers(-3, 4, shape).astype(dtype)
    if kind == "distinct":
        n = int(np.prod(shape))
        return (rng.permutation(n).reshape(shape) * 0.1 - n * 0.05).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@st.composite
def pool_cases(draw, dilation=True):
    """A valid max/avg pool geometry with its input: dict of kernel, stride, padding, ..."""
    kh = draw(st.integers(1, 4), label="kh")
    kw = draw(st.integers(1, 4), label="kw")
    sh = draw(st.integers(1, 3), label="sh")
    sw = draw(st.integers(1, 3), label="sw")
    dh = draw(st.integers(1, 3), label="dh") if dilation else 1
    dw = draw(st.integers(1, 3), label="dw") if dilation else 1
    ph = draw(st.integers(0, kh // 2), label="ph")
    pw = draw(st.integers(0, kw // 2), label="pw")
    ceil_mode = draw(st.booleans(), label="ceil_mode")
    # sides from a little below the dilated kernel (ceil mode only) to a few windows more
    lo_h, lo_w = max(1, dh * (kh - 1) + 1 - 2 * ph), max(1, dw * (kw - 1) + 1 - 2 * pw)
    H = draw(st.integers(1 if ceil_mode else lo_h, lo_h + 6), label="H")
    W = draw(st.integers(1 if ceil_mode else lo_w, lo_w + 6), label="W")
    oh = geo.pool_output_size(H, kh, sh, ph, dh, ceil_mode)
    ow = geo.pool_output_size(W, kw, sw, pw, dw, ceil_mode)
    assume(oh >= 1 and ow >= 1)
    N = draw(st.integers(1, 2), label="N")
    C = draw(st.integers(1, 3), label="C")
    return dict(shape=(N, C, H, W), kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw),
                dilation=(dh, dw), ceil_mode=ceil_mode)


inputs = st.tuples(st.sampled_from(("int", "float")), st.sampled_from(DTYPES),
                   st.integers(0, 2 ** 31 - 1))

# the ``backend`` fixture is entered once per test, which is what these tests want
with_fixture = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow, HealthCheck.data_too_large])


_quarter = st.integers(-16, 48).map(lambda v: v / 4)  # exact halves: rounding ties
_coord = st.one_of(_quarter, st.floats(-4, 12, allow_nan=False, allow_infinity=False))
SCALES = (1.0, 0.5, 0.25, 2.0, 1 / 3, 0.0625)


@st.composite
def roi_cases(draw):
    """A feature map shape and (K, 5) boxes: partly outside, zero-width, inverted, on any
    image; plus spatial_scale, output size and dtype."""
    N = draw(st.integers(1, 2), label="N")
    C = draw(st.integers(1, 3), label="C")
    H = draw(st.integers(1, 8), label="H")
    W = draw(st.integers(1, 8), label="W")
    K = draw(st.integers(0, 4), label="K")
    dtype = draw(st.sampled_from(DTYPES), label="dtype")
    rows = []
    for _ in range(K):
        b = draw(st.integers(0, N - 1))
        x1, y1, x2, y2 = (draw(_coord) for _ in range(4))
        kind = draw(st.sampled_from(["any", "ordered", "zero-width", "inverted"]))
        if kind == "ordered":
            x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
        elif kind == "zero-width":
            x2 = x1
        elif kind == "inverted":
            x1, x2, y1, y2 = max(x1, x2), min(x1, x2), max(y1, y2), min(y1, y2)
        rows.append((b, x1, y1, x2, y2))
    rois = np.array(rows, dtype=dtype).reshape(K, 5)
    out = (draw(st.integers(1, 4), label="PH"), draw(st.integers(1, 4), label="PW"))
    scale = draw(st.sampled_from(SCALES), label="spatial_scale")
    return dict(shape=(N, C, H, W), rois=rois, out=out, scale=scale, dtype=dtype)
