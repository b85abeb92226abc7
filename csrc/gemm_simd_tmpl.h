/* Template of an x86 SIMD micro-kernel family (included by gemm_avx2.c and gemm_avx512.c once
 * per dtype). The including file defines:
 *   T, EPI_T, KERNEL_T, FN(name)          element type, epilogue/kernel structs, name suffix
 *   TGT                                   __attribute__((target(...))) for every function
 *   VEC, LANES, MASK_T                    vector type, its lane count, tail-mask type
 *   V_ZERO(), V_SET1(x), V_LOADU(p), V_STOREU(p, v), V_FMA(a, b, c) (= a*b+c, fused),
 *   V_MUL, V_ADD, V_MAX, V_MIN            (V_MAX/V_MIN: the x86 instructions, which return
 *                                         their second operand when either is NaN or both
 *                                         are zeros)
 *   V_MASK(r)                             mask of the first r lanes (1 <= r <= LANES)
 *   V_LOADM(mask, p), V_STOREM(p, mask, v) masked load/store (masked lanes are not touched)
 *   UKR_MR, UKR_NV                        register tile: MR = UKR_MR rows, NR = UKR_NV * LANES
 *   UKR_MC, UKR_KC, UKR_NC                cache blocks (see gemm_internal.h)
 * UKR_MR <= 16 and UKR_NV <= 4. No include guard on purpose. */

#define UKR_NR (UKR_NV * LANES)
#ifndef NNL_KUNROLL
#define NNL_KUNROLL 4
#endif
#ifndef NNL_UNROLL
#define NNL_DO_PRAGMA(x) _Pragma(#x)
#define NNL_UNROLL(n) NNL_DO_PRAGMA(GCC unroll n)
#endif

/* ReLU / ReLU6 (NNL_ACT_*): nnl_act_*'s values lane by lane, v < 0 -> +0, NaN and -0 kept,
 * v > 6 -> 6, as max(0, v) and min(6, v) with v the second operand (returned when either is NaN
 * or both are zeros): two instructions, where NNL_ACT_VEC's compare masks and selects take
 * four. */
static NNL_ALWAYS_INLINE TGT VEC FN(act)(VEC v, int act)
{
    if (act != NNL_ACT_NONE) {
        v = V_MAX(V_ZERO(), v);
        if (act == NNL_ACT_RELU6)
            v = V_MIN(V_SET1((T)6), v);
    }
    return v;
}

/* The m x (nv vectors) tile; mr, nv and amode are compile-time constants after inlining, so
 * the accumulators live in registers and the loops unroll completely. A (amode): 0 a packed
 * micro-panel, element (i, k) at ap[i + k * MR]; read in place (full-height tiles), 1 a
 * row-major op(A), at ap[i * e->lda + k], 2 a column-major one, at ap[i + k * e->aks]. */
static NNL_ALWAYS_INLINE TGT void FN(tile)(const int mr, const int nv, const int amode,
                                           nnl_idx kc, const T *NNL_RESTRICT ap,
                                           const T *NNL_RESTRICT bp, T *NNL_RESTRICT c,
                                           nnl_idx ldc, int tail_full, MASK_T tail,
                                           const EPI_T *e)
{
    VEC acc[UKR_MR][UKR_NV];
#pragma GCC unroll 16
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int j = 0; j < nv; j++)
            acc[i][j] = V_ZERO();
    /* the C tile is read after the K loop (every K slice but the first): fetch its lines now,
     * so that they arrive during the loop (C rows are often 4 KB apart, the L1's set stride) */
    if (e->load_c) {
#pragma GCC unroll 16
        for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
            for (int j = 0; j < nv; j++)
                __builtin_prefetch(c + i * ldc + j * LANES, 1, 3);
    }
    const nnl_idx ldb = e->ldb; /* UKR_NR (packed panel) or B's row stride (read in place) */
    const nnl_idx aks = amode == 1 ? 1 : amode == 2 ? e->aks : UKR_MR; /* A's k step */
    const nnl_idx lda = amode == 1 ? e->lda : 1;                       /* and row step */
#define NNL_K_STEP                                                                        \
    do {                                                                                  \
        VEC b[UKR_NV];                                                                    \
        _Pragma("GCC unroll 4") for (int j = 0; j < nv; j++) b[j] = V_LOADU(bp + j * LANES); \
        _Pragma("GCC unroll 16") for (int i = 0; i < mr; i++) {                           \
            const VEC a = V_SET1(ap[i * lda]);                                            \
            _Pragma("GCC unroll 4") for (int j = 0; j < nv; j++)                          \
                acc[i][j] = V_FMA(a, b[j], acc[i][j]);                                    \
        }                                                                                 \
        ap += aks;                                                                        \
        bp += ldb;                                                                        \
    } while (0)
    /* the first pf_n steps each prefetch a part of what the caller reads next, so that it
     * arrives while this tile computes instead of when the next tile stalls on it: one line
     * (pf_ld 0: a pre-packed panel that is still in DRAM, the weights of a late layer read
     * once per call), or one row of UKR_NR elements, rows pf_ld bytes apart (the next panel
     * of a B read in place: rows in other pages, which the hardware prefetcher does not
     * follow) */
    const nnl_idx pf_n = e->pf_n < kc ? e->pf_n : kc, pf_ld = e->pf_ld;
    const char *pf = e->pf;
    /* counted by the prefetch pointer: with a k index here GCC kept k on the stack in 15 of
     * the float tiles (a store-to-load chain per step, longer than an 8 x 16 tile's 8 FMAs on
     * a CPU with two 512-bit FMA ports: 7% of ResNet-50's samples, Winograd's products) */
    if (pf_ld > 0) {
        const char *const pf_end = pf_n > 0 ? pf + pf_ld * pf_n : pf;
        for (; pf != pf_end; pf += pf_ld) {
            NNL_K_STEP;
#pragma GCC unroll 4
            for (int j = 0; j < UKR_NV; j++)
                __builtin_prefetch(pf + j * LANES * (nnl_idx)sizeof(T), 0, 2);
            __builtin_prefetch(pf + UKR_NR * (nnl_idx)sizeof(T) - 1, 0, 2); /* unaligned rows */
        }
    } else {
        const char *const pf_end = pf_n > 0 ? pf + 64 * pf_n : pf;
        for (; pf != pf_end; pf += 64) {
            NNL_K_STEP;
            __builtin_prefetch(pf, 0, 2);
        }
    }
    NNL_UNROLL(NNL_KUNROLL) /* K loop unrolled 4x: +2-4% (loop overhead, scheduling) */
    for (nnl_idx k = pf_n; k < kc; k++)
        NNL_K_STEP;
#undef NNL_K_STEP

    /* write-out epilogue: alpha/beta, bias, activation (FN(act)), each step over the whole
     * tile behind one test of its flag (tested per vector, the tests and branches took about
     * a quarter of the micro-kernel's time where K is small: AVX2, K = 16); every element
     * takes the same operations in the same order either way. The last vector may be
     * partial (masked loads and stores). */
#define NNL_EPI_EACH(stmt)                                                                \
    _Pragma("GCC unroll 16") for (int i = 0; i < mr; i++)                                 \
        _Pragma("GCC unroll 4") for (int j = 0; j < nv; j++) { stmt; }
#define NNL_EPI_MASKED (j == nv - 1 && !tail_full)
    if (e->load_c) {
        const VEC valpha = V_SET1(e->alpha), vbeta = V_SET1(e->beta);
        NNL_EPI_EACH(const T *cij = c + i * ldc + j * LANES;
                     const VEC old = NNL_EPI_MASKED ? V_LOADM(tail, cij) : V_LOADU(cij);
                     acc[i][j] = V_FMA(acc[i][j], valpha, V_MUL(vbeta, old)))
    } else if (e->alpha != (T)1) {   /* acc * 1 is acc */
        const VEC valpha = V_SET1(e->alpha);
        NNL_EPI_EACH(acc[i][j] = V_MUL(acc[i][j], valpha))
    }
    if (e->bias_row)
        NNL_EPI_EACH(acc[i][j] = V_ADD(acc[i][j], V_SET1(e->bias_row[i])))
    if (e->bias_col) {
        VEC bc[UKR_NV];
#pragma GCC unroll 4
        for (int j = 0; j < nv; j++)
            bc[j] = NNL_EPI_MASKED ? V_LOADM(tail, e->bias_col + j * LANES)
                                   : V_LOADU(e->bias_col + j * LANES);
        NNL_EPI_EACH(acc[i][j] = V_ADD(acc[i][j], bc[j]))
    }
    if (e->act == NNL_ACT_RELU6)
        NNL_EPI_EACH(acc[i][j] = FN(act)(acc[i][j], NNL_ACT_RELU6))
    else if (e->act != NNL_ACT_NONE)
        NNL_EPI_EACH(acc[i][j] = FN(act)(acc[i][j], NNL_ACT_RELU))
    NNL_EPI_EACH(T *cij = c + i * ldc + j * LANES;
                 if (NNL_EPI_MASKED) V_STOREM(cij, tail, acc[i][j]);
                 else V_STOREU(cij, acc[i][j]))
#undef NNL_EPI_MASKED
#undef NNL_EPI_EACH
}

#define NNL_TILE_A(M, NV, AMODE)                                                           \
    do {                                                                                  \
        if ((M) <= UKR_MR && (NV) <= UKR_NV)                                              \
            FN(tile)((M), (NV), (AMODE), kc, ap, bp, c, ldc, tail_full, tail, e);         \
    } while (0)
#define NNL_TILE(M, NV) NNL_TILE_A(M, NV, 0)

#define NNL_ROWS(M)                                                                       \
    case M:                                                                               \
        switch (nv) {                                                                     \
        case 1: NNL_TILE(M, 1); break;                                                    \
        case 2: NNL_TILE(M, 2); break;                                                    \
        case 3: NNL_TILE(M, 3); break;                                                    \
        default: NNL_TILE(M, 4); break;                                                   \
        }                                                                                 \
        break;

static TGT void FN(ukr)(nnl_idx kc, const T *ap, const T *bp, T *c, nnl_idx ldc, int m, int n,
                        const EPI_T *e)
{
    const int nv = (n + LANES - 1) / LANES;
    const int rem = n - (nv - 1) * LANES;
    const int tail_full = rem == LANES;
    const MASK_T tail = V_MASK(rem);
    if (e->lda > 0 || e->aks > 0) {   /* A read in place: full-height tiles only */
        const int amode = e->lda > 0 ? 1 : 2;
        switch (nv * 4 + amode) {
        case 5: NNL_TILE_A(UKR_MR, 1, 1); break;
        case 6: NNL_TILE_A(UKR_MR, 1, 2); break;
        case 9: NNL_TILE_A(UKR_MR, 2, 1); break;
        case 10: NNL_TILE_A(UKR_MR, 2, 2); break;
        case 13: NNL_TILE_A(UKR_MR, 3, 1); break;
        case 14: NNL_TILE_A(UKR_MR, 3, 2); break;
        case 17: NNL_TILE_A(UKR_MR, 4, 1); break;
        default: NNL_TILE_A(UKR_MR, 4, 2); break;
        }
        return;
    }
    if (m == UKR_MR && nv == UKR_NV) {
        FN(tile)(UKR_MR, UKR_NV, 0, kc, ap, bp, c, ldc, tail_full, tail, e);
        return;
    }
    switch (m) {
        NNL_ROWS(1)
        NNL_ROWS(2)
        NNL_ROWS(3)
        NNL_ROWS(4)
        NNL_ROWS(5)
        NNL_ROWS(6)
        NNL_ROWS(7)
        NNL_ROWS(8)
        NNL_ROWS(9)
        NNL_ROWS(10)
        NNL_ROWS(11)
        NNL_ROWS(12)
        NNL_ROWS(13)
        NNL_ROWS(14)
        NNL_ROWS(15)
        NNL_ROWS(16)
    default:
        break;
    }
}

#undef NNL_TILE
#undef NNL_TILE_A
#undef NNL_ROWS

/* The dot micro-kernel (nnl_dot_s/_d, gemm_internal.h): a dot product's NNL_SKINNY_LANES
 * partial sums are DOT_NV vectors (vector v holds s[v*LANES .. v*LANES + LANES - 1]); an
 * m x nb block of dot products at a time, nb as large as DOT_ACC accumulator registers allow
 * (512-bit vectors: 32 registers, else 16), so that a matrix-vector product keeps several
 * independent chains of fused multiply-adds in flight and streams several rows of op(B)^T
 * at once (one chain per dot product waited on each multiply-add: 1280 -> 1000 at 2
 * threads, Zen 4, 113 us with the weights in cache against NumPy's 66 us). */
#define DOT_NV (NNL_SKINNY_LANES / LANES)
#define DOT_NB_MAX 8
#define DOT_ACC (LANES * (int)sizeof(T) == 64 ? 24 : 10)
#define DOT_NB(m) (DOT_ACC / ((m) * DOT_NV) < 1 ? 1                                         \
                   : DOT_ACC / ((m) * DOT_NV) > DOT_NB_MAX ? DOT_NB_MAX                     \
                                                            : DOT_ACC / ((m) * DOT_NV))

static NNL_ALWAYS_INLINE TGT void FN(dot_tile)(const int m, const int nb, nnl_idx K,
                                               const T *NNL_RESTRICT a, nnl_idx rsa,
                                               const T *NNL_RESTRICT b, nnl_idx csb,
                                               T *NNL_RESTRICT out, nnl_idx ldo)
{
    VEC s[NNL_SKINNY_M][DOT_NB_MAX][DOT_NV];
#pragma GCC unroll 4
    for (int i = 0; i < m; i++)
#pragma GCC unroll 8
        for (int j = 0; j < nb; j++)
#pragma GCC unroll 4
            for (int v = 0; v < DOT_NV; v++)
                s[i][j][v] = V_ZERO();
    nnl_idx k = 0;
    for (; k + NNL_SKINNY_LANES <= K; k += NNL_SKINNY_LANES) {
#pragma GCC unroll 4
        for (int v = 0; v < DOT_NV; v++) {
            VEC av[NNL_SKINNY_M];
#pragma GCC unroll 4
            for (int i = 0; i < m; i++)
                av[i] = V_LOADU(a + i * rsa + k + v * LANES);
#pragma GCC unroll 8
            for (int j = 0; j < nb; j++) {
                const VEC bv = V_LOADU(b + j * csb + k + v * LANES);
#pragma GCC unroll 4
                for (int i = 0; i < m; i++)
                    s[i][j][v] = V_FMA(av[i], bv, s[i][j][v]);
            }
        }
    }
    /* the last K % LANES terms go to the first lanes (s[k % LANES]); masked lanes load zeros
     * and add 0 * 0 */
    for (int v = 0; v < DOT_NV && k + v * LANES < K; v++) {
        const nnl_idx left = K - k - v * LANES;
        const MASK_T mk = V_MASK(left < LANES ? (int)left : LANES);
        VEC av[NNL_SKINNY_M];
#pragma GCC unroll 4
        for (int i = 0; i < m; i++)
            av[i] = V_LOADM(mk, a + i * rsa + k + v * LANES);
#pragma GCC unroll 8
        for (int j = 0; j < nb; j++) {
            const VEC bv = V_LOADM(mk, b + j * csb + k + v * LANES);
#pragma GCC unroll 4
            for (int i = 0; i < m; i++)
                s[i][j][v] = V_FMA(av[i], bv, s[i][j][v]);
        }
    }
    /* s[u] += s[u + w], w = LANES*DOT_NV/2 down to 1: across the vectors, then in lanes */
#pragma GCC unroll 4
    for (int i = 0; i < m; i++)
#pragma GCC unroll 8
        for (int j = 0; j < nb; j++) {
#pragma GCC unroll 4
            for (int w = DOT_NV / 2; w > 0; w /= 2)
#pragma GCC unroll 4
                for (int v = 0; v < w; v++)
                    s[i][j][v] = V_ADD(s[i][j][v], s[i][j][v + w]);
            T t[LANES];
            V_STOREU(t, s[i][j][0]);
            for (int w = LANES / 2; w > 0; w /= 2)
                for (int u = 0; u < w; u++)
                    t[u] += t[u + w];
            out[i * ldo + j] = t[0];
        }
}

#define NNL_DOT_REST(M, R)                                                                \
    case R:                                                                               \
        if ((R) < DOT_NB(M))                                                              \
            FN(dot_tile)((M), (R), K, a, rsa, b + j * csb, csb, out + j, ldo);            \
        break;

#define NNL_DOT_ROWS(M)                                                                   \
    case M: {                                                                             \
        nnl_idx j = 0;                                                                    \
        for (; j + DOT_NB(M) <= n; j += DOT_NB(M))                                        \
            FN(dot_tile)((M), DOT_NB(M), K, a, rsa, b + j * csb, csb, out + j, ldo);      \
        switch (n - j) {                                                                  \
            NNL_DOT_REST(M, 1)                                                            \
            NNL_DOT_REST(M, 2)                                                            \
            NNL_DOT_REST(M, 3)                                                            \
            NNL_DOT_REST(M, 4)                                                            \
            NNL_DOT_REST(M, 5)                                                            \
            NNL_DOT_REST(M, 6)                                                            \
            NNL_DOT_REST(M, 7)                                                            \
        default:                                                                          \
            break;                                                                        \
        }                                                                                 \
        break;                                                                            \
    }

static TGT void FN(dot)(nnl_idx K, int m, int n, const T *a, nnl_idx rsa, const T *b,
                        nnl_idx csb, T *out, nnl_idx ldo)
{
    switch (m) {
        NNL_DOT_ROWS(1)
        NNL_DOT_ROWS(2)
        NNL_DOT_ROWS(3)
        NNL_DOT_ROWS(4)
    default:
        break;
    }
}

#undef NNL_DOT_ROWS
#undef NNL_DOT_REST
#undef DOT_NB
#undef DOT_ACC
#undef DOT_NB_MAX
#undef DOT_NV

/* The column-tail micro-kernel (nnl_tail_s / _d, gemm_internal.h) of a family whose vector
 * holds TAIL_G whole row panels (LANES / MR: AVX-512's 8-row panels, float two a vector,
 * double one; the including file defines V_JOIN(p, q), a vector of LANES / 2 elements at p
 * then LANES / 2 at q, for TAIL_G == 2), or one row panel of fewer rows than lanes in its low
 * lanes (AVX2 float's 6-row panels in 8 lanes: a masked load, the two top lanes zero and
 * never written out). TAIL_RV rows a vector. Blocks of nvec vectors of rows by n columns:
 * per k nvec vector loads of A, n broadcasts of B, nvec * n fused multiply-adds, each
 * element's the one ukr's tile does (a * b + acc in k order), then ukr's epilogue in ukr's
 * order, C read and written through a small transposing buffer. */
#if LANES % UKR_MR == 0 || UKR_MR < LANES
#if LANES % UKR_MR == 0
#define TAIL_G (LANES / UKR_MR)
#define TAIL_RV LANES
#else
#define TAIL_G 1
#define TAIL_RV UKR_MR
#endif
#define TAIL_N (LANES / 2)
#define TAIL_V 4                           /* most vectors of rows in a block */
#if TAIL_G != 1 && TAIL_G != 2
#error "the column-tail kernel loads one or two row panels per vector"
#endif

/* one vector of rows at ap (pm: the lanes of a panel narrower than the vector) */
static NNL_ALWAYS_INLINE TGT VEC FN(tail_rows)(const T *ap, nnl_idx ps, MASK_T pm)
{
    (void)ps, (void)pm;
#if TAIL_RV < LANES
    return V_LOADM(pm, ap);
#elif TAIL_G == 1
    return V_LOADU(ap);
#else
    return V_JOIN(ap, ap + ps);
#endif
}

/* Rows 0 <= i < rows (at most nvec * TAIL_RV) by columns j < n of C; ap: the first row panel
 * of these rows, ps elements to the next one; bias_row: theirs (the block's e->bias_row moved
 * on), or NULL. */
static NNL_ALWAYS_INLINE TGT void FN(tail_block)(const int nvec, const int n, nnl_idx kc,
                                                 const T *NNL_RESTRICT ap, nnl_idx ps,
                                                 const T *NNL_RESTRICT bp, T *NNL_RESTRICT c,
                                                 nnl_idx ldc, int rows, const T *bias_row,
                                                 const EPI_T *e)
{
    VEC acc[TAIL_V][TAIL_N];
#pragma GCC unroll 4
    for (int v = 0; v < nvec; v++)
#pragma GCC unroll 8
        for (int j = 0; j < n; j++)
            acc[v][j] = V_ZERO();
    const nnl_idx vs = TAIL_G * ps;         /* one vector of rows to the next */
    const MASK_T pm = V_MASK(TAIL_RV);
    NNL_UNROLL(2)
    for (nnl_idx k = 0; k < kc; k++) {
        VEC a[TAIL_V];
#pragma GCC unroll 4
        for (int v = 0; v < nvec; v++)
            a[v] = FN(tail_rows)(ap + v * vs + k * UKR_MR, ps, pm);
#pragma GCC unroll 8
        for (int j = 0; j < n; j++) {
            const VEC b = V_SET1(bp[k * UKR_NR + j]);
#pragma GCC unroll 4
            for (int v = 0; v < nvec; v++)
                acc[v][j] = V_FMA(a[v], b, acc[v][j]);
        }
    }
    T buf[TAIL_N][LANES];
    const VEC valpha = V_SET1(e->alpha), vbeta = V_SET1(e->beta);
#pragma GCC unroll 4
    for (int v = 0; v < nvec; v++) {
        const int i0 = v * TAIL_RV, rv = rows - i0 < TAIL_RV ? rows - i0 : TAIL_RV;
        T *cv = c + i0 * ldc;
        if (e->load_c) {
            for (int j = 0; j < n; j++)
                for (int i = 0; i < LANES; i++)
                    buf[j][i] = i < rv ? cv[i * ldc + j] : (T)0;
#pragma GCC unroll 8
            for (int j = 0; j < n; j++)
                acc[v][j] = V_FMA(acc[v][j], valpha, V_MUL(vbeta, V_LOADU(buf[j])));
        } else if (e->alpha != (T)1) {
#pragma GCC unroll 8
            for (int j = 0; j < n; j++)
                acc[v][j] = V_MUL(acc[v][j], valpha);
        }
        if (bias_row) {
            const VEC br = rv == LANES ? V_LOADU(bias_row + i0)
                                       : V_LOADM(V_MASK(rv), bias_row + i0);
#pragma GCC unroll 8
            for (int j = 0; j < n; j++)
                acc[v][j] = V_ADD(acc[v][j], br);
        }
        if (e->bias_col) {
#pragma GCC unroll 8
            for (int j = 0; j < n; j++)
                acc[v][j] = V_ADD(acc[v][j], V_SET1(e->bias_col[j]));
        }
#pragma GCC unroll 8
        for (int j = 0; j < n; j++) {
            V_STOREU(buf[j], FN(act)(acc[v][j], e->act));
        }
        for (int i = 0; i < rv; i++)
            for (int j = 0; j < n; j++)
                cv[i * ldc + j] = buf[j][i];
    }
}

#define NNL_TAIL_COLS(N, NVEC)                                                            \
    case N:                                                                               \
        FN(tail_block)((NVEC), (N), kc, ap + g * vs, ps, bp, c + g * TAIL_RV * ldc, ldc,    \
                       (int)nnl_min((nnl_idx)(NVEC) * TAIL_RV, rows - g * TAIL_RV),        \
                       e->bias_row ? e->bias_row + g * TAIL_RV : NULL, e);                \
        break;
/* blocks of up to 16 accumulators (a vector of A each and one broadcast beside them) */
#define NNL_TAIL_VECS(n) ((n) <= 2 ? 4 : (n) <= 4 ? 3 : 2)
#define NNL_TAIL_SWITCH(NV)                                                               \
    switch (n) {                                                                          \
        NNL_TAIL_COLS(1, NNL_TAIL_VECS(1) < (NV) ? NNL_TAIL_VECS(1) : (NV))               \
        NNL_TAIL_COLS(2, NNL_TAIL_VECS(2) < (NV) ? NNL_TAIL_VECS(2) : (NV))               \
        NNL_TAIL_COLS(3, NNL_TAIL_VECS(3) < (NV) ? NNL_TAIL_VECS(3) : (NV))               \
        NNL_TAIL_COLS(4, NNL_TAIL_VECS(4) < (NV) ? NNL_TAIL_VECS(4) : (NV))               \
        NNL_TAIL_MORE(NV)                                                                 \
    default:                                                                              \
        break;                                                                            \
    }
#if TAIL_N > 4
#define NNL_TAIL_MORE(NV)                                                                 \
    NNL_TAIL_COLS(5, NNL_TAIL_VECS(5) < (NV) ? NNL_TAIL_VECS(5) : (NV))                   \
    NNL_TAIL_COLS(6, NNL_TAIL_VECS(6) < (NV) ? NNL_TAIL_VECS(6) : (NV))                   \
    NNL_TAIL_COLS(7, NNL_TAIL_VECS(7) < (NV) ? NNL_TAIL_VECS(7) : (NV))                   \
    NNL_TAIL_COLS(8, NNL_TAIL_VECS(8) < (NV) ? NNL_TAIL_VECS(8) : (NV))
#else
#define NNL_TAIL_MORE(NV)
#endif

static TGT nnl_idx FN(tail)(nnl_idx kc, const T *ap, nnl_idx rows, const T *bp, T *c,
                            nnl_idx ldc, int n, const EPI_T *e)
{
    if (n < 1 || n > TAIL_N || e->ldb != UKR_NR || e->lda > 0 || e->aks > 0)
        return 0;
    const nnl_idx ps = kc * UKR_MR, vs = TAIL_G * ps;
    const nnl_idx nvec = nnl_cdiv(rows, UKR_MR) / TAIL_G;   /* vectors of whole row panels */
    const nnl_idx per = NNL_TAIL_VECS(n);
    nnl_idx g = 0;                                            /* the block's first vector */
    for (; g + per <= nvec; g += per)
        NNL_TAIL_SWITCH(TAIL_V)
    switch (nvec - g) {                                       /* fewer vectors left */
    case 3: NNL_TAIL_SWITCH(3) break;
    case 2: NNL_TAIL_SWITCH(2) break;
    case 1: NNL_TAIL_SWITCH(1) break;
    default: break;
    }
    return nnl_min(nvec * TAIL_RV, rows);
}
#undef NNL_TAIL_SWITCH
#undef NNL_TAIL_MORE
#undef NNL_TAIL_VECS
#undef NNL_TAIL_COLS
#define NNL_TAIL_FN FN(tail), TAIL_N
#else
#define NNL_TAIL_FN NULL, 0
#endif

static const KERNEL_T FN(simd_kernel) = {UKR_MR, UKR_NR, UKR_MC, UKR_KC, UKR_NC, FN(ukr),
                                         FN(dot), 1, NNL_TAIL_FN, LANES};
#undef NNL_TAIL_FN
#undef TAIL_V
#undef TAIL_N
#undef TAIL_G
#undef TAIL_RV
#undef UKR_NR
