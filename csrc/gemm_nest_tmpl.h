/* The GEMM's block loop nest and its packers, written once and included (per dtype, with T,
 * EPI_T, KERNEL_T, FN(name) and, float only, PACK_A8 and PACK_T8 defined; PACK_T8 packs the
 * plain GEMM's transposed B panels here and the conv weight gradient's in its image packer) by
 * both of its callers: the plain GEMM (gemm_driver_tmpl.h) and the implicit conv
 * (convfast_implicit_tmpl.h). The nest is inlined into each call site
 * with the caller's B source and tile write-out (constant function arguments there), so the
 * plugged-in parts cost no indirect call. No include guard on purpose. */

/* ---------------------------------------------------------------------------------- packing */

/* A[0:mc, 0:kc] (strides rsa, csa) -> ceil(mc/mr) micro-panels ap[p][k][i], zero rows past mc.
 * pack8: full MR-row panels of a row-major A go through PACK_A8 (AVX transposes, same bits; the
 * caller sets it only for an MR that PACK_A8 serves, nnl_pack_a_fast). */
static void FN(pack_a)(nnl_idx mc, nnl_idx kc, const T *a, nnl_idx rsa, nnl_idx csa, int mr,
                       int pack8, T *NNL_RESTRICT ap)
{
    for (nnl_idx ip = 0; ip < mc; ip += mr) {
        const int m = (int)nnl_min(mr, mc - ip);
        const T *src = a + ip * rsa;
#ifdef PACK_A8
        if (pack8 && m == mr && csa == 1) {
            PACK_A8(kc, src, rsa, ap, mr);
            ap += kc * mr;
            continue;
        }
#else
        (void)pack8;
#endif
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
static NNL_ALWAYS_INLINE NNL_NO_MEMCPY_IDIOM void FN(copy_rows)(nnl_idx kc,
                                                                const T *NNL_RESTRICT src,
                                                                nnl_idx rs, T *NNL_RESTRICT dst,
                                                                const int nr)
{
    for (nnl_idx k = 0; k < kc; k++)
        for (int j = 0; j < nr; j++)
            dst[k * nr + j] = src[k * rs + j];
}

/* Micro-panels q0 <= q < q1 of the block B[0:kc, 0:nc] -> bp[q][k][j], zero columns past nc. */
static NNL_NO_MEMCPY_IDIOM void FN(pack_b)(nnl_idx kc, nnl_idx nc, const T *b, nnl_idx rsb,
                                           nnl_idx csb, int nr, nnl_idx q0, nnl_idx q1,
                                           T *NNL_RESTRICT bp)
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
#ifdef PACK_T8
            if (n == nr && nr % 8 == 0 && nnl_pack_a8_ok()) {
                /* eight columns at a time through AVX 8 x 8 transposes (an exact copy) */
                for (int j = 0; j < nr; j += 8)
                    PACK_T8(kc, src + j * csb, csb, dst + j, nr);
                continue;
            }
#endif
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

/* ------------------------------------------------------------------------------- the nest */

/* One work unit (see gemm_internal.h): rows r0..r1 by columns c0..c1 of one item, computed by
 * one thread with its private buffers apw (an A block) and bpw (a B chunk):
 *
 *   for pc in K by KC:
 *     pack A[r0:r1, pc:+KC] -> ap                        (MC x KC block, stays in L2)
 *     for jc in c0..c1 by chunk*NR:
 *       B[pc:+KC, jc:+chunk*NR] -> bp  (b_src)           (KC x chunk*NR block, L2-sized;
 *                                                         or read in place, s->b_ld)
 *       for each NR panel of the chunk:                  (KC x NR micro-panel, L1/L2)
 *         for ir in r0..r1 by MR: micro-kernel C[ir:+MR, jr:+NR] (+)= Ap_ir @ Bp_jr
 *                                 (or tile() when the caller writes its own tiles)
 */
static NNL_ALWAYS_INLINE void FN(gemm_nest)(const FN(nnl_nest) *s, FN(nnl_bsrc) b_src,
                                            FN(nnl_tile) tile, const KERNEL_T *kd, nnl_idx r0,
                                            nnl_idx r1, nnl_idx c0, nnl_idx c1, T *apw, T *bpw)
{
    const int mr = kd->mr, nr = kd->nr;
    const nnl_idx K = s->K, chunk = s->chunk;
    EPI_T e;
    e.alpha = s->alpha;
    e.bias_row = e.bias_col = NULL;
    e.ldb = nr;
    for (nnl_idx pc = 0; pc < K; pc += s->kcb_max) {
        const nnl_idx kcb = nnl_min(s->kcb_max, K - pc);
        const int first = pc == 0, last = pc + kcb == K;
        const T *ap = apw;
        e.load_c = !first || s->beta != 0;
        e.beta = first ? s->beta : (T)1;
        e.act = last ? s->act : NNL_ACT_NONE;
        if (s->apk != NULL)  /* pre-packed (PACK_NAME): K slice pc, then row panel r0 / MR */
            ap = s->apk + s->apk_rows * pc + (r0 / mr) * kcb * mr;
        else
            FN(pack_a)(r1 - r0, kcb, s->a + r0 * s->rsa + pc * s->csa, s->rsa, s->csa, mr,
                       s->a_pack8, apw);
        for (nnl_idx jc = c0; jc < c1; jc += chunk * nr) {
            const nnl_idx ncb = nnl_min(chunk * nr, c1 - jc);
            const nnl_idx nq = nnl_cdiv(ncb, nr);
            const T *bp = b_src(s->b_ctx, nr, pc, kcb, jc, ncb, bpw);
            for (nnl_idx q = 0; q < nq; q++) {
                const nnl_idx jr = jc + q * nr;
                const int n = (int)nnl_min(nr, c1 - jr);
                /* b_ld > 0: full panels in place (rows b_ld apart), a ragged last one packed
                 * into bpw by b_src; the same values either way, so the same bits */
                const int inplace = s->b_ld > 0 && n == nr;
                const T *bpq = inplace ? bp + q * nr : (s->b_ld > 0 ? bpw : bp) + q * kcb * nr;
                e.ldb = inplace ? s->b_ld : nr;
                e.bias_col = (last && s->bias_kind == NNL_BIAS_COL) ? s->bias + jr : NULL;
                for (nnl_idx ir = r0; ir < r1; ir += mr) {
                    const int m = (int)nnl_min(mr, r1 - ir);
                    const T *api = ap + (ir - r0) * kcb;
                    if (tile != NULL) {
                        tile(s->t_ctx, kcb, api, bpq, ir, jr, m, n, pc, first, last);
                        continue;
                    }
                    e.bias_row = (last && s->bias_kind == NNL_BIAS_ROW) ? s->bias + ir : NULL;
                    kd->ukr(kcb, api, bpq, s->c + ir * s->rsc + jr, s->rsc, m, n, &e);
                }
            }
        }
    }
}

