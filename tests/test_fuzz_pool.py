"""Fuzz: max/avg/adaptive pools, max_unpool2d, spatial pyramid pooling and their modules.

Valid calls (geometry drawn so that the docs/semantics.md §3.2 output size is >= 1, computed here
from the formula, independently of nnlite) must match the naive-loop reference on every backend,
values, int64 indices and gradients, including ties (integer inputs), NaN/inf, empty batches,
unbatched and non-contiguous inputs. Invalid calls (a bad value or type in one argument) must raise
ValueError/TypeError.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F
from fuzzing import (ALL, FAST, Failed, LAYOUTS, agree, bad_int, fuzz_settings,  # noqa: F401
                     hang_guard, make_array, memory_cap, on_backend, outcome, rngs, tol)

pytestmark = pytest.mark.fuzz

DTYPES = (np.float32, np.float64)


def _out(L, k, s, p, d, ceil):
    """docs/semantics.md §3.2 (written out again here, not nnlite's helper)."""
    o = (L + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (o - 1) * s >= L + p:
        o -= 1
    return o


@st.composite
def inputs(draw, shape):
    rng = draw(rngs())
    dtype = draw(st.sampled_from(DTYPES), label="dtype")
    layout = draw(st.sampled_from(LAYOUTS), label="layout")
    special = draw(st.sampled_from([0.0, 0.0, 0.15]), label="nan_inf")
    integer = draw(st.booleans(), label="ties")
    return make_array(rng, shape, dtype, layout, special, integer=integer), rng


def _run_pool(fn, x, kwargs, seed, with_indices):
    """Forward (+ indices) and backward through autograd."""
    t = nnlite.tensor(x, requires_grad=True) if isinstance(x, np.ndarray) and \
        x.dtype.kind == "f" else x
    res = fn(t, **kwargs)
    y, idx = (res if with_indices else (res, None))
    gy = np.random.default_rng(seed).uniform(-1, 1, y.shape).astype(y.dtype)
    if y.data.size:
        y.backward(gy)
    gx = getattr(t, "grad", None)
    out = [y.data, None if idx is None else np.asarray(getattr(idx, "data", idx)),
           None if gx is None else np.asarray(getattr(gx, "data", gx))]
    return tuple(out)


def _check(fn, x, kwargs, rng, valid, what, with_indices=False, k=9):
    seed = int(rng.integers(2 ** 31))
    results = {b: outcome(on_backend, b, _run_pool, fn, x, kwargs, seed, with_indices,
                          memory_ok=not valid) for b in ALL}
    dtype = x.dtype if isinstance(x, np.ndarray) and x.dtype in DTYPES else np.float32
    rtol, atol = tol(dtype, k, 4.0)
    return agree(results, rtol, atol, what, exact_nonfinite=ALL, valid=valid)


def _maybe_bad(draw, kwargs, keys):
    if draw(st.integers(0, 9), label="mutate?") >= 3:
        return False
    key = draw(st.sampled_from(keys), label="mutated")
    kwargs[key] = bad_int(draw, key)
    return True


@st.composite
def max_avg_cases(draw, avg):
    kh, kw = draw(st.integers(1, 4), label="kh"), draw(st.integers(1, 4), label="kw")
    sh, sw = draw(st.integers(1, 3), label="sh"), draw(st.integers(1, 3), label="sw")
    dh, dw = (1, 1) if avg else (draw(st.integers(1, 3), label="dh"),
                                 draw(st.integers(1, 3), label="dw"))
    ph, pw = draw(st.integers(0, kh // 2), label="ph"), draw(st.integers(0, kw // 2), label="pw")
    ceil = draw(st.booleans(), label="ceil_mode")
    H = draw(st.integers(1, max(1, dh * (kh - 1) + 1 - 2 * ph) + 5), label="H")
    W = draw(st.integers(1, max(1, dw * (kw - 1) + 1 - 2 * pw) + 5), label="W")
    n = draw(st.sampled_from([0, 1, 2, None]), label="n (None: unbatched)")
    c = draw(st.integers(1, 3), label="C")
    shape = (c, H, W) if n is None else (n, c, H, W)
    x, rng = draw(inputs(shape))
    kwargs = dict(kernel_size=(kh, kw), stride=draw(st.sampled_from([(sh, sw), None, sh])),
                  padding=(ph, pw), ceil_mode=ceil)
    sh2, sw2 = (kh, kw) if kwargs["stride"] is None else (
        (sh, sh) if isinstance(kwargs["stride"], int) else (sh, sw))
    valid = min(_out(H, kh, sh2, ph, dh, ceil), _out(W, kw, sw2, pw, dw, ceil)) >= 1
    if avg:
        kwargs["count_include_pad"] = draw(st.booleans(), label="count_include_pad")
        kwargs["divisor_override"] = draw(st.sampled_from([None, None, 1, 3, -2]), label="div")
    else:
        kwargs["dilation"] = (dh, dw)
        kwargs["return_indices"] = draw(st.booleans(), label="return_indices")
    keys = ["kernel_size", "stride", "padding", "ceil_mode"] + (
        ["divisor_override", "count_include_pad"] if avg else ["dilation"])
    if _maybe_bad(draw, kwargs, keys):
        valid = False
    if draw(st.integers(0, 19), label="bad input?") == 0:
        x = draw(st.sampled_from([x.astype(np.int32), x[..., 0], x[None, None],
                                  x.astype(np.float16)]))
        valid = False
    return x, kwargs, rng, valid


@fuzz_settings(300)
@given(case=max_avg_cases(avg=False))
def test_fuzz_max_pool2d(case, memory_cap):
    x, kwargs, rng, valid = case
    ri = kwargs.get("return_indices") is True
    _check(F.max_pool2d, x, kwargs, rng, valid, f"max_pool2d{kwargs}", with_indices=ri)


@fuzz_settings(300)
@given(case=max_avg_cases(avg=True))
def test_fuzz_avg_pool2d(case, memory_cap):
    x, kwargs, rng, valid = case
    _check(F.avg_pool2d, x, kwargs, rng, valid, f"avg_pool2d{kwargs}")


@st.composite
def adaptive_cases(draw):
    H, W = draw(st.integers(1, 7), label="H"), draw(st.integers(1, 7), label="W")
    n = draw(st.sampled_from([0, 1, 2, None]), label="n")
    c = draw(st.integers(1, 3), label="C")
    shape = (c, H, W) if n is None else (n, c, H, W)
    x, rng = draw(inputs(shape))
    size = draw(st.one_of(st.integers(0, 9), st.tuples(st.one_of(st.none(), st.integers(0, 9)),
                                                        st.one_of(st.none(), st.integers(0, 9)))),
                label="output_size")
    valid = True
    if draw(st.integers(0, 9), label="mutate?") < 2:
        size = draw(st.sampled_from([-1, (2, -1), (1, 2, 3), 2.0, "2", True, (None,), 2 ** 70,
                                     (2 ** 40, 1)]), label="bad output_size")
        valid = False
    if draw(st.integers(0, 19), label="bad input?") == 0:
        x = draw(st.sampled_from([x.astype(np.int64), x[..., :0], x[..., 0, 0]]))
        valid = False
    return x, size, rng, valid


@fuzz_settings(240)
@given(case=adaptive_cases(), mode=st.sampled_from(["avg", "max", "max_idx"]))
def test_fuzz_adaptive_pools(case, mode, memory_cap):
    x, size, rng, valid = case
    fn = F.adaptive_avg_pool2d if mode == "avg" else F.adaptive_max_pool2d
    kwargs = dict(output_size=size)
    if mode == "max_idx":
        kwargs["return_indices"] = True
    k = int(np.ceil(x.shape[-1] / 1) * np.ceil(x.shape[-2] / 1)) if x.ndim >= 2 else 1
    _check(fn, x, kwargs, rng, valid, f"{fn.__name__}{kwargs}", mode == "max_idx", k)


@st.composite
def unpool_cases(draw):
    k = draw(st.integers(1, 3), label="k")
    s = draw(st.integers(1, 3), label="s")
    p = draw(st.integers(0, k // 2), label="p")
    H, W = draw(st.integers(k, k + 5), label="H"), draw(st.integers(k, k + 5), label="W")
    x, rng = draw(inputs((draw(st.integers(0, 2), label="n"), 2, H, W)))
    how = draw(st.sampled_from(["pooled", "pooled", "random", "size"]), label="indices")
    return x, k, s, p, how, rng


@fuzz_settings(200)
@given(case=unpool_cases())
def test_fuzz_max_unpool2d(case, memory_cap):
    x, k, s, p, how, rng = case
    with nnlite.using_backend("reference"):
        y, idx = F.max_pool2d(x, k, s, p, return_indices=True)
    idx = idx.data
    # the input size is always a legal output_size (default <= H < default + stride)
    kwargs = dict(kernel_size=k, stride=s, padding=p, output_size=x.shape[-2:])
    valid = True
    if how == "random":
        idx = rng.integers(-3, x.shape[-1] * x.shape[-2] + 3, size=idx.shape)
        valid = False
    elif how == "size":
        h, w = x.shape[-2:]
        kwargs["output_size"] = (h + int(rng.integers(-2, 3)), w + int(rng.integers(-2, 3)))
        valid = False

    def run():
        t = nnlite.tensor(np.ascontiguousarray(y.data), requires_grad=True)
        out = F.max_unpool2d(t, idx, **kwargs)
        out.backward(np.ones(out.shape, out.dtype))
        return out.data, t.grad

    agree({b: outcome(on_backend, b, run) for b in ALL}, 0, 0, f"max_unpool2d{kwargs}",
          exact_nonfinite=ALL, valid=valid)


@fuzz_settings(120)
@given(case=adaptive_cases(), levels=st.one_of(
    st.lists(st.integers(1, 4), min_size=1, max_size=3),
    st.sampled_from([[], [0], [-1], 3, "4", [1.5], [True], [2 ** 40]])),
    mode=st.sampled_from(["max", "avg", "min"]))
def test_fuzz_spp(case, levels, mode, memory_cap):
    x, _, rng, valid = case
    valid = valid and isinstance(levels, list) and levels and mode != "min" and all(
        type(v) is int and 1 <= v < 100 for v in levels)
    _check(F.spatial_pyramid_pool2d, x, dict(levels=levels, mode=mode), rng, valid,
           f"spp({levels}, {mode})", k=x.shape[-1] * x.shape[-2] if x.ndim >= 2 else 1)


@fuzz_settings(160)
@given(case=max_avg_cases(avg=False), kind=st.sampled_from(["max", "avg", "amax", "aavg",
                                                             "spp"]))
def test_fuzz_pool_modules(case, kind, memory_cap):
    x, kwargs, rng, valid = case
    if kind == "max":
        ctor = lambda: nn.MaxPool2d(kwargs["kernel_size"], kwargs["stride"],  # noqa: E731
                                    kwargs["padding"], kwargs["dilation"], False,
                                    kwargs["ceil_mode"])
    elif kind == "avg":
        ctor = lambda: nn.AvgPool2d(kwargs["kernel_size"], kwargs["stride"],  # noqa: E731
                                    kwargs["padding"], kwargs["ceil_mode"])
        valid = valid and kwargs["dilation"] == (1, 1)
    elif kind == "amax":
        ctor = lambda: nn.AdaptiveMaxPool2d(kwargs["kernel_size"])  # noqa: E731
    elif kind == "aavg":
        ctor = lambda: nn.AdaptiveAvgPool2d(kwargs["kernel_size"])  # noqa: E731
    else:
        ctor = lambda: nn.SpatialPyramidPooling(kwargs["kernel_size"])  # noqa: E731
    mod = outcome(ctor)
    if isinstance(mod, Failed):
        return
    if kind in ("amax", "aavg", "spp"):
        valid = None  # adaptive sizes from a kernel draw: only the no-crash invariant
    res = {b: outcome(on_backend, b, _run_pool, mod, x, {}, 0, False, memory_ok=not valid)
           for b in ALL}
    agree(res, *tol(np.float64 if getattr(x, "dtype", None) == np.float64 else np.float32,
                    49, 4.0), f"{type(mod).__name__}", exact_nonfinite=ALL, valid=bool(valid))


HUGE = [2 ** 31, 2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 64, 2 ** 70]


def _huge_params():
    """(op, arg, value, backend) combinations (F4/F5 fixed in fcef710: OverflowError, and
    minutes-long loops over every column of a 2**32-wide kernel)."""
    out = []
    for op in ("max", "avg"):
        for arg in ("kernel_size", "stride", "padding", "dilation"):
            if arg == "dilation" and op == "avg":
                continue  # avg_pool2d has no dilation
            for value in HUGE:
                for b in ALL:
                    marks = []
                    if b == "reference" and arg == "padding":
                        # padding <= k // 2 forces a 2**31-wide kernel; the naive loops visit
                        # every tap (seconds to minutes), which is the reference's contract
                        marks = [pytest.mark.skip(reason="reference: O(kernel) per window")]
                    out.append(pytest.param(op, arg, value, b, marks=marks,
                                            id=f"{op}-{arg}-{value}-{b}"))
    return out


@pytest.mark.parametrize("op, arg, value, backend_name", _huge_params())
def test_pool_huge_arguments(op, arg, value, backend_name, memory_cap):
    """Sizes beyond any machine: a correct result (huge stride) or a clean error, no hang."""
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    kwargs = dict(kernel_size=3)
    if arg == "padding":
        kwargs.update(kernel_size=2 * value + 1, padding=value)  # padding within k // 2
    else:
        kwargs[arg] = value
    fn = F.max_pool2d if op == "max" else F.avg_pool2d
    res = outcome(on_backend, backend_name, fn, x, **kwargs, memory_ok=True)
    if arg == "stride" and not isinstance(res, Failed):
        want = 12.0 if op == "max" else 6.0  # the single window x[0:3, 0:3]
        np.testing.assert_array_equal(res.data, np.full((1, 1, 1, 1), want, np.float32))


@pytest.mark.parametrize("backend_name", ALL)
def test_max_unpool2d_empty_batch(backend_name):
    """PyTorch returns an empty (0, C, H, W) result; nnlite must not fail on N = 0 (F3)."""
    with nnlite.using_backend(backend_name):
        y, idx = F.max_pool2d(np.zeros((0, 2, 2, 2), np.float32), 1, return_indices=True)
        out = F.max_unpool2d(y, idx, 1)
    assert out.shape == (0, 2, 2, 2)


@pytest.mark.parametrize("backend_name", ALL)
@pytest.mark.parametrize("call", [
    lambda x: F.avg_pool2d(x, 1, divisor_override=2 ** 63),
    lambda x: F.avg_pool2d(x, 1, divisor_override=-(2 ** 70)),
    lambda x: F.adaptive_max_pool2d(x, 2 ** 63),
    lambda x: F.adaptive_avg_pool2d(x, (1, 2 ** 70)),
    lambda x: F.spatial_pyramid_pool2d(x, (2 ** 63,)),
    lambda x: nn.AdaptiveMaxPool2d(2 ** 63)(x),
], ids=["divisor", "neg-divisor", "adaptive-max", "adaptive-avg", "spp", "module"])
def test_pool_arguments_beyond_int64_are_value_errors(backend_name, call, memory_cap):
    """Found by the fuzz suite: these raised OverflowError (C ssize_t / long) before."""
    for x in (np.zeros((0, 1, 1, 1), np.float32), np.ones((1, 1, 2, 2), np.float32)):
        with nnlite.using_backend(backend_name), pytest.raises(ValueError):
            call(x)
