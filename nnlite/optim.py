"""Optimisers with PyTorch's update formulas: ``SGD``, ``Adam``, ``AdamW`` (``Optimizer`` base with
param groups, ``zero_grad``, ``state_dict``/``load_state_dict``); ``nnlite.optim.lr_scheduler``
has ``StepLR`` and ``CosineAnnealingLR``.

Updates are in place on each parameter's ``.data`` and run in the parameter's dtype.

The update of a param group runs "foreach" (one vectorised pass, as PyTorch's ``foreach``
implementations) whenever every parameter of the group has a gradient of its own dtype and
shape, the group shares one dtype and (Adam) one step count, and ``foreach`` is not False: small
parameters are packed into chunks of up to ``_FOREACH_CHUNK`` elements whose gradients are
gathered into one flat buffer and whose state lives in flat buffers (the ``state`` dict holds
views of them, so ``state_dict`` and in-place edits of the state work as before); a larger
parameter is its own chunk. The arithmetic is the per-parameter loop's, element by element, so
both give bitwise the same parameters; otherwise (or with ``foreach=False``) the loop runs.
"""
import copy
import math
import sys
import warnings

import numpy as np

from .autograd import enable_grad
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]

# A foreach chunk holds parameters of at most this many elements in all (a parameter larger
# than this is a chunk of its own): the flat temporaries of an update stay this small, as the
# per-parameter loop's stay the size of one parameter.
_FOREACH_CHUNK = 1 << 18


def _defining(cls, name):
    """The class of ``cls``'s MRO whose body defines ``name`` (None if none does)."""
    for k in cls.__mro__:
        if name in k.__dict__:
            return k
    return None


class _Chunk:
    """Parameters of one group updated together (see the module docstring): one parameter
    (``single``: its own gradient and state arrays) or several, whose gradients are gathered
    into ``gbuf`` and whose state arrays are views of flat buffers (``flat``: key -> (flat
    array, the per-parameter views))."""

    __slots__ = ("params", "spans", "single", "gbuf", "flat", "dtype")

    def __init__(self, params):
        self.params = params
        self.dtype = params[0].data.dtype
        self.single = len(params) == 1
        self.spans = []
        o = 0
        for p in params:
            self.spans.append((o, o + p.data.size, p.data.shape))
            o += p.data.size
        self.gbuf = None if self.single else np.empty(o, dtype=params[0].data.dtype)
        self.flat = {}

    def gather(self, arrays, out):
        """The arrays (one per parameter, each of its parameter's shape) as one flat array."""
        if self.single:
            return arrays[0]
        np.concatenate([a.reshape(-1) for a in arrays], out=out)
        return out

    def grads(self):
        return self.gather([p.grad for p in self.params], self.gbuf)

    def datas(self):
        return self.gather([p.data for p in self.params], None if self.single else
                           np.empty(self.gbuf.size, dtype=self.gbuf.dtype))

    def add_to_params(self, upd):
        """p.data += the parameter's part of ``upd`` for every parameter."""
        if self.single:
            self.params[0].data += upd
            return
        for p, (o, e, shape) in zip(self.params, self.spans):
            p.data += upd[o:e].reshape(shape)

    def state_arrays(self, states, keys, make):
        """{key: array} of the chunk's state under ``keys`` (flat, or the parameter's own array
        for a single parameter), binding ``states`` (one dict per parameter) to views of the
        flat buffers. ``make(key)`` gives a new flat array for a key no state holds yet (None:
        every state must hold it)."""
        out = {}
        for key in keys:
            if self.single:
                arr = states[0].get(key)
                if arr is None:
                    arr = make(key).reshape(self.spans[0][2])
                    states[0][key] = arr
                self.flat[key] = (arr, (arr,))
                out[key] = arr
                continue
            flat, views = self.flat.get(key, (None, ()))
            if views and all(st.get(key) is v for st, v in zip(states, views)):
                out[key] = flat
                continue
            held = [st.get(key) for st in states]
            if all(a is None for a in held):
                flat = make(key)
            else:                                   # loaded or edited state: pack it
                flat = self.gather(held, np.empty(self.gbuf.size, dtype=self.gbuf.dtype))
            views = tuple(flat[o:e].reshape(shape) for o, e, shape in self.spans)
            for st, v in zip(states, views):
                st[key] = v
            self.flat[key] = (flat, views)
            out[key] = flat
        return out


class Optimizer:
    """Base class: ``params`` is an iterable of Tensors, of (name, Tensor) pairs, or of dicts
    (param groups: ``{"params": [...], "lr": ...}``; missing options take ``defaults``).

    ``state`` maps each parameter to its per-parameter state dict.
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        self._chunks = {}           # id(group) -> (its params, their foreach _Chunks)
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, param_group):
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of tensors in sets will change between runs. "
                            "Please use a list instead.")
        params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(params):
                raise ValueError("all optimizer params should be with/without names. "
                                 "Some param names are missing")
            group["param_names"] = names
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params "
                                f"(index {i}) is {type(p).__name__}")
            if p._ctx is not None:
                raise ValueError(f"can't optimize a non-leaf Tensor (param index {i}, shape "
                                 f"{p.shape})")
            if p.dtype.kind != "f":
                raise TypeError(f"optimizer can only optimize floating Tensors, param index {i} "
                                f"has dtype {p.dtype}")
        group["params"] = params
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        if len({id(p) for p in params}) != len(params):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; "
                          "in future, this will cause an error", stacklevel=3)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Reset every parameter's ``.grad`` to None (default) or to zeros in place."""
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad[...] = 0

    def step(self, closure=None):
        """One update of every parameter that has a ``.grad``; ``closure`` (optional)
        re-evaluates the model and returns the loss, which ``step`` returns."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group.get("foreach") is not False and self._foreach_ready(group):
                self._foreach_update(group, self._group_chunks(group))
                continue
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, group, self.state.setdefault(p, {}))
        return loss

    def _update(self, p, grad, group, state):  # pragma: no cover - abstract
        raise NotImplementedError

    # ----------------------------------------------------------- foreach
    def _foreach_ready(self, group):
        """True when ``group`` can take the foreach update (module docstring): every parameter
        has a gradient of its dtype and shape, one dtype in the group, and the subclass's
        ``_foreach_state_ok``."""
        params = group["params"]
        if not params:
            return False
        dtype = params[0].data.dtype
        for p in params:
            g, d = p.grad, p.data
            if (g is None or d.dtype != dtype or not isinstance(g, np.ndarray)
                    or g.dtype != dtype or g.shape != d.shape):
                return False
        cls = type(self)
        if _defining(cls, "_update") is not _defining(cls, "_foreach_update"):
            return False                # a subclass changed the per-parameter update
        return self._foreach_state_ok(group, [self.state.get(p) for p in params])

    def _foreach_state_ok(self, group, states):
        return False

    def _state_fits(self, group, states, keys):
        """Every state holds an array under each of ``keys`` with its parameter's dtype and
        shape (what a flat buffer of the group's dtype can hold without a cast): at once when
        they are still the arrays the group's chunks bound (the usual step), else checked."""
        params = group["params"]
        cached = self._chunks.get(id(group))
        if cached is not None and len(cached[0]) == len(params) and all(
                a is b for a, b in zip(cached[0], params)):
            i, bound, dtype = 0, True, params[0].data.dtype
            for chunk in cached[1]:
                n = len(chunk.params)
                if chunk.dtype != dtype:            # the model was cast: check the arrays
                    bound = False
                    break
                for key in keys:
                    views = chunk.flat.get(key, (None, ()))[1]
                    if len(views) != n or not all(
                            st.get(key) is v for st, v in zip(states[i:i + n], views)):
                        bound = False
                        break
                if not bound:
                    break
                i += n
            if bound:
                return True
        for p, st in zip(params, states):
            d = p.data
            for k in keys:
                a = st.get(k)
                if not isinstance(a, np.ndarray) or a.dtype != d.dtype or a.shape != d.shape:
                    return False
        return True

    def _group_chunks(self, group):
        """The group's foreach chunks (made again when its parameter list or their sizes
        changed)."""
        params = group["params"]
        cached = self._chunks.get(id(group))
        if cached is not None:
            old, chunks = cached
            if len(old) == len(params) and all(a is b for a, b in zip(old, params)) and all(
                    p.data.size == e - o and p.data.dtype == c.params[0].data.dtype
                    for c in chunks for p, (o, e, _) in zip(c.params, c.spans)):
                return chunks
        chunks, cur, size = [], [], 0
        for p in params:
            n = p.data.size
            if n >= _FOREACH_CHUNK:
                chunks.append(_Chunk([p]))
                continue
            if cur and size + n > _FOREACH_CHUNK:
                chunks.append(_Chunk(cur))
                cur, size = [], 0
            cur.append(p)
            size += n
        if cur:
            chunks.append(_Chunk(cur))
        self._chunks[id(group)] = (list(params), chunks)
        return chunks

    def _foreach_update(self, group, chunks):  # pragma: no cover - abstract
        raise NotImplementedError

    def _chunk_states(self, chunk):
        return [self.state.setdefault(p, {}) for p in chunk.params]

    # ----------------------------------------------------------------- state
    def state_dict(self):
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]} with copies
        of the state arrays (PyTorch's layout; indices count params across groups)."""
        index = {}
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if p in self.state and self.state[p]:
                    state[index[id(p)]] = copy.deepcopy(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and per-parameter state saved by ``state_dict``; floating
        state arrays are cast to their parameter's dtype."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups "
                             f"({len(groups)}) than the optimizer ({len(self.param_groups)})")
        for i, (saved, own) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(f"loaded state dict contains a parameter group that doesn't "
                                 f"match the size of optimizer's group: group {i} has "
                                 f"{len(saved['params'])} params, the optimizer's has "
                                 f"{len(own['params'])}")
        by_index = {}
        for saved, own in zip(groups, self.param_groups):
            for idx, p in zip(saved["params"], own["params"]):
                by_index[idx] = p
        new_state = {}
        for idx, st in state_dict["state"].items():
            p = by_index.get(int(idx))
            if p is None:
                continue
            new_state[p] = {k: self._cast_state(k, v, p) for k, v in st.items()}
        for saved, own in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    own[k] = copy.deepcopy(v)
        self.state = new_state

    @staticmethod
    def _cast_state(key, value, p):
        if key == "step":                       # PyTorch saves it as a 0-d float tensor
            return value if isinstance(value, (int, float)) else float(value)
        arr = value.data if isinstance(value, Tensor) else value
        if hasattr(arr, "detach") and hasattr(arr, "numpy"):     # a torch tensor
            arr = arr.detach().cpu().numpy()
        if isinstance(arr, np.ndarray):
            if arr.shape != p.shape:
                raise ValueError(f"optimizer state {key!r} has shape {arr.shape} but its "
                                 f"parameter has shape {p.shape}")
            return np.array(arr, dtype=p.dtype if arr.dtype.kind == "f" else arr.dtype)
        return copy.deepcopy(value)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)


def _check_nonneg(value, what):
    if not 0.0 <= value:
        raise ValueError(f"Invalid {what}: {value}")


def _sgd_direction(g, buf, fresh, group):
    """SGD's step direction from gradient ``g`` (weight decay applied) and the momentum buffer
    ``buf``, updated in place unless ``fresh`` (just made as a copy of ``g``). One piece of
    arithmetic for the per-parameter and the foreach paths; the operation order is torch's."""
    momentum = group["momentum"]
    if not fresh:
        buf *= momentum
        buf += (1 - group["dampening"]) * g
    return g + momentum * buf if group["nesterov"] else buf


class SGD(Optimizer):
    """Stochastic gradient descent with PyTorch's momentum:

        g = grad + weight_decay * p                      (negated first if maximize)
        buf = g (first step) | momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov) | buf
        p = p - lr * g
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, foreach=None, differentiable=False,
                 fused=None):
        _check_nonneg(lr, "learning rate")
        _check_nonneg(momentum, "momentum value")
        _check_nonneg(weight_decay, "weight_decay value")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if differentiable:
            raise ValueError("SGD: differentiable=True is not supported by nnlite")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize, foreach=foreach,
                                      differentiable=False, fused=fused))

    def _update(self, p, grad, group, state):
        g = -grad if group["maximize"] else grad
        wd, momentum = group["weight_decay"], group["momentum"]
        if wd != 0:
            g = g + wd * p.data
        if momentum != 0:
            buf = state.get("momentum_buffer")
            fresh = buf is None
            if fresh:
                buf = state["momentum_buffer"] = np.array(g, dtype=p.dtype, copy=True)
            g = _sgd_direction(g, buf, fresh, group)
        p.data += -group["lr"] * g

    def _foreach_state_ok(self, group, states):
        if group["momentum"] == 0:
            return True
        have = [bool(st) and st.get("momentum_buffer") is not None for st in states]
        if not any(have):
            return True                         # no buffer made yet (the first step)
        return all(have) and self._state_fits(group, states, ("momentum_buffer",))

    def _foreach_update(self, group, chunks):
        """``_update``'s arithmetic on each chunk's flat gradient."""
        wd, momentum, lr = group["weight_decay"], group["momentum"], group["lr"]
        for chunk in chunks:
            grad = chunk.grads()
            g = -grad if group["maximize"] else grad
            if wd != 0:
                g = g + wd * chunk.datas()
            if momentum != 0:
                states = self._chunk_states(chunk)
                fresh = states[0].get("momentum_buffer") is None
                buf = chunk.state_arrays(states, ("momentum_buffer",),
                                         lambda key: np.array(g, dtype=g.dtype, copy=True)
                                         )["momentum_buffer"]
                g = _sgd_direction(g, buf, fresh, group)
            chunk.add_to_params(-lr * g)


def _adam_delta(g, state, step, group):
    """Adam's update of the moments in ``state`` (exp_avg, exp_avg_sq and, with amsgrad,
    max_exp_avg_sq: arrays updated in place) by gradient ``g`` at ``step``; returns what is
    added to the parameter. One piece of arithmetic for the per-parameter and the foreach
    paths, so the two agree bit for bit; the operation order is torch's."""
    lr, eps = group["lr"], group["eps"]
    beta1, beta2 = group["betas"]
    m, v = state["exp_avg"], state["exp_avg_sq"]
    w1 = 1 - beta1                                      # torch.lerp(m, g, w1), same branches
    if w1 < 0.5:
        m += w1 * (g - m)
    else:
        m[...] = g - (g - m) * (1 - w1)
    v *= beta2
    v += (1 - beta2) * (g * g)
    bias_correction1 = 1 - beta1 ** step
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
    step_size = lr / bias_correction1
    if group["amsgrad"]:
        vmax = state["max_exp_avg_sq"]
        np.maximum(vmax, v, out=vmax)
        denom = np.sqrt(vmax) / bias_correction2_sqrt + eps
    else:
        denom = np.sqrt(v) / bias_correction2_sqrt + eps
    return -step_size * (m / denom)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's bias correction; ``decoupled_weight_decay=True`` is AdamW:

        t += 1; p *= 1 - lr * wd (decoupled) | g = grad + wd * p (L2)
        m = m + (1 - beta1) * (g - m);  v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v) (amsgrad)
        p -= lr / (1 - beta1^t) * m / (sqrt(v or v_max) / sqrt(1 - beta2^t) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False):
        _check_nonneg(lr, "learning rate")
        _check_nonneg(eps, "epsilon value")
        for i in (0, 1):
            if not 0.0 <= betas[i] < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {betas[i]}")
        _check_nonneg(weight_decay, "weight_decay value")
        if differentiable:
            raise ValueError(f"{type(self).__name__}: differentiable=True is not supported by "
                             "nnlite")
        super().__init__(params, dict(lr=lr, betas=tuple(float(b) for b in betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=False, fused=fused,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _update(self, p, grad, group, state):
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
        g = -grad if group["maximize"] else grad
        lr, wd = group["lr"], group["weight_decay"]
        state["step"] += 1
        step = state["step"]
        if wd != 0:
            if group["decoupled_weight_decay"]:
                p.data *= 1 - lr * wd
            else:
                g = g + wd * p.data
        p.data += _adam_delta(g, state, step, group)

    def _state_keys(self, group):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def _foreach_state_ok(self, group, states):
        if not any(states):
            return True                                  # the first step of every parameter
        if not all(states):
            return False
        step = states[0].get("step")
        return (all(st.get("step") == step for st in states)
                and self._state_fits(group, states, self._state_keys(group)))

    def _foreach_update(self, group, chunks):
        """``_update``'s arithmetic on each chunk's flat gradient and state."""
        lr, wd = group["lr"], group["weight_decay"]
        keys = self._state_keys(group)
        for chunk in chunks:
            states = self._chunk_states(chunk)
            if "step" not in states[0]:
                for st in states:
                    st["step"] = 0
            dtype = chunk.params[0].data.dtype
            size = chunk.spans[-1][1]
            arrs = chunk.state_arrays(states, keys, lambda key: np.zeros(size, dtype=dtype))
            grad = chunk.grads()
            g = -grad if group["maximize"] else grad
            step = states[0]["step"] + 1
            for st in states:
                st["step"] = step
            if wd != 0:
                if group["decoupled_weight_decay"]:
                    for p in chunk.params:
                        p.data *= 1 - lr * wd
                else:
                    g = g + wd * chunk.datas()
            chunk.add_to_params(_adam_delta(g, arrs, step, group))


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr * weight_decay before
    the Adam step; default weight_decay=1e-2."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)


from . import _lr_scheduler as lr_scheduler  # noqa: E402

sys.modules[__name__ + ".lr_scheduler"] = lr_scheduler
