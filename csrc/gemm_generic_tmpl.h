/* Template body of gemm_generic.c, included once per dtype with T, EPI_T, KERNEL_T, G_MR,
 * G_NR, G_MC, G_KC, G_NC and FN(name) defined. No include guard on purpose. */

/* One m x n tile (m <= G_MR, n <= G_NR): the full G_MR x G_NR product is always accumulated
 * (the packed panels are zero-padded), only the m x n corner is written. With GCC/Clang a row
 * of accumulators is one generic vector (G_NR lanes; the compiler maps it onto SSE/AVX/NEON/
 * SVE registers); otherwise plain loops. */
#if defined(__GNUC__) || defined(__clang__)
typedef T FN(generic_row) __attribute__((vector_size(G_NR * sizeof(T))));
#endif

static void FN(generic_ukr)(nnl_idx kc, const T *NNL_RESTRICT ap, const T *NNL_RESTRICT bp,
                            T *NNL_RESTRICT c, nnl_idx ldc, int m, int n, const EPI_T *e)
{
    T acc[G_MR][G_NR];
#if defined(__GNUC__) || defined(__clang__)
    FN(generic_row) rows[G_MR];
    for (int i = 0; i < G_MR; i++)
        rows[i] = (FN(generic_row)){0};
    for (nnl_idx k = 0; k < kc; k++) {
        FN(generic_row) b;
        memcpy(&b, bp, sizeof b);
        for (int i = 0; i < G_MR; i++)
            rows[i] += ap[i] * b;
        ap += G_MR;
        bp += e->ldb;
    }
    memcpy(acc, rows, sizeof acc);
#else
    for (int i = 0; i < G_MR; i++)
        for (int j = 0; j < G_NR; j++)
            acc[i][j] = 0;
    for (nnl_idx k = 0; k < kc; k++) {
        for (int i = 0; i < G_MR; i++) {
            const T a = ap[i];
            for (int j = 0; j < G_NR; j++)
                acc[i][j] += a * bp[j];
        }
        ap += G_MR;
        bp += e->ldb;
    }
#endif
    for (int i = 0; i < m; i++) {
        T *ci = c + i * ldc;
        for (int j = 0; j < n; j++) {
            const T *b = e->bias_row ? e->bias_row + i : e->bias_col ? e->bias_col + j : NULL;
            ci[j] = NNL_EPI_ONE(acc[i][j], e->alpha, e->beta, e->load_c ? ci + j : NULL, b,
                                e->act);
        }
    }
}

/* (no dot micro-kernel: the driver's plain loops are this family's) */
static const KERNEL_T FN(generic_kernel) = {G_MR, G_NR, G_MC, G_KC, G_NC, FN(generic_ukr), NULL,
                                             0, NULL, 0, G_NR};

const KERNEL_T *FN(nnl_generic_kernel)(void)
{
    return &FN(generic_kernel);
}
