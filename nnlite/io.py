"""Weights in and out: ``nnlite.save(state_dict, path)`` / ``nnlite.load(path)`` as ``.npz``.

The file is a plain NumPy ``.npz`` archive (a zip of ``.npy`` members, one per state_dict key,
in state_dict order). Object arrays are refused when saving and every load uses
``allow_pickle=False``, so loading an untrusted file runs no code from it. The mapping that
``load`` returns goes straight into ``Module.load_state_dict``.
"""
import os
import struct
import tempfile
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

__all__ = ["save", "load"]

_MAGIC = b"\x93NUMPY"


def _as_array(key, value):
    from .tensor import Tensor

    if isinstance(value, Tensor):
        arr = value.data
    elif isinstance(value, np.ndarray):
        arr = value
    elif hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        arr = value.detach().cpu().numpy()
    elif isinstance(value, (int, float, bool, np.generic)):
        arr = np.asarray(value)
    else:
        raise TypeError(f"nnlite.save: value for key {key!r} is a {type(value).__name__}; "
                        "only arrays, Tensors and numbers can be saved")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"nnlite.save: value for key {key!r} has dtype {arr.dtype}; only "
                        "bool, integer and floating arrays are saved (no pickled objects)")
    return arr


def save(state_dict, path):
    """Write ``state_dict`` (name -> ndarray/Tensor) to ``path`` as an uncompressed ``.npz``.

    ``path`` is used exactly as given (no ``.npz`` is appended) and is replaced atomically; a
    writable binary file object is also accepted. Keys must be non-empty strings without '/'.

    Shape: every array keeps its shape and dtype (0-d arrays such as BatchNorm's
    ``num_batches_tracked`` included).
    """
    from .nn.module import Module

    if isinstance(state_dict, Module):
        raise TypeError("nnlite.save expects a state_dict, not a Module: "
                        "use nnlite.save(model.state_dict(), path)")
    if not hasattr(state_dict, "items"):
        raise TypeError(f"nnlite.save expects a mapping name -> array, got "
                        f"{type(state_dict).__name__}")
    arrays = OrderedDict()
    for key, value in state_dict.items():
        if not isinstance(key, str) or not key or "/" in key or "\\" in key:
            raise TypeError(f"nnlite.save: keys must be non-empty strings without '/' or '\\', "
                            f"got {key!r}")
        arrays[key] = _as_array(key, value)
    if hasattr(path, "write"):
        _write(path, arrays)
        return
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nnlite-", suffix=".npz.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            _write(fh, arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write(fh, arrays):
    # np.savez with allow_pickle=False via the format writer: one .npy member per key, in order
    with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in arrays.items():
            with zf.open(key + ".npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _check_member_size(fh, file_size):
    """ValueError unless the .npy header's shape x itemsize equals the bytes the member holds.

    Checked before ``read_array`` allocates: a corrupt or hostile header claiming terabytes
    must not reach the allocator (numpy allocates the claimed size before reading).
    """
    if fh.read(len(_MAGIC)) != _MAGIC:
        raise ValueError("missing .npy header")
    version = tuple(fh.read(2))
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, _, dtype = readers[version](fh)
    if dtype.hasobject:
        raise ValueError("the array holds pickled Python objects")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = file_size - (len(_MAGIC) + 2) - _header_length(fh)
    if need != have:
        raise ValueError(f"its header declares shape {tuple(shape)} of {dtype} ({need} bytes) "
                         f"but the member holds {have} bytes of data")


def _header_length(fh):
    # bytes consumed by the header-length field and the header itself (fh is positioned just
    # after the header; ZipExtFile.tell() counts from the member's start)
    return fh.tell() - (len(_MAGIC) + 2)


def load(path):
    """Read a ``.npz`` written by ``nnlite.save`` (or ``np.savez``) into an OrderedDict.

    Loading never unpickles: a member holding an object array, a non-``.npy`` member (e.g. a
    PyTorch ``.pt`` checkpoint, which is also a zip), a truncated or corrupt archive, or a file
    that is not an ``.npz`` at all raises ``ValueError`` naming the file and the problem.

    Shape: each value is an ndarray with the saved shape and dtype.
    """
    if hasattr(path, "read"):
        name = str(getattr(path, "name", "<file object>"))
    else:
        name = os.fspath(path)
        if not os.path.exists(name):
            raise FileNotFoundError(f"nnlite.load: no such file: {name!r}")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"nnlite.load: {name!r} is not an .npz weights file "
                         f"(not a zip archive: {exc})") from None
    out = OrderedDict()
    with zf:
        members = zf.namelist()
        if any(m.endswith("data.pkl") for m in members):
            raise ValueError(f"nnlite.load: {name!r} looks like a PyTorch checkpoint (it holds "
                             "pickled data); convert it first with "
                             "`python -m nnlite.convert CHECKPOINT.pt OUT.npz`")
        for member in members:
            if not member.endswith(".npy"):
                raise ValueError(f"nnlite.load: {name!r} has a member {member!r} that is not an "
                                 ".npy array; not an nnlite weights file")
            key = member[:-4]
            try:
                with zf.open(member) as fh:
                    _check_member_size(fh, zf.getinfo(member).file_size)
                with zf.open(member) as fh:
                    arr = np.lib.format.read_array(fh, allow_pickle=False)
            except ValueError as exc:
                if "pickle" in str(exc).lower():
                    raise ValueError(f"nnlite.load: {name!r}: entry {key!r} holds pickled "
                                     "objects; refusing to unpickle (only numeric arrays are "
                                     "loaded)") from None
                raise ValueError(f"nnlite.load: {name!r}: entry {key!r} is corrupt or "
                                 f"truncated ({exc})") from None
            except (zipfile.BadZipFile, EOFError, OSError, SyntaxError, TypeError, KeyError,
                    struct.error, zlib.error) as exc:
                raise ValueError(f"nnlite.load: {name!r}: entry {key!r} is corrupt or "
                                 f"truncated ({exc})") from None
            if arr.dtype.kind not in "biuf":
                raise ValueError(f"nnlite.load: {name!r}: entry {key!r} has unsupported dtype "
                                 f"{arr.dtype}")
            out[key] = arr
    return out
