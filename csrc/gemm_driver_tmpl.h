/* Template body of gemm_driver.c, included once per dtype with T, EPI_T, KERNEL_T, FN(name),
 * GEMM_NAME, GEMM_PK, GEMM_PKC, GEMM_SPLIT, GEMM_SPLIT_PK, PACK_NAME and (float only) PACK_A8
 * defined. No include guard on purpose. */

/* The compiled family (its MC/KC/NC are 0 unless fixed at build time with -D). */
static const KERNEL_T *FN(nnl_family)(int isa)
{
    switch (isa) {
    case NNL_ISA_GENERIC:
        return FN(nnl_generic_kernel)();
#if NNL_X86_DISPATCH
    case NNL_ISA_AVX2:
        return FN(nnl_avx2_kernel)();
    case NNL_ISA_AVX512:
        return FN(nnl_avx512_kernel)();
#endif
    default:
        return NULL;
    }
}

/* Every family with its cache blocks filled in from this CPU's caches, once per process. */
static KERNEL_T FN(nnl_tuned)[NNL_ISA_COUNT];
static pthread_once_t FN(nnl_tuned_once) = PTHREAD_ONCE_INIT;

static void FN(nnl_tune)(void)
{
    const nnl_cache_info *ci = nnl_cache_sizes();
    for (int isa = 0; isa < NNL_ISA_COUNT; isa++) {
        const KERNEL_T *base = FN(nnl_family)(isa);
        if (base == NULL)
            continue;
        KERNEL_T k = *base;
        int mc, kc, nc;
        nnl_blocking_rule(ci->l1d, ci->l2, ci->l3, k.mr, k.nr, (int)sizeof(T), &mc, &kc, &nc);
        k.mc = k.mc > 0 ? k.mc : mc;
        k.kc = k.kc > 0 ? k.kc : kc;
        k.nc = k.nc > 0 ? k.nc : nc;
        FN(nnl_tuned)[isa] = k;
    }
}

const KERNEL_T *FN(nnl_select)(int isa)
{
    if (isa == NNL_ISA_AUTO)
        isa = nnl_best_isa();
    if (!nnl_isa_available(isa) || FN(nnl_family)(isa) == NULL)
        return NULL;
    pthread_once(&FN(nnl_tuned_once), FN(nnl_tune));
    return &FN(nnl_tuned)[isa];
}

/* One batch item: C = act(alpha * A @ B + beta * C + bias). */
typedef struct {
    nnl_idx M, N, K;
    T alpha, beta;
    const T *A;
    nnl_idx rsa, csa;
    const T *B;
    nnl_idx rsb, csb;
    T *C;
    nnl_idx rsc, csc;           /* C(i, j) = C[i*rsc + j*csc] (one of them is 1) */
    const T *bias;
    int bias_kind, act;
    nnl_idx ln, csn;            /* C's columns in two levels (nnl_split), ln = 0: plain */
} FN(nnl_prob);

#include "gemm_nest_tmpl.h"

/* ------------------------------------------------------------------------------ K == 0 case */

/* The bias of element (i, j), or NULL. */
static inline const T *FN(bias_at)(const FN(nnl_prob) *p, nnl_idx i, nnl_idx j)
{
    return p->bias_kind == NNL_BIAS_ROW ? p->bias + i
           : p->bias_kind == NNL_BIAS_COL ? p->bias + j : NULL;
}

/* C = act(beta * C + bias): the whole product when K == 0 (also the implicit conv's, with no
 * input channels), the micro-kernels' write-out of a zero accumulator. */
static void FN(scale_only)(const FN(nnl_prob) *p)
{
    for (nnl_idx i = 0; i < p->M; i++) {
        T *ci = p->C + i * p->rsc;
        for (nnl_idx j = 0; j < p->N; j++) {
            T *cij = ci + (p->ln > 0 ? (j / p->ln) * p->csn + j % p->ln : j * p->csc);
            *cij = NNL_EPI_ONE((T)0, (T)1, p->beta, p->beta != 0 ? cij : NULL,
                               FN(bias_at)(p, i, j), p->act);
        }
    }
}

/* ----------------------------------------------------------------------------- B sources */

/* The plain GEMM's B: a strided matrix, packed chunk by chunk (gemm_nest's b_src). */
typedef struct {
    const T *b;
    nnl_idx rsb, csb;
} FN(nnl_bmat);

static const T *FN(b_from_matrix)(const void *ctx, int nr, nnl_idx pc, nnl_idx kcb, nnl_idx jc,
                                  nnl_idx ncb, T *buf)
{
    const FN(nnl_bmat) *m = (const FN(nnl_bmat) *)ctx;
    FN(pack_b)(kcb, ncb, m->b + pc * m->rsb + jc * m->csb, m->rsb, m->csb, nr, 0,
               nnl_cdiv(ncb, nr), buf);
    return buf;
}

/* A row-major B read in place (b_ld = rsb in gemm_nest): the full NR panels of the chunk are
 * not copied; a ragged last panel (past column N the micro-kernel would read beyond B's rows)
 * is packed into buf at its packed position. */
static const T *FN(b_in_place)(const void *ctx, int nr, nnl_idx pc, nnl_idx kcb, nnl_idx jc,
                               nnl_idx ncb, T *buf)
{
    const FN(nnl_bmat) *m = (const FN(nnl_bmat) *)ctx;
    const T *src = m->b + pc * m->rsb + jc;
    const nnl_idx nq = nnl_cdiv(ncb, nr);
    if (ncb % nr != 0)
        FN(pack_b)(kcb, ncb, src, m->rsb, 1, nr, nq - 1, nq, buf);
    return src;
}

/* A B with two-level rows and/or columns (nnl_split), packed chunk by chunk. */
typedef struct {
    const T *b;
    nnl_idx rsb, csb, lk, bsk, ln, bsn;
} FN(nnl_bsplit);

static const T *FN(b_from_split)(const void *ctx, int nr, nnl_idx pc, nnl_idx kcb, nnl_idx jc,
                                 nnl_idx ncb, T *buf)
{
    const FN(nnl_bsplit) *m = (const FN(nnl_bsplit) *)ctx;
    FN(pack_b_split)(pc, kcb, jc, ncb, m->b, m->rsb, m->csb, m->lk, m->bsk, m->ln, m->bsn, nr,
                     buf);
    return buf;
}

/* B packed whole by PACK_NAME: K slice pc, then column panel jc / NR (qn = ceil(N/NR)*NR). */
typedef struct {
    const T *bpk;
    nnl_idx qn;
} FN(nnl_bpacked);

static const T *FN(b_prepacked)(const void *ctx, int nr, nnl_idx pc, nnl_idx kcb, nnl_idx jc,
                                nnl_idx ncb, T *buf)
{
    const FN(nnl_bpacked) *m = (const FN(nnl_bpacked) *)ctx;
    (void)ncb, (void)buf;
    return m->bpk + m->qn * pc + (jc / nr) * kcb * nr;
}

/* ------------------------------------------------------------------ few-row products */

/* C[0:M, j0:j1] of one item for M <= NNL_SKINNY_M rows, without packing (a matrix-vector
 * product such as a classifier at batch 1 would otherwise spend most of its time packing B,
 * which it reads only once). Each element is still one fixed-order sum whatever the thread
 * count: op(B)'s columns contiguous (rsb == 1, e.g. x @ W.T): NNL_SKINNY_LANES interleaved
 * partial sums per element, added pairwise at the end; otherwise (rows of op(B) along j):
 * k ascending, one multiply-add per k. Then the epilogue of gemm_internal.h. */
static void FN(skinny_cols)(const KERNEL_T *kd, const FN(nnl_prob) *p, nnl_idx j0,
                            nnl_idx j1)
{
    enum { L = NNL_SKINNY_LANES, JB = NNL_SKINNY_JB };
    const nnl_idx M = p->M, K = p->K;
    T acc[NNL_SKINNY_M][JB];
    for (nnl_idx jb = j0; jb < j1; jb += JB) {
        const nnl_idx nb = nnl_min(JB, j1 - jb);
        /* op(B)'s columns contiguous (a single column is, whatever its stride says) */
        const int dot_form = p->rsb == 1 && (p->csb != 1 || p->N == 1);
        if (dot_form && p->csa == 1 && kd->dot != NULL) {
            /* the family's dot micro-kernel: the same order, several chains at once */
            kd->dot(K, (int)M, (int)nb, p->A, p->rsa, p->B + jb * p->csb, p->csb, acc[0], JB);
        } else if (dot_form) {
            for (nnl_idx j = 0; j < nb; j++) {
                const T *b = p->B + (jb + j) * p->csb;
                for (nnl_idx i = 0; i < M; i++) {
                    const T *a = p->A + i * p->rsa;
                    T s[L];
                    for (int u = 0; u < L; u++)
                        s[u] = 0;
                    nnl_idx k = 0;
                    if (p->csa == 1) {
                        for (; k + L <= K; k += L)
                            for (int u = 0; u < L; u++)
                                s[u] += a[k + u] * b[k + u];
                    }
                    for (; k < K; k++)
                        s[k % L] += a[k * p->csa] * b[k];
                    for (int w = L / 2; w > 0; w /= 2)
                        for (int u = 0; u < w; u++)
                            s[u] += s[u + w];
                    acc[i][j] = s[0];
                }
            }
        } else {
            for (nnl_idx i = 0; i < M; i++)
                for (nnl_idx j = 0; j < nb; j++)
                    acc[i][j] = 0;
            for (nnl_idx k = 0; k < K; k++) {
                const T *b = p->B + k * p->rsb + jb * p->csb;
                for (nnl_idx i = 0; i < M; i++) {
                    const T a = p->A[i * p->rsa + k * p->csa];
                    T *NNL_RESTRICT r = acc[i];
                    if (p->csb == 1)
                        for (nnl_idx j = 0; j < nb; j++)
                            r[j] += a * b[j];
                    else
                        for (nnl_idx j = 0; j < nb; j++)
                            r[j] += a * b[j * p->csb];
                }
            }
        }
        for (nnl_idx i = 0; i < M; i++) {
            T *c = p->C + i * p->rsc + jb * p->csc;
            for (nnl_idx j = 0; j < nb; j++)
                c[j * p->csc] = NNL_EPI_ONE(acc[i][j], p->alpha, p->beta,
                                            p->beta != 0 ? c + j * p->csc : NULL,
                                            FN(bias_at)(p, i, jb + j), p->act);
        }
    }
}

typedef struct {
    const KERNEL_T *kd;
    const FN(nnl_prob) *p0;
    nnl_idx per, bsa, bsb, bsc, bsbias;
} FN(skinny_job);

static void FN(skinny_unit)(void *ctx, nnl_idx u, int tid, int first)
{
    const FN(skinny_job) *j = (const FN(skinny_job) *)ctx;
    const FN(nnl_prob) *p0 = j->p0;
    const nnl_idx b = u / j->per, j0 = (u % j->per) * NNL_SKINNY_JB;
    FN(nnl_prob) pb = *p0;
    (void)tid, (void)first;
    pb.A = p0->A + b * j->bsa, pb.B = p0->B + b * j->bsb, pb.C = p0->C + b * j->bsc;
    pb.bias = p0->bias ? p0->bias + b * j->bsbias : NULL;
    FN(skinny_cols)(j->kd, &pb, j0, nnl_min(p0->N, j0 + NNL_SKINNY_JB));
}

static void FN(skinny)(const KERNEL_T *kd, const FN(nnl_prob) *p0, nnl_idx batch, nnl_idx bsa,
                       nnl_idx bsb, nnl_idx bsc, nnl_idx bsbias, int nt)
{
    /* work units: (item, block of NNL_SKINNY_JB columns), handed out one at a time: the
     * caller's thread starts on them at once, and a worker that was asleep (a classifier
     * after a one-thread global pool) takes what is left when it wakes instead of the caller
     * waiting for it to do a fixed half. A unit is the same arithmetic whoever runs it. */
    const nnl_idx per = nnl_cdiv(p0->N, NNL_SKINNY_JB);
    FN(skinny_job) j = {kd, p0, per, bsa, bsb, bsc, bsbias};
    nnl_parallel_for(nt, batch * per, FN(skinny_unit), &j);
}

/* The K-sliced panel layout of a whole operand, as the units of GEMM_PK read it: for each K
 * slice pc (the call's slicing: kcb_max from K and KC), the MR-tall row panels of op(A)
 * (side 0; pack_a layout, rows >= M zero) or the NR-wide column panels of op(B) (side 1;
 * pack_b layout, columns >= N zero). Element count: ceil(M/MR)*MR*K (side 0) or
 * ceil(N/NR)*NR*K (side 1). op(X) is rows x cols = M x K (side 0) or K x N (side 1) with
 * strides rs, cs. */
int PACK_NAME(int side, nnl_idx rows, nnl_idx cols, const T *X, nnl_idx rs, nnl_idx cs, int isa,
              T *out)
{
    const KERNEL_T *kd = FN(nnl_select)(isa);
    if (kd == NULL || rows < 0 || cols < 0 || (side != 0 && side != 1))
        return NNL_EINVAL;
    const nnl_idx K = side == 0 ? cols : rows;
    if (K == 0 || rows == 0 || cols == 0)
        return NNL_OK;
    const nnl_idx kcb_max = nnl_k_slice(K, kd->kc);
    if (side == 0) {
        const nnl_idx Pm = nnl_cdiv(rows, kd->mr) * kd->mr;
        for (nnl_idx pc = 0; pc < K; pc += kcb_max)
            FN(pack_a)(rows, nnl_min(kcb_max, K - pc), X, rs, cs, kd->mr,
                       nnl_pack_a_fast(kd->mr), out + Pm * pc, pc, 0, 0);
    } else {
        const nnl_idx Q = nnl_cdiv(cols, kd->nr);
        for (nnl_idx pc = 0; pc < K; pc += kcb_max)
            FN(pack_b)(nnl_min(kcb_max, K - pc), cols, X + pc * rs, rs, cs, kd->nr, 0, Q,
                       out + Q * kd->nr * pc);
    }
    return NNL_OK;
}

int GEMM_NAME(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, T alpha,
              const T *A, nnl_idx bsa, nnl_idx rsa, nnl_idx csa,
              const T *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
              T beta, T *C, nnl_idx bsc, nnl_idx rsc,
              const T *bias, nnl_idx bsbias, int bias_kind, int act,
              int nthreads, int isa)
{
    return GEMM_PK(batch, M, N, K, alpha, A, bsa, rsa, csa, B, bsb, rsb, csb, beta, C, bsc, rsc,
                   bias, bsbias, bias_kind, act, nthreads, isa, NULL, NULL);
}

/* One call's work units (gemm_run): the nest set-up shared by all units, the operands and
 * the unit grid (ru row groups of mu rows by cu column groups of nu columns, per item; the
 * last group of each may hold a partial panel more, nnl_groups). */
typedef struct {
    const FN(nnl_nest) *s0;
    const KERNEL_T *kd;
    const nnl_split *sp;
    const T *B;
    nnl_idx bsb, rsb, csb;
    const T *bpk;
    nnl_idx bpk_cols;
    const T *A;
    nnl_idx bsa;
    T *C;
    nnl_idx bsc;
    const T *bias;
    nnl_idx bsbias, lk, ln;
    nnl_idx m0, M, n0, N;   /* the block of C the units cover: rows [m0, M), columns [n0, N) */
    nnl_idx mu, nu, ru, cu;
} FN(nnl_units);

/* Unit u of a call: its item, row group and column group, through the nest with the B
 * source the call reads (split, pre-packed, in place or packed), on the thread's buffers. */
static void FN(gemm_unit)(const FN(nnl_units) *w, nnl_idx u, T *ap, T *bp)
{
    const FN(nnl_nest) *s0 = w->s0;
    const nnl_idx ru = w->ru, cu = w->cu;
    const nnl_idx b = u / (ru * cu), r = (u / cu) % ru, c = u % cu;
    const nnl_split *sp = w->sp;
    FN(nnl_nest) sb = *s0;
    FN(nnl_bmat) bm = {w->B + b * w->bsb, w->rsb, w->csb};
    FN(nnl_bpacked) bk = {w->bpk, w->bpk_cols};
    FN(nnl_bsplit) bs = {w->B + b * w->bsb, w->rsb, w->csb, w->lk,
                         w->lk > 0 ? sp->bsk : 0, w->ln, w->ln > 0 ? sp->bsn : 0};
    sb.a = w->A + b * w->bsa, sb.c = w->C + b * w->bsc;
    sb.bias = w->bias ? w->bias + b * w->bsbias : NULL;
    const nnl_idx r0 = w->m0 + r * w->mu;
    const nnl_idx r1 = w->m0 + nnl_group_end(r, ru, w->mu, w->M - w->m0);
    const nnl_idx c0 = w->n0 + c * w->nu;
    const nnl_idx c1 = w->n0 + nnl_group_end(c, cu, w->nu, w->N - w->n0);
    if (w->lk > 0 || w->ln > 0) {
        sb.b_ctx = &bs;
        FN(gemm_nest)(&sb, FN(b_from_split), NULL, w->kd, r0, r1, c0, c1, ap, bp);
    } else if (w->bpk != NULL) {
        sb.b_ctx = &bk, sb.pf_b = 1;
        FN(gemm_nest)(&sb, FN(b_prepacked), NULL, w->kd, r0, r1, c0, c1, ap, bp);
    } else if (s0->b_ld > 0) {
        sb.b_ctx = &bm;
        FN(gemm_nest)(&sb, FN(b_in_place), NULL, w->kd, r0, r1, c0, c1, ap, bp);
    } else {
        sb.b_ctx = &bm;
        FN(gemm_nest)(&sb, FN(b_from_matrix), NULL, w->kd, r0, r1, c0, c1, ap, bp);
    }
}

/* A call's units on the pool: each thread packs into its own pair of buffers. */
typedef struct {
    const FN(nnl_units) *w;
    T *ws;
    size_t ap_elems, bp_elems;
} FN(gemm_job);

static void FN(gemm_job_unit)(void *ctx, nnl_idx u, int tid, int first)
{
    const FN(gemm_job) *j = (const FN(gemm_job) *)ctx;
    T *ap = j->ws + (size_t)tid * (j->ap_elems + j->bp_elems);
    (void)first;
    FN(gemm_unit)(j->w, u, ap, ap + j->ap_elems);
}

/* The one driver behind GEMM_PK, GEMM_PKC, GEMM_SPLIT, GEMM_SPLIT_PK and GEMM_PART (sp:
 * two-level axes, or NULL; part: NULL for the whole of C, else {m0, m1, n0, n1}: only the
 * block C[m0:m1, n0:n1] of one item, on the calling thread). */
static int FN(gemm_run)(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, T alpha,
                        const T *A, nnl_idx bsa, nnl_idx rsa, nnl_idx csa,
                        const T *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
                        T beta, T *C, nnl_idx bsc, nnl_idx rsc, nnl_idx csc,
                        const T *bias, nnl_idx bsbias, int bias_kind, int act,
                        int nthreads, int isa, const T *apk, const T *bpk, const nnl_split *sp,
                        const nnl_idx *part)
{
    if (batch < 0 || M < 0 || N < 0 || K < 0)
        return NNL_EINVAL;
    nnl_idx m0 = 0, m1 = M, n0 = 0, n1 = N;
    if (part != NULL) {
        m0 = part[0], m1 = part[1], n0 = part[2], n1 = part[3];
        if (batch != 1 || sp != NULL || m0 < 0 || m1 < m0 || m1 > M || n0 < 0 || n1 < n0 ||
            n1 > N)
            return NNL_EINVAL;
        nthreads = 1;
    }
    /* C row-major (unit column stride) or column-major (unit row stride; not with sp) */
    if (csc != 1 && (rsc != 1 || csc < 1 || sp != NULL))
        return NNL_EINVAL;
    if (act < NNL_ACT_NONE || act > NNL_ACT_RELU6)
        return NNL_EINVAL;
    if (bias_kind < NNL_BIAS_NONE || bias_kind > NNL_BIAS_COL ||
        (bias_kind != NNL_BIAS_NONE && bias == NULL))
        return NNL_EINVAL;
    const KERNEL_T *kd = FN(nnl_select)(isa);
    if (kd == NULL || kd->mr * kd->nr > NNL_TILE_MAX)
        return NNL_EINVAL;
    if (batch == 0 || m1 == m0 || n1 == n0)
        return NNL_OK;
    /* two-level axes: an axis that fits in its inner level is plain */
    const nnl_idx lk = sp != NULL && sp->lk < K ? sp->lk : 0;
    const nnl_idx ln = sp != NULL && sp->ln < N ? sp->ln : 0;
    /* C's columns in two levels that follow on contiguously (csn == ln, e.g. the rows of an
     * output map whose input pixels B reads strided) are a plain C: written in place, the
     * same bits as through ukr_split's tile buffer */
    const nnl_idx c_ln = ln > 0 && sp->csn != ln ? ln : 0;

    FN(nnl_prob) p0;
    p0.M = M, p0.N = N, p0.K = K, p0.alpha = alpha, p0.beta = beta;
    p0.A = A, p0.rsa = rsa, p0.csa = csa, p0.B = B, p0.rsb = rsb, p0.csb = csb;
    p0.C = C, p0.rsc = rsc, p0.csc = csc, p0.bias = bias, p0.bias_kind = bias_kind, p0.act = act;
    p0.ln = c_ln, p0.csn = c_ln > 0 ? sp->csn : 0;
    if (K == 0) {
        for (nnl_idx b = 0; b < batch; b++) {
            FN(nnl_prob) pb = p0;
            pb.M = m1 - m0, pb.N = n1 - n0;
            pb.C = C + b * bsc + m0 * rsc + n0 * csc;
            pb.bias = bias == NULL ? NULL
                      : bias + b * bsbias + (bias_kind == NNL_BIAS_ROW ? m0 : n0);
            FN(scale_only)(&pb);
        }
        return NNL_OK;
    }

    const int mr = kd->mr, nr = kd->nr;
    int nt = nnl_team_size(nthreads, (double)batch * M * N * K, NNL_MIN_PARALLEL_MACS);
    if (M <= NNL_SKINNY_M && lk == 0 && ln == 0) {
        /* a few-row product streams op(B) once: its time goes with B's elements, not with
         * its multiply-adds */
        nt = nnl_team_size(nthreads, (double)batch * N * K * NNL_SKINNY_ELEM_MACS,
                           NNL_MIN_PARALLEL_MACS);
        if (part == NULL)
            FN(skinny)(kd, &p0, batch, bsa, bsb, bsc, bsbias, nt);
        else if (m0 == 0 && m1 == M)   /* every row, some columns */
            FN(skinny_cols)(kd, &p0, n0, n1);
        else
            return NNL_EINVAL;
        return NNL_OK;
    }
    /* a part starts on the tile grid (anchored at row 0 / column 0): its tiles are the whole
     * call's */
    if (part != NULL && (m0 % mr != 0 || n0 % nr != 0))
        return NNL_EINVAL;

    /* K is cut into equal slices about KC deep (nnl_k_slice). This and the MR x NR tile grid
     * (anchored at row 0 / column 0) fix the arithmetic of every element; the work units below
     * only decide who computes which tiles, so the result never depends on the thread count. */
    const nnl_idx kcb_max = nnl_k_slice(K, kd->kc);
    /* Work units: row groups of at most MC rows (their packed A block stays in L2) times
     * column groups of whole NR panels, each computed by one thread alone, handed out
     * dynamically (so a thread that loses its core for a while is covered by the others);
     * nnl_partition (gemm_driver.c) cuts them. */
    const nnl_idx P = nnl_cdiv(M, mr), Q = nnl_cdiv(N, nr);
    nnl_idx mu, nu;
    nnl_partition(batch, m1 - m0, n1 - n0, K, mr, nr, kd->mc, nt, apk == NULL, bpk == NULL, &mu,
                  &nu);
    const nnl_idx ru = nnl_groups(m1 - m0, mu, mr), cu = nnl_groups(n1 - n0, nu, nr);
    const nnl_idx units = batch * ru * cu;
    if ((nnl_idx)nt > units)
        nt = (int)units;
    /* B chunk of a unit: NC columns (whole NR panels), so KC x NC stays in L2. */
    const nnl_idx chunk = nnl_min(kd->nc / nr, nnl_cdiv(nu, nr));

    /* The packing buffers of this call: per thread, an A block (mu x kcb; one MR panel more
     * when the last row group took a partial panel, nnl_groups) then a B chunk (kcb x
     * chunk*nr), each a whole number of 64-byte lines, all in ONE malloc'd block that is freed
     * on return (one block: glibc then keeps reusing the same heap memory from call to call
     * instead of trimming it, which would cost a page fault per 4 KB on every call). */
    const nnl_idx mu_buf = ru * mu < m1 - m0 ? mu + mr : mu;
    /* a unit of more rows than an MC block packs them one block at a time (gemm_nest) */
    const nnl_idx mcb = nnl_max(mr, kd->mc / mr * mr);
    const size_t ap_elems =
        nnl_round64((size_t)nnl_min(mu_buf, mcb) * (size_t)kcb_max, sizeof(T));
    const size_t bp_elems = nnl_round64((size_t)kcb_max * (size_t)(chunk * nr), sizeof(T));
    T *ws = (T *)nnl_alloc64(sizeof(T) * (ap_elems + bp_elems) * (size_t)nt);
    if (ws == NULL)
        return NNL_ENOMEM;

    FN(nnl_nest) s0;
    s0.K = K, s0.kcb_max = kcb_max, s0.chunk = chunk, s0.mcb = mcb;
    s0.alpha = alpha, s0.beta = beta, s0.act = act;
    s0.rsa = rsa, s0.csa = csa, s0.apk = apk, s0.apk_rows = P * mr;
    s0.a_pack8 = nnl_pack_a_fast(mr);
    /* op(A) read in place where that pays (nnl_tuning.h): a column-major one (a pixel-major
     * product's channel-major image; each k of a micro-panel is MR contiguous elements
     * already), or the full panels of a row-major one (a fused block's depthwise band) */
    s0.a_inplace = kd->a_inplace && apk == NULL && lk == 0 && rsa == 1 && csa > 1 &&
                   (mr * nr >= NNL_GEMM_A_INPLACE_MIN_TILE || K <= NNL_GEMM_A_INPLACE_MAX_K);
    s0.a_rows = kd->a_inplace && apk == NULL && lk == 0 && csa == 1 && rsa > 1 &&
                nnl_cdiv(N, nr) <= NNL_GEMM_A_ROWS_MAX_PANELS;
    s0.rsc = rsc, s0.bias_kind = bias_kind;
    s0.a_lk = lk, s0.a_sk = lk > 0 ? sp->ask : 0;
    s0.c_ln = c_ln, s0.c_sn = c_ln > 0 ? sp->csn : 0;
    s0.c_cs = csc != 1 ? csc : 0;
    s0.t_ctx = NULL, s0.pf_b = 0;
    /* a C larger than NNL_GEMM_PF_C_MIN_BYTES (nnl_tuning.h) is written to lines in no cache:
     * each tile prefetches the next one's rows (row-major C written in place only) */
    s0.pf_c = c_ln == 0 && csc == 1 &&
              (double)batch * (double)(m1 - m0) * (double)(n1 - n0) * (double)sizeof(T) >=
                  (double)NNL_GEMM_PF_C_MIN_BYTES;
    /* B read in place instead of packed (nnl_tuning.h, NNL_GEMM_INPLACE_*): a row-major B
     * that the call would pack, few rows of A sweeping each panel, a shallow K, and panel
     * rows of at least two cache lines */
    s0.b_ld = (bpk == NULL && lk == 0 && ln == 0 && csb == 1 && K <= NNL_GEMM_INPLACE_MAX_K &&
               (M <= NNL_GEMM_INPLACE_MAX_M ||
                (M <= NNL_GEMM_INPLACE_MAX_M_DEEP && K >= NNL_GEMM_INPLACE_DEEP_K)) &&
               (size_t)nr * sizeof(T) >= 128)
                  ? rsb
                  : 0;

    FN(nnl_units) w = {&s0, kd, sp, B, bsb, rsb, csb, bpk, Q * nr, A, bsa, C, bsc, bias, bsbias,
                       lk, ln, m0, m1, n0, n1, mu, nu, ru, cu};
    if (nt == 1) {
        /* no pool call at all: this call often runs inside another kernel's unit
         * (Winograd, the fused block: one product per unit) */
        for (nnl_idx u = 0; u < units; u++)
            FN(gemm_unit)(&w, u, ws, ws + ap_elems);
    } else {
        FN(gemm_job) j = {&w, ws, ap_elems, bp_elems};
        nnl_parallel_for(nt, units, FN(gemm_job_unit), &j);
    }
    nnl_free64(ws);
    return NNL_OK;
}

int GEMM_PK(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, T alpha,
            const T *A, nnl_idx bsa, nnl_idx rsa, nnl_idx csa,
            const T *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
            T beta, T *C, nnl_idx bsc, nnl_idx rsc,
            const T *bias, nnl_idx bsbias, int bias_kind, int act,
            int nthreads, int isa, const T *apk, const T *bpk)
{
    return FN(gemm_run)(batch, M, N, K, alpha, A, bsa, rsa, csa, B, bsb, rsb, csb, beta, C, bsc,
                        rsc, 1, bias, bsbias, bias_kind, act, nthreads, isa, apk, bpk, NULL, NULL);
}

int GEMM_PKC(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, T alpha,
             const T *A, nnl_idx bsa, nnl_idx rsa, nnl_idx csa,
             const T *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
             T beta, T *C, nnl_idx bsc, nnl_idx rsc, nnl_idx csc,
             const T *bias, nnl_idx bsbias, int bias_kind, int act,
             int nthreads, int isa, const T *apk, const T *bpk)
{
    return FN(gemm_run)(batch, M, N, K, alpha, A, bsa, rsa, csa, B, bsb, rsb, csb, beta, C, bsc,
                        rsc, csc, bias, bsbias, bias_kind, act, nthreads, isa, apk, bpk, NULL,
                        NULL);
}

int GEMM_PART(nnl_idx M, nnl_idx N, nnl_idx K, T alpha,
              const T *A, nnl_idx rsa, nnl_idx csa, const T *B, nnl_idx rsb, nnl_idx csb,
              T beta, T *C, nnl_idx rsc, nnl_idx csc, const T *bias, int bias_kind, int act,
              int isa, const T *apk, const T *bpk, nnl_idx m0, nnl_idx m1, nnl_idx n0,
              nnl_idx n1)
{
    const nnl_idx part[4] = {m0, m1, n0, n1};
    return FN(gemm_run)(1, M, N, K, alpha, A, 0, rsa, csa, B, 0, rsb, csb, beta, C, 0, rsc, csc,
                        bias, 0, bias_kind, act, 1, isa, apk, bpk, NULL, part);
}

int GEMM_SPLIT(nnl_idx M, nnl_idx N, nnl_idx K, T alpha, const T *A, nnl_idx rsa, nnl_idx csa,
               const T *B, nnl_idx rsb, nnl_idx csb, T beta, T *C, nnl_idx rsc, const T *bias,
               int bias_kind, int act, const nnl_split *sp, int nthreads, int isa)
{
    return GEMM_SPLIT_PK(1, M, N, K, alpha, A, rsa, csa, B, 0, rsb, csb, beta, C, 0, rsc, bias,
                         bias_kind, act, sp, nthreads, isa, NULL);
}

int GEMM_SPLIT_PK(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, T alpha, const T *A,
                  nnl_idx rsa, nnl_idx csa, const T *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
                  T beta, T *C, nnl_idx bsc, nnl_idx rsc, const T *bias, int bias_kind, int act,
                  const nnl_split *sp, int nthreads, int isa, const T *apk)
{
    if (sp == NULL || sp->lk < 0 || sp->ln < 0)
        return NNL_EINVAL;
    /* pre-packed panels hold op(A)'s columns in plain K order */
    if (apk != NULL && sp->lk > 0 && sp->lk < K)
        return NNL_EINVAL;
    return FN(gemm_run)(batch, M, N, K, alpha, A, 0, rsa, csa, B, bsb, rsb, csb, beta, C, bsc, rsc,
                        1, bias, 0, bias_kind, act, nthreads, isa, apk, NULL, sp, NULL);
}
