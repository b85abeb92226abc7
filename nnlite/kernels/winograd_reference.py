"""Winograd convolution F(m x m, 3 x 3) in plain loops: the study version and test oracle of
``nnlite.conv_algorithm('winograd')``. It shares no code with the fast path
(nnlite/kernels/conv_winograd.py, csrc/convfast_winograd.c): even the transform matrices are
derived here, in exact fractions, from the interpolation points.

1-D: F(m, r)
------------
conv2d is a correlation: y[i] = sum_k d[i + k] g[k] for an r-tap filter g. F(m, r) computes m
such outputs from a patch of alpha = m + r - 1 inputs with alpha multiplications instead of
m * r:

    y = A^T [ (G g) * (B^T d) ]          (* elementwise; A^T is m x alpha, G alpha x r,
                                          B^T alpha x alpha)

Why it works (Toom-Cook). Read g and an m-vector h as polynomials g(x) = sum_k g[k] x^k and
h(x) = sum_i h[i] x^i. Their product s(x) = g(x) h(x) has degree alpha - 1, so it is fixed by
its values at alpha - 1 points p_0 .. p_{alpha-2} plus its leading coefficient (the "point at
infinity"): with M(x) = prod_l (x - p_l), M_k(x) = M(x) / (x - p_k) and N_k = M_k(p_k),

    s(x) = sum_k g(p_k) h(p_k) M_k(x) / N_k  +  g[r-1] h[m-1] M(x)        (Lagrange)

That is s = C [(G g) * (A h)] with
    A[k, i] = p_k^i                (evaluate h at the points; row alpha-1: [0 .. 0 1])
    G[k, j] = p_k^j / N_k          (evaluate g, scaled; row alpha-1: [0 .. 0 1])
    C[:, k] = coefficients of M_k  (column alpha-1: coefficients of M)
Correlating d with g is the transpose of "multiply h by g" (y[i] is the coefficient of h[i] in
sum_t d[t] s[t]), so y = A^T [(G g) * (C^T d)]: B^T = C^T. Each product (G g)[k] (B^T d)[k]
is one multiplication; everything else is additions and multiplications by small constants.

For F(2, 3) and the points 0, 1, -1 (N_0 = -1, N_1 = N_2 = 2; the sign of N_0 moved from G
to B^T, which changes nothing) this gives

    B^T = [[1,  0, -1, 0],     G = [[1,    0,    0  ],      A^T = [[1, 1,  1, 0],
           [0,  1,  1, 0],          [1/2,  1/2,  1/2],             [0, 1, -1, 1]]
           [0, -1,  1, 0],          [1/2, -1/2,  1/2],
           [0, -1,  0, 1]]          [0,    0,    1  ]]

the matrices of Lavin & Gray (2016) except for the sign of the last row of B^T and the last
column of A^T (both flip together, so the product is the same; the fast path uses Lavin's).
For F(4, 3) with 0, 1, -1, 2, -2 it gives their 6 x 6 / 6 x 3 / 4 x 6 matrices (the fast
path's) except for the signs of rows 1 and 2 of B^T and G (N_1 = N_2 = -6; again they flip
together): 4 outputs from 6 multiplications instead of 12.

2-D: F(m x m, 3 x 3)
--------------------
Nesting the 1-D algorithm along rows and columns: an m x m output tile of one channel is

    Y = A^T [ (G g G^T) * (B^T d B) ] A        d: the alpha x alpha input patch under the tile

and over C input channels the transforms are linear, so the channel sum moves inside:

    Y[f] = A^T [ sum_c U[f, c] * V[c] ] A,   U = G g G^T (once per filter), V = B^T d B

alpha^2 multiplies per tile and channel pair instead of 9 m^2: 16 vs 36 (F(2x2)), 36 vs 144
(F(4x4)). Neighbouring tiles' patches overlap by 2 rows/columns; the tiles cover the output
grid, the last ones hanging over its edge (their extra outputs are dropped) and patches
reading outside the image read the zero padding.

The price is accuracy: the points 2, -2 put entries up to 8 in A^T and 1/24 in G, so rounding
errors grow by roughly 10x per step from F(2x2) to F(4x4) (docs/semantics.md §1.10 has the
measured figures).
"""
from fractions import Fraction

import numpy as np

_POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 2, -2)}


def _poly_mul(p, q):
    """Coefficients (ascending powers) of the product of two polynomials."""
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


def winograd_matrices(m, r=3, points=None):
    """(A^T, G, B^T) of F(m, r) as nested lists of exact Fractions, derived from the finite
    interpolation points (default 0, 1, -1, 2, -2, ... as many as needed) and infinity."""
    alpha = m + r - 1
    pts = [Fraction(p) for p in (points if points is not None else _POINTS[m])]
    if len(pts) != alpha - 1 or len(set(pts)) != len(pts):
        raise ValueError(f"F({m}, {r}) needs {alpha - 1} distinct finite points, got {points}")
    at = [[Fraction(0)] * alpha for _ in range(m)]
    g = [[Fraction(0)] * r for _ in range(alpha)]
    bt = [[Fraction(0)] * alpha for _ in range(alpha)]
    full = [Fraction(1)]                                  # M(x) = prod (x - p_l)
    for p in pts:
        full = _poly_mul(full, [-p, Fraction(1)])
    for k, p in enumerate(pts):
        mk = [Fraction(1)]                                # M_k(x) = prod_{l != k} (x - p_l)
        for q in pts:
            if q != p:
                mk = _poly_mul(mk, [-q, Fraction(1)])
        nk = sum(c * p ** i for i, c in enumerate(mk))    # N_k = M_k(p_k)
        sign = -1 if nk < 0 else 1                        # keep G's scale factors positive
        for i in range(m):
            at[i][k] = p ** i
        for j in range(r):
            g[k][j] = p ** j / nk * sign
        for t in range(alpha):
            bt[k][t] = (mk[t] if t < len(mk) else Fraction(0)) * sign
    # the point at infinity: the leading coefficients g[r-1] h[m-1], times M(x)
    at[m - 1][alpha - 1] = Fraction(1)
    g[alpha - 1][r - 1] = Fraction(1)
    for t in range(alpha):
        bt[alpha - 1][t] = full[t]
    return at, g, bt


def _as_float(mat):
    return np.array([[float(v) for v in row] for row in mat])


def _matmul(a, b):
    """a @ b for small nested float arrays, by loops."""
    n, k, p = len(a), len(b), len(b[0])
    out = np.zeros((n, p))
    for i in range(n):
        for j in range(p):
            s = 0.0
            for t in range(k):
                s += a[i][t] * b[t][j]
            out[i, j] = s
    return out


def conv2d(x, w, b=None, padding=0, groups=1, m=4):
    """conv2d(x, w) + b for 3x3 filters, stride 1, dilation 1, by Winograd F(m x m, 3 x 3),
    every step a visible loop. Computed in float64.

    x (N, C, H, W), w (F, C/groups, 3, 3), b (F,) or None, padding int or (ph, pw).
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    ph, pw = (padding, padding) if np.ndim(padding) == 0 else padding
    n_img, c_in, h, wd = x.shape
    f_out, cg, kh, kw = w.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"the Winograd reference takes 3x3 filters, got {(kh, kw)}")
    if c_in != cg * groups or f_out % groups:
        raise ValueError(f"groups={groups} does not fit {c_in} input / {f_out} output channels")
    fg = f_out // groups
    at, g, bt = (_as_float(mat) for mat in winograd_matrices(m))
    alpha = m + 2
    b_mat, gt, a_mat = bt.T, g.T, at.T
    oh, ow = h + 2 * ph - 2, wd + 2 * pw - 2
    y = np.zeros((n_img, f_out, max(oh, 0), max(ow, 0)))
    if oh <= 0 or ow <= 0:
        return y
    tiles_h, tiles_w = -(-oh // m), -(-ow // m)

    # 1. filter transform, once per (f, c): U = G g G^T (alpha x alpha)
    u = np.zeros((f_out, cg, alpha, alpha))
    for f in range(f_out):
        for c in range(cg):
            u[f, c] = _matmul(_matmul(g, w[f, c]), gt)

    for n in range(n_img):
        for ti in range(tiles_h):
            for tj in range(tiles_w):
                r0, c0 = ti * m - ph, tj * m - pw        # the patch's top-left input pixel
                # 2. input transform of every channel: V = B^T d B
                v = np.zeros((c_in, alpha, alpha))
                for c in range(c_in):
                    d = np.zeros((alpha, alpha))
                    for i in range(alpha):
                        for j in range(alpha):
                            r, s = r0 + i, c0 + j
                            if 0 <= r < h and 0 <= s < wd:
                                d[i, j] = x[n, c, r, s]
                    v[c] = _matmul(_matmul(bt, d), b_mat)
                for f in range(f_out):
                    grp = f // fg
                    # 3. elementwise products, summed over the group's channels
                    mm = np.zeros((alpha, alpha))
                    for c in range(cg):
                        for i in range(alpha):
                            for j in range(alpha):
                                mm[i, j] += u[f, c, i, j] * v[grp * cg + c, i, j]
                    # 4. output transform: Y = A^T M A, the part inside the output grid
                    tile = _matmul(_matmul(at, mm), a_mat)
                    for i in range(m):
                        for j in range(m):
                            oi, oj = ti * m + i, tj * m + j
                            if oi < oh and oj < ow:
                                y[n, f, oi, oj] = tile[i, j] + (0.0 if b is None else b[f])
    return y
