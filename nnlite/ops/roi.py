"""torchvision's ``roi_pool`` / ``roi_align`` and the ``RoIPool`` / ``RoIAlign`` modules.

Boxes are a (K, 5) Tensor/ndarray of rows (batch index, x1, y1, x2, y2), or a list with one
(L_i, 4) array of (x1, y1, x2, y2) per image (the list position becomes the batch index).
Coordinates are input-image pixels, (x, y) = (column, row); ``spatial_scale`` maps them onto
the feature map. Gradients flow to the input only.

Divergences from torchvision, where it has undefined behaviour: a batch index outside
[0, N) and non-finite coordinates raise ValueError (torchvision reads out of bounds); boxes
whose scaled coordinates exceed 2**24 in magnitude, or roi_align boxes whose adaptive sampling
grid would exceed 2**24 samples per (box, channel), raise ValueError instead of overflowing or
hanging.
"""
import numbers

import numpy as np

from .. import _poolgeom as geo
from .. import kernels
from ..autograd import Function
from ..nn.module import Module
from ..tensor import Tensor, as_tensor

__all__ = ["roi_pool", "roi_align", "RoIPool", "RoIAlign"]

_COORD_LIMIT = 2.0 ** 24
_SAMPLE_LIMIT = 2 ** 24


class RoIPoolFn(Function):
    """Max over each box bin (docs/semantics.md §7); backward adds gy at the argmax."""

    def forward(self, x, rois, out_hw, spatial_scale):
        y, argmax = kernels.impl("roi_pool_forward")(x, rois, out_hw, spatial_scale)
        if self.requires_grad:
            self.save_for_backward(rois, argmax)
            self.in_shape = x.shape
        return y

    def backward(self, gy):
        rois, argmax = self.saved_tensors
        return kernels.impl("roi_pool_backward")(np.ascontiguousarray(gy), rois, argmax,
                                                 self.in_shape)


class RoIAlignFn(Function):
    """Mean of bilinear samples per box bin (docs/semantics.md §8); backward is its exact
    adjoint."""

    def forward(self, x, rois, out_hw, spatial_scale, sampling_ratio, aligned):
        self.args = (spatial_scale, sampling_ratio, aligned)
        if self.requires_grad:
            self.save_for_backward(rois)
            self.in_shape = x.shape
        return kernels.impl("roi_align_forward")(x, rois, out_hw, spatial_scale, sampling_ratio,
                                                 aligned)

    def backward(self, gy):
        (rois,) = self.saved_tensors
        return kernels.impl("roi_align_backward")(np.ascontiguousarray(gy), rois, self.in_shape,
                                                  *self.args)


def _array(a):
    return a.data if isinstance(a, Tensor) else a


def _boxes_to_rois(boxes, dtype, name):
    """(K, 5) array in ``dtype`` from either boxes format (torchvision's convert_boxes_to_roi)."""
    if isinstance(boxes, (list, tuple)):
        parts = []
        for i, bx in enumerate(boxes):
            a = _array(bx)
            a = np.asarray(a, dtype=dtype) if not isinstance(a, np.ndarray) else a
            if a.ndim != 2 or a.shape[1] != 4:
                raise ValueError(f"{name}: The shape of the tensor in the boxes list is not "
                                 f"correct as List[Tensor[L, 4]]: entry {i} has shape "
                                 f"{tuple(a.shape)}")
            parts.append(np.concatenate([np.full((a.shape[0], 1), i, dtype=a.dtype), a], axis=1))
        rois = np.concatenate(parts) if parts else np.zeros((0, 5), dtype=dtype)
    elif isinstance(boxes, (Tensor, np.ndarray)):
        rois = _array(boxes)
        if rois.ndim != 2 or rois.shape[1] != 5:
            raise ValueError(f"{name}: The boxes tensor shape is not correct as Tensor[K, 5], "
                             f"got shape {tuple(rois.shape)}")
    else:
        raise TypeError(f"{name}: boxes must be a Tensor/ndarray [K, 5] or a list of [L, 4], "
                        f"got {type(boxes).__name__}")
    if rois.dtype != dtype:
        raise TypeError(f"{name}: input and rois must have the same dtype, got input {dtype} "
                        f"and boxes {rois.dtype}")
    return np.ascontiguousarray(rois)


def _validate(input, boxes, output_size, spatial_scale, name):
    x = as_tensor(input)
    if x.dtype.type not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected a float32 or float64 input, got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{name}: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name}: input H and W must be non-zero, got shape {tuple(x.shape)}")
    out_hw = geo.roi_output_size(output_size, name)
    scale = geo.check_scale(spatial_scale, name)
    rois = _boxes_to_rois(boxes, x.dtype, name)
    bad = ~np.isfinite(rois).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: box {k} has non-finite values {rois[k].tolist()}")
    b = np.trunc(rois[:, 0])  # the kernels' (int) cast
    out = (b < 0) | (b >= x.shape[0])
    if out.any():
        k = int(np.flatnonzero(out)[0])
        raise ValueError(f"{name}: box {k} has batch index {float(rois[k, 0])}, out of range for "
                         f"an input batch of {x.shape[0]}")
    scaled = rois[:, 1:].astype(np.float64) * scale
    big = (np.abs(scaled) > _COORD_LIMIT).any(axis=1)
    if big.any():
        k = int(np.flatnonzero(big)[0])
        raise ValueError(f"{name}: box {k} {rois[k, 1:].tolist()} times spatial_scale {scale} "
                         f"exceeds +-{_COORD_LIMIT:.0f}")
    return x, rois, out_hw, scale


def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    """Fast R-CNN RoI max pooling with torchvision's exact arithmetic (docs/semantics.md §7).

    Box corners are rounded half away from zero after scaling; the box is inclusive
    (width x2 - x1 + 1, at least 1); bin p spans [floor(p*bin), ceil((p+1)*bin)) in the input
    dtype, clamped to the map. Empty bins give 0; a bin with only NaN / -inf gives -FLT_MAX.
    Ties go to the first maximum in row-major order.

    Shape:
        input (N, C, H, W), boxes (K, 5) or [ (L_i, 4) ] -> (K, C, PH, PW).

    Examples:
        >>> ops.roi_pool(feat, [boxes_img0, boxes_img1], output_size=7, spatial_scale=1 / 16)
    """
    x, rois, out_hw, scale = _validate(input, boxes, output_size, spatial_scale, "roi_pool")
    return RoIPoolFn.apply(x, rois=rois, out_hw=out_hw, spatial_scale=scale)


def _check_sampling(rois, out_hw, scale, sampling_ratio, aligned, name):
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, numbers.Integral):
        raise TypeError(f"{name}: sampling_ratio must be an int, got {sampling_ratio!r}")
    if sampling_ratio > 0:
        n = int(sampling_ratio) ** 2 * out_hw[0] * out_hw[1]
        if n > _SAMPLE_LIMIT:
            raise ValueError(f"{name}: sampling_ratio {sampling_ratio} with output {out_hw} "
                             f"gives {n} samples per box and channel (limit {_SAMPLE_LIMIT})")
        return int(sampling_ratio)
    if len(rois):
        # adaptive grid ceil(roi / pooled) per axis (approximately: this is only a guard)
        s = rois[:, 1:].astype(np.float64) * scale
        size = np.maximum(s[:, 2:] - s[:, :2], 0 if aligned else 1)  # (K, 2) w, h
        grid = np.ceil(size / np.array([out_hw[1], out_hw[0]]))
        n = grid.prod(axis=1) * out_hw[0] * out_hw[1]
        if n.max() > _SAMPLE_LIMIT:
            k = int(np.argmax(n))
            raise ValueError(f"{name}: box {k} {rois[k, 1:].tolist()} needs an adaptive "
                             f"sampling grid of {int(n[k])} samples per channel (limit "
                             f"{_SAMPLE_LIMIT}); pass sampling_ratio > 0")
    return int(sampling_ratio)


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """Mask R-CNN RoIAlign with torchvision's exact arithmetic (docs/semantics.md §8).

    Each bin averages gh x gw bilinear samples (gh = sampling_ratio if > 0, else
    ceil(roi_h / PH) per box); samples outside [-1, H] x [-1, W] count as 0, samples in
    [-1, 0) snap to 0 and beyond H-1 to the last row/column. aligned=True shifts the box by
    -0.5 px (pixel centres at integers) and keeps small/reversed boxes unclamped.

    Shape:
        input (N, C, H, W), boxes (K, 5) or [ (L_i, 4) ] -> (K, C, PH, PW).

    Examples:
        >>> ops.roi_align(feat, rois, (7, 7), spatial_scale=0.25, sampling_ratio=2)
    """
    x, rois, out_hw, scale = _validate(input, boxes, output_size, spatial_scale, "roi_align")
    aligned = geo._check_bool(aligned, "aligned")
    sr = _check_sampling(rois, out_hw, scale, sampling_ratio, aligned, "roi_align")
    return RoIAlignFn.apply(x, rois=rois, out_hw=out_hw, spatial_scale=scale, sampling_ratio=sr,
                            aligned=aligned)


class RoIPool(Module):
    """``roi_pool`` as a module: ``RoIPool(output_size, spatial_scale)(input, boxes)``.

    Shape:
        input (N, C, H, W), boxes (K, 5) or list of (L_i, 4) -> (K, C, PH, PW).

    Examples:
        >>> pool = ops.RoIPool(7, 1 / 16); y = pool(feat, rois)
    """

    def __init__(self, output_size, spatial_scale):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, input, rois):
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self):
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


class RoIAlign(Module):
    """``roi_align`` as a module: ``RoIAlign(output_size, spatial_scale, sampling_ratio, aligned)``.

    Shape:
        input (N, C, H, W), boxes (K, 5) or list of (L_i, 4) -> (K, C, PH, PW).

    Examples:
        >>> align = ops.RoIAlign((7, 7), 0.25, 2); y = align(feat, rois)
    """

    def __init__(self, output_size, spatial_scale, sampling_ratio, aligned=False):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input, rois):
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                         self.aligned)

    def extra_repr(self):
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")
