"""Hypothesis strategies for valid-by-construction conv geometries (shared by the conv tests).

Per axis the output length, kernel, stride, dilation and padding are drawn first and the input
length is derived from them (STYLE §4.7), with ``extra`` in [0, stride-1] so that sizes the stride
does not tile appear, and padding clipped (not filtered) so the input length stays >= 1. Kernels
are non-square and stride/dilation differ per axis because each axis is drawn independently.
"""
import numpy as np
from hypothesis import HealthCheck, settings, strategies as st

# the ``backend`` fixture only enters a backend context: reusing it across examples is safe
with_fixture = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def conv_axis(draw, max_side=9, name=""):
    """(L, k, s, d, p) with L + 2p >= d(k-1)+1; padding may exceed the kernel."""
    k = draw(st.integers(1, 4), label=f"k{name}")
    s = draw(st.integers(1, 3), label=f"s{name}")
    d = draw(st.integers(1, 3), label=f"d{name}")
    keff = d * (k - 1) + 1
    o_max = max(1, (max_side + 4 - keff) // s + 1)
    o = draw(st.integers(1, min(o_max, 4)), label=f"o{name}")
    extra = draw(st.integers(0, s - 1), label=f"extra{name}")
    base = (o - 1) * s + keff + extra                # padded length
    p = draw(st.integers(0, 4), label=f"p{name}")
    p = min(p, (base - 1) // 2)                      # keep L = base - 2p >= 1
    return base - 2 * p, k, s, d, p


@st.composite
def channels(draw):
    """(groups, C, F): groups in {1, 2, C}-like draws incl. depthwise (C/g == 1), one channel."""
    g = draw(st.sampled_from([1, 1, 2, 3]), label="groups")
    cg = draw(st.integers(1, 2 if g > 1 else 3), label="c_per_group")
    fg = draw(st.integers(1, 2 if g > 1 else 3), label="f_per_group")
    return g, g * cg, g * fg


@st.composite
def conv2d_case(draw, max_batch=2):
    """dict(n, c, f, g, h, w, kh, kw, stride, padding, dilation) for F.conv2d."""
    h, kh, sh, dh, ph = draw(conv_axis(name="h"))
    w, kw, sw, dw, pw = draw(conv_axis(name="w"))
    g, c, f = draw(channels())
    n = draw(st.integers(1, max_batch), label="batch")
    return dict(n=n, c=c, f=f, g=g, h=h, w=w, kh=kh, kw=kw, stride=(sh, sw), padding=(ph, pw),
                dilation=(dh, dw))


@st.composite
def transpose_axis(draw, name=""):
    """(L_in, k, s, d, p, op) for conv_transpose2d with op < max(s, d) and Lout >= 1."""
    k = draw(st.integers(1, 4), label=f"k{name}")
    s = draw(st.integers(1, 3), label=f"s{name}")
    d = draw(st.integers(1, 3), label=f"d{name}")
    length = draw(st.integers(1, 4), label=f"L{name}")
    op = draw(st.integers(0, max(s, d) - 1), label=f"op{name}")
    full = (length - 1) * s + d * (k - 1) + op      # Lout + 2p - 1
    p = draw(st.integers(0, 3), label=f"p{name}")
    p = min(p, full // 2)                            # keep Lout = full + 1 - 2p >= 1
    return length, k, s, d, p, op


@st.composite
def conv_transpose2d_case(draw, max_batch=2):
    """dict(n, cin, cout, g, h, w, kh, kw, stride, padding, output_padding, dilation)."""
    h, kh, sh, dh, ph, oph = draw(transpose_axis(name="h"))
    w, kw, sw, dw, pw, opw = draw(transpose_axis(name="w"))
    g, cin, cout = draw(channels())
    n = draw(st.integers(1, max_batch), label="batch")
    return dict(n=n, cin=cin, cout=cout, g=g, h=h, w=w, kh=kh, kw=kw, stride=(sh, sw),
                padding=(ph, pw), output_padding=(oph, opw), dilation=(dh, dw))


def arrays(rng, dtype, *shapes):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def out_len(length, k, s, d, pad_total):
    return (length + pad_total - d * (k - 1) - 1) // s + 1
