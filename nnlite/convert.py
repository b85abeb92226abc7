"""Convert a PyTorch/torchvision checkpoint into an nnlite ``.npz`` weights file.

    python -m nnlite.convert CHECKPOINT.pt OUT.npz [--key state_dict] [--model resnet18]

Reads a state_dict file (``torch.save(model.state_dict(), path)``), a training checkpoint
holding one (``{"state_dict": ..., "epoch": ...}``; pick the entry with ``--key`` when it is not
found automatically), a TorchScript file (``torch.jit.save``) or a whole pickled module
(``torch.save(model, path)``). Whole modules can only be read by unpickling, which runs code from
the file, so that needs ``--trust-pickle``. torch is needed only here, never by nnlite itself.
A ``module.`` prefix left by DataParallel is removed when every key carries it. ``--model NAME``
checks that the result loads strictly into ``nnlite.models.NAME()``.
"""
import argparse
import os
import re
import sys
import warnings
import zipfile
from collections import OrderedDict

import numpy as np

_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "weights",
                   "params", "model_ema", "ema")


class ConvertError(Exception):
    """A checkpoint that cannot be converted (message says why)."""


def _import_torch():
    try:
        import torch
    except ImportError:
        raise ConvertError("nnlite.convert needs PyTorch to read .pt checkpoints "
                           "(pip install torch); nnlite itself does not need torch, and the "
                           ".npz it writes loads without it") from None
    return torch


def _is_tensor_map(obj, torch):
    return (isinstance(obj, dict) and len(obj) > 0
            and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def _read(path, torch, trust_pickle):
    """The object stored in ``path`` (weights_only first; modules only with ``trust_pickle``)."""
    if not os.path.exists(path):
        raise ConvertError(f"no such file: {path!r}")
    with open(path, "rb") as fh:
        head = fh.read(2)
    if not zipfile.is_zipfile(path) and not head.startswith(b"\x80"):
        raise ConvertError(f"{path!r} is not a PyTorch checkpoint (neither a torch.save zip "
                           "archive nor a legacy pickle)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - classify torch's many failure modes below
        first = exc
    try:  # TorchScript archives are read without unpickling Python objects
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(path, map_location="cpu")
    except Exception:  # noqa: BLE001
        pass
    reason = re.sub(r"\x1b\[[0-9;]*m", "", str(first)).strip().splitlines()
    if not trust_pickle:
        raise ConvertError(
            f"{path!r} could not be read as plain tensors ({type(first).__name__}: "
            f"{reason[0] if reason else ''}). If it is a whole pickled "
            "module (torch.save(model, ...)), reading it executes code from the file: rerun "
            "with --trust-pickle only if you trust its source, or save model.state_dict() "
            "instead.")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ConvertError(f"could not read {path!r} with torch.load: "
                           f"{type(exc).__name__}: {exc}") from None


def extract_state_dict(obj, torch, key=None):
    """The name -> torch.Tensor mapping inside a loaded checkpoint object."""
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if key is not None:
        for part in key.split("."):
            if not isinstance(obj, dict) or part not in obj:
                have = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
                raise ConvertError(f"--key {key!r}: no entry {part!r} (have {have})")
            obj = obj[part]
        if isinstance(obj, torch.nn.Module):
            return obj.state_dict()
        if not _is_tensor_map(obj, torch):
            raise ConvertError(f"--key {key!r} does not select a mapping of names to tensors")
        return obj
    if _is_tensor_map(obj, torch):
        return obj
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        nested = [k for k in _CONTAINER_KEYS if k in obj and (
            _is_tensor_map(obj[k], torch) or isinstance(obj[k], torch.nn.Module))]
        if nested:
            return extract_state_dict(obj[nested[0]], torch)
        if tensors and all(isinstance(k, str) for k in tensors):
            others = sorted(str(k) for k in obj if k not in tensors)
            print(f"note: ignoring non-tensor entries {others}", file=sys.stderr)
            return tensors
        raise ConvertError(f"no state_dict found in the checkpoint (top-level keys: "
                           f"{sorted(map(str, obj))}); choose one with --key")
    raise ConvertError(f"the checkpoint holds a {type(obj).__name__}, not a state_dict or a "
                       "module")


def to_numpy(state_dict, torch):
    """OrderedDict name -> ndarray; floats narrower than 32 bits (half, bfloat16, the float8
    kinds) become float32 (nnlite computes in 32/64); sparse tensors are made dense."""
    out = OrderedDict()
    prefix = "module."
    strip = len(state_dict) > 0 and all(k.startswith(prefix) for k in state_dict)
    for k, t in state_dict.items():
        name = k[len(prefix):] if strip else k
        t = t.detach().cpu()
        if t.is_quantized:
            raise ConvertError(f"{k!r} is a quantized tensor; nnlite loads float weights only "
                               "(dequantize before saving)")
        if t.is_complex():
            raise ConvertError(f"{k!r} is complex ({t.dtype}); not supported")
        if t.layout != torch.strided:
            try:
                t = t.to_dense()
            except (RuntimeError, TypeError) as exc:
                raise ConvertError(f"{k!r}: a {t.layout} tensor that cannot be made dense "
                                   f"({exc})") from None
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            t = t.float()
        try:
            out[name] = np.array(t.numpy(), copy=True)
        except (RuntimeError, TypeError) as exc:
            raise ConvertError(f"{k!r}: dtype {t.dtype} has no NumPy equivalent ({exc})") \
                from None
    return out


def convert(checkpoint, out_path, key=None, trust_pickle=False, model=None):
    """Convert ``checkpoint`` to ``out_path``; returns the OrderedDict of arrays written."""
    torch = _import_torch()
    obj = _read(checkpoint, torch, trust_pickle)
    arrays = to_numpy(extract_state_dict(obj, torch, key), torch)
    if model is not None:
        check_model(arrays, model)
    from .io import save

    save(arrays, out_path)
    return arrays


def check_model(arrays, name):
    """Load ``arrays`` strictly into ``nnlite.models.<name>()`` (raises on any mismatch)."""
    import nnlite.models as models

    factory = getattr(models, name, None)
    if not callable(factory):
        raise ConvertError(f"--model: nnlite.models has no model {name!r}")
    try:
        factory().load_state_dict(arrays, strict=True)
    except (KeyError, ValueError) as exc:
        raise ConvertError(f"the weights do not fit nnlite.models.{name}(): {exc}") from None


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m nnlite.convert",
                                description="Convert a PyTorch checkpoint to an nnlite .npz")
    p.add_argument("checkpoint", help="a .pt/.pth file: state_dict, checkpoint dict, "
                   "TorchScript, or pickled module (with --trust-pickle)")
    p.add_argument("out", help="output .npz path")
    p.add_argument("--key", default=None, help="dotted key of the state_dict inside a "
                   "checkpoint dict (default: found automatically)")
    p.add_argument("--model", default=None, help="check the weights load into this built-in "
                   "nnlite model (e.g. resnet18)")
    p.add_argument("--trust-pickle", action="store_true", help="allow reading whole pickled "
                   "modules (executes code from the file)")
    args = p.parse_args(argv)
    try:
        arrays = convert(args.checkpoint, args.out, key=args.key,
                         trust_pickle=args.trust_pickle, model=args.model)
    except ConvertError as exc:
        print(f"nnlite.convert: error: {exc}", file=sys.stderr)
        return 2
    n = sum(int(a.size) for a in arrays.values())
    mb = sum(a.nbytes for a in arrays.values()) / 1e6
    print(f"wrote {len(arrays)} arrays ({n:,} values, {mb:.1f} MB) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
