"""Naive loop oracles of the normalisation ops (the test oracle and a study mode).

Straight from the definitions, one group / one element at a time, in float64 (cast back at the
end). No reshapes into (rows, K) and no broadcasting tricks of the fast paths
(nnlite/functional/normalization.py); variances are the biased mean of squared deviations.
"""
import itertools
import math

import numpy as np


def _stats(values):
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / n
    return mean, var


def _normalized(v, mean, var, eps, weight, bias, j):
    """(v - mean) / sqrt(var + eps), then times weight[j] plus bias[j] (each when given)."""
    v = (v - mean) / math.sqrt(var + eps)
    if weight is not None:
        v *= float(weight[j])
    if bias is not None:
        v += float(bias[j])
    return v


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    k = len(normalized_shape)
    lead = x.shape[:-k] if k else x.shape
    xd = x.astype(np.float64)
    y = np.empty(x.shape)
    inner = list(itertools.product(*[range(s) for s in normalized_shape]))
    for idx in itertools.product(*[range(s) for s in lead]):
        vals = [xd[idx + j] for j in inner]
        mean, var = _stats(vals)
        for j in inner:
            y[idx + j] = _normalized(xd[idx + j], mean, var, eps, weight, bias, j)
    return y.astype(x.dtype)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    n, c = x.shape[:2]
    per = c // num_groups
    spatial = list(itertools.product(*[range(s) for s in x.shape[2:]]))
    xd = x.astype(np.float64)
    y = np.empty(x.shape)
    for b in range(n):
        for g in range(num_groups):
            chans = range(g * per, (g + 1) * per)
            mean, var = _stats([xd[(b, ch) + s] for ch in chans for s in spatial])
            for ch in chans:
                for s in spatial:
                    y[(b, ch) + s] = _normalized(xd[(b, ch) + s], mean, var, eps, weight, bias,
                                                 ch)
    return y.astype(x.dtype)


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Returns (y, new_running_mean, new_running_var) (the running stats None when not given)."""
    n, c = x.shape[:2]
    spatial = list(itertools.product(*[range(s) for s in x.shape[2:]]))
    xd = x.astype(np.float64)
    y = np.empty(x.shape)
    means = np.zeros((n, c))
    unbiased = np.zeros((n, c))
    for b in range(n):
        for ch in range(c):
            if use_input_stats:
                mean, var = _stats([xd[(b, ch) + s] for s in spatial])
                means[b, ch] = mean
                unbiased[b, ch] = var * len(spatial) / (len(spatial) - 1)
            else:
                mean, var = float(running_mean[ch]), float(running_var[ch])
            for s in spatial:
                y[(b, ch) + s] = _normalized(xd[(b, ch) + s], mean, var, eps, weight, bias, ch)
    new_mean = new_var = None
    if use_input_stats and running_mean is not None:
        new_mean = np.array([(1 - momentum) * float(running_mean[ch])
                             + momentum * math.fsum(means[:, ch]) / n for ch in range(c)])
    elif running_mean is not None:
        new_mean = np.asarray(running_mean, dtype=np.float64)
    if use_input_stats and running_var is not None:
        new_var = np.array([(1 - momentum) * float(running_var[ch])
                            + momentum * math.fsum(unbiased[:, ch]) / n for ch in range(c)])
    elif running_var is not None:
        new_var = np.asarray(running_var, dtype=np.float64)
    return y.astype(x.dtype), new_mean, new_var


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """y[n, c, ...] = x / (k + alpha/size * sum of x[n, c', ...]**2 over
    c' in [c - size//2, c + (size-1)//2] within [0, C)) ** beta."""
    c = x.shape[1]
    xd = x.astype(np.float64)
    y = np.empty(x.shape)
    for idx in itertools.product(*[range(s) for s in x.shape]):
        ch = idx[1]
        acc = 0.0
        for other in range(ch - size // 2, ch + (size - 1) // 2 + 1):
            if 0 <= other < c:
                acc += xd[idx[:1] + (other,) + idx[2:]] ** 2
        y[idx] = xd[idx] / (k + alpha / size * acc) ** beta
    return y.astype(x.dtype)


def normalize(x, p=2.0, dim=1, eps=1e-12):
    """x / max(||x||_p, eps) along ``dim``, one vector at a time."""
    xd = np.moveaxis(x.astype(np.float64), dim, -1)
    y = np.empty(xd.shape)
    for idx in itertools.product(*[range(s) for s in xd.shape[:-1]]):
        v = [float(t) for t in xd[idx]]
        if p == 0:
            norm = float(sum(1 for t in v if t != 0))
        elif p == math.inf:
            norm = max(abs(t) for t in v)
        elif p == -math.inf:
            norm = min(abs(t) for t in v)
        else:
            norm = math.fsum(abs(t) ** p for t in v) ** (1.0 / p)
        denom = max(norm, eps)
        y[idx] = [t / denom for t in v]
    return np.moveaxis(y, -1, dim).astype(x.dtype)
