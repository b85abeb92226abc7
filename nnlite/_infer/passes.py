"""Graph rewrites of the inference plan (on ``Node`` lists with known shapes).

- constant folding and dead-code removal;
- Identity / Dropout / same-dtype Cast become aliases;
- BatchNormalization after a Conv whose output only it reads is folded into the conv weights
  (float64 arithmetic, then cast); other inference BatchNorms become per-channel affines;
- Add(conv(x), r) -> the conv accumulates into r (GEMM ``beta = 1``) when r is ready earlier;
- Relu / Clip(0, 6) / Clip(0, inf) after Conv, Gemm, affine or Add fuse into its write-out.
"""
from dataclasses import replace

import numpy as np

from .kernels import FUSABLE

__all__ = ["simplify"]


class Folded:
    """Prepared constants (folded weights), cached by the identity of their sources."""

    def __init__(self):
        self.cache = {}

    def get(self, key_arrays, tag, make):
        key = (tag,) + tuple(id(a) for a in key_arrays)
        hit = self.cache.get(key)
        if hit is None:
            hit = (make(), key_arrays)  # keep the sources alive so ids stay unique
            self.cache[key] = hit
        return hit[0]


def _consumers(nodes):
    out = {}
    for n in nodes:
        for v in n.inputs:
            if v:
                out.setdefault(v, []).append(n)
    return out


def _producers(nodes):
    return {o: (i, n) for i, n in enumerate(nodes) for o in n.outputs if o}


def _rename(nodes, outputs, mapping):
    def r(v):
        while v in mapping:
            v = mapping[v]
        return v
    nodes = [replace(n, inputs=tuple(r(v) if v else v for v in n.inputs)) for n in nodes]
    return nodes, [r(v) for v in outputs]


def _dce(nodes, outputs):
    live = set(outputs)
    kept = []
    for n in reversed(nodes):
        if any(o in live for o in n.outputs if o):
            kept.append(n)
            live.update(v for v in n.inputs if v)
    return kept[::-1]


def _bn_params(node, consts):
    x, scale, bias, mean, var = node.inputs
    if not all(v in consts for v in (scale, bias, mean, var)):
        return None
    return [consts[v] for v in (scale, bias, mean, var)], float(node.attrs.get("epsilon", 1e-5))


def _bn_affine(params, eps):
    scale, bias, mean, var = (np.asarray(p, np.float64) for p in params)
    s = scale / np.sqrt(var + eps)
    return s, bias - mean * s


def _fold_batchnorm(nodes, outputs, consts, metas, folded):
    cons, prod = _consumers(nodes), _producers(nodes)
    out = []
    for n in nodes:
        if n.op != "BatchNormalization":
            out.append(n)
            continue
        bp = _bn_params(n, consts)
        if bp is None:
            out.append(n)
            continue
        params, eps = bp
        x = n.inputs[0]
        p = prod.get(x)
        dt = np.dtype(metas[n.outputs[0]][1])
        if (p is not None and p[1].op == "Conv" and len(cons.get(x, ())) == 1
                and x not in outputs and p[1].inputs[1] in consts
                and (len(p[1].inputs) < 3 or not p[1].inputs[2] or p[1].inputs[2] in consts)):
            conv = p[1]
            w = consts[conv.inputs[1]]
            b = consts[conv.inputs[2]] if len(conv.inputs) > 2 and conv.inputs[2] else None
            srcs = params + [w] + ([b] if b is not None else [])

            def make(params=params, eps=eps, w=w, b=b, dt=dt):
                s, t = _bn_affine(params, eps)
                w2 = (np.asarray(w, np.float64) * s[:, None, None, None]).astype(dt)
                b2 = t if b is None else np.asarray(b, np.float64) * s + t
                return w2, b2.astype(dt)
            w2, b2 = folded.get(srcs, f"bnfold{eps}", make)
            wn, bn = f"{conv.outputs[0]}:w", f"{conv.outputs[0]}:b"
            consts[wn], consts[bn] = w2, b2
            new = replace(conv, inputs=(conv.inputs[0], wn, bn), outputs=(n.outputs[0],))
            idx = next(k for k, m in enumerate(out) if m is conv)
            out[idx] = new
            continue

        def make_affine(params=params, eps=eps, dt=dt):
            s, t = _bn_affine(params, eps)
            return s.astype(dt), t.astype(dt)
        s, t = folded.get(params, f"affine{eps}", make_affine)
        sn, tn = f"{n.outputs[0]}:scale", f"{n.outputs[0]}:shift"
        consts[sn], consts[tn] = s, t
        out.append(replace(n, op="nnlite.Affine", inputs=(x, sn, tn), attrs={}))
    return out


def _is_conv_kernel(n, consts, metas):
    return (n.op == "Conv" and len(metas[n.inputs[0]][0]) == 4 and n.inputs[1] in consts
            and (len(n.inputs) < 3 or not n.inputs[2] or n.inputs[2] in consts))


def _fuse_residual(nodes, outputs, consts, metas):
    cons = _consumers(nodes)
    pos = {o: i for i, n in enumerate(nodes) for o in n.outputs if o}
    remove, swap = set(), {}
    for n in nodes:
        if n.op != "Add" or "activation" in n.attrs:
            continue
        a, b = n.inputs
        if metas[a] != metas[b] or metas[a] != metas[n.outputs[0]]:
            continue
        best = None
        for conv_v, other in ((a, b), (b, a)):
            if conv_v not in pos or conv_v == other:
                continue
            p = nodes[pos[conv_v]]
            p = swap.get(id(p), p)
            if (not _is_conv_kernel(p, consts, metas) or p.attrs.get("residual")
                    or "activation" in p.attrs or len(cons.get(conv_v, ())) != 1
                    or conv_v in outputs):
                continue
            ready = other in consts or other not in pos or pos[other] < pos[conv_v]
            if ready and (best is None or pos[conv_v] > pos[best[0]]):
                best = (conv_v, other, p)
        if best is None:
            continue
        conv_v, other, p = best
        attrs = dict(p.attrs, residual=True)
        swap[id(nodes[pos[conv_v]])] = replace(p, inputs=p.inputs + (other,),
                                                outputs=(n.outputs[0],), attrs=attrs)
        remove.add(id(n))
    return [swap.get(id(n), n) for n in nodes if id(n) not in remove]


def _activation_of(n, consts, opset):
    if n.op == "Relu":
        return "relu"
    if n.op != "Clip":
        return None
    if opset < 11:
        lo, hi = n.attrs.get("min"), n.attrs.get("max")
    else:
        ins = list(n.inputs) + ["", ""]
        if any(v and v not in consts for v in ins[1:3]):
            return None
        lo = float(consts[ins[1]]) if ins[1] else None
        hi = float(consts[ins[2]]) if ins[2] else None
    if lo == 0 and hi == 6:
        return "relu6"
    if lo == 0 and (hi is None or hi == np.inf):
        return "relu"
    return None


def _fuse_activations(nodes, outputs, consts, metas, opset):
    cons = _consumers(nodes)
    pos = {o: i for i, n in enumerate(nodes) for o in n.outputs if o}
    current = list(nodes)
    remove = set()
    for n in nodes:
        act = _activation_of(n, consts, opset)
        if act is None:
            continue
        x = n.inputs[0]
        if x not in pos or len(cons.get(x, ())) != 1 or x in outputs:
            continue
        k = pos[x]
        p = current[k]
        ok = p.op in FUSABLE and "activation" not in p.attrs
        if p.op == "Add":
            ok = ok and all(np.dtype(metas[v][1]).kind == "f" for v in p.inputs) and \
                metas[p.inputs[0]][1] == metas[p.inputs[1]][1]
        if p.op == "Conv":
            ok = ok and _is_conv_kernel(p, consts, metas)
        if p.op == "Gemm":
            ok = ok and all(len(metas[v][0]) == 2 for v in p.inputs[:2])
        if not ok:
            continue
        current[k] = replace(p, outputs=(n.outputs[0],), attrs=dict(p.attrs, activation=act))
        remove.add(id(n))
    return [n for n in current if id(n) not in remove]


def simplify(nodes, outputs, consts, metas, opset, folded):
    """All rewrites; returns (nodes, outputs). ``consts`` gains the folded weights."""
    alias = {}
    kept = []
    for n in nodes:
        if all(o in consts or not o for o in n.outputs):
            continue  # folded
        if n.op in ("Identity", "Dropout") or (
                n.op == "Cast" and metas[n.inputs[0]][1] == metas[n.outputs[0]][1]):
            alias[n.outputs[0]] = n.inputs[0]
            continue
        kept.append(n)
    nodes, outputs = _rename(kept, outputs, alias)
    nodes = _dce(nodes, outputs)
    nodes = _fold_batchnorm(nodes, outputs, consts, metas, folded)
    nodes = _fuse_residual(nodes, outputs, consts, metas)
    nodes = _fuse_activations(nodes, outputs, consts, metas, opset)
    return _dce(nodes, outputs), outputs
