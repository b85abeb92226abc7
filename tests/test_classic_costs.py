"""The classic cost comparisons, computed by ``nnlite.summary`` on real modules and checked
against the closed-form counts (every expected number is computed from the layer sizes here,
not typed in).

Convs are built without bias (and, where the write-ups count only weights, without BatchNorm),
so params and MACs are exactly the weight counts the comparisons quote.
"""
import pytest

import nnlite
import nnlite.nn as nn
from nnlite.summary import summary


def plain_conv(cin, cout, **kwargs):
    """A conv_block for the blocks: one bias-free Conv2d (weights only, as the write-ups count)."""
    return nn.Conv2d(cin, cout, bias=False, **kwargs)


def conv_only(rep):
    """(params, MACs) of the report's Conv2d rows."""
    rows = [r for r in rep if r.type == "Conv2d"]
    return sum(r.params for r in rows), sum(r.macs for r in rows)


# ------------------------------------------------------------------ 1. Inception 3a, 28x28x192
def test_inception_3a_naive_vs_reduced():
    hw, cin = 28 * 28, 192
    naive = nn.Inception(cin, 64, 96, 128, 16, 32, 32, conv_block=plain_conv, reduce=False,
                         branch3_kernel_size=5)
    reduced = nn.Inception(cin, 64, 96, 128, 16, 32, 32, conv_block=plain_conv,
                           branch3_kernel_size=5)
    no_proj = nn.Inception(cin, 64, 96, 128, 16, 32, 0, conv_block=plain_conv,
                           branch3_kernel_size=5)
    r_naive = summary(naive, (1, cin, 28, 28))
    r_red = summary(reduced, (1, cin, 28, 28))
    r_noproj = summary(no_proj, (1, cin, 28, 28))

    p_naive = cin * 64 + cin * 128 * 3 * 3 + cin * 32 * 5 * 5
    p_proj = cin * 32
    p_red = cin * 64 + (cin * 96 + 96 * 128 * 9) + (cin * 16 + 16 * 32 * 25) + p_proj
    assert (r_naive.params, r_naive.macs) == (p_naive, hw * p_naive)
    assert (r_red.params, r_red.macs) == (p_red, hw * p_red)
    assert (r_noproj.params, r_noproj.macs) == (p_red - p_proj, hw * (p_red - p_proj))
    # output channels: the naive module passes all 192 pooled channels through
    assert r_naive.output_shape == (1, 64 + 128 + 32 + cin, 28, 28)
    assert r_red.output_shape == (1, 256, 28, 28)
    assert r_noproj.output_shape == (1, 64 + 128 + 32 + cin, 28, 28)
    # the reductions cut the multiplies by more than half
    assert r_red.macs * 2 < r_naive.macs


def test_inception_3a_torchvision_block_counts():
    """torchvision's block (BasicConv2d, 3x3 in branch3): conv weights + 2 BN params/channel."""
    rep = summary(nn.Inception(192, 64, 96, 128, 16, 32, 32), (2, 192, 28, 28))
    convs = 192 * 64 + 192 * 96 + 96 * 128 * 9 + 192 * 16 + 16 * 32 * 9 + 192 * 32
    bn_channels = 64 + 96 + 128 + 16 + 32 + 32
    assert rep.params == convs + 2 * bn_channels
    assert rep.macs == 2 * 28 * 28 * convs


# ----------------------------------------------- 2. 100x100x128 -> 256 by 5x5, direct vs 1x1->32
def test_5x5_on_100x100_direct_vs_bottleneck():
    hw = 100 * 100
    direct = nn.Conv2d(128, 256, 5, padding=2, bias=False)
    reduced = nn.Sequential(nn.Conv2d(128, 32, 1, bias=False),
                            nn.Conv2d(32, 256, 5, padding=2, bias=False))
    r_d = summary(direct, (1, 128, 100, 100))
    r_r = summary(reduced, (1, 128, 100, 100))
    assert (r_d.params, r_d.macs) == (128 * 256 * 25, hw * 128 * 256 * 25)
    p = 128 * 32 + 32 * 256 * 25
    assert (r_r.params, r_r.macs) == (p, hw * p)
    assert r_d.output_shape == r_r.output_shape == (1, 256, 100, 100)


# ----------------------------------------------------- 3. the 5x5 branch alone, 28x28x192 -> 32
def test_5x5_branch_direct_vs_1x1_to_16():
    hw = 28 * 28
    direct = summary(nn.Conv2d(192, 32, 5, padding=2, bias=False), (1, 192, 28, 28))
    branch = summary(nn.Sequential(nn.Conv2d(192, 16, 1, bias=False),
                                   nn.Conv2d(16, 32, 5, padding=2, bias=False)),
                     (1, 192, 28, 28))
    assert direct.macs == hw * 32 * 192 * 25
    assert branch.macs == hw * 16 * 192 + hw * 32 * 16 * 25
    assert direct.macs > 9 * branch.macs


# ------------------------------------------- 4. ResNet bottleneck vs a plain 3x3 256->256, 56x56
def test_bottleneck_vs_plain_3x3():
    hw = 56 * 56
    block = summary(nn.Bottleneck(256, 64), (1, 256, 56, 56))
    plain = summary(nn.Conv2d(256, 256, 3, padding=1, bias=False), (1, 256, 56, 56))
    p_block = 256 * 64 + 64 * 64 * 9 + 64 * 256
    assert conv_only(block) == (p_block, hw * p_block)
    assert block.params == p_block + 2 * (64 + 64 + 256)  # + BN weight and bias
    assert (plain.params, plain.macs) == (256 * 256 * 9, hw * 256 * 256 * 9)
    assert block.output_shape == plain.output_shape == (1, 256, 56, 56)
    assert plain.macs > 8 * block.macs


# ------------------------------------------------- 5. standard 3x3 16->32 vs depthwise-separable
@pytest.mark.parametrize("hw", [(32, 32), (7, 9)])
def test_depthwise_separable_vs_standard(hw):
    h, w = hw
    std = summary(nn.Conv2d(16, 32, 3, padding=1, bias=False), (1, 16, h, w))
    sep = summary(nn.DepthwiseSeparableConv2d(16, 32, 3, padding=1, bias=False), (1, 16, h, w))
    assert (std.params, std.macs) == (16 * 32 * 9, h * w * 16 * 32 * 9)
    assert (sep.params, sep.macs) == (16 * 9 + 16 * 32, h * w * (16 * 9 + 16 * 32))
    # the textbook ratio 1/F + 1/k^2
    assert sep.macs * 9 * 32 == std.macs * (9 + 32)


# ------------------------------------------------------ 6. 5x5 vs two 3x3; 7x7 vs 1x7 + 7x1
def test_5x5_vs_two_3x3():
    c, hw = 64, 28 * 28
    five = summary(nn.Conv2d(c, c, 5, padding=2, bias=False), (1, c, 28, 28))
    two = summary(nn.StackedConv3x3(c, c, conv_block=plain_conv), (1, c, 28, 28))
    assert (five.params, five.macs) == (25 * c * c, hw * 25 * c * c)
    assert (two.params, two.macs) == (18 * c * c, hw * 18 * c * c)
    assert five.output_shape == two.output_shape


def test_7x7_vs_1x7_then_7x1():
    c, hw = 64, 17 * 17
    seven = summary(nn.Conv2d(c, c, 7, padding=3, bias=False), (1, c, 17, 17))
    asym = summary(nn.AsymmetricConv2d(c, c, 7, conv_block=plain_conv), (1, c, 17, 17))
    assert (seven.params, seven.macs) == (49 * c * c, hw * 49 * c * c)
    assert (asym.params, asym.macs) == (14 * c * c, hw * 14 * c * c)
    assert seven.output_shape == asym.output_shape


# ------------------------------------------------------------ 7. grouped conv: params fall by g
@pytest.mark.parametrize("groups", [1, 2, 4, 8, 32, 256])
def test_grouped_conv_divides_params_and_macs(groups):
    hw = 14 * 14
    rep = summary(nn.Conv2d(256, 256, 3, padding=1, groups=groups, bias=False),
                  (1, 256, 14, 14))
    full = 256 * 256 * 9
    assert rep.params * groups == full
    assert rep.macs * groups == hw * full


def test_resnext_block_vs_bottleneck():
    """ResNeXt 32x4d first-stage block: grouped 3x3 over width 128 = 32 groups x 4."""
    rep = summary(nn.ResNeXtBlock(256, 64), (1, 256, 8, 8))
    p = 256 * 128 + 128 * (128 // 32) * 9 + 128 * 256
    assert conv_only(rep) == (p, 64 * p)


def test_counts_scale_with_batch():
    one = summary(nn.Inception(192, 64, 96, 128, 16, 32, 32), (1, 192, 9, 9), count_all=True)
    three = summary(nn.Inception(192, 64, 96, 128, 16, 32, 32), (3, 192, 9, 9), count_all=True)
    assert three.params == one.params
    assert (three.macs, three.flops) == (3 * one.macs, 3 * one.flops)
    assert nnlite.is_grad_enabled()
