"""Optimisers with PyTorch's update formulas: ``SGD``, ``Adam``, ``AdamW`` (``Optimizer`` base with
param groups, ``zero_grad``, ``state_dict``/``load_state_dict``); ``nnlite.optim.lr_scheduler``
has ``StepLR`` and ``CosineAnnealingLR``.

Updates are in place on each parameter's ``.data`` and run in the parameter's dtype.
"""
import copy
import math
import sys
import warnings

import numpy as np

from .autograd import enable_grad
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]


class Optimizer:
    """Base class: ``params`` is an iterable of Tensors, of (name, Tensor) pairs, or of dicts
    (param groups: ``{"params": [...], "lr": ...}``; missing options take ``defaults``).

    ``state`` maps each parameter to its per-parameter state dict.
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
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
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, group, self.state.setdefault(p, {}))
        return loss

    def _update(self, p, grad, group, state):  # pragma: no cover - abstract
        raise NotImplementedError

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
            if buf is None:
                buf = np.array(g, dtype=p.dtype, copy=True)
                state["momentum_buffer"] = buf
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        p.data += -group["lr"] * g


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
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        state["step"] += 1
        step = state["step"]
        if wd != 0:
            if group["decoupled_weight_decay"]:
                p.data *= 1 - lr * wd
            else:
                g = g + wd * p.data
        m, v = state["exp_avg"], state["exp_avg_sq"]
        w1 = 1 - beta1                                  # torch.lerp(m, g, w1), same branches
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
        p.data += -step_size * (m / denom)


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
