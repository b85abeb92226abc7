"""``Module``, ``Parameter`` and the containers, with PyTorch's naming and state_dict rules.

state_dict order (docs/semantics.md §9.3): depth-first; a module's own parameters, then its own
buffers, then its children; nested names join attribute names with '.'.
"""
from collections import OrderedDict

import numpy as np

from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as a learnable parameter (requires grad by default)."""

    def __init__(self, data, requires_grad=True):
        arr = data.data if isinstance(data, Tensor) else np.asarray(data)
        if arr.dtype.kind != "f":
            arr = arr.astype(np.float32)
        super().__init__(arr, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models.

    Assigning a ``Parameter`` or a ``Module`` to an attribute registers it; buffers (running
    statistics) are registered with ``register_buffer``.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------- registry
    # The registries (_parameters, _buffers, _modules) hold what traversal and state_dict see;
    # every entry set through the methods below is also mirrored in the instance __dict__, so
    # that reading it (self.conv, self.weight: hundreds of reads per training step) is a plain
    # attribute lookup instead of a failed one followed by __getattr__. An entry put into a
    # registry dict directly is still found, by __getattr__.
    def __setattr__(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() is called")
        params, bufs, mods = d["_parameters"], d["_buffers"], d["_modules"]
        if isinstance(value, (Parameter, Module)):
            for reg in (params, bufs, mods):
                reg.pop(name, None)
            (params if isinstance(value, Parameter) else mods)[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                "(a Parameter or None is required)")
            params[name] = None
        elif name in bufs:
            value = value if value is None or isinstance(value, Tensor) else Tensor(value)
            bufs[name] = value
        elif name in mods and value is None:
            mods[name] = None
        else:
            object.__setattr__(self, name, value)     # a plain attribute (or a descriptor)
            return
        d[name] = value

    def __getattr__(self, name):
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if key in d and name in d[key]:
                return d[key][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if name in d[key]:
                del d[key][name]
                d.pop(name, None)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Register ``param`` (a Parameter, or None for an absent optional one such as bias)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter({name!r}): expected a Parameter or None, "
                            f"got {type(param).__name__}")
        self._parameters[name] = param
        self.__dict__[name] = param

    def register_buffer(self, name, value, persistent=True):
        value = None if value is None else (
            value if isinstance(value, Tensor) else Tensor(np.asarray(value)))
        self._buffers[name] = value
        self.__dict__[name] = value
        if not persistent:
            self._non_persistent.add(name)

    def register_module(self, name, module):
        setattr(self, name, module)

    add_module = register_module

    # ------------------------------------------------------------ traversal
    def named_modules(self, prefix=""):
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, mod = stack.pop()
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            yield name, mod
            children = [(f"{name}.{k}" if name else k, m)
                        for k, m in mod._modules.items() if m is not None]
            stack.extend(reversed(children))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for k, m in self._modules.items():
            if m is not None:
                yield k, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mname, mod in mods:
            for k, p in mod._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{k}" if mname else k), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix=""):
        for mname, mod in self.named_modules(prefix):
            for k, b in mod._buffers.items():
                if b is not None:
                    yield (f"{mname}.{k}" if mname else k), b

    def buffers(self):
        for _, b in self.named_buffers():
            yield b

    # ---------------------------------------------------------------- modes
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0

    def requires_grad_(self, flag=True):
        for p in self.parameters():
            p.requires_grad_(flag)
        return self

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def to(self, dtype):
        """Cast floating parameters and buffers to ``dtype`` (float32 or float64) in place."""
        dtype = np.dtype(dtype)
        for m in self.modules():
            for d in (m._parameters, m._buffers):
                for k, t in d.items():
                    if t is not None and t.dtype.kind == "f":
                        t.data = t.data.astype(dtype)
        return self

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # ----------------------------------------------------------- state dict
    def _state_items(self, prefix):
        for k, p in self._parameters.items():
            if p is not None:
                yield prefix + k, p
        for k, b in self._buffers.items():
            if b is not None and k not in self._non_persistent:
                yield prefix + k, b
        for k, m in self._modules.items():
            if m is not None:
                yield from m._state_items(prefix + k + ".")

    def state_dict(self):
        """OrderedDict name -> ndarray (copies), with PyTorch's key names and order."""
        return OrderedDict((k, t.data.copy()) for k, t in self._state_items(""))

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (ndarray, Tensor, or anything with ``.numpy()``) into parameters and buffers.

        A shape mismatch raises ValueError naming the key and both shapes; with ``strict`` missing
        and unexpected keys raise KeyError listing them. Returns (missing, unexpected).
        """
        if hasattr(state_dict, "files") and hasattr(state_dict, "__getitem__"):  # NpzFile
            state_dict = {k: state_dict[k] for k in state_dict.files}
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict expects a mapping, got {type(state_dict).__name__}")
        own = OrderedDict(self._state_items(""))
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        # legacy BatchNorm checkpoints: a missing num_batches_tracked is filled with 0
        # (docs/semantics.md §9.3)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        errors = []
        arrays = {}
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            if isinstance(v, Tensor):
                v = v.data
            elif not isinstance(v, np.ndarray) and hasattr(v, "numpy"):
                v = v.detach().cpu().numpy() if hasattr(v, "detach") else v.numpy()
            v = np.asarray(v)
            if v.shape != t.data.shape:
                errors.append(f"size mismatch for {k}: copying a param with shape {v.shape} "
                              f"from checkpoint, the shape in current model is {t.data.shape}.")
                continue
            arrays[k] = v
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing))
            if unexpected:
                parts.append("Unexpected key(s) in state_dict: "
                             + ", ".join(f'"{k}"' for k in unexpected))
            errors.extend(parts)
        if errors:
            raise ValueError("Error(s) in loading state_dict for "
                             f"{type(self).__name__}:\n\t" + "\n\t".join(errors))
        for k, v in arrays.items():
            t = own[k]
            t.data = np.array(v, dtype=t.data.dtype, copy=True)
        # legacy checkpoint without num_batches_tracked: reset to 0 (docs/semantics.md §9.3)
        for k in own:
            if k.endswith("num_batches_tracked") and k not in state_dict:
                own[k].data = np.zeros_like(own[k].data)
        return missing, unexpected

    # ----------------------------------------------------------------- call
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for k, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"({k}): {sub}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", ... ."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            for k, m in modules[0].items():
                self.add_module(k, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i])
        return mods[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def forward(self, x):
        mods = tuple(self._modules.values())
        i, n = 0, len(mods)
        while i < n:
            m = mods[i]
            if i + 1 < n and _fuses_norm_act(m, mods[i + 1]):
                x = m._forward(x, relu=True)
                i += 2
                continue
            x = m(x)
            i += 1
        return x


def _fuses_norm_act(norm, act):
    """True when ``act(norm(x))`` runs as one BatchNorm->ReLU node, ``norm._forward(x,
    relu=True)``: the ReLU is written by the BatchNorm's pass and masks its backward (the same
    values and gradients, one pass fewer). Only where ``norm._fuses_relu(act)`` says so
    (training mode, plain modules; see batchnorm.py)."""
    fuse = getattr(norm, "_fuses_relu", None)
    return fuse is not None and fuse(act)


def norm_act(norm, act, x):
    """``act(norm(x))``, fused into one node where ``_fuses_norm_act`` allows (blocks whose
    forward applies a norm layer then a ReLU module, outside a Sequential)."""
    if _fuses_norm_act(norm, act):
        return norm._forward(x, relu=True)
    return act(norm(x))


class ModuleList(Module):
    """A list of modules registered as "0", "1", ... (no forward of its own)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return ModuleList(mods[i])
        return mods[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x
