"""Spatial pyramid pooling: length C * sum(n**2) for every input size, the (level, C, n, n)
flatten order, gradients, the module, and the sizes where the paper's formula breaks."""
import numpy as np
import pytest
from conftest import assert_close
from gradcheck import check_grad
from hypothesis import given
from hypothesis import strategies as st
from pool_cases import make_input, with_fixture

import nnlite
import nnlite.functional as F
import nnlite.nn as nn

levels_st = st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple)


@with_fixture
@given(H=st.integers(1, 20), W=st.integers(1, 20), C=st.integers(1, 4), N=st.integers(0, 2),
       levels=levels_st, mode=st.sampled_from(["max", "avg"]))
def test_spp_length_is_c_times_sum_of_squares_for_every_size(backend, H, W, C, N, levels,
                                                              mode):
    x = nnlite.tensor(make_input((N, C, H, W), "float", np.float32, H * W))
    y = F.spatial_pyramid_pool2d(x, levels, mode)
    assert y.shape == (N, C * sum(n * n for n in levels))
    x3 = nnlite.tensor(make_input((C, H, W), "float", np.float32, 0))  # unbatched
    assert F.spatial_pyramid_pool2d(x3, levels, mode).shape == (C * sum(n * n for n in levels),)


@pytest.mark.parametrize("mode, pool", [("max", F.adaptive_max_pool2d),
                                        ("avg", F.adaptive_avg_pool2d)])
def test_spp_equals_concatenated_adaptive_pools_in_level_then_channel_order(backend, mode,
                                                                             pool):
    x = make_input((2, 3, 10, 13), "float", np.float64, 5)
    y = F.spatial_pyramid_pool2d(nnlite.tensor(x), (4, 2, 1), mode).data
    parts = [pool(nnlite.tensor(x), n).data.reshape(2, -1) for n in (4, 2, 1)]
    np.testing.assert_array_equal(y, np.concatenate(parts, axis=1))
    # the (C, n, n) flatten order: element [c=1, i=2, j=3] of level 4
    assert y[0, 1 * 16 + 2 * 4 + 3] == parts[0][0, 1 * 16 + 2 * 4 + 3]
    if mode == "max":
        assert y[1, 3 * 16 + 3 * 4 + 2] == x[1, 2].max()  # level 1, channel 2


def test_spp_gets_every_paper_size_right(backend):
    # sizes where the paper's ceil/floor window gives the wrong bin count (docs/semantics.md §6.2)
    for a, n in [(5, 3), (6, 4), (7, 4), (8, 6), (10, 6), (11, 4), (29, 6)]:
        x = nnlite.tensor(make_input((1, 2, a, a), "float", np.float32, a))
        assert F.spatial_pyramid_pool2d(x, (n,)).shape == (1, 2 * n * n)
        # every cell of the map is inside some bin: the level-n max equals the global max
        y = F.spatial_pyramid_pool2d(x, (n,)).data.reshape(2, n * n)
        np.testing.assert_array_equal(y.max(axis=1), x.data.reshape(2, -1).max(axis=1))


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spp_gradcheck(mode):
    x = make_input((2, 2, 5, 7), "distinct", np.float64, 1)
    check_grad(lambda t: F.spatial_pyramid_pool2d(t, (3, 2, 1), mode), [x])


def test_spp_avg_level_one_is_the_mean(backend):
    x = make_input((2, 3, 6, 5), "float", np.float64, 2)
    y = F.spatial_pyramid_pool2d(nnlite.tensor(x), (1,), "avg")
    assert_close(y, x.mean(axis=(2, 3)), np.float64, k=30)


def test_spp_module():
    m = nn.SpatialPyramidPooling()
    assert m.levels == (4, 2, 1) and m.mode == "max" and m.num_features(256) == 256 * 21
    assert repr(m) == "SpatialPyramidPooling(levels=(4, 2, 1), mode='max')"
    m = nn.SpatialPyramidPooling([6, 3, 2, 1], mode="avg")
    assert m.levels == (6, 3, 2, 1) and m.num_features(256) == 12800
    x = nnlite.tensor(make_input((1, 256, 10, 10), "float", np.float32, 0))
    assert m(x).shape == (1, 12800)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(levels=()), ValueError, "must not be empty"),
    (dict(levels=(4, 0)), ValueError, r"\(4, 0\)"),
    (dict(levels=(2.0,)), TypeError, "ints"),
    (dict(levels=None), TypeError, "sequence"),
    (dict(mode="sum"), ValueError, "'sum'"),
])
def test_spp_rejects_bad_arguments(kwargs, exc, match):
    x = nnlite.tensor(np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(exc, match=match):
        F.spatial_pyramid_pool2d(x, **kwargs)
    if "mode" in kwargs or kwargs.get("levels") is not None:
        with pytest.raises(exc, match=match):
            nn.SpatialPyramidPooling(**kwargs)
    with pytest.raises(ValueError, match=r"3-D or 4-D.*\(4, 4\)"):
        F.spatial_pyramid_pool2d(nnlite.tensor(np.zeros((4, 4), np.float32)))
