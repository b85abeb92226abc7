"""Pool geometry: the output-size formula (docs/semantics.md §3.2 ceil-mode drop rule) against the
reference's window-by-window count, and adaptive bins against their float definition."""
import math

import pytest

from nnlite import _poolgeom as geo
from nnlite.kernels import pool_reference


def test_pool_output_size_matches_window_enumeration():
    for L in range(1, 14):
        for k in range(1, 5):
            for s in range(1, 5):
                for d in range(1, 4):
                    for p in range(0, k // 2 + 1):
                        for ceil_mode in (False, True):
                            got = geo.pool_output_size(L, k, s, p, d, ceil_mode)
                            want = pool_reference._n_windows(L, k, s, p, d, ceil_mode)
                            assert max(got, 0) == want, (L, k, s, p, d, ceil_mode)


@pytest.mark.parametrize("L, k, s, p, ceil_mode, out", [
    (5, 2, 2, 1, True, 3), (6, 3, 2, 0, True, 3), (6, 3, 2, 0, False, 2), (1, 2, 2, 1, True, 1),
    (112, 3, 2, 1, False, 56), (28, 3, 1, 1, False, 28), (7, 3, 2, 0, True, 3),
])
def test_pool_output_size_spec_examples(L, k, s, p, ceil_mode, out):
    assert geo.pool_output_size(L, k, s, p, 1, ceil_mode) == out


def test_ceil_mode_last_window_starts_inside_input_or_left_padding():
    for L in range(1, 12):
        for k in range(1, 5):
            for s in range(1, 5):
                for p in range(0, k // 2 + 1):
                    n = geo.pool_output_size(L, k, s, p, 1, True)
                    if n >= 1:
                        assert (n - 1) * s - p < L  # the last window starts before the end


def test_adaptive_bins_match_float_floor_ceil():
    for I in range(1, 40):
        for O in range(1, 40):
            starts, ends = geo.adaptive_bins(I, O)
            assert starts.tolist() == [math.floor(i * I / O) for i in range(O)]
            assert ends.tolist() == [math.ceil((i + 1) * I / O) for i in range(O)]
            assert (ends > starts).all() and starts[0] == 0 and ends[-1] == I


def test_pool_geometry_stride_none_or_empty_means_kernel():
    for stride in (None, [], ()):
        g = geo.pool_geometry((1, 1, 8, 9), (2, 3), stride, 0, 1, False, "max_pool2d")
        assert g.stride == (2, 3) and g.out == (4, 3)


def test_pool_geometry_is_a_namedtuple_of_pairs():
    g = geo.pool_geometry((1, 1, 8, 9), 3, 2, 1, 1, True, "max_pool2d")
    assert g.kernel == (3, 3) and g.padding == (1, 1) and g.ceil_mode is True
    assert g.out == (5, 5)
    with pytest.raises(TypeError, match="ceil_mode"):
        geo.pool_geometry((1, 1, 8, 9), 3, 2, 1, 1, "yes", "max_pool2d")
