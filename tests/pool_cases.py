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
