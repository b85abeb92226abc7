"""Stage 2 of the plan: graph rewrites (on ``Node`` lists with known shapes).

``canonicalize`` first (spellings that the rewrites below should recognise):
- a two-input ``Sum`` is an ``Add`` (so residual fusion sees it);
- ``BatchNormalization -> Mul(c) -> Add(d)`` with per-channel constants (Caffe2-style exports
  spell a scale layer so) is one BatchNormalization with scale s*c and bias b*c + d.

then ``simplify``:
- constant folding and dead-code removal;
- Identity / Dropout / same-dtype Cast become aliases;
- BatchNormalization after a Conv whose output only it reads is folded into the conv weights
  (float64 arithmetic, then cast); other inference BatchNorms become per-channel affines;
- Add(conv(x), c) with a constant c that adds one value per output channel ((1, F, 1, 1),
  (F, 1, 1), a scalar, ...) -> c folds into the conv bias (float64 sum, then cast);
- Add(conv(x), r), any other r of the output's shape (a constant too) -> the conv accumulates
  into r (GEMM ``beta = 1``) when r is ready earlier;
- Relu / Clip(0, 6) / Clip(0, inf) after Conv, Gemm, affine or Add fuse into its write-out;
- float32 Conv 1x1 (ReLU6) -> depthwise Conv 3x3 stride 1 or 2, padding 1 (ReLU6) -> Conv 1x1
  (with or without a fused residual), the two intermediates read by nothing else, become one
  ``nnlite.InvertedResidual`` node (MobileNetV2's block, one native call: see
  ``kernels.InvertedResidualKernel``) when the extension is built and ``FUSE_BLOCKS`` is set;
- float32 pointwise convs (1x1, stride 1, no padding, one group, no residual) that read the
  same value and fuse the same activation (Inception's 1x1 branch and its 3x3 / 5x5
  reductions) become ONE conv over their filters stacked, followed by a ``SPLIT_OP`` node whose
  outputs, the original convs' outputs, are channel slices of the merged output (views of it:
  ``storage.plan_views``). One product instead of several: the input is packed and swept once,
  and a few-pixel layer gets more rows to share among the threads (``MERGE_SIBLINGS``);
- a Conv run by the few-channel kernel (an image model's 7x7/2 stem) -> MaxPool that alone
  reads its output become one ``CONV_POOL_OP`` node (``kernels.ConvMaxPoolKernel``: the conv's
  map never goes to memory) when ``FUSE_POOLS`` is set.

A rewritten Conv keeps explicit roles (``kernels.conv_inputs`` / ``with_conv_inputs``): weight,
bias and residual are never told apart by how many inputs the node has.
"""
from dataclasses import replace

import numpy as np

from .dryrun import Meta
from ..onnx import geometry as G
from .kernels import (ATTENTION_OP, CONV_POOL_OP, FUSABLE, IR_INPUTS, IR_OP, MATMUL_OP,
                      SPLIT_OP, ConvKernel, conv_inputs, conv_pool_fusable,
                      inverted_residual_available, is_head_conv, view_layout)
from .kernels import with_conv_inputs

__all__ = ["canonicalize", "simplify", "consumers", "Folded", "FUSE_BLOCKS", "FUSE_HEADS",
           "FUSE_POOLS", "FUSE_MATMULS", "FUSE_ATTENTION", "MERGE_SIBLINGS", "SPLIT_OP"]

# fuse MobileNetV2's inverted residuals into one kernel (False: the three convs run unfused,
# for comparisons)
FUSE_BLOCKS = True
# and, with it, an image model's first conv into the block it feeds (``_is_head``): off for A/B
# runs and studies
FUSE_HEADS = True
# merge the pointwise convs that read one value into one conv (False: each runs alone, for
# comparisons)
MERGE_SIBLINGS = True
# run an image model's first conv and the max pool that alone reads its output as one kernel
# (``_fuse_conv_pools``; False: two steps, for comparisons)
FUSE_POOLS = True
# fold scales, bias vectors, transposes and split outputs into MatMuls (``_fuse_matmuls``;
# False: each runs as its own step, for comparisons)
FUSE_MATMULS = True
# run MatMul -> Softmax -> MatMul (attention) as one kernel whose scores stay in cache
# (``_fuse_attention``; False: three steps, for comparisons)
FUSE_ATTENTION = True


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

    def substitute(self, olds, news, consts):
        """Every array in ``olds`` that this cache made (a folded weight) is replaced by the one
        at its place in ``news`` (equal values, e.g. a view of a merged copy), in the cache
        (results and sources, the keys following) and in ``consts``: it is then held nowhere
        here. Arrays it did not make (the model's own constants) stay: the model holds them
        anyway, and the next plan's entries are found by them."""
        made = {id(a) for value, _ in self.cache.values()
                for a in (value if isinstance(value, tuple) else (value,))}
        sub = {id(a): b for a, b in zip(olds, news) if id(a) in made}

        def swap(v):
            if isinstance(v, tuple):
                return tuple(swap(u) for u in v)
            return sub.get(id(v), v)
        cache = {}
        for key, (value, srcs) in self.cache.items():
            srcs = [swap(a) for a in srcs]
            cache[(key[0],) + tuple(id(a) for a in srcs)] = (swap(value), srcs)
        self.cache = cache
        for k, v in consts.items():
            consts[k] = swap(v)


def _fresh(consts, metas, base):
    """A value name starting with ``base`` that names nothing yet."""
    name, k = base, 1
    while name in consts or name in metas:
        k += 1
        name = f"{base}{k}"
    return name


def consumers(nodes):
    """value -> the nodes reading it (in node order; a node reading it twice is listed twice)."""
    out = {}
    for n in nodes:
        for v in n.inputs:
            if v:
                out.setdefault(v, []).append(n)
    return out


def _producers(nodes):
    """value -> the node writing it."""
    return {o: n for n in nodes for o in n.outputs if o}


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
    cons, prod = consumers(nodes), _producers(nodes)
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
        if (p is not None and p.op == "Conv" and len(cons.get(x, ())) == 1
                and x not in outputs and not p.attrs.get("residual")
                and _has_const_weights(p, consts)):
            conv = p
            roles = conv_inputs(conv)
            w = consts[roles.weight]
            b = None if roles.bias is None else consts[roles.bias]
            srcs = params + [w] + ([b] if b is not None else [])

            def make(params=params, eps=eps, w=w, b=b, dt=dt):
                s, t = _bn_affine(params, eps)
                w2 = (np.asarray(w, np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1)))
                w2 = w2.astype(dt)
                b2 = t if b is None else np.asarray(b, np.float64) * s + t
                return w2, b2.astype(dt)
            w2, b2 = folded.get(srcs, f"bnfold{eps}", make)
            wn = _fresh(consts, metas, f"{conv.outputs[0]}:w")
            consts[wn] = w2
            bn = _fresh(consts, metas, f"{conv.outputs[0]}:b")
            consts[bn] = b2
            new = with_conv_inputs(conv, n.outputs[0], weight=wn, bias=bn)
            idx = next(k for k, m in enumerate(out) if m is conv)
            out[idx] = new
            continue

        def make_affine(params=params, eps=eps, dt=dt):
            s, t = _bn_affine(params, eps)
            return s.astype(dt), t.astype(dt)
        s, t = folded.get(params, f"affine{eps}", make_affine)
        sn = _fresh(consts, metas, f"{n.outputs[0]}:scale")
        consts[sn] = s
        tn = _fresh(consts, metas, f"{n.outputs[0]}:shift")
        consts[tn] = t
        out.append(replace(n, op="nnlite.Affine", inputs=(x, sn, tn), attrs={}))
    return out


def _has_const_weights(n, consts):
    """A Conv whose weight (and bias, when it has one) are constants."""
    roles = conv_inputs(n)
    return roles.weight in consts and (roles.bias is None or roles.bias in consts)


def _is_conv_kernel(n, consts, metas):
    return n.op == "Conv" and len(metas[n.inputs[0]][0]) == 4 and _has_const_weights(n, consts)


def _per_channel(c, shape):
    """The (F,) vector that adding the constant ``c`` to an (N, F, ...) value of ``shape`` adds
    to each channel, or None when ``c`` varies along another axis (or would widen ``shape``)."""
    c = np.asarray(c)
    if c.ndim > len(shape) or len(shape) < 2:
        return None
    full = (1,) * (len(shape) - c.ndim) + c.shape
    if any(d != 1 for i, d in enumerate(full) if i != 1) or full[1] not in (1, shape[1]):
        return None
    return np.broadcast_to(c.reshape(-1), (shape[1],))


def _fuse_residual(nodes, outputs, consts, metas, folded):
    """Fold per-channel constant Adds into the conv bias; fuse other same-shape Adds as the
    conv's residual operand. A conv may take several (a chain of Adds on its output)."""
    cons = consumers(nodes)
    current = list(nodes)
    at = {o: i for i, n in enumerate(nodes) for o in n.outputs if o}  # value -> producer index
    removed = set()
    for j, n in enumerate(nodes):
        if n.op != "Add" or "activation" in n.attrs:
            continue
        (a, b), y = n.inputs, n.outputs[0]
        best = None
        for conv_v, other in ((a, b), (b, a)):
            if (conv_v not in at or conv_v == other or conv_v in outputs
                    or len(cons.get(conv_v, ())) != 1 or metas[conv_v] != metas[y]):
                continue
            k = at[conv_v]
            p = current[k]
            if not _is_conv_kernel(p, consts, metas) or "activation" in p.attrs:
                continue
            if other in consts and metas[other].dtype == metas[y].dtype:
                vec = _per_channel(consts[other], metas[y].shape)
                if vec is not None:
                    best = ("bias", k, p, other)
                    break
            if p.attrs.get("residual") or metas[other] != metas[y]:
                continue
            ready = other in consts or other not in at or at[other] < k
            if ready and (best is None or k > best[1]):
                best = ("residual", k, p, other)
        if best is None:
            continue
        how, k, p, other = best
        if how == "bias":
            current[k] = with_conv_inputs(p, y, bias=_add_to_bias(p, other, y, consts, metas,
                                                                 folded))
        else:
            current[k] = with_conv_inputs(p, y, residual=other)
        at[y] = k
        removed.add(j)
    return [n for i, n in enumerate(current) if i not in removed]


def _add_to_bias(conv, c_name, y, consts, metas, folded):
    """Name of a new constant: ``conv``'s bias (zeros without one) plus the per-channel
    constant ``c_name`` (float64 sum, cast to the output dtype)."""
    bias = conv_inputs(conv, [consts.get(v) if v else None for v in conv.inputs]).bias
    c, shape, dt = consts[c_name], metas[y].shape, metas[y].dtype
    dt = np.dtype(dt)

    def make(bias=bias, c=c, shape=shape, dt=dt):
        vec = _per_channel(c, shape).astype(np.float64)
        if bias is not None:
            vec = vec + np.asarray(bias, np.float64)
        return vec.astype(dt)
    srcs = [c] if bias is None else [c, bias]
    name = _fresh(consts, metas, f"{y}:b")
    consts[name] = folded.get(srcs, f"bias+{dt.str}{tuple(shape[1:2])}", make)
    return name


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
    cons = consumers(nodes)
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
            ok = ok and all(np.dtype(metas[v].dtype).kind == "f" for v in p.inputs) and \
                metas[p.inputs[0]][1] == metas[p.inputs[1]][1]
        if p.op == "Conv":
            ok = ok and _is_conv_kernel(p, consts, metas)
        if p.op == "Gemm":
            ok = ok and all(len(metas[v].shape) == 2 for v in p.inputs[:2])
        if not ok:
            continue
        current[k] = replace(p, outputs=(n.outputs[0],), attrs=dict(p.attrs, activation=act))
        remove.add(id(n))
    return [n for n in current if id(n) not in remove]


def _conv_form(n, consts, metas):
    """(weight shape, kernel, strides, dilations, pads, group, activation) of a Conv on a 4-D
    float32 input with constant weights, or None."""
    x = n.inputs[0]
    if (not _is_conv_kernel(n, consts, metas) or np.dtype(metas[x].dtype) != np.float32
            or np.ndim(consts[conv_inputs(n).weight]) != 4):
        return None
    w = np.shape(consts[conv_inputs(n).weight])
    k, s, d = G.window(n.attrs, w[2:])
    pads = G.conv_pads(n.attrs, metas[x].shape[2:], k, s, d)
    return w, tuple(k), tuple(s), tuple(d), tuple(pads), int(n.attrs.get("group", 1)), \
        n.attrs.get("activation")


def _is_pointwise(form, act):
    return (form is not None and form[1] == (1, 1) and form[2] == (1, 1)
            and not any(form[4]) and form[5] == 1 and form[6] == act)


def _conv_kernel_of(n, consts, metas):
    """The ConvKernel the plan would make for Conv node ``n`` (constant weight and bias), or
    None."""
    names = conv_inputs(n)
    w = consts.get(names.weight)
    b = None if names.bias is None else consts.get(names.bias)
    if w is None or (names.bias is not None and b is None) or np.ndim(w) != 4:
        return None
    try:
        return ConvKernel(metas[n.inputs[0]].shape, w, b, n.attrs, bool(names.residual),
                          np.dtype(metas[n.inputs[0]].dtype))
    except (ValueError, TypeError):
        return None


def _is_head(n, consts, metas):
    """Conv node ``n`` is a head conv (``kernels.is_head_conv``: an image model's first
    conv, + ReLU6, which the plan would run by the few-channel kernel)."""
    conv = _conv_kernel_of(n, consts, metas)
    return conv is not None and is_head_conv(conv)


def _fuse_inverted_residuals(nodes, outputs, consts, metas):
    """Conv 1x1 (ReLU6) -> depthwise Conv 3x3 (ReLU6) -> Conv 1x1 [+ residual] chains, each
    intermediate read by the next conv only, -> one IR_OP node (inputs by IR_INPUTS). Where no
    such expand conv feeds the depthwise conv (a block of expansion ratio 1, or an expand whose
    output is read elsewhere too), depthwise -> project alone becomes an IR_OP node without
    expand (w1 and b1 ""), or, where an image model's first conv (``_is_head``) feeds it
    (MobileNetV2's stem and first block), one with that conv as its head: the fused kernel
    computes the conv's output rows in its bands, so its map never goes through memory."""
    cons, at = consumers(nodes), {o: n for n in nodes for o in n.outputs if o}
    replaced, drop = {}, set()

    def sole_input(n, v):
        """The producer of ``v`` = n's input when n is its only reader and it is no output."""
        p = at.get(v)
        if p is None or v in outputs or [id(c) for c in cons.get(v, ())] != [id(n)]:
            return None
        return p

    for n3 in nodes:
        if n3.op != "Conv" or len(metas[n3.inputs[0]].shape) != 4:
            continue
        res = conv_inputs(n3).residual
        f3 = _conv_form(n3, consts, metas)
        if not _is_pointwise(f3, None):
            continue
        n2 = sole_input(n3, n3.inputs[0])
        if n2 is None or n2.op != "Conv" or id(n2) in drop or n2.attrs.get("residual"):
            continue
        f2 = _conv_form(n2, consts, metas)
        if f2 is None:
            continue
        w2, k2, s2, d2, p2, g2, a2 = f2
        E = w2[0]
        if (w2[1:] != (1, 3, 3) or k2 != (3, 3) or s2 not in ((1, 1), (2, 2)) or d2 != (1, 1)
                or p2 != (1, 1, 1, 1) or g2 != E or a2 != "relu6"
                or metas[n2.inputs[0]].shape[1] != E or f3[0][1] != E):
            continue
        n1 = sole_input(n2, n2.inputs[0])
        if (n1 is not None and n1.op == "Conv" and id(n1) not in drop
                and not n1.attrs.get("residual")):
            f1 = _conv_form(n1, consts, metas)
            if (f1 is None or f1[0][0] != E or not (
                    _is_pointwise(f1, "relu6") or (FUSE_HEADS and _is_head(n1, consts, metas)))):
                n1 = None
        else:
            n1 = None
        r2, r3 = conv_inputs(n2), conv_inputs(n3)
        if n1 is not None:
            r1 = conv_inputs(n1)
            head = (r1.x, r1.weight, r1.bias or "")
        else:
            head = (r2.x, "", "")
        inputs = head + (r2.weight, r2.bias or "", r3.weight, r3.bias or "") + (
            (res,) if res else ())
        assert len(inputs) in (len(IR_INPUTS) - 1, len(IR_INPUTS))
        convs = (n2, n3) if n1 is None else (n1, n2, n3)
        parts = ((None,) if n1 is None else ()) + tuple(
            {k: v for k, v in p.attrs.items() if k != "residual"} for p in convs)
        attrs = {"parts": parts, "residual": bool(res)}
        name = "+".join(p.name for p in convs if p.name)
        replaced[id(n3)] = type(n3)(IR_OP, inputs, n3.outputs, attrs, name)
        drop.update(id(p) for p in convs[:-1])
    if not replaced:
        return nodes
    return [replaced.get(id(n), n) for n in nodes if id(n) not in drop]


def _fuse_conv_pools(nodes, outputs, consts, metas):
    """Conv -> MaxPool, the conv's output read by the pool only (and no graph output), the
    pool's Indices unread, the conv one the few-channel kernel runs (``kernels.
    conv_pool_fusable``: ResNet-50's and GoogLeNet's 7x7/2 stem and its 3x3/2 max pool) -> one
    CONV_POOL_OP node: the conv's inputs and attributes, the pool's attributes as 'pool', the
    pool's output."""
    cons, at = consumers(nodes), {o: n for n in nodes for o in n.outputs if o}
    replaced, drop = {}, set()
    for m in nodes:
        if m.op != "MaxPool" or len(metas[m.inputs[0]].shape) != 4:
            continue
        if any(o and (o in outputs or cons.get(o)) for o in m.outputs[1:]):
            continue
        v = m.inputs[0]
        p = at.get(v)
        if (p is None or p.op != "Conv" or v in outputs or id(p) in drop
                or [id(c) for c in cons.get(v, ())] != [id(m)]):
            continue
        conv = _conv_kernel_of(p, consts, metas)
        if conv is None or not conv_pool_fusable(conv):
            continue
        r = conv_inputs(p)
        inputs = (r.x, r.weight) + ((r.bias,) if r.bias else ())
        name = "+".join(q.name for q in (p, m) if q.name)
        replaced[id(m)] = type(m)(CONV_POOL_OP, inputs, m.outputs[:1],
                                  dict(p.attrs, pool=dict(m.attrs)), name)
        drop.add(id(p))
    if not replaced:
        return nodes
    return [replaced.get(id(n), n) for n in nodes if id(n) not in drop]


def _merge_siblings(nodes, outputs, consts, metas, folded):
    """Pointwise convs reading one value with one activation -> one conv + a ``SPLIT_OP``
    node, placed where the first of them was (see the module doc). The stacked weights and
    biases (zeros for a conv without one) are exact copies, so each output channel is the
    same product as before; they are cached in ``folded`` by their sources."""
    sets = {}
    for n in nodes:
        form = None if n.attrs.get("residual") else _conv_form(n, consts, metas)
        if form is not None and _is_pointwise(form, form[6]) and n.outputs[0] not in outputs:
            sets.setdefault((n.inputs[0], form[6]), []).append(n)
    # a conv whose output opens a concatenation goes last: its slice of the merged output then
    # ends where the concatenation's buffer begins (storage.plan_views joins the two)
    opens = {n.inputs[0] for n in nodes if n.op == "Concat" and n.inputs}
    replaced, drop = {}, set()
    for members in sets.values():
        if len(members) < 2:
            continue
        first = members[0]     # the merged conv runs where this one did
        members.sort(key=lambda m: m.outputs[0] in opens)
        roles = [conv_inputs(m) for m in members]
        ws = [consts[r.weight] for r in roles]
        bs = [None if r.bias is None else consts[r.bias] for r in roles]
        sizes = tuple(int(np.shape(w)[0]) for w in ws)
        dt = np.dtype(metas[members[0].outputs[0]].dtype)

        def make(ws=ws, bs=bs, sizes=sizes, dt=dt):
            w = np.concatenate([np.asarray(w, dt) for w in ws])
            b = np.concatenate([np.zeros(f, dt) if b is None else np.asarray(b, dt)
                                for b, f in zip(bs, sizes)])
            return w, b
        tag = "merge" + "".join("b" if b is not None else "-" for b in bs) + dt.str
        w, b = folded.get(ws + [b for b in bs if b is not None], tag, make)
        # the stacked copies are now the only ones: the convs' own weights and biases become
        # views of them
        olds, news, start = [], [], 0
        for wk, bk, f in zip(ws, bs, sizes):
            olds.append(wk)
            news.append(w[start:start + f])
            if bk is not None:
                olds.append(bk)
                news.append(b[start:start + f])
            start += f
        folded.substitute(olds, news, consts)
        y = _fresh(consts, metas, f"{first.outputs[0]}:merged")
        shape = metas[first.outputs[0]].shape
        metas[y] = Meta((shape[0], sum(sizes)) + tuple(shape[2:]), dt)
        wn = _fresh(consts, metas, f"{y}:w")
        consts[wn] = w
        bn = _fresh(consts, metas, f"{y}:b")
        consts[bn] = b
        name = "+".join(m.name for m in members if m.name)
        conv = replace(first, inputs=(first.inputs[0], wn, bn), outputs=(y,), name=name)
        split = type(first)(SPLIT_OP, (y,), tuple(m.outputs[0] for m in members),
                            {"axis": 1, "sizes": sizes}, name)
        replaced[id(first)] = (conv, split)
        drop.update(id(m) for m in members if m is not first)
    out = []
    for n in nodes:
        if id(n) not in drop:
            out.extend(replaced.get(id(n), (n,)))
    return out


_MATMUL_VIEW_OPS = ("Transpose", "Split", "Gather", "Reshape", "Flatten", "Squeeze",
                    "Unsqueeze")


def _view_steps(p, v, metas, consts):
    """The view steps (``kernels.view_layout``) that turn node ``p``'s input 0 into its output
    ``v``, or None (a Gather of anything but one constant index)."""
    shape = metas[p.inputs[0]].shape
    if p.op == "Transpose":
        nd = len(shape)
        return (("T", tuple(int(q) % nd for q in p.attrs.get("perm", range(nd)[::-1]))),)
    if p.op == "Split":
        axis = int(p.attrs.get("axis", 0)) % len(shape)
        start = sum(metas[o].shape[axis] for o in p.outputs[:p.outputs.index(v)])
        return (("S", axis, start, start + metas[v].shape[axis]),)
    if p.op == "Gather":
        idx = consts.get(p.inputs[1]) if len(p.inputs) > 1 else None
        if idx is None or np.ndim(idx) != 0 or np.asarray(idx).dtype.kind not in "iu":
            return None
        axis = int(p.attrs.get("axis", 0)) % len(shape)
        i = int(idx)
        if not -shape[axis] <= i < shape[axis]:
            return None
        i %= shape[axis]
        return (("S", axis, i, i + 1), ("R", tuple(metas[v].shape)))
    return (("R", tuple(metas[v].shape)),)


def _operand_chain(v, prod, cons, outputs, metas, consts):
    """(source, steps): the longest chain of transposes, split outputs, gathers of one constant
    index and reshapes ending in MatMul operand ``v``, each value read by nothing else, that
    ``operand_view`` can replay as a view of ``source``; (None, ()) when it holds no transpose
    or slice (reshapes alias anyway)."""
    chain = []
    while (v in prod and prod[v].op in _MATMUL_VIEW_OPS and v not in outputs
           and len(cons.get(v, ())) == 1 and prod[v].inputs[0]
           and metas[prod[v].inputs[0]].dtype == metas[v].dtype):
        steps = _view_steps(prod[v], v, metas, consts)
        if steps is None:
            break
        chain.append((prod[v].inputs[0], steps))
        v = prod[v].inputs[0]
    while chain:
        src = chain[-1][0]
        steps = tuple(step for _, group in reversed(chain) for step in group)
        if (any(step[0] != "R" for step in steps)
                and view_layout(metas[src].shape, steps) is not None):
            return src, steps
        chain.pop()
    return None, ()


def _sole_reader(v, op, cons, outputs):
    users = cons.get(v, ())
    if v in outputs or len(users) != 1 or users[0].op != op:
        return None
    return users[0]


def _fuse_matmuls(nodes, outputs, consts, metas):
    """MatMul (float operands of rank >= 2) absorbs what its GEMM can do on the way
    (``kernels.MATMUL_OP``): after it, a scale (Mul by a constant scalar), then a bias (Add
    of a constant vector along the last axis, with the activation fused into that Add), then
    a Transpose that keeps the last axis (the product writes the transposed buffer through a
    view); before it, the transposes, split outputs, one-index gathers and reshapes its
    operands come through (read as views of their source). Each absorbed value must be read
    by nothing else. An attention block exported from PyTorch (q/k/v split out of one
    projection, k transposed, heads merged back) then runs without copies."""
    prod, cons = _producers(nodes), consumers(nodes)
    out, absorbed = [], set()
    for n in nodes:
        if (n.op != "MatMul" or len(n.inputs) != 2
                or any(len(metas[v].shape) < 2 or np.dtype(metas[v].dtype).kind != "f"
                       for v in n.inputs)):
            out.append(n)
            continue
        attrs, y = {}, n.outputs[0]
        dt, ymeta = np.dtype(metas[y].dtype), metas[y]
        bias_name = None
        u = _sole_reader(y, "Mul", cons, outputs)
        if u is not None:
            c = _other_const(u, y, consts)
            if (c is not None and c.size == 1 and c.dtype == dt and metas[u.outputs[0]] == ymeta
                    and c.ndim <= len(ymeta.shape)):
                attrs["alpha"], y = float(c.reshape(())), u.outputs[0]
                absorbed.add(id(u))
        u = _sole_reader(y, "Add", cons, outputs)
        if u is not None:
            c = _other_const(u, y, consts)
            cols = ymeta.shape[-1]
            if (c is not None and c.dtype == dt and metas[u.outputs[0]] == ymeta
                    and c.ndim <= len(ymeta.shape) and c.size in (1, cols)
                    and (c.size == 1 or c.shape[-1] == cols)):
                bias_name = _fresh(consts, metas, f"{u.outputs[0]}:bias")
                consts[bias_name] = np.broadcast_to(c.reshape(-1), (cols,)).copy()
                metas[bias_name] = Meta((cols,), dt)
                y = u.outputs[0]
                absorbed.add(id(u))
                if u.attrs.get("activation"):    # a ReLU fused into the Add before
                    attrs["activation"] = u.attrs["activation"]
        u = _sole_reader(y, "Transpose", cons, outputs)
        if u is not None:
            nd = len(ymeta.shape)
            perm = tuple(int(q) % nd for q in u.attrs.get("perm", range(nd)[::-1]))
            if perm[-1] == nd - 1:
                attrs["out_perm"], y = perm, u.outputs[0]
                absorbed.add(id(u))
        ins = list(n.inputs)
        for i, key in ((0, "view_a"), (1, "view_b")):
            src, steps = _operand_chain(ins[i], prod, cons, outputs, metas, consts)
            if steps:
                ins[i], attrs[key] = src, steps
        if not attrs and bias_name is None:
            out.append(n)
            continue
        if bias_name is not None:
            ins.append(bias_name)
        out.append(type(n)(MATMUL_OP, tuple(ins), (y,), attrs, n.name))
        prod[y] = out[-1]      # a later operand chain stops here, not at an absorbed node
    return [n for n in out if id(n) not in absorbed]


def _const_near(u, v, consts, value):
    """Node ``u`` combines ``v`` with a constant scalar within float32 rounding of ``value``."""
    c = _other_const(u, v, consts)
    return (c is not None and c.size == 1 and c.dtype.kind == "f"
            and abs(float(c.reshape(())) - value) <= 1e-6 * abs(value))


def _fuse_gelus(nodes, outputs, consts, metas):
    """x * 0.5 * (1 + Erf(x / sqrt 2)) in any of the spellings exporters write (Div by sqrt 2
    or Mul by 1/sqrt 2; the three products in any order) becomes one ``Gelu`` node (ONNX
    opset 20's op, approximate 'none'): one pass instead of five, and Phi computed without the
    cancellation of 1 + erf for x << 0. Every intermediate must be read by nothing else."""
    prod, cons = _producers(nodes), consumers(nodes)
    fused, drop = {}, set()
    for n in nodes:
        if n.op != "Erf" or n.inputs[0] not in prod:
            continue
        pre = prod[n.inputs[0]]
        if len(pre.inputs) != 2:
            continue
        x = pre.inputs[1] if pre.inputs[0] in consts else pre.inputs[0]
        if not (_sole_reader(pre.outputs[0], "Erf", cons, outputs)
                and ((pre.op == "Div" and pre.inputs[0] == x
                      and _const_near(pre, x, consts, 2 ** 0.5))
                     or (pre.op == "Mul" and _const_near(pre, x, consts, 2 ** -0.5)))):
            continue
        add = _sole_reader(n.outputs[0], "Add", cons, outputs)
        if add is None or not _const_near(add, n.outputs[0], consts, 1.0):
            continue
        # the three factors x, (1 + erf) and 0.5 in two Muls: which pair comes first
        first = _sole_reader(add.outputs[0], "Mul", cons, outputs)
        chain = None
        if first is not None and x in first.inputs:                   # (x * a) * 0.5
            last = _sole_reader(first.outputs[0], "Mul", cons, outputs)
            if last is not None and _const_near(last, first.outputs[0], consts, 0.5):
                chain = (first, last)
        elif first is not None and _const_near(first, add.outputs[0], consts, 0.5):
            last = _sole_reader(first.outputs[0], "Mul", cons, outputs)   # x * (a * 0.5)
            if last is not None and x in last.inputs:
                chain = (first, last)
        if chain is None and first is not None:                        # (x * 0.5) * a
            half = [u for u in cons.get(x, ()) if u.op == "Mul"
                    and _const_near(u, x, consts, 0.5) and u.outputs[0] not in outputs]
            if half and half[0].outputs[0] in first.inputs and \
                    len(cons.get(half[0].outputs[0], ())) == 1:
                chain = (half[0], first)
        if chain is None or metas[chain[1].outputs[0]] != metas[x] or \
                np.dtype(metas[x].dtype).kind != "f":
            continue
        y = chain[1].outputs[0]
        fused[id(chain[1])] = type(n)("Gelu", (x,), (y,), {"approximate": "none"}, n.name)
        drop.update({id(pre), id(n), id(add), id(chain[0])})
    return [fused.get(id(n), n) for n in nodes if id(n) not in drop]


def _fuse_attention(nodes, outputs, consts, metas, opset):
    """MatMul (scale) -> Softmax over the last axis -> MatMul, the scores and probabilities
    read by nothing else, float32, becomes one ``kernels.ATTENTION_OP`` node (the scores then
    never go to memory: ``kernels.AttentionKernel``). The first product may carry operand views
    and a scale (``_fuse_matmuls``), the second a view of its right operand and an output
    transpose; a bias, an activation or a mask added to the scores keeps the steps apart."""
    prod, cons = _producers(nodes), consumers(nodes)
    fused, drop = {}, set()
    for sm in nodes:
        if sm.op != "Softmax" or sm.inputs[0] not in prod:
            continue
        s, a = sm.inputs[0], sm.outputs[0]
        shape = metas[s].shape
        if len(shape) < 2 or np.dtype(metas[s].dtype) != np.float32 or 0 in shape[-2:]:
            continue
        if int(sm.attrs.get("axis", -1 if opset >= 13 else 1)) % len(shape) != len(shape) - 1:
            continue
        m1, m2 = prod[s], None
        if _sole_reader(s, "Softmax", cons, outputs) is not None:
            users = cons.get(a, ())
            m2 = users[0] if len(users) == 1 and a not in outputs else None
        if (m2 is None or m1.op not in ("MatMul", MATMUL_OP) or m2.op not in ("MatMul", MATMUL_OP)
                or len(m1.inputs) != 2 or len(m2.inputs) != 2 or m2.inputs[0] != a
                or m2.inputs[1] == a or set(m1.attrs) - {"view_a", "view_b", "alpha"}
                or set(m2.attrs) - {"view_b", "out_perm"}
                or any(len(metas[v].shape) < 2 or np.dtype(metas[v].dtype) != np.float32
                       for v in (*m1.inputs, m2.inputs[1]))):
            continue
        attrs = {"view_q": m1.attrs.get("view_a", ()), "view_k": m1.attrs.get("view_b", ()),
                 "view_v": m2.attrs.get("view_b", ()), "alpha": m1.attrs.get("alpha", 1.0)}
        if "out_perm" in m2.attrs:
            attrs["out_perm"] = m2.attrs["out_perm"]
        fused[id(m2)] = type(m2)(ATTENTION_OP, (m1.inputs[0], m1.inputs[1], m2.inputs[1]),
                                 m2.outputs, attrs, m2.name)
        drop.update({id(m1), id(sm)})
    return [fused.get(id(n), n) for n in nodes if id(n) not in drop]


def _other_const(u, v, consts):
    """The constant array node ``u`` (two inputs) combines with value ``v``, or None."""
    if len(u.inputs) != 2 or v not in u.inputs:
        return None
    other = u.inputs[1] if u.inputs[0] == v else u.inputs[0]
    return np.asarray(consts[other]) if other in consts else None


def canonicalize(nodes, outputs, consts, metas):
    """The rewrites that need shapes before ``simplify`` (see the module doc). The BatchNorm's
    new scale and bias are computed in float64, then cast to its parameters' dtype."""
    nodes = [type(n)("Add", n.inputs, n.outputs, {}, n.name)
             if n.op == "Sum" and len(n.inputs) == 2 and all(n.inputs) else n for n in nodes]
    readers = consumers(nodes)
    drop, out = set(), []
    for n in nodes:
        if id(n) in drop:
            continue
        if (n.op == "BatchNormalization" and len(n.inputs) == 5
                and all(v in consts for v in n.inputs[1:])
                and not any(o in readers or o in outputs for o in n.outputs[1:] if o)
                and not n.attrs.get("training_mode") and np.ndim(consts[n.inputs[1]]) == 1):
            shape = metas[n.inputs[0]].shape
            chans = np.shape(consts[n.inputs[1]])[0]
            scale = np.asarray(consts[n.inputs[1]], np.float64)
            bias = np.asarray(consts[n.inputs[2]], np.float64)
            last, changed = n.outputs[0], False
            for op in ("Mul", "Add"):
                users = readers.get(last, ())
                if len(users) != 1 or users[0].op != op or last in outputs or \
                        len(users[0].inputs) != 2:
                    break
                u = users[0]
                other = u.inputs[1] if u.inputs[0] == last else u.inputs[0]
                c = None
                if other in consts and np.asarray(consts[other]).dtype.kind == "f":
                    c = _per_channel(consts[other], shape)
                if c is None or len(c) != chans or metas[u.outputs[0]] != metas[last]:
                    break
                c = c.astype(np.float64)
                if op == "Mul":
                    scale, bias = scale * c, bias * c
                else:
                    bias = bias + c
                drop.add(id(u))
                last, changed = u.outputs[0], True
            if changed:
                dt = np.asarray(consts[n.inputs[1]]).dtype
                names = []
                for tag, arr in (("scale", scale), ("bias", bias)):
                    name = _fresh(consts, metas, f"{last}:{tag}")
                    consts[name] = arr.astype(dt)
                    metas[name] = Meta((chans,), dt)
                    names.append(name)
                n = type(n)(n.op, (n.inputs[0], names[0], names[1]) + tuple(n.inputs[3:]),
                            (last,), n.attrs, n.name)
        out.append(n)
    return out


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
    nodes = _fuse_residual(nodes, outputs, consts, metas, folded)
    nodes = _fuse_activations(nodes, outputs, consts, metas, opset)
    if FUSE_BLOCKS and inverted_residual_available():
        nodes = _fuse_inverted_residuals(nodes, outputs, consts, metas)
    if FUSE_POOLS:
        nodes = _fuse_conv_pools(nodes, outputs, consts, metas)
    if MERGE_SIBLINGS:
        nodes = _merge_siblings(nodes, outputs, consts, metas, folded)
    if FUSE_MATMULS:
        nodes = _fuse_matmuls(nodes, outputs, consts, metas)
        nodes = _fuse_gelus(nodes, outputs, consts, metas)
    if FUSE_ATTENTION:
        nodes = _fuse_attention(nodes, outputs, consts, metas, opset)
    return _dce(nodes, outputs), outputs
