"""Images in: ``load_image`` and the torchvision transforms ``Resize``, ``CenterCrop``,
``ToTensor``, ``Normalize`` and ``Compose`` (same names, arguments and results), on Pillow.

Needs the optional Pillow package (``pip install nnlite[images]``); ``import nnlite.vision``
raises an ImportError saying so when it is missing. The core of nnlite does not import this
module.

>>> from nnlite import vision as V
>>> tf = V.Compose([V.Resize(256), V.CenterCrop(224), V.ToTensor(),
...                 V.Normalize(V.IMAGENET_MEAN, V.IMAGENET_STD)])
>>> x = tf(V.load_image("cat.jpg"))          # nnlite.Tensor (3, 224, 224) float32

Semantics follow torchvision's ``transforms`` on PIL images:

- ``Resize(256)`` scales the shorter side to 256 and the longer one to
  ``int(256 * long / short)`` (truncation), capped by ``max_size``; ``Resize((h, w))`` sets both.
  Resampling is Pillow's ``Image.resize`` (bilinear by default), which always antialiases when
  shrinking: ``antialias=False`` is ignored with a warning, as in torchvision.
- ``CenterCrop`` starts the crop at ``int(round((H - h) / 2.0))`` (Python rounds halves to even)
  and first pads with zeros, split ``(d // 2, (d + 1) // 2)``, when the crop is larger.
- ``ToTensor`` maps 8-bit modes (1, L, LA, P, RGB, RGBA, CMYK, YCbCr, ...) to float32 in [0, 1]
  laid out (C, H, W); 32-bit ``I`` and ``F`` images keep their values (int32, float32). 16-bit
  ``I;16`` images keep their values too, as int32 (torchvision reads them as int16, which
  wraps values above 32767).
- ``Normalize`` computes ``(x - mean) / std`` per channel in the tensor's float dtype.
"""
import numbers
import os
import struct
import warnings

import numpy as np

try:
    from PIL import Image, UnidentifiedImageError
except ImportError:  # pragma: no cover - depends on the installation
    raise ImportError("nnlite.vision needs Pillow: pip install nnlite[images]") from None

from ._imagefiles import IMAGE_EXTENSIONS, is_image_path  # noqa: F401
from .tensor import Tensor

__all__ = ["load_image", "UnreadableImageError", "Resize", "CenterCrop", "ToTensor",
           "Normalize", "Compose", "IMAGENET_MEAN", "IMAGENET_STD", "imagenet_transform",
           "IMAGE_EXTENSIONS", "is_image_path", "load_batch", "resized_size"]

#: Per-channel mean and std of ImageNet RGB images in [0, 1] (torchvision's pretrained models).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


class UnreadableImageError(ValueError):
    """A file that is not a readable image (corrupt, truncated, not an image, too large).
    ``path`` is the file and ``reason`` says what is wrong."""

    def __init__(self, path, reason):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path!r} is not a readable image: {reason}")


def load_image(path, mode="RGB"):
    """Read the image file ``path`` fully into a PIL image, converted to ``mode`` (``"RGB"``
    like torchvision's ImageFolder loader; ``None`` keeps the file's own mode).

    Raises ``FileNotFoundError`` for a missing file and ``UnreadableImageError`` (a ValueError)
    naming the file for anything Pillow cannot decode completely: not an image, a corrupt or
    truncated file, or more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` allows (decompression
    bombs). No EXIF rotation is applied (as in torchvision).
    """
    try:
        fspath = os.fspath(path)
    except TypeError:
        raise TypeError(f"load_image expects a file path, got {type(path).__name__}") from None
    if mode is not None and not isinstance(mode, str):
        raise TypeError(f"load_image: mode must be a PIL mode string or None, got {mode!r}")
    if not os.path.exists(fspath):
        raise FileNotFoundError(f"no such image file: {fspath!r}")
    if os.path.isdir(fspath):
        raise UnreadableImageError(fspath, "it is a directory")
    try:
        with Image.open(fspath) as img:
            img.load()                      # decode now: truncation shows here, not later
            if mode is not None and img.mode != mode:
                out = img.convert(mode)
            else:
                out = img.copy()
    except UnidentifiedImageError:
        raise UnreadableImageError(fspath, "not an image file Pillow recognises") from None
    except Image.DecompressionBombError as exc:
        raise UnreadableImageError(fspath, f"too many pixels ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
            struct.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            reason = f"truncated file ({reason})"
        else:
            reason = f"corrupt image data ({reason})"
        raise UnreadableImageError(fspath, reason) from None
    return out


def _is_pil(img):
    return isinstance(img, Image.Image)


def _check_size(size, name, allow_none=False):
    """``size`` as a tuple of 1 or 2 positive ints (or None when allowed)."""
    if size is None and allow_none:
        return None
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (int(size),)
    elif isinstance(size, (list, tuple)) and len(size) in (1, 2) and all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in size):
        size = tuple(int(s) for s in size)
    else:
        raise TypeError(f"{name}: size must be an int or a sequence of 1 or 2 ints, got "
                        f"{size!r}")
    if any(s <= 0 for s in size):
        raise ValueError(f"{name}: size must be positive, got {size!r}")
    return size


def resized_size(height, width, size, max_size=None):
    """The (height, width) ``Resize(size, max_size=max_size)`` gives an ``height x width``
    image (torchvision's rule: the shorter side becomes ``size``, the longer
    ``int(size * long / short)``; then both shrink so the longer is at most ``max_size``).
    ``size=None`` scales the longer side to ``max_size``."""
    if size is None:
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = int(max_size * short / long), max_size
    elif len(size) == 1:
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = size[0], int(size[0] * long / short)
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    else:
        return size[0], size[1]
    return (new_long, new_short) if width <= height else (new_short, new_long)


class Resize:
    """Resize a PIL image (torchvision ``transforms.Resize``).

    Args:
        size: an int or ``[s]``: the shorter side becomes ``s`` (aspect kept, the longer side
            ``int(s * long / short)``); ``(h, w)``: exactly that; ``None``: only ``max_size``.
        interpolation: ``"bilinear"`` (default), ``"nearest"``, ``"bicubic"``, ``"box"``,
            ``"hamming"``, ``"lanczos"``, or a ``PIL.Image.Resampling`` value.
        max_size: the longer side is capped at this (only with an int/``[s]``/None size);
            must exceed ``s``.
        antialias: kept for torchvision compatibility; Pillow always antialiases when
            shrinking, so anything but True is ignored with a warning (as torchvision does
            for PIL images).

    An image already at the target size is returned as is.
    """

    def __init__(self, size, interpolation="bilinear", max_size=None, antialias=True):
        self.size = _check_size(size, "Resize", allow_none=True)
        if max_size is not None:
            if isinstance(max_size, bool) or not isinstance(max_size, numbers.Integral):
                raise TypeError(f"Resize: max_size must be an int or None, got {max_size!r}")
            if self.size is not None and len(self.size) == 2:
                raise ValueError("Resize: max_size applies only when size is an int, a "
                                 f"sequence of length 1 or None; got size={size!r}")
            if self.size is not None and max_size <= self.size[0]:
                raise ValueError(f"Resize: max_size = {max_size} must be strictly greater than "
                                 f"the requested size for the smaller edge size = {size}")
        elif self.size is None:
            raise ValueError("Resize: size=None needs max_size")
        if isinstance(interpolation, str):
            if interpolation.lower() not in _RESAMPLE:
                raise ValueError(f"Resize: unknown interpolation {interpolation!r}; expected one "
                                 f"of {sorted(_RESAMPLE)}")
            self._resample = _RESAMPLE[interpolation.lower()]
            self.interpolation = interpolation.lower()
        else:
            try:
                self._resample = Image.Resampling(interpolation)
            except ValueError:
                raise ValueError(f"Resize: unknown interpolation {interpolation!r}") from None
            self.interpolation = self._resample.name.lower()
        if antialias is not True:
            warnings.warn("Resize: Pillow always antialiases when shrinking; antialias="
                          f"{antialias!r} is ignored (as torchvision does for PIL images)",
                          UserWarning, stacklevel=2)
        self.max_size = None if max_size is None else int(max_size)
        self.antialias = antialias
        self._size_arg = size

    def __call__(self, img):
        if not _is_pil(img):
            raise TypeError(f"Resize works on PIL images (apply it before ToTensor), got "
                            f"{type(img).__name__}")
        h, w = resized_size(img.height, img.width, self.size, self.max_size)
        if (h, w) == (img.height, img.width):
            return img
        if min(h, w) < 1:
            raise ValueError(f"Resize: a {img.width}x{img.height} image would become {w}x{h}")
        return img.resize((w, h), self._resample)

    def __repr__(self):
        return (f"Resize(size={self._size_arg}, interpolation={self.interpolation}, "
                f"max_size={self.max_size}, antialias={self.antialias})")


class CenterCrop:
    """Crop the centre (torchvision ``transforms.CenterCrop``): ``size`` an int (square) or
    ``(h, w)``. The crop starts at ``int(round((H - h) / 2.0))``, ``int(round((W - w) / 2.0))``;
    a crop larger than the image zero-pads it first (``(d // 2, (d + 1) // 2)`` before/after).
    Works on PIL images and on arrays/Tensors shaped (..., H, W)."""

    def __init__(self, size):
        size = _check_size(size, "CenterCrop")
        self.size = size * 2 if len(size) == 1 else size

    @staticmethod
    def _padding(height, width, th, tw):
        """(left, top, right, bottom) zero padding so that a th x tw crop fits."""
        return ((tw - width) // 2 if tw > width else 0,
                (th - height) // 2 if th > height else 0,
                (tw - width + 1) // 2 if tw > width else 0,
                (th - height + 1) // 2 if th > height else 0)

    def __call__(self, img):
        th, tw = self.size
        if _is_pil(img):
            width, height = img.size
        elif isinstance(img, (np.ndarray, Tensor)):
            if img.ndim < 2:
                raise ValueError(f"CenterCrop: expected (..., H, W), got shape {img.shape}")
            height, width = img.shape[-2:]
        else:
            raise TypeError(f"CenterCrop expects a PIL image, ndarray or Tensor, got "
                            f"{type(img).__name__}")
        if th > height or tw > width:
            left, top, right, bottom = self._padding(height, width, th, tw)
            img = self._pad(img, left, top, right, bottom)
            height, width = height + top + bottom, width + left + right
            if (height, width) == (th, tw):
                return img
        top = int(round((height - th) / 2.0))
        left = int(round((width - tw) / 2.0))
        if _is_pil(img):
            return img.crop((left, top, left + tw, top + th))
        out = img[..., top:top + th, left:left + tw]
        return Tensor(out.data.copy()) if isinstance(out, Tensor) else out.copy()

    @staticmethod
    def _pad(img, left, top, right, bottom):
        if _is_pil(img):
            out = Image.new(img.mode, (img.width + left + right, img.height + top + bottom), 0)
            if img.mode in ("P", "PA"):
                out.putpalette(img.getpalette())
            out.paste(img, (left, top))
            return out
        data = img.data if isinstance(img, Tensor) else img
        pad = [(0, 0)] * (data.ndim - 2) + [(top, bottom), (left, right)]
        out = np.pad(data, pad)
        return Tensor(out) if isinstance(img, Tensor) else out

    def __repr__(self):
        return f"CenterCrop(size={self.size})"


class ToTensor:
    """PIL image or (H, W[, C]) ndarray -> (C, H, W) ``nnlite.Tensor`` (torchvision
    ``transforms.ToTensor``). 8-bit data becomes float32 / 255 (mode ``"1"`` gives 0 or 1);
    other data keeps its values and dtype (``I``: int32, ``F``: float32, ``I;16``: int32)."""

    def __call__(self, pic):
        if _is_pil(pic):
            bands = len(pic.getbands())
            if pic.mode == "1":
                arr = np.array(pic, dtype=np.uint8) * np.uint8(255)
            elif pic.mode.startswith("I;16"):
                arr = np.array(pic).astype(np.int32)
            else:
                arr = np.array(pic)
            arr = arr.reshape(pic.height, pic.width, bands)
        elif isinstance(pic, np.ndarray):
            if pic.ndim not in (2, 3):
                raise ValueError(f"ToTensor: an ndarray must be (H, W) or (H, W, C), got "
                                 f"{pic.ndim} dimensions {pic.shape}")
            arr = pic[:, :, None] if pic.ndim == 2 else pic
        else:
            raise TypeError(f"ToTensor expects a PIL image or an ndarray, got "
                            f"{type(pic).__name__}")
        chw = np.ascontiguousarray(arr.transpose(2, 0, 1))
        if chw.dtype == np.uint8:
            chw = chw.astype(np.float32) / np.float32(255)
        elif chw.dtype.byteorder not in ("=", "|"):
            chw = chw.astype(chw.dtype.newbyteorder("="))
        return Tensor(chw)

    def __repr__(self):
        return "ToTensor()"


class Normalize:
    """``(x - mean) / std`` per channel of a float (..., C, H, W) Tensor or ndarray, in its
    dtype (torchvision ``transforms.Normalize``). ``mean``/``std``: a number or one value per
    channel. A copy is returned unless ``inplace`` (then ``x`` itself is changed and returned).
    ``std`` with a zero (after conversion to the tensor's dtype) raises ValueError."""

    def __init__(self, mean, std, inplace=False):
        self.mean = tuple(np.atleast_1d(np.asarray(mean, dtype=np.float64)).tolist())
        self.std = tuple(np.atleast_1d(np.asarray(std, dtype=np.float64)).tolist())
        if np.ndim(mean) > 1 or np.ndim(std) > 1:
            raise ValueError(f"Normalize: mean and std must be numbers or 1-D sequences, got "
                             f"mean={mean!r}, std={std!r}")
        self.inplace = bool(inplace)

    def __call__(self, tensor):
        if isinstance(tensor, Tensor):
            data = tensor.data
        elif isinstance(tensor, np.ndarray):
            data = tensor
        else:
            raise TypeError(f"Normalize expects a Tensor or ndarray, got "
                            f"{type(tensor).__name__}")
        if data.dtype.kind != "f":
            raise TypeError(f"Normalize: input should be a float tensor, got {data.dtype}")
        if data.ndim < 3:
            raise ValueError(f"Normalize: expected a tensor image of size (..., C, H, W), got "
                             f"shape {data.shape}")
        c = data.shape[-3]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if len(v) not in (1, c):
                raise ValueError(f"Normalize: {name} has {len(v)} values for {c} channels: "
                                 f"{list(v)}")
        mean = np.asarray(self.mean, dtype=data.dtype).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=data.dtype).reshape(-1, 1, 1)
        if (std == 0).any():
            raise ValueError(f"Normalize: std {list(self.std)} evaluated to zero after "
                             f"conversion to {data.dtype}, leading to division by zero")
        if self.inplace:
            np.subtract(data, mean, out=data)
            np.divide(data, std, out=data)
            return tensor
        out = (data - mean) / std
        return Tensor(out) if isinstance(tensor, Tensor) else out

    def __repr__(self):
        return f"Normalize(mean={list(self.mean)}, std={list(self.std)})"


class Compose:
    """Apply ``transforms`` in order (torchvision ``transforms.Compose``)."""

    def __init__(self, transforms):
        transforms = list(transforms)
        for t in transforms:
            if not callable(t):
                raise TypeError(f"Compose: {t!r} is not callable")
        self.transforms = transforms

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"Compose({body}\n)"


def imagenet_transform(size=224, resize_size=None):
    """The ImageNet evaluation pipeline of torchvision's classifiers: ``Resize(resize_size)``
    (default ``int(size * 256 / 224)``: 256 for 224) -> ``CenterCrop(size)`` -> ``ToTensor`` ->
    ``Normalize(IMAGENET_MEAN, IMAGENET_STD)``."""
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"imagenet_transform: size must be a positive int, got {size!r}")
    if resize_size is None:
        resize_size = int(size * 256 / 224)
    return Compose([Resize(resize_size), CenterCrop(size), ToTensor(),
                    Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def load_batch(path, size=224):
    """The image file ``path`` as a (1, 3, size, size) float32 batch, prepared like torchvision's
    ImageNet classifiers expect (``imagenet_transform(size)`` on ``load_image(path)``)."""
    x = imagenet_transform(size)(load_image(path))
    return x.data[None]
