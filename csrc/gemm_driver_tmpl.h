/* Template body of gemm_driver.c, included once per dtype with T, EPI_T, KERNEL_T, FN(name)
 * and GEMM_NAME defined. No include guard on purpose. */

static const KERNEL_T *FN(nnl_select)(int isa)
{
    if (isa == NNL_ISA_AUTO)
        isa = nnl_gemm_best_isa();
    if (!nnl_gemm_isa_available(isa))
        return NULL;
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

/* One batch item: C = act(alpha * A @ B + beta * C + bias). */
typedef struct {
    nnl_idx M, N, K;
    T alpha, beta;
    const T *A;
    nnl_idx rsa, csa;
    const T *B;
    nnl_idx rsb, csb;
    T *C;
    nnl_idx rsc;
    const T *bias;
    int bias_kind, act;
} FN(nnl_prob);

/* ---------------------------------------------------------------------------------- packing */

/* A[0:mc, 0:kc] (strides rsa, csa) -> ceil(mc/mr) micro-panels ap[p][k][i], zero rows past mc. */
static void FN(pack_a)(nnl_idx mc, nnl_idx kc, const T *a, nnl_idx rsa, nnl_idx csa, int mr,
                       T *NNL_RESTRICT ap)
{
    for (nnl_idx ip = 0; ip < mc; ip += mr) {
        const int m = (int)nnl_min(mr, mc - ip);
        const T *src = a + ip * rsa;
        if (csa == 1) {
            /* row-major A: m read streams (one per row), one sequential write stream */
            for (nnl_idx k = 0; k < kc; k++) {
                for (int i = 0; i < m; i++)
                    ap[k * mr + i] = src[i * rsa + k];
                for (int i = m; i < mr; i++)
                    ap[k * mr + i] = 0;
            }
        } else {
            /* transposed (rsa == 1) or general strides: read along rows of op(A)^T */
            for (nnl_idx k = 0; k < kc; k++) {
                const T *s = src + k * csa;
                for (int i = 0; i < m; i++)
                    ap[k * mr + i] = s[i * rsa];
                for (int i = m; i < mr; i++)
                    ap[k * mr + i] = 0;
            }
        }
        ap += kc * mr;
    }
}

/* kc rows of NR contiguous elements; NR is a compile-time constant after inlining. */
static NNL_ALWAYS_INLINE void FN(copy_rows)(nnl_idx kc, const T *NNL_RESTRICT src, nnl_idx rs,
                                            T *NNL_RESTRICT dst, const int nr)
{
    for (nnl_idx k = 0; k < kc; k++)
        for (int j = 0; j < nr; j++)
            dst[k * nr + j] = src[k * rs + j];
}

/* Micro-panels q0 <= q < q1 of the block B[0:kc, 0:nc] -> bp[q][k][j], zero columns past nc. */
static void FN(pack_b)(nnl_idx kc, nnl_idx nc, const T *b, nnl_idx rsb, nnl_idx csb, int nr,
                       nnl_idx q0, nnl_idx q1, T *NNL_RESTRICT bp)
{
    for (nnl_idx q = q0; q < q1; q++) {
        const nnl_idx j0 = q * nr;
        const int n = (int)nnl_min(nr, nc - j0);
        const T *src = b + j0 * csb;
        T *dst = bp + q * kc * nr;
        if (csb == 1 && n == nr) {
            switch (nr) {
            case 8: FN(copy_rows)(kc, src, rsb, dst, 8); break;
            case 16: FN(copy_rows)(kc, src, rsb, dst, 16); break;
            case 24: FN(copy_rows)(kc, src, rsb, dst, 24); break;
            case 32: FN(copy_rows)(kc, src, rsb, dst, 32); break;
            case 48: FN(copy_rows)(kc, src, rsb, dst, 48); break;
            case 64: FN(copy_rows)(kc, src, rsb, dst, 64); break;
            default: FN(copy_rows)(kc, src, rsb, dst, nr); break;
            }
        } else if (rsb == 1) {
            /* transposed B: each column of op(B) is contiguous in memory */
            for (int j = 0; j < n; j++) {
                const T *s = src + j * csb;
                for (nnl_idx k = 0; k < kc; k++)
                    dst[k * nr + j] = s[k];
            }
            for (nnl_idx k = 0; k < kc; k++)
                for (int j = n; j < nr; j++)
                    dst[k * nr + j] = 0;
        } else {
            for (nnl_idx k = 0; k < kc; k++) {
                const T *s = src + k * rsb;
                for (int j = 0; j < n; j++)
                    dst[k * nr + j] = s[j * csb];
                for (int j = n; j < nr; j++)
                    dst[k * nr + j] = 0;
            }
        }
    }
}

/* ------------------------------------------------------------------------------ K == 0 case */

static void FN(scale_only)(const FN(nnl_prob) *p)
{
    for (nnl_idx i = 0; i < p->M; i++) {
        T *ci = p->C + i * p->rsc;
        for (nnl_idx j = 0; j < p->N; j++) {
            T v = p->beta == 0 ? (T)0 : p->beta * ci[j];
            if (p->bias_kind == NNL_BIAS_ROW)
                v += p->bias[i];
            else if (p->bias_kind == NNL_BIAS_COL)
                v += p->bias[j];
            if (p->act != NNL_ACT_NONE) {
                v = ((T)0 > v) ? (T)0 : v;
                if (p->act == NNL_ACT_RELU6)
                    v = (v > (T)6) ? (T)6 : v;
            }
            ci[j] = v;
        }
    }
}

/* ------------------------------------------------------------------------------- the nest */

/* Shared-B nest: run one item on thread tid of an nt-thread team (nt == 1: no barriers,
 * callable anywhere). bp holds kcb_max x ncb_max (shared by the team), ap holds mc x kcb_max
 * (this thread's). Every team member calls this with the same arguments except tid and ap. */
static void FN(run_shared)(const FN(nnl_prob) *p, const KERNEL_T *kd, nnl_idx kcb_max,
                           nnl_idx ncb_max, T *bp, T *ap, int tid, int nt)
{
    const int mr = kd->mr, nr = kd->nr;
    const nnl_idx mc = kd->mc;
    const nnl_idx M = p->M, N = p->N, K = p->K;
    int tm, tn;
    nnl_grid(nt, nnl_cdiv(M, mr), nnl_cdiv(nnl_min(N, ncb_max), nr), &tm, &tn);
    const int ti = tid / tn, tj = tid % tn;
    const nnl_idx P = nnl_cdiv(M, mr);
    const nnl_idx r0 = (P * ti / tm) * mr;
    const nnl_idx r1 = nnl_min(M, (P * (ti + 1) / tm) * mr);
    EPI_T e;
    e.alpha = p->alpha;

    for (nnl_idx jc = 0; jc < N; jc += ncb_max) {
        const nnl_idx ncb = nnl_min(ncb_max, N - jc);
        const nnl_idx Q = nnl_cdiv(ncb, nr);
        const nnl_idx q0 = Q * tj / tn, q1 = Q * (tj + 1) / tn;
        for (nnl_idx pc = 0; pc < K; pc += kcb_max) {
            const nnl_idx kcb = nnl_min(kcb_max, K - pc);
            const int first = pc == 0, last = pc + kcb == K;
            FN(pack_b)(kcb, ncb, p->B + pc * p->rsb + jc * p->csb, p->rsb, p->csb, nr,
                       Q * tid / nt, Q * (tid + 1) / nt, bp);
#ifdef _OPENMP
            if (nt > 1) {
#pragma omp barrier
            }
#endif
            e.load_c = !first || p->beta != 0;
            e.beta = first ? p->beta : (T)1;
            e.act = last ? p->act : NNL_ACT_NONE;
            for (nnl_idx ic = r0; ic < r1; ic += mc) {
                const nnl_idx mcb = nnl_min(mc, r1 - ic);
                FN(pack_a)(mcb, kcb, p->A + ic * p->rsa + pc * p->csa, p->rsa, p->csa, mr, ap);
                for (nnl_idx q = q0; q < q1; q++) {
                    const nnl_idx jr = q * nr;
                    const int n = (int)nnl_min(nr, ncb - jr);
                    e.bias_col = (last && p->bias_kind == NNL_BIAS_COL) ? p->bias + jc + jr : NULL;
                    for (nnl_idx ir = 0; ir < mcb; ir += mr) {
                        const int m = (int)nnl_min(mr, mcb - ir);
                        e.bias_row = (last && p->bias_kind == NNL_BIAS_ROW) ? p->bias + ic + ir
                                                                             : NULL;
                        kd->ukr(kcb, ap + (ir / mr) * kcb * mr, bp + q * kcb * nr,
                                p->C + (ic + ir) * p->rsc + jc + jr, p->rsc, m, n, &e);
                    }
                }
            }
#ifdef _OPENMP
            if (nt > 1) {
#pragma omp barrier
            }
#endif
        }
    }
}

/* Private-B nest for short A (M <= MC): thread tid of nt owns a slice of the NR column panels
 * of the whole item, packs all of A (M x KC) and then each of its B micro-panels (KC x NR,
 * into bp) right before the MR loop consumes it from L1/L2. No barriers, no shared buffer. */
static void FN(run_private)(const FN(nnl_prob) *p, const KERNEL_T *kd, nnl_idx kcb_max,
                            T *bp, T *ap, int tid, int nt)
{
    const int mr = kd->mr, nr = kd->nr;
    const nnl_idx M = p->M, N = p->N, K = p->K;
    const nnl_idx Q = nnl_cdiv(N, nr);
    const nnl_idx q0 = Q * tid / nt, q1 = Q * (tid + 1) / nt;
    EPI_T e;
    e.alpha = p->alpha;
    if (q0 >= q1)
        return;
    for (nnl_idx pc = 0; pc < K; pc += kcb_max) {
        const nnl_idx kcb = nnl_min(kcb_max, K - pc);
        const int first = pc == 0, last = pc + kcb == K;
        e.load_c = !first || p->beta != 0;
        e.beta = first ? p->beta : (T)1;
        e.act = last ? p->act : NNL_ACT_NONE;
        FN(pack_a)(M, kcb, p->A + pc * p->csa, p->rsa, p->csa, mr, ap);
        for (nnl_idx q = q0; q < q1; q++) {
            const nnl_idx jr = q * nr;
            const int n = (int)nnl_min(nr, N - jr);
            /* the single panel q of the block B[pc:+kcb, jr:+n], packed at bp */
            FN(pack_b)(kcb, n, p->B + pc * p->rsb + jr * p->csb, p->rsb, p->csb, nr, 0, 1, bp);
            e.bias_col = (last && p->bias_kind == NNL_BIAS_COL) ? p->bias + jr : NULL;
            for (nnl_idx ir = 0; ir < M; ir += mr) {
                const int m = (int)nnl_min(mr, M - ir);
                e.bias_row = (last && p->bias_kind == NNL_BIAS_ROW) ? p->bias + ir : NULL;
                kd->ukr(kcb, ap + (ir / mr) * kcb * mr, bp, p->C + ir * p->rsc + jr, p->rsc, m, n,
                        &e);
            }
        }
    }
}

int GEMM_NAME(nnl_idx batch, nnl_idx M, nnl_idx N, nnl_idx K, T alpha,
              const T *A, nnl_idx bsa, nnl_idx rsa, nnl_idx csa,
              const T *B, nnl_idx bsb, nnl_idx rsb, nnl_idx csb,
              T beta, T *C, nnl_idx bsc, nnl_idx rsc,
              const T *bias, nnl_idx bsbias, int bias_kind, int act,
              int nthreads, int isa)
{
    if (batch < 0 || M < 0 || N < 0 || K < 0)
        return NNL_EINVAL;
    if (act < NNL_ACT_NONE || act > NNL_ACT_RELU6)
        return NNL_EINVAL;
    if (bias_kind < NNL_BIAS_NONE || bias_kind > NNL_BIAS_COL ||
        (bias_kind != NNL_BIAS_NONE && bias == NULL))
        return NNL_EINVAL;
    const KERNEL_T *kd = FN(nnl_select)(isa);
    if (kd == NULL)
        return NNL_EINVAL;
    if (batch == 0 || M == 0 || N == 0)
        return NNL_OK;

    FN(nnl_prob) p0;
    p0.M = M, p0.N = N, p0.K = K, p0.alpha = alpha, p0.beta = beta;
    p0.A = A, p0.rsa = rsa, p0.csa = csa, p0.B = B, p0.rsb = rsb, p0.csb = csb;
    p0.C = C, p0.rsc = rsc, p0.bias = bias, p0.bias_kind = bias_kind, p0.act = act;
    if (K == 0) {
        for (nnl_idx b = 0; b < batch; b++) {
            FN(nnl_prob) pb = p0;
            pb.C = C + b * bsc;
            pb.bias = bias ? bias + b * bsbias : NULL;
            FN(scale_only)(&pb);
        }
        return NNL_OK;
    }

    /* Balanced blocks: K split into equal KC-ish slices, N into equal NR-multiple slices. The
     * block sizes depend on the shape only (never on the thread count). */
    const int mr = kd->mr, nr = kd->nr;
    const nnl_idx kcb_max = nnl_cdiv(K, nnl_cdiv(K, kd->kc));
    const nnl_idx ncb_max = nnl_cdiv(nnl_cdiv(N, nnl_cdiv(N, kd->nc)), nr) * nr;
    const nnl_idx mc_alloc = nnl_min(kd->mc, nnl_cdiv(M, mr) * mr);

    int nt = nthreads < 1 ? 1 : nthreads;
#ifndef _OPENMP
    nt = 1;
#endif
    if ((double)batch * M * N * K < NNL_MIN_PARALLEL_MACS)
        nt = 1;
    /* Whole items per thread when the batch divides evenly (or is large): no barriers. */
    const int per_item = nt > 1 && (batch % nt == 0 || batch >= 4 * nt);
    const int team = per_item ? 1 : nt;
    /* Short A (one MC block): threads split the columns and pack B privately, unless the
     * shared nest balances the work better. */
    int private_b = nnl_cdiv(M, mr) * mr <= kd->mc;
    if (private_b && team > 1) {
        const nnl_idx P = nnl_cdiv(M, mr), Qb = nnl_cdiv(nnl_min(N, ncb_max), nr);
        int tm, tn;
        nnl_grid(team, P, Qb, &tm, &tn);
        const nnl_idx shared_cost = nnl_cdiv(P, tm) * nnl_cdiv(Qb, tn) * nnl_cdiv(N, ncb_max);
        const nnl_idx private_cost = P * nnl_cdiv(nnl_cdiv(N, nr), team);
        private_b = private_cost <= shared_cost;
    }
    /* One workspace block: nbp B buffers, then nt A buffers (each a multiple of 64 bytes). */
    const size_t bp_elems = nnl_round64((size_t)kcb_max * (size_t)(private_b ? nr : ncb_max),
                                        sizeof(T));
    const size_t ap_elems = nnl_round64((size_t)mc_alloc * (size_t)kcb_max, sizeof(T));
    const int nbp = (per_item || private_b) ? nt : 1;
    size_t ws_bytes = sizeof(T) * (bp_elems * nbp + ap_elems * nt);
    T *ws = (T *)nnl_ws_get(ws_bytes, &ws_bytes);
    if (ws == NULL)
        return NNL_ENOMEM;
    T *bps = ws, *aps = ws + bp_elems * nbp;

    if (nt == 1) {
        for (nnl_idx b = 0; b < batch; b++) {
            FN(nnl_prob) pb = p0;
            pb.A = A + b * bsa, pb.B = B + b * bsb, pb.C = C + b * bsc;
            pb.bias = bias ? bias + b * bsbias : NULL;
            if (private_b)
                FN(run_private)(&pb, kd, kcb_max, bps, aps, 0, 1);
            else
                FN(run_shared)(&pb, kd, kcb_max, ncb_max, bps, aps, 0, 1);
        }
    }
#ifdef _OPENMP
    else {
#pragma omp parallel num_threads(nt)
        {
            const int tid = omp_get_thread_num();
            const int size = omp_get_num_threads();
            T *ap = aps + (size_t)tid * ap_elems;
            T *bp = nbp > 1 ? bps + (size_t)tid * bp_elems : bps;
            nnl_idx b0 = 0, b1 = batch;
            int t = tid, n = size;
            if (per_item) {
                b0 = batch * tid / size, b1 = batch * (tid + 1) / size;
                t = 0, n = 1;
            }
            for (nnl_idx b = b0; b < b1; b++) {
                FN(nnl_prob) pb = p0;
                pb.A = A + b * bsa, pb.B = B + b * bsb, pb.C = C + b * bsc;
                pb.bias = bias ? bias + b * bsbias : NULL;
                if (private_b)
                    FN(run_private)(&pb, kd, kcb_max, bp, ap, t, n);
                else
                    FN(run_shared)(&pb, kd, kcb_max, ncb_max, bp, ap, t, n);
            }
        }
    }
#endif
    nnl_ws_put(ws, ws_bytes);
    return NNL_OK;
}
