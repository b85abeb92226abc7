"""The classic CNN building blocks, composed from nnlite modules (no hand-written backward).

Module and attribute names follow torchvision wherever torchvision has the block
(``BasicConv2d``/``Inception`` from GoogLeNet, ``BasicBlock``/``Bottleneck`` from ResNet,
``InvertedResidual``/``Conv2dNormActivation`` from MobileNetV2), so state_dict keys match.

# N batch, C in-ch, F out-ch, H/W in, OH/OW out
"""
import numbers

import numpy as np

from .._convgeom import conv2d_geometry
from ..autograd import _fusing_allowed, is_grad_enabled
from ..functional.conv import _conv2d_affine_relu, conv2d
from ..functional.normalization import _batch_norm, update_running_stats
from ..tensor import Tensor, cat
from .conv import Conv2d
from .layers import BatchNorm2d, ReLU, ReLU6
from .module import Module, Sequential, norm_act
from .pooling import AvgPool2d, MaxPool2d

__all__ = [
    "BasicConv2d", "Inception", "InceptionA",
    "StackedConv3x3", "AsymmetricConv2d", "GridReduction",
    "BasicBlock", "Bottleneck", "ResNeXtBlock",
    "DepthwiseSeparableConv2d", "XceptionBlock",
    "Conv2dNormActivation", "InvertedResidual",
]


def _check_positive(block, **values):
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
            raise ValueError(f"{block}: {name} must be a positive int, got {v!r}")


# --------------------------------------------------------------------------- GoogLeNet / Inception
class BasicConv2d(Module):
    """Conv2d (no bias) -> BatchNorm2d(eps=0.001) -> ReLU, as torchvision's GoogLeNet.

    Keyword arguments go to ``Conv2d``. The ReLU is applied functionally (torchvision has no
    ReLU child here), so the state_dict keys are ``conv.weight`` and ``bn.*``. In training mode
    (a plain BatchNorm2d) the ReLU runs inside the BatchNorm's node, as nn.Sequential fuses a
    BatchNorm -> ReLU pair: the same values and gradients, one pass fewer each way.

    Shape: (N, C, H, W) -> (N, F, OH, OW) with Conv2d's output size.
    """

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        y = self._eval_folded(x)
        if y is not None:
            return y
        x = self.conv(x)
        fusable = getattr(self.bn, "_relu_fusable", None)
        if fusable is not None and fusable():
            return self.bn._forward(x, relu=True)     # one BatchNorm->ReLU node (training)
        return self.bn(x).relu()

    def _eval_folded(self, x, out=None):
        """In eval mode without autograd (``nnlite.no_grad``), relu(bn(conv(x))) as ONE conv
        with the BatchNorm folded into its weights and its shift and the ReLU in the conv's
        write-out (``_conv2d_affine_relu``): the same values up to rounding, without the
        BatchNorm and ReLU passes. ``out``: see there. None when that does not apply (training
        or grad mode, not a plain Conv2d (zeros padding) and BatchNorm2d with running
        statistics, inside ``exact_ops`` (the inference tracer), or a backend other than
        'cython')."""
        conv, bn = self.conv, self.bn
        if (self.training or bn.training or is_grad_enabled() or not _fusing_allowed()
                or type(conv) is not Conv2d or type(bn) is not BatchNorm2d
                or conv.padding_mode != "zeros" or bn.running_mean is None
                or bn.running_var is None or not isinstance(x, Tensor)):
            return None
        dtype = x.dtype
        rv, rm = bn.running_var.data, bn.running_mean.data
        if dtype.kind != "f" or conv.weight.dtype != dtype or rv.dtype != dtype:
            return None
        # BatchNormFn's eval arithmetic: x * scale + shift with scale = w / sqrt(var + eps)
        scale = 1.0 / np.sqrt(rv + np.asarray(bn.eps, dtype))
        if bn.weight is not None:
            scale = scale * bn.weight.data
        shift = -rm * scale
        if bn.bias is not None:
            shift = shift + bn.bias.data
        if conv.bias is not None:
            shift = shift + conv.bias.data * scale
        y = _conv2d_affine_relu(x.data, conv.weight.data, scale, shift, conv.stride,
                                conv.padding, conv.dilation, conv.groups, out=out)
        return None if y is None else Tensor(y)


class Inception(Module):
    """GoogLeNet's Inception module: four parallel branches concatenated on channels.

    With ``reduce=True`` (torchvision's layout, same names and keys):
      branch1: 1x1 -> ch1x1;  branch2: 1x1 -> ch3x3red, 3x3 -> ch3x3;
      branch3: 1x1 -> ch5x5red, k x k -> ch5x5;  branch4: 3x3/1 max-pool, 1x1 -> pool_proj.
    ``branch3_kernel_size`` is k: torchvision uses 3 (its known deviation from the paper) and
    that is the default; pass 5 for the paper's 5x5. ``pool_proj`` of 0 or None drops the pool
    projection (branch4 then passes ``in_channels`` channels through).

    With ``reduce=False`` it is the naive module of the paper's figure (a): 1x1, 3x3 and 5x5 convs
    straight on the input plus the bare 3x3 max-pool; ``ch3x3red``, ``ch5x5red`` and ``pool_proj``
    are ignored and ``branch3_kernel_size`` defaults to 5.

    ``conv_block(cin, cout, kernel_size=..., padding=...)`` builds each conv (default
    ``BasicConv2d``). ``out_channels`` is the concatenated channel count.

    Shape: (N, C, H, W) -> (N, out_channels, H, W) for any H, W >= 1.
    """

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj,
                 conv_block=None, reduce=True, branch3_kernel_size=None):
        super().__init__()
        conv_block = BasicConv2d if conv_block is None else conv_block
        k5 = (3 if reduce else 5) if branch3_kernel_size is None else branch3_kernel_size
        if isinstance(k5, bool) or not isinstance(k5, int) or k5 < 1 or k5 % 2 == 0:
            raise ValueError(f"Inception: branch3_kernel_size must be a positive odd int "
                             f"(same-size output), got {k5!r}")
        _check_positive("Inception", in_channels=in_channels, ch1x1=ch1x1, ch3x3=ch3x3,
                        ch5x5=ch5x5)
        self.branch1 = conv_block(in_channels, ch1x1, kernel_size=1)
        pool = MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True)
        if reduce:
            _check_positive("Inception", ch3x3red=ch3x3red, ch5x5red=ch5x5red)
            self.branch2 = Sequential(
                conv_block(in_channels, ch3x3red, kernel_size=1),
                conv_block(ch3x3red, ch3x3, kernel_size=3, padding=1))
            self.branch3 = Sequential(
                conv_block(in_channels, ch5x5red, kernel_size=1),
                conv_block(ch5x5red, ch5x5, kernel_size=k5, padding=k5 // 2))
            if pool_proj:
                _check_positive("Inception", pool_proj=pool_proj)
                self.branch4 = Sequential(pool, conv_block(in_channels, pool_proj, kernel_size=1))
                pool_out = pool_proj
            else:
                self.branch4 = Sequential(pool)
                pool_out = in_channels
        else:
            self.branch2 = conv_block(in_channels, ch3x3, kernel_size=3, padding=1)
            self.branch3 = conv_block(in_channels, ch5x5, kernel_size=k5, padding=k5 // 2)
            self.branch4 = Sequential(pool)
            pool_out = in_channels
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_out

    def forward(self, x):
        y = self._eval_into_one_buffer(x)
        if y is not None:
            return y
        heads = self._pointwise_heads()
        if heads is None:
            outs = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        else:
            b1, x2, x3 = _heads_forward(heads, x)
            outs = [b1, self.branch2[1](x2), self.branch3[1](x3), self.branch4(x)]
        return cat(outs, 1)  # (N, ch1x1 + ch3x3 + ch5x5 + pool_out, H, W)

    def _eval_into_one_buffer(self, x):
        """In eval mode without autograd, when every branch ends in a BasicConv2d: each
        branch's last conv (BatchNorm and ReLU folded in, ``BasicConv2d._eval_folded``) writes
        straight into its channel range of the concatenated output, so there is no separate
        concatenation copy. None when that does not apply (see there)."""
        if self.training or is_grad_enabled() or not _fusing_allowed() \
                or not isinstance(x, Tensor) or x.ndim != 4:
            return None
        parts = []
        for branch in (self.branch1, self.branch2, self.branch3, self.branch4):
            mods = list(branch) if type(branch) is Sequential else [branch]
            if type(mods[-1]) is not BasicConv2d:
                return None
            parts.append((mods[:-1], mods[-1]))
        n, _, h, w = x.shape
        widths = [last.conv.out_channels for _, last in parts]
        out = np.empty((n, sum(widths), h * w), dtype=x.dtype)
        o = 0
        for (pre, last), f in zip(parts, widths):
            t = x
            for m in pre:
                t = m(t)
            c = last.conv
            if t.ndim != 4:
                return None
            g = conv2d_geometry(t.shape, c.weight.shape, None, c.stride, c.padding, c.dilation,
                                c.groups)
            if (g.oh, g.ow) != (h, w):
                return None
            if last._eval_folded(t, out=out[:, o:o + f]) is None:
                return None
            o += f
        return Tensor(out.reshape(n, o, h, w))

    def _pointwise_heads(self):
        """In training mode, the three BasicConv2d blocks that apply a 1x1 conv to the input
        (branch1 and the first blocks of branch2 and branch3, ``reduce=True``) when they can
        run as ONE conv + BatchNorm->ReLU node over their concatenated channels
        (``_heads_forward``): plain BasicConv2d, Conv2d 1x1 (stride 1, no padding, dilation 1,
        groups 1, no bias, zeros padding mode) and BatchNorm2d blocks with equal eps,
        affine/bias flags and dtypes. Else None (each block runs on its own)."""
        if not self.training:
            return None
        b2, b3 = self.branch2, self.branch3
        if type(b2) is not Sequential or type(b3) is not Sequential or len(b2) != 2 \
                or len(b3) != 2:
            return None
        heads = (self.branch1, b2[0], b3[0])
        bn0 = heads[0].bn if type(heads[0]) is BasicConv2d else None
        for h in heads:
            if type(h) is not BasicConv2d:
                return None
            c, bn = h.conv, h.bn
            if (type(c) is not Conv2d or c.kernel_size != (1, 1) or c.stride != (1, 1)
                    or c.padding != (0, 0) or c.dilation != (1, 1) or c.groups != 1
                    or c.padding_mode != "zeros" or c.bias is not None
                    or type(bn) is not BatchNorm2d or not bn._relu_fusable()
                    or bn.eps != bn0.eps or bn.affine != bn0.affine
                    or (bn.bias is None) != (bn0.bias is None)
                    or c.weight.dtype != heads[0].conv.weight.dtype):
                return None
        return heads


def _heads_forward(heads, x):
    """[relu(bn_i(conv_i(x))) for the three 1x1 BasicConv2d ``heads``] as one conv with the
    concatenated weights and one BatchNorm->ReLU node over the concatenated channels (a conv
    output channel and a BatchNorm channel depend only on their own weights and statistics, so
    the values and every gradient are those of the three blocks; the input gradient is one
    GEMM instead of three GEMMs and two sums). Each BatchNorm's running statistics and batch
    count are updated from its channels, with its own momentum. Returns the three channel
    ranges (views)."""
    convs = [h.conv for h in heads]
    bns = [h.bn for h in heads]
    y = conv2d(x, cat([c.weight for c in convs], 0))
    gamma = cat([bn.weight for bn in bns], 0) if bns[0].affine else None
    beta = cat([bn.bias for bn in bns], 0) if bns[0].affine and bns[0].bias is not None \
        else None
    factors = [bn._running_factor() for bn in bns]
    z, mean, var = _batch_norm(y, None, None, gamma, beta, True, 0.0, bns[0].eps, relu=True,
                               return_stats=True)
    outs, o = [], 0
    for c, bn, factor in zip(convs, bns, factors):
        n = c.out_channels
        if bn.track_running_stats and z.data.size:
            update_running_stats(bn.running_mean, bn.running_var, mean.data[o:o + n],
                                 var.data[o:o + n], factor)
        outs.append(z[:, o:o + n])
        o += n
    return outs


class InceptionA(Module):
    """The Inception block of the widely used PyTorch tutorial (plain convs with bias, no ReLU).

    Branches: 1x1 -> 16; 1x1 -> 16, 5x5 -> 24; 1x1 -> 16, 3x3 -> 24, 3x3 -> 24;
    3x3/1 avg-pool (padding 1, count_include_pad) then 1x1 -> 24. Concatenated in that order:
    88 channels for any ``in_channels``.

    Shape: (N, C, H, W) -> (N, 88, H, W).
    """

    out_channels = 88

    def __init__(self, in_channels):
        super().__init__()
        _check_positive("InceptionA", in_channels=in_channels)
        self.branch1x1 = Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_1 = Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_2 = Conv2d(16, 24, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = Conv2d(in_channels, 16, kernel_size=1)
        self.branch3x3dbl_2 = Conv2d(16, 24, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = Conv2d(24, 24, kernel_size=3, padding=1)
        self.avg_pool = AvgPool2d(kernel_size=3, stride=1, padding=1)
        self.branch_pool = Conv2d(in_channels, 24, kernel_size=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(self.avg_pool(x))
        return cat([b1, b5, b3, bp], 1)  # (N, 16 + 24 + 24 + 24, H, W)


# ----------------------------------------------------------------- Inception v2/v3 factorizations
class StackedConv3x3(Module):
    """A 5x5 conv factorized into two stacked 3x3 convs (same 5x5 receptive field).

    ``conv1``: 3x3, padding 1, C -> mid (default ``out_channels``); ``conv2``: 3x3, padding 1,
    stride ``stride``, mid -> F. Each is ``conv_block`` (default ``BasicConv2d``).

    Shape: (N, C, H, W) -> (N, F, OH, OW), OH = (H - 1) // stride + 1 — the size a 5x5 conv with
    padding 2 and the same stride gives.
    """

    def __init__(self, in_channels, out_channels, mid_channels=None, stride=1, conv_block=None):
        super().__init__()
        conv_block = BasicConv2d if conv_block is None else conv_block
        mid = out_channels if mid_channels is None else mid_channels
        _check_positive("StackedConv3x3", in_channels=in_channels, out_channels=out_channels,
                        mid_channels=mid, stride=stride)
        self.conv1 = conv_block(in_channels, mid, kernel_size=3, padding=1)
        self.conv2 = conv_block(mid, out_channels, kernel_size=3, padding=1, stride=stride)

    def forward(self, x):
        return self.conv2(self.conv1(x))


class AsymmetricConv2d(Module):
    """An n x n conv factorized into a 1 x n conv then an n x 1 conv (7x7 -> 1x7 + 7x1).

    ``conv1``: kernel (1, n), padding (0, n // 2), C -> mid (default ``out_channels``);
    ``conv2``: kernel (n, 1), padding (n // 2, 0), mid -> F. ``n`` must be odd.

    Shape: (N, C, H, W) -> (N, F, H, W).
    """

    def __init__(self, in_channels, out_channels, n=7, mid_channels=None, conv_block=None):
        super().__init__()
        conv_block = BasicConv2d if conv_block is None else conv_block
        mid = out_channels if mid_channels is None else mid_channels
        _check_positive("AsymmetricConv2d", in_channels=in_channels, out_channels=out_channels,
                        mid_channels=mid, n=n)
        if n % 2 == 0:
            raise ValueError(f"AsymmetricConv2d: n must be odd (same-size output), got {n}")
        self.conv1 = conv_block(in_channels, mid, kernel_size=(1, n), padding=(0, n // 2))
        self.conv2 = conv_block(mid, out_channels, kernel_size=(n, 1), padding=(n // 2, 0))

    def forward(self, x):
        return self.conv2(self.conv1(x))


class GridReduction(Module):
    """Inception-v3 grid-size reduction: stride-2 conv branches and a pool branch, concatenated.

    ``branch3x3``: 3x3 stride-2 conv C -> ``ch3x3``. If ``ch3x3dbl`` is given, ``branch3x3dbl``:
    1x1 -> ``ch3x3dbl_red`` (default ``ch3x3dbl``), 3x3 padding 1, 3x3 stride 2. ``branch_pool``:
    3x3 stride-2 max-pool (``pool='max'``) or avg-pool (``pool='avg'``). No padding on any
    stride-2 layer, so every branch has OH = (H - 3) // 2 + 1 for odd and even H alike.

    Shape: (N, C, H, W) -> (N, ch3x3 + ch3x3dbl + C, (H - 3) // 2 + 1, (W - 3) // 2 + 1), H, W >= 3.
    """

    def __init__(self, in_channels, ch3x3, ch3x3dbl=None, ch3x3dbl_red=None, pool="max",
                 conv_block=None):
        super().__init__()
        conv_block = BasicConv2d if conv_block is None else conv_block
        _check_positive("GridReduction", in_channels=in_channels, ch3x3=ch3x3)
        if pool not in ("max", "avg"):
            raise ValueError(f"GridReduction: pool must be 'max' or 'avg', got {pool!r}")
        self.branch3x3 = conv_block(in_channels, ch3x3, kernel_size=3, stride=2)
        self.out_channels = ch3x3 + in_channels
        if ch3x3dbl:
            red = ch3x3dbl if ch3x3dbl_red is None else ch3x3dbl_red
            _check_positive("GridReduction", ch3x3dbl=ch3x3dbl, ch3x3dbl_red=red)
            self.branch3x3dbl = Sequential(
                conv_block(in_channels, red, kernel_size=1),
                conv_block(red, ch3x3dbl, kernel_size=3, padding=1),
                conv_block(ch3x3dbl, ch3x3dbl, kernel_size=3, stride=2))
            self.out_channels += ch3x3dbl
        else:
            self.branch3x3dbl = None
        self.branch_pool = (MaxPool2d(3, stride=2) if pool == "max" else AvgPool2d(3, stride=2))

    def forward(self, x):
        outs = [self.branch3x3(x)]
        if self.branch3x3dbl is not None:
            outs.append(self.branch3x3dbl(x))
        outs.append(self.branch_pool(x))
        return cat(outs, 1)  # (N, out_channels, (H - 3) // 2 + 1, (W - 3) // 2 + 1)


# ---------------------------------------------------------------------------------------- ResNet
def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    """3x3 conv, padding = dilation, no bias (torchvision's helper)."""
    return Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
                   groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    """1x1 conv, no bias (torchvision's helper)."""
    return Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def _projection(inplanes, outplanes, stride, norm_layer):
    return Sequential(conv1x1(inplanes, outplanes, stride), norm_layer(outplanes))


class BasicBlock(Module):
    """ResNet basic block: 3x3 -> BN -> ReLU -> 3x3 -> BN, plus the shortcut, then ReLU.

    Arguments and names as torchvision. When ``downsample`` is None but the shortcut cannot be
    the identity (stride != 1 or inplanes != planes), a projection ``downsample`` =
    Sequential(1x1 conv with the stride, BN) is built — exactly the one torchvision's ResNet
    passes in, so keys agree.

    Shape: (N, inplanes, H, W) -> (N, planes, (H - 1) // stride + 1, (W - 1) // stride + 1).
    """

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None):
        super().__init__()
        norm_layer = BatchNorm2d if norm_layer is None else norm_layer
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock only supports groups=1 and base_width=64, got "
                             f"groups={groups}, base_width={base_width}")
        if dilation > 1:
            raise ValueError(f"BasicBlock does not support dilation > 1, got {dilation}")
        _check_positive("BasicBlock", inplanes=inplanes, planes=planes, stride=stride)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        if downsample is None and (stride != 1 or inplanes != planes):
            downsample = _projection(inplanes, planes, stride, norm_layer)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = norm_act(self.bn1, self.relu, self.conv1(x))    # one node in training mode
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(Module):
    """ResNet bottleneck (v1.5): 1x1 reduce -> 3x3 (stride here, grouped for ResNeXt) -> 1x1
    expand to planes * 4, each followed by BN (ReLU after the first two), plus the shortcut.

    width = int(planes * base_width / 64) * groups. Arguments and names as torchvision; a
    projection shortcut is built when needed and ``downsample`` is None (see ``BasicBlock``).

    Shape: (N, inplanes, H, W) -> (N, 4 * planes, (H - 1) // stride + 1, (W - 1) // stride + 1).
    """

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None):
        super().__init__()
        norm_layer = BatchNorm2d if norm_layer is None else norm_layer
        _check_positive("Bottleneck", inplanes=inplanes, planes=planes, stride=stride,
                        groups=groups, base_width=base_width, dilation=dilation)
        width = int(planes * (base_width / 64.0)) * groups
        if width == 0:
            raise ValueError(f"Bottleneck: width int(planes * base_width / 64) * groups is 0 "
                             f"(planes={planes}, base_width={base_width})")
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = ReLU()
        if downsample is None and (stride != 1 or inplanes != planes * self.expansion):
            downsample = _projection(inplanes, planes * self.expansion, stride, norm_layer)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = norm_act(self.bn1, self.relu, self.conv1(x))    # one node each in training mode
        out = norm_act(self.bn2, self.relu, self.conv2(out))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNeXtBlock(Bottleneck):
    """ResNeXt block: a ``Bottleneck`` whose 3x3 is grouped (``cardinality`` groups of
    ``base_width`` channels each at planes = 64). ``ResNeXtBlock(256, 64)`` is the 32x4d block
    of ResNeXt-50's first stage (256 -> 128 (1x1) -> 128 (3x3, 32 groups) -> 256).

    Shape: as ``Bottleneck``.
    """

    def __init__(self, inplanes, planes, stride=1, cardinality=32, base_width=4,
                 downsample=None, norm_layer=None):
        super().__init__(inplanes, planes, stride, downsample, groups=cardinality,
                         base_width=base_width, norm_layer=norm_layer)


# ---------------------------------------------------------------------- depthwise separable convs
class DepthwiseSeparableConv2d(Module):
    """A k x k conv factorized as a depthwise k x k conv (groups = C) and a pointwise 1x1 conv.

    ``depthwise`` = Conv2d(C, C * depth_multiplier, kernel_size, stride, padding, dilation,
    groups=C, bias=bias, padding_mode=padding_mode); ``pointwise`` = Conv2d(C * depth_multiplier,
    F, 1, bias=bias). With the defaults nothing sits in between — Xception found no intermediate
    nonlinearity best, and the block then equals the two convs in sequence. ``mid_norm=True``
    inserts ``bn`` (BatchNorm2d) and ``mid_activation=True`` inserts ``relu`` between them
    (MobileNet v1 style).

    Params: C*m*kH*kW (+ C*m bias) + C*m*F (+ F bias), versus C*F*kH*kW for the full conv.

    Shape: (N, C, H, W) -> (N, F, OH, OW) with the Conv2d output size of the depthwise conv.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, depth_multiplier=1, padding_mode="zeros", mid_norm=False,
                 mid_activation=False):
        super().__init__()
        _check_positive("DepthwiseSeparableConv2d", in_channels=in_channels,
                        out_channels=out_channels, depth_multiplier=depth_multiplier)
        mid = in_channels * depth_multiplier
        self.depthwise = Conv2d(in_channels, mid, kernel_size, stride=stride, padding=padding,
                                 dilation=dilation, groups=in_channels, bias=bias,
                                 padding_mode=padding_mode)
        self.bn = BatchNorm2d(mid) if mid_norm else None
        self.relu = ReLU() if mid_activation else None
        self.pointwise = Conv2d(mid, out_channels, 1, bias=bias)

    def forward(self, x):
        x = self.depthwise(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return self.pointwise(x)


class XceptionBlock(Module):
    """An Xception module: ``reps`` x (ReLU -> 3x3 separable conv -> BN), then a 3x3 stride-2
    max-pool when ``stride`` is 2, added to a shortcut (1x1 conv with the stride + BN when the
    shape changes, else the identity).

    ``start_with_relu=False`` drops the first ReLU (the entry-flow block after the stem);
    ``grow_first`` puts the channel change in the first separable conv (else in the last).
    Separable convs have no bias and no nonlinearity between depthwise and pointwise.

    Shape: (N, C, H, W) -> (N, F, (H - 1) // stride + 1, (W - 1) // stride + 1).
    """

    def __init__(self, in_channels, out_channels, reps=2, stride=1, start_with_relu=True,
                 grow_first=True):
        super().__init__()
        _check_positive("XceptionBlock", in_channels=in_channels, out_channels=out_channels,
                        reps=reps)
        if stride not in (1, 2):
            raise ValueError(f"XceptionBlock: stride must be 1 or 2, got {stride!r}")
        if out_channels != in_channels or stride != 1:
            self.skip = Sequential(Conv2d(in_channels, out_channels, 1, stride=stride,
                                           bias=False), BatchNorm2d(out_channels))
        else:
            self.skip = None
        layers = []
        for i in range(reps):
            if grow_first:  # in -> out, then out -> out
                cin, cout = (in_channels if i == 0 else out_channels), out_channels
            else:  # in -> in, ..., then in -> out
                cin, cout = in_channels, (out_channels if i == reps - 1 else in_channels)
            if i > 0 or start_with_relu:
                layers.append(ReLU())
            layers.append(DepthwiseSeparableConv2d(cin, cout, 3, padding=1, bias=False))
            layers.append(BatchNorm2d(cout))
        if stride != 1:
            layers.append(MaxPool2d(3, stride=stride, padding=1))
        self.rep = Sequential(*layers)

    def forward(self, x):
        identity = x if self.skip is None else self.skip(x)
        return self.rep(x) + identity


# ------------------------------------------------------------------------------------ MobileNetV2
class Conv2dNormActivation(Sequential):
    """Sequential(Conv2d, BatchNorm2d, activation) as torchvision.ops.Conv2dNormActivation
    (children "0", "1", "2"). padding defaults to (kernel_size - 1) // 2 * dilation; the conv has
    a bias only when ``norm_layer`` is None. ``activation_layer=None`` omits the activation.

    Shape: (N, C, H, W) -> (N, F, OH, OW) with the Conv2d output size.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None,
                 groups=1, norm_layer="default", activation_layer="default", dilation=1,
                 bias=None):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        norm_layer = BatchNorm2d if norm_layer == "default" else norm_layer
        activation_layer = ReLU if activation_layer == "default" else activation_layer
        if bias is None:
            bias = norm_layer is None
        layers = [Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                          dilation=dilation, groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer())
        super().__init__(*layers)
        self.out_channels = out_channels


class InvertedResidual(Module):
    """MobileNetV2 block: 1x1 expand (x ``expand_ratio``) -> BN -> ReLU6, depthwise 3x3 (stride)
    -> BN -> ReLU6, linear 1x1 projection -> BN; plus the input when stride == 1 and inp == oup.

    Names as torchvision (``conv`` = Sequential of Conv2dNormActivation(s), Conv2d, BatchNorm2d);
    the expansion layer is omitted when ``expand_ratio`` is 1.

    Shape: (N, inp, H, W) -> (N, oup, (H - 1) // stride + 1, (W - 1) // stride + 1).
    """

    def __init__(self, inp, oup, stride, expand_ratio, norm_layer=None):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride should be 1 or 2, got {stride!r}")
        _check_positive("InvertedResidual", inp=inp, oup=oup)
        if not expand_ratio > 0:
            raise ValueError(f"InvertedResidual: expand_ratio must be > 0, got {expand_ratio!r}")
        norm_layer = BatchNorm2d if norm_layer is None else norm_layer
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden_dim, kernel_size=1,
                                               norm_layer=norm_layer, activation_layer=ReLU6))
        layers += [
            Conv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim,
                                 norm_layer=norm_layer, activation_layer=ReLU6),
            Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            norm_layer(oup),
        ]
        self.conv = Sequential(*layers)
        self.out_channels = oup

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)
