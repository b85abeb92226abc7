/* The GEMM's block loop nest and its packers, written once and included (per dtype, with T,
 * EPI_T, KERNEL_T, FN(name) and, float only, PACK_A8, PACK_T8 and PACK_TR defined; PACK_T8
 * packs the plain GEMM's transposed B panels here and the conv weight gradient's in its image
 * packer) by both of its callers: the plain GEMM (gemm_driver_tmpl.h) and the implicit conv
 * (convfast_implicit_tmpl.h). The nest is inlined into each call site
 * with the caller's B source and tile write-out (constant function arguments there), so the
 * plugged-in parts cost no indirect call. No include guard on purpose. */

/* ---------------------------------------------------------------------------------- packing */

/* One micro-panel: m <= mr rows of A[0:m, 0:kc] (strides rsa, csa) -> ap[k*mr + i], zero rows
 * past m. pack8: a full MR-row panel of a row-major A goes through PACK_A8 (AVX transposes, same
 * bits; the caller sets it only for an MR that PACK_A8 serves, nnl_pack_a_fast). */
static NNL_NO_MEMCPY_IDIOM void FN(pack_a_panel)(nnl_idx kc, const T *src, nnl_idx rsa, nnl_idx csa, int m, int mr,
                             int pack8, T *NNL_RESTRICT ap)
{
#ifdef PACK_A8
    if (pack8 && m == mr && csa == 1) {
        PACK_A8(kc, src, rsa, ap, mr);
        return;
    }
#else
    (void)pack8;
#endif
    if (rsa == 1 && m == mr) {
        /* op(A) = A^T read in place (a pixel-major product's channel-major image): each k of
         * the panel is mr contiguous elements, copied as one fixed-size block (the general
         * loop below moved them one by one: 8% of the AVX2 fused block 16->96->24) */
        switch (mr) {
#define NNL_PACK_RUNS(MR)                                                                   \
    case MR:                                                                                \
        for (nnl_idx k = 0; k < kc; k++)                                                    \
            memcpy(ap + k * (MR), src + k * csa, (MR) * sizeof(T));                         \
        return;
            NNL_PACK_RUNS(4)
            NNL_PACK_RUNS(6)
            NNL_PACK_RUNS(8)
            NNL_PACK_RUNS(12)
            NNL_PACK_RUNS(16)
#undef NNL_PACK_RUNS
        default:
            break;
        }
    }
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
}

/* A[0:mc, 0:kc] (strides rsa, csa) -> ceil(mc/mr) micro-panels ap[p][k][i], zero rows past mc.
 * Split K (lk > 0, nnl_split): column k0 + k of the slice is A's element at
 * ((k0 + k) / lk) * ask + ((k0 + k) % lk) * csa (a reduction over (image, pixel)); each panel
 * is then packed one contiguous run of columns at a time, into the same places. */
static void FN(pack_a)(nnl_idx mc, nnl_idx kc, const T *a, nnl_idx rsa, nnl_idx csa, int mr,
                       int pack8, T *NNL_RESTRICT ap, nnl_idx k0, nnl_idx lk, nnl_idx ask)
{
    for (nnl_idx ip = 0; ip < mc; ip += mr) {
        const int m = (int)nnl_min(mr, mc - ip);
        const T *src = a + ip * rsa;
        if (lk <= 0 && csa == 1 && ip + mr < mc) {
            /* the next panel's rows (a constant operand read from DRAM, e.g. a late layer's
             * weights packed per call): requested now, they arrive while this one is copied */
            const nnl_idx mn = nnl_min(mr, mc - ip - mr);
            const nnl_idx bytes = kc * (nnl_idx)sizeof(T);
            for (nnl_idx i = 0; i < mn; i++) {
                const char *row = (const char *)(src + (mr + i) * rsa + k0);
                for (nnl_idx o = 0; o < bytes; o += 64)
                    __builtin_prefetch(row + o, 0, 2);
            }
        }
        if (lk <= 0) {
            FN(pack_a_panel)(kc, src + k0 * csa, rsa, csa, m, mr, pack8, ap);
        } else {
            for (nnl_idx k = 0; k < kc;) {
                const nnl_idx kk = k0 + k, run = nnl_min(lk - kk % lk, kc - k);
                FN(pack_a_panel)(run, src + (kk / lk) * ask + (kk % lk) * csa, rsa, csa, m, mr,
                                 pack8, ap + k * mr);
                k += run;
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

/* Columns 0 <= j < n (n <= nr) of B[0:kc, 0:n] (strides rsb, csb) -> dst[k*nr + j]; the other
 * columns of the panel are left alone. */
static NNL_NO_MEMCPY_IDIOM void FN(pack_b_cols)(nnl_idx kc, int n, const T *src, nnl_idx rsb,
                                                nnl_idx csb, int nr, T *NNL_RESTRICT dst)
{
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
    } else if (csb == 1) {
        /* a part of a panel (a ragged last panel, or a run of one image's columns) */
        for (nnl_idx k = 0; k < kc; k++) {
            const T *s = src + k * rsb;
            T *d = dst + k * nr;
            for (int j = 0; j < n; j++)
                d[j] = s[j];
        }
    } else if (rsb == 1) {
        /* transposed B: each column of op(B) is contiguous in memory */
        int j = 0;
#ifdef PACK_T8
        if (nnl_pack_a8_ok())
            /* eight columns at a time through AVX 8 x 8 transposes (an exact copy) */
            for (; j + 8 <= n; j += 8)
                PACK_T8(kc, src + j * csb, csb, dst + j, nr);
#endif
        for (; j < n; j++) {
            const T *s = src + j * csb;
            for (nnl_idx k = 0; k < kc; k++)
                dst[k * nr + j] = s[k];
        }
    } else {
        for (nnl_idx k = 0; k < kc; k++) {
            const T *s = src + k * rsb;
            for (int j = 0; j < n; j++)
                dst[k * nr + j] = s[j * csb];
        }
    }
}

/* Zero columns n..nr-1 of a kc x nr micro-panel. */
static NNL_NO_MEMCPY_IDIOM void FN(pack_b_zero)(nnl_idx kc, int n, int nr, T *NNL_RESTRICT dst)
{
    if (n < nr)
        for (nnl_idx k = 0; k < kc; k++)
            for (int j = n; j < nr; j++)
                dst[k * nr + j] = 0;
}

/* Micro-panels q0 <= q < q1 of the block B[0:kc, 0:nc] -> bp[q][k][j], zero columns past nc. */
static void FN(pack_b)(nnl_idx kc, nnl_idx nc, const T *b, nnl_idx rsb, nnl_idx csb, int nr,
                       nnl_idx q0, nnl_idx q1, T *NNL_RESTRICT bp)
{
    for (nnl_idx q = q0; q < q1; q++) {
        const nnl_idx j0 = q * nr;
        const int n = (int)nnl_min(nr, nc - j0);
        T *dst = bp + q * kc * nr;
        FN(pack_b_cols)(kc, n, b + j0 * csb, rsb, csb, nr, dst);
        FN(pack_b_zero)(kc, n, nr, dst);
    }
}

/* dst[0:n] = src[0], src[2], ... (n of them): the runs of a two-level B whose columns are 2
 * apart (a stride-2 pointwise conv reading every second pixel), a constant stride the compiler
 * vectorises (even-lane permutes). */
static NNL_ALWAYS_INLINE NNL_NO_MEMCPY_IDIOM void FN(copy_even)(nnl_idx n,
                                                                const T *NNL_RESTRICT src,
                                                                T *NNL_RESTRICT dst)
{
    for (nnl_idx e = 0; e < n; e++)
        dst[e] = src[2 * e];
}

/* The same as pack_b for a B whose rows and/or columns are split in two levels (nnl_split):
 * row pc + k of the block is at ((pc + k) / lk) * bsk + ((pc + k) % lk) * rsb (lk <= 0:
 * (pc + k) * rsb), column jc + j at ((jc + j) / ln) * bsn + ((jc + j) % ln) * csb (ln <= 0:
 * (jc + j) * csb). Columns 2 apart (every second pixel of an image: a stride-2 pointwise
 * conv): row by row, each row of the block read as its runs of contiguous-index columns in
 * address order (a channel plane after the other, which the hardware prefetcher follows; panel
 * by panel, each row of a 3.2 MB image was a jump to another plane: 18% of a 256->512 1x1/2
 * conv at 56x56, one thread, Zen 4; row by row 6%), each run cut at the panels' edges; else
 * panel by panel. Either order writes the same values into the same places. */
static void FN(pack_b_split)(nnl_idx pc, nnl_idx kc, nnl_idx jc, nnl_idx nc, const T *b,
                             nnl_idx rsb, nnl_idx csb, nnl_idx lk, nnl_idx bsk, nnl_idx ln,
                             nnl_idx bsn, int nr, T *NNL_RESTRICT bp)
{
    const nnl_idx nq = nnl_cdiv(nc, nr), panel = kc * nr;
    if (csb != 2) {
        /* panel by panel, one rectangle of contiguous runs at a time, through pack_b_cols (its
         * transposing copies for a transposed B, rsb == 1: a weight gradient's image; short
         * runs of small maps amortise their set-up over the rows: 1x1 convs on 4x4 and 8x8
         * maps of a batch of 32 took 15-35% longer row by row) */
        for (nnl_idx q = 0; q < nq; q++) {
            const nnl_idx j0 = q * nr;
            const int n = (int)nnl_min(nr, nc - j0);
            T *dst = bp + q * panel;
            for (nnl_idx k = 0; k < kc;) {
                const nnl_idx kk = pc + k;
                const nnl_idx krun = lk > 0 ? nnl_min(lk - kk % lk, kc - k) : kc - k;
                const T *row = b + (lk > 0 ? (kk / lk) * bsk + (kk % lk) * rsb : kk * rsb);
                for (int j = 0; j < n;) {
                    const nnl_idx jj = jc + j0 + j;
                    const int jrun = ln > 0 ? (int)nnl_min(ln - jj % ln, n - j) : n - j;
                    const T *src = row + (ln > 0 ? (jj / ln) * bsn + (jj % ln) * csb : jj * csb);
                    FN(pack_b_cols)(krun, jrun, src, rsb, csb, nr, dst + k * nr + j);
                    j += jrun;
                }
                k += krun;
            }
            FN(pack_b_zero)(kc, n, nr, dst);
        }
        return;
    }
#ifdef PACK_A8
    /* float: short runs (a 14-pixel row) through masked vector copies, not a scalar tail */
    const int even16 = nnl_copy_even_ok();
#endif
    for (nnl_idx k = 0; k < kc; k++) {
        const nnl_idx kk = pc + k;
        const T *row = b + (lk > 0 ? (kk / lk) * bsk + (kk % lk) * rsb : kk * rsb);
        T *dk = bp + k * nr;
        for (nnl_idx j = 0; j < nc;) {
            const nnl_idx jj = jc + j;
            nnl_idx run = ln > 0 ? nnl_min(ln - jj % ln, nc - j) : nc - j;
            const T *src = row + (ln > 0 ? (jj / ln) * bsn + (jj % ln) * csb : jj * csb);
            while (run > 0) {
                const nnl_idx q = j / nr, o = j - q * nr;
                const nnl_idx m = nnl_min(run, nr - o);
#ifdef PACK_A8
                if (even16)
                    nnl_copy_even_s(m, src, dk + q * panel + o);
                else
#endif
                    FN(copy_even)(m, src, dk + q * panel + o);
                j += m, run -= m, src += 2 * m;
            }
        }
    }
    const int n = (int)(nc - (nq - 1) * nr);
    FN(pack_b_zero)(kc, n, nr, bp + (nq - 1) * panel);
}

/* ------------------------------------------------------------------------------- the nest */

/* dst[0:n] = src[0:n] (no overlap). */
static NNL_ALWAYS_INLINE void FN(copy_run)(int n, const T *NNL_RESTRICT src,
                                           T *NNL_RESTRICT dst)
{
    for (int t = 0; t < n; t++)
        dst[t] = src[t];
}

/* The micro-kernel on the tile C[ir:+m, jr:+n] of a C whose columns are split in two levels
 * (s->c_ln > 0: column j at (j / c_ln) * c_sn + j % c_ln): in place when the tile's columns are
 * one contiguous run, else through a tile buffer (C gathered first when the epilogue reads it,
 * scattered after); the same operations on the same values either way, so the same bits. */
static NNL_NO_MEMCPY_IDIOM void FN(ukr_split)(const KERNEL_T *kd, const FN(nnl_nest) *s, nnl_idx kcb, const T *ap,
                          const T *bp, nnl_idx ir, nnl_idx jr, int m, int n, const EPI_T *e)
{
    const nnl_idx ln = s->c_ln, off = jr % ln;
    T *c = s->c + ir * s->rsc;
    if (off + n <= ln) {
        kd->ukr(kcb, ap, bp, c + (jr / ln) * s->c_sn + off, s->rsc, m, n, e);
        return;
    }
    T tile[NNL_TILE_MAX];
    const int nr = kd->nr;
    const nnl_idx rsc = s->rsc, sn = s->c_sn;
    if (e->load_c)
        for (int j = 0; j < n;) {
            const nnl_idx jj = jr + j;
            const int run = (int)nnl_min(ln - jj % ln, n - j);
            const T *src = c + (jj / ln) * sn + jj % ln;
            for (int i = 0; i < m; i++)
                FN(copy_run)(run, src + i * rsc, tile + i * nr + j);
            j += run;
        }
    kd->ukr(kcb, ap, bp, tile, nr, m, n, e);
    for (int j = 0; j < n;) {
        const nnl_idx jj = jr + j;
        const int run = (int)nnl_min(ln - jj % ln, n - j);
        T *dst = c + (jj / ln) * sn + jj % ln;
        for (int i = 0; i < m; i++)
            FN(copy_run)(run, tile + i * nr + j, dst + i * rsc);
        j += run;
    }
}

/* dst[k*ldd + i] = src[i*lds + k] for i < rows, k < cols (an exact copy; float: eight rows at a
 * time through PACK_T8's 8 x 8 register transposes, a tail of 2..7 rows through PACK_TR's, e.g.
 * the 6-row tiles of the AVX2 kernel). */
static NNL_NO_MEMCPY_IDIOM void FN(transpose)(int rows, int cols, const T *NNL_RESTRICT src,
                                              nnl_idx lds, T *NNL_RESTRICT dst, nnl_idx ldd)
{
    int i = 0;
#ifdef PACK_T8
    if (nnl_pack_a8_ok()) {
        for (; i + 8 <= rows; i += 8)
            PACK_T8(cols, src + i * lds, lds, dst + i, ldd);
        if (rows - i >= 2 && cols >= 8) {
            PACK_TR(rows - i, cols, src + i * lds, lds, dst + i, ldd);
            return;
        }
    }
#endif
    for (; i < rows; i++)
        for (int k = 0; k < cols; k++)
            dst[k * ldd + i] = src[i * lds + k];
}

/* The micro-kernel on the tile C[ir:+m, jr:+n] of a column-major C (s->c_cs > 0: element
 * (i, j) at c[i + j*c_cs]), through a row-major tile buffer: C transposed into it first when
 * the epilogue reads it, the result transposed back; the same operations on the same values
 * as a row-major C, so the same bits. */
static void FN(ukr_cm)(const KERNEL_T *kd, const FN(nnl_nest) *s, nnl_idx kcb, const T *ap,
                       const T *bp, nnl_idx ir, nnl_idx jr, int m, int n, const EPI_T *e)
{
    T tile[NNL_TILE_MAX];
    const int nr = kd->nr;
    const nnl_idx cs = s->c_cs;
    T *c = s->c + ir + jr * cs;
    if (e->load_c)
        FN(transpose)(n, m, c, cs, tile, nr);
    kd->ukr(kcb, ap, bp, tile, nr, m, n, e);
    FN(transpose)(m, n, tile, nr, c, cs);
}

/* One work unit (see gemm_internal.h): rows r0..r1 by columns c0..c1 of one item, computed by
 * one thread with its private buffers apw (an A block) and bpw (a B chunk):
 *
 *   for pc in K by KC:
 *     for jc in c0..c1 by chunk*NR:
 *       B[pc:+KC, jc:+chunk*NR] -> bp  (b_src)           (KC x chunk*NR block, L2/L3-sized;
 *                                                         or read in place, s->b_ld)
 *       for each block r0..r1 of at most s->mcb rows of the unit's (one block: mcb 0):
 *         pack A[r0:r1, pc:+KC] -> ap                    (MC x KC block, stays in L2; once
 *                                                         per K slice when it is one block)
 *         for each NR panel of the chunk:                (KC x NR micro-panel, L1/L2)
 *           for ir in r0..r1 by MR: micro-kernel C[ir:+MR, jr:+NR] (+)= Ap_ir @ Bp_jr
 *                                   (or tile() when the caller writes its own tiles)
 *
 * BLIS's order: a unit of more rows than its L2 holds as one packed A block packs each B
 * chunk once and sweeps it with one A block after another, instead of being cut into units
 * of MC rows that each pack the whole B chunk again. */
static NNL_ALWAYS_INLINE void FN(gemm_nest)(const FN(nnl_nest) *s, FN(nnl_bsrc) b_src,
                                            FN(nnl_tile) tile, const KERNEL_T *kd, nnl_idx u0,
                                            nnl_idx u1, nnl_idx c0, nnl_idx c1, T *apw, T *bpw)
{
    const int mr = kd->mr, nr = kd->nr;
    const nnl_idx K = s->K, chunk = s->chunk;
    EPI_T e;
    e.alpha = s->alpha;
    e.bias_row = e.bias_col = NULL;
    e.ldb = nr;
    e.pf = NULL, e.pf_n = 0, e.pf_ld = 0;
    e.aks = e.lda = 0;
    const int a_direct = s->a_inplace || s->a_rows;
    const int b_rows_paged = s->b_ld * (nnl_idx)sizeof(T) >= NNL_PAGE_BYTES;
    /* rows of an A block: the unit's rows in as few blocks of at most s->mcb as there can
     * be, of equal whole MR panels but the last (so the blocks keep the unit's tile grid) */
    const nnl_idx nblk = s->mcb > 0 ? nnl_cdiv(u1 - u0, s->mcb) : 1;
    const nnl_idx mcb = nblk > 1 ? nnl_cdiv(nnl_cdiv(u1 - u0, nblk), mr) * mr : u1 - u0;
    for (nnl_idx pc = 0; pc < K; pc += s->kcb_max) {
        const nnl_idx kcb = nnl_min(s->kcb_max, K - pc);
        const int first = pc == 0, last = pc + kcb == K;
        e.load_c = !first || s->beta != 0;
        e.beta = first ? s->beta : (T)1;
        e.act = last ? s->act : NNL_ACT_NONE;
        for (nnl_idx jc = c0; jc < c1; jc += chunk * nr) {
            const nnl_idx ncb = nnl_min(chunk * nr, c1 - jc);
            const nnl_idx nq = nnl_cdiv(ncb, nr);
            const T *bp = b_src(s->b_ctx, nr, pc, kcb, jc, ncb, bpw);
            for (nnl_idx r0 = u0; r0 < u1; r0 += mcb) {
                const nnl_idx r1 = nnl_min(r0 + mcb, u1);
                const nnl_idx nir = nnl_cdiv(r1 - r0, mr);
                /* the next panel of a B read in place is prefetched while its predecessor is
                 * swept when B's rows lie in different pages (the hardware prefetchers stay
                 * within a page) and this slice's sweep is long enough to hide the misses
                 * (NNL_GEMM_PF_B_MIN_STEPS k steps over the row panels) */
                const int pf_next_rows = b_rows_paged && nir * kcb >= NNL_GEMM_PF_B_MIN_STEPS;
                const T *ap = apw;
                if (s->apk != NULL) {   /* pre-packed (PACK_NAME): K slice pc, panel r0/MR */
                    ap = s->apk + s->apk_rows * pc + (r0 / mr) * kcb * mr;
                } else if (nblk > 1 || jc == c0) {
                    /* packed per chunk when the unit has several blocks; one block stays in
                     * apw from the first chunk of the K slice on */
                    if (a_direct) {   /* A read in place: its ragged last panel packed */
                        const nnl_idx full = (r1 - r0) / mr * mr;
                        if (full < r1 - r0)
                            FN(pack_a_panel)(kcb, s->a + (r0 + full) * s->rsa + pc * s->csa,
                                             s->rsa, s->csa, (int)(r1 - r0 - full), mr,
                                             s->a_pack8, apw);
                    } else {
                        FN(pack_a)(r1 - r0, kcb, s->a + r0 * s->rsa, s->rsa, s->csa, mr,
                                   s->a_pack8, apw, pc, s->a_lk, s->a_sk);
                    }
                }
                for (nnl_idx q = 0; q < nq; q++) {
                    const nnl_idx jr = jc + q * nr;
                    const int n = (int)nnl_min(nr, c1 - jr);
                    /* b_ld > 0: full panels in place (rows b_ld apart), a ragged last one packed
                     * into bpw by b_src; the same values either way, so the same bits */
                    const int inplace = s->b_ld > 0 && n == nr;
                    const T *bpq = inplace ? bp + q * nr : (s->b_ld > 0 ? bpw : bp) + q * kcb * nr;
                    e.ldb = inplace ? s->b_ld : nr;
                    e.bias_col = (last && s->bias_kind == NNL_BIAS_COL) ? s->bias + jr : NULL;
                    /* the next pre-packed B panel (in DRAM when it holds a late layer's
                     * weights), prefetched a share per row panel while this one is swept */
                    nnl_idx b_lines = 0;
                    const char *b_next = NULL;
                    if (s->pf_b) {
                        if (jr + nr < c1) {            /* the next panel of this K slice */
                            b_next = (const char *)(bpq + kcb * nr);
                            b_lines = kcb * nr * (nnl_idx)sizeof(T) / 64;
                        } else if (pc + kcb < K) {     /* the first panel of the next slice */
                            const nnl_idx kn = nnl_min(s->kcb_max, K - pc - kcb);
                            b_next = (const char *)b_src(s->b_ctx, nr, pc + kcb, kn, c0,
                                                         nnl_min(chunk * nr, c1 - c0), bpw);
                            b_lines = kn * nr * (nnl_idx)sizeof(T) / 64;
                        }
                    }
                    const nnl_idx b_share = nnl_cdiv(b_lines, nir);
                    /* a ragged last panel of a few columns: the column-tail kernel takes the whole
                     * vectors of packed row panels into a plain C, where no prefetch of the next
                     * B panel is to be spread over the row panels; ukr the rows it leaves */
                    nnl_idx ir0 = r0;
                    if (kd->tail != NULL && n < nr && n <= kd->tail_n && tile == NULL &&
                        !a_direct && s->c_cs == 0 && s->c_ln == 0 && b_lines == 0) {
                        e.lda = e.aks = 0;
                        e.pf_n = e.pf_ld = 0;
                        e.bias_row = (last && s->bias_kind == NNL_BIAS_ROW) ? s->bias + r0 : NULL;
                        ir0 += kd->tail(kcb, ap, r1 - r0, bpq, s->c + r0 * s->rsc + jr, s->rsc, n,
                                        &e);
                    }
                    for (nnl_idx ir = ir0; ir < r1; ir += mr) {
                        const int m = (int)nnl_min(mr, r1 - ir);
                        const T *api = ap + (ir - r0) * kcb;
                        e.lda = e.aks = 0;
                        if (a_direct) {   /* a full panel in place, else the packed last one */
                            api = m == mr ? s->a + ir * s->rsa + pc * s->csa : apw;
                            e.lda = m == mr && s->a_rows ? s->rsa : 0;
                            e.aks = m == mr && s->a_inplace ? s->csa : 0;
                        }
                        e.pf_ld = 0;
                        if (b_lines > 0) {
                            const nnl_idx l0 = (ir - r0) / mr * b_share;
                            e.pf = b_next + 64 * l0;
                            e.pf_n = l0 < b_lines ? nnl_min(b_share, b_lines - l0) : 0;
                        } else if (s->apk != NULL && q == 0 && jc == c0 && ir + mr < r1) {
                            /* the first sweep of a pre-packed A block: its next row panel */
                            e.pf = (const char *)(api + kcb * mr);
                            e.pf_n = kcb * mr * (nnl_idx)sizeof(T) / 64;
                        } else if (pf_next_rows && q + 1 < nq && jr + 2 * nr <= c1) {
                            /* the next panel of a B read in place (full, so read in place too),
                             * a share of its rows per row panel of the sweep */
                            const nnl_idx share = nnl_cdiv(kcb, nir), l0 = (ir - r0) / mr * share;
                            e.pf = (const char *)(bp + (q + 1) * nr + l0 * s->b_ld);
                            e.pf_ld = s->b_ld * (nnl_idx)sizeof(T);
                            e.pf_n = l0 < kcb ? nnl_min(share, kcb - l0) : 0;
                        } else if (s->pf_c && first && tile == NULL) {
                            /* a C in no cache: the next tile's rows (the next row panel's, or
                             * the next column panel's first), one per k step, so that its
                             * write-out does not wait for each line */
                            const int down = ir + mr < r1;
                            const nnl_idx ni = down ? ir + mr : r0, nj = down ? jr : jr + nr;
                            e.pf_ld = s->rsc * (nnl_idx)sizeof(T);
                            e.pf = (const char *)(s->c + ni * s->rsc + nj);
                            e.pf_n = nj < c1 ? nnl_min(mr, r1 - ni) : 0;
                        } else {
                            e.pf_n = 0;
                        }
                        if (tile != NULL) {
                            tile(s->t_ctx, kcb, api, bpq, ir, jr, m, n, pc, first, last);
                            continue;
                        }
                        e.bias_row = (last && s->bias_kind == NNL_BIAS_ROW) ? s->bias + ir : NULL;
                        if (s->c_cs > 0)
                            FN(ukr_cm)(kd, s, kcb, api, bpq, ir, jr, m, n, &e);
                        else if (s->c_ln > 0)
                            FN(ukr_split)(kd, s, kcb, api, bpq, ir, jr, m, n, &e);
                        else
                            kd->ukr(kcb, api, bpq, s->c + ir * s->rsc + jr, s->rsc, m, n, &e);
                    }
                }
            }
        }
    }
}

