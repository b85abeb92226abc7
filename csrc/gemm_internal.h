/* nnlite GEMM internals shared by the driver (gemm_driver.c) and the micro-kernel files
 * (gemm_generic.c, gemm_avx2.c, gemm_avx512.c). Not part of the Python-facing interface.
 *
 * Packed layouts (row-major convention everywhere):
 *   A micro-panel: MR rows x kc, stored k-major:  ap[k*MR + i]   (rows >= m are zero)
 *   B micro-panel: kc x NR columns, row-major:    bp[k*NR + j]   (columns >= n are zero)
 * A micro-kernel call computes the m x n tile (m <= MR, n <= NR) at c (row stride ldc):
 *   acc = sum_k ap[k*MR + i] * bp[k*NR + j]       (k ascending, one fused multiply-add each)
 *   load_c ? c = fma(acc, alpha, beta * c) : c = acc * alpha
 *   c += bias_row[i] or bias_col[j] (at most one is given); c = act(c)
 * (the scalar form is nnl_epi_one_* of nnl_core.h)
 * Every element goes through exactly this sequence whatever the tile size, so results do not
 * depend on how the matrix was cut into tiles (or threads).
 */
#ifndef NNLITE_GEMM_INTERNAL_H
#define NNLITE_GEMM_INTERNAL_H

#include "gemm_kernels.h"

/* Products with at most this many rows skip packing and read the unpacked A even when a
 * pre-packed one is given (gemm_driver_tmpl.h's skinny path); the Winograd plans rely on it
 * (convfast_winograd.h). */
/* The largest MR x NR of any family (a C tile buffered by gemm_nest's split write-out). */
#define NNL_TILE_MAX 512

#ifndef NNL_SKINNY_M
#define NNL_SKINNY_M 4
#endif
/* ... and reduce each dot product of op(A)'s rows with op(B)'s columns (both contiguous along
 * K) through this many interleaved partial sums: s[u] = the sum over k = u (mod LANES), k
 * ascending, then s[u] += s[u + w] for w = LANES/2, ..., 2, 1; the sum is s[0]. */
#define NNL_SKINNY_LANES 16

typedef struct {
    float alpha, beta;
    int load_c;               /* 0: C is not read (first K block with beta == 0) */
    int act;                  /* NNL_ACT_* (last K block only, else NONE) */
    const float *bias_row;    /* bias of the tile's first row, or NULL */
    const float *bias_col;    /* bias of the tile's first column, or NULL */
    nnl_idx ldb;              /* row stride of the B micro-panel: NR when packed, B's own row
                               * stride when read in place (gemm_nest, b_ld) */
    const char *pf;           /* pf_n cache lines from pf (64 bytes apart) that the SIMD
                               * micro-kernels prefetch into L2, one per k step of the K loop
                               * (gemm_nest: the next pre-packed panel); pf_n 0: none */
    nnl_idx pf_n;
    nnl_idx aks;              /* > 0: a column-major op(A) read in place, rows 1 and k steps
                               * aks apart (gemm_nest, a_inplace) */
    nnl_idx lda;              /* > 0: a row-major op(A) read in place, rows lda apart, k steps
                               * 1 (gemm_nest, a_rows); both 0: a packed micro-panel (k steps
                               * MR apart); in place only for full MR-row tiles */
    nnl_idx pf_ld;            /* > 0: pf is pf_n rows of NR elements, pf_ld bytes apart (the
                               * next panel of a B read in place), one row per k step */
} nnl_epi_s;

typedef struct {
    double alpha, beta;
    int load_c;
    int act;
    const double *bias_row;
    const double *bias_col;
    nnl_idx ldb;
    const char *pf;
    nnl_idx pf_n;
    nnl_idx aks;
    nnl_idx lda;
    nnl_idx pf_ld;
} nnl_epi_d;

typedef void (*nnl_ukr_s)(nnl_idx kc, const float *ap, const float *bp, float *c, nnl_idx ldc,
                          int m, int n, const nnl_epi_s *e);
typedef void (*nnl_ukr_d)(nnl_idx kc, const double *ap, const double *bp, double *c, nnl_idx ldc,
                          int m, int n, const nnl_epi_d *e);
/* The dot micro-kernel of the few-row path: out[i*ldo + j] = the dot product of a[i*rsa + k]
 * and b[j*csb + k] over k < K, for i < m (m <= NNL_SKINNY_M) and j < n, in the order of
 * NNL_SKINNY_LANES, one fused multiply-add per k; a family without one (NULL) leaves it to the
 * driver's plain loops (skinny_cols: the same order, fused where the compiler contracts). */
typedef void (*nnl_dot_s)(nnl_idx K, int m, int n, const float *a, nnl_idx rsa, const float *b,
                          nnl_idx csb, float *out, nnl_idx ldo);
typedef void (*nnl_dot_d)(nnl_idx K, int m, int n, const double *a, nnl_idx rsa,
                          const double *b, nnl_idx csb, double *out, nnl_idx ldo);

/* One micro-kernel family for one dtype: register tile MR x NR and the cache blocks.
 *   MR x NR: the C tile held in registers by the micro-kernel.
 *   KC: depth of the packed panels; a KC x NR micro-panel of B is reused (from L1/L2) by every
 *       MR row panel, a MR x KC micro-panel of A streams from L2.
 *   MC: rows of A packed at once (the rows of one work unit); the MC x KC block stays in L2.
 *   NC: columns of B packed at once (a unit's B chunk); the KC x NC block stays in the L3.
 * MC is a multiple of MR and NC a multiple of NR. MR, NR and the micro-kernel are compiled in;
 * MC, KC and NC come from this CPU's cache sizes at run time (nnl_select fills them in once
 * per process with nnl_blocking_rule, csrc/core/nnl_cache.c) unless fixed with -D. */
/* The column-tail micro-kernel: C[0:rows, 0:n] (+)= the packed A block ap (row panels of MR
 * rows, kc * MR elements apart) @ the ragged last micro-panel bp (kc x NR, n <= tail_n columns
 * used), with the rows in the vector lanes (LANES / MR row panels a vector, or one panel of
 * MR < LANES rows in the low lanes) and the n columns broadcast, the epilogue e as ukr's
 * (bias_row: the block's first row); the same operations on the same values as ukr's tiles, so
 * the same bits. It covers the whole vectors of row panels and returns how many rows that is
 * (a multiple of the rows a vector holds, at most rows); the nest runs ukr on the rows left. Where NR is several vectors wide, ukr's last vector computes a
 * ragged panel of n columns at the cost of LANES columns, one broadcast per row and k
 * (float32 AVX-512, one thread: C 256 x 196 cost 1.09x of 256 x 192, 256 x 49 1.20x of
 * 256 x 48). */
typedef nnl_idx (*nnl_tail_s)(nnl_idx kc, const float *ap, nnl_idx rows, const float *bp,
                              float *c, nnl_idx ldc, int n, const nnl_epi_s *e);
typedef nnl_idx (*nnl_tail_d)(nnl_idx kc, const double *ap, nnl_idx rows, const double *bp,
                              double *c, nnl_idx ldc, int n, const nnl_epi_d *e);

typedef struct {
    int mr, nr, mc, kc, nc;
    nnl_ukr_s ukr;
    nnl_dot_s dot;
    int a_inplace;   /* ukr reads full-height A panels in place (nnl_epi_s.aks or lda > 0) */
    nnl_tail_s tail; /* or NULL (the family's row panels do not fit its vectors) */
    int tail_n;      /* widest ragged panel tail takes */
    int lanes;       /* ukr computes a ragged panel of n columns at the cost of n rounded up
                      * to a multiple of this many (its vector lanes; NR: the whole panel) */
} nnl_kernel_s;

typedef struct {
    int mr, nr, mc, kc, nc;
    nnl_ukr_d ukr;
    nnl_dot_d dot;
    int a_inplace;
    nnl_tail_d tail;
    int tail_n;
    int lanes;
} nnl_kernel_d;

const nnl_kernel_s *nnl_generic_kernel_s(void);
const nnl_kernel_d *nnl_generic_kernel_d(void);
#if NNL_X86_DISPATCH
const nnl_kernel_s *nnl_avx2_kernel_s(void);
const nnl_kernel_d *nnl_avx2_kernel_d(void);
const nnl_kernel_s *nnl_avx512_kernel_s(void);
const nnl_kernel_d *nnl_avx512_kernel_d(void);
#endif

/* ------------------------------------------------------------------- the block loop nest
 *
 * gemm_nest (gemm_nest_tmpl.h) runs one work unit: rows [r0, r1) (r0 a multiple of MR, at most
 * MC rows) by columns [c0, c1) (c0 a multiple of NR) of C = act(alpha * A @ B + beta * C +
 * bias), for every caller: the plain GEMM (gemm_driver.c) and the implicit conv
 * (convfast_implicit.c, "the GEMM with an image packer for B"). What differs between them is
 * plugged in:
 *   A   a strided matrix (packed per K slice by pack_a; its K axis optionally in two levels,
 *       a_lk / a_sk) or panels pre-packed whole (nnl_sgemm_pack layout);
 *   B   b_src(b_ctx, nr, pc, kcb, jc, ncb, buf) returns the KC x NR micro-panels of rows
 *       [pc, pc + kcb) and columns [jc, jc + ncb), packed into buf (room for a B chunk) or
 *       found elsewhere (pre-packed panels); the conv packs them from the image;
 *   out tile NULL: the micro-kernel writes C (row stride rsc) through its epilogue (alpha/beta,
 *       bias per row or column, act); else tile(t_ctx, ...) gets every micro-tile's panels and
 *       does its own product and write-out (the conv's tile + scatter of the wide layout, and
 *       its B-direct kernel); c_ln > 0: C's columns in two levels (ukr_split); c_cs > 0: a
 *       column-major C (ukr_cm: a narrow product run transposed writes its result in place).
 * K is cut into slices of kcb_max (all but the last full) and B is fetched chunk NR panels
 * at a time; both are fixed by the caller from the shape alone, so the arithmetic of an
 * element never depends on how C is cut into units (or threads). */
#define NNL_DEFINE_NEST(T, S)                                                                 \
    typedef const T *(*nnl_bsrc_##S)(const void *ctx, int nr, nnl_idx pc, nnl_idx kcb,       \
                                     nnl_idx jc, nnl_idx ncb, T *buf);                       \
    typedef void (*nnl_tile_##S)(const void *ctx, nnl_idx kcb, const T *ap, const T *bp,     \
                                 nnl_idx ir, nnl_idx jr, int m, int n, nnl_idx pc, int first,\
                                 int last);                                                  \
    typedef struct {                                                                          \
        nnl_idx K, kcb_max, chunk; /* depth, K slice, NR panels of B fetched at once */     \
        nnl_idx mcb;               /* rows of an A block (a multiple of MR); 0: the unit's */\
        T alpha, beta;                                                                        \
        int act;                   /* NNL_ACT_*, applied after the last K slice */          \
        const T *a;                /* A (row 0 of the item), strides rsa, csa; or ... */    \
        nnl_idx rsa, csa;                                                                     \
        const T *apk;              /* ... its panels pre-packed for apk_rows = ceil(M/MR)*MR */\
        nnl_idx apk_rows;                                                                     \
        int a_pack8;               /* MR-row panels, csa == 1: nnl_pack_a8_s (float, MR 6/8) */\
        int a_inplace, a_rows;     /* A column-major (rsa 1) / row-major (csa 1): its full    \
                                    * MR-row panels read in place by the micro-kernel, a     \
                                    * ragged last one packed */                              \
        const void *b_ctx;         /* the B source's context */                              \
        nnl_idx b_ld;              /* 0: b_src packs; > 0: its full panels are read in place, \
                                    * rows b_ld apart (gemm_nest) */                         \
        T *c;                      /* C (row 0 of the item), row stride rsc */               \
        nnl_idx rsc;                                                                          \
        nnl_idx a_lk, a_sk;        /* A's K split in two levels (nnl_split lk, ask); 0: none */\
        nnl_idx c_ln, c_sn;        /* C's columns split in two levels (ln, csn); 0: none */  \
        nnl_idx c_cs;              /* > 0: C column-major, (i, j) at c[i + j*c_cs] (rsc 1) */\
        const T *bias;             /* bias of row 0 / column 0, NULL, per bias_kind */       \
        int pf_b;                  /* b_src returns pre-packed panels (b_prepacked): the     \
                                    * kernel prefetches the next while it sweeps one */      \
        int pf_c;                  /* C too large to stay cached: each tile's K loop         \
                                    * prefetches the next tile's rows of C (NNL_GEMM_PF_C_*) */\
        int bias_kind;                                                                        \
        const void *t_ctx;         /* the tile write-out's context */                        \
    } nnl_nest_##S;

NNL_DEFINE_NEST(float, s)
NNL_DEFINE_NEST(double, d)
#undef NNL_DEFINE_NEST

/* mr (6 or 8) full rows w[i*ld + k], k < kcb, -> the k-major micro-panel ap[k*mr + i] through
 * AVX 8 x 8 transposes (convfast_bdirect.c; an exact copy, so the same panel as pack_a
 * writes). Call only when nnl_pack_a8_ok(); nnl_pack_a_fast(mr) says whether it serves mr. */
void nnl_pack_a8_s(nnl_idx kcb, const float *w, nnl_idx ld, float *ap, int mr);
/* The same into out[k*ldo + i] (any output row stride; the GEMM's transposed-B packing), for
 * 8 rows, and for 1..8 rows (nnl_pack_tr_s: each column stores only its rows floats). */
void nnl_pack_t8_s(nnl_idx kcb, const float *w, nnl_idx ld, float *out, nnl_idx ldo);
void nnl_pack_tr_s(int rows, nnl_idx kcb, const float *w, nnl_idx ld, float *out, nnl_idx ldo);
int nnl_pack_a8_ok(void);
/* dst[k*ldd + i] = src[i*lds + k] for i < rows, k < cols: the GEMM nest's transpose (an exact
 * copy, eight rows at a time through nnl_pack_t8_s where the CPU has AVX, the last 2..7
 * through nnl_pack_tr_s), for other kernels
 * (gemm_driver.c). */
void nnl_transpose_s(int rows, int cols, const float *src, nnl_idx lds, float *dst, nnl_idx ldd);
/* dst[0:n] = src[0], src[2], ... (n of them) through AVX-512 masked even-lane permutes
 * (convfast_bdirect.c; an exact copy, reading nothing past src[2n - 2]); call only when
 * nnl_copy_even_ok(). */
void nnl_copy_even_s(nnl_idx n, const float *src, float *dst);
int nnl_copy_even_ok(void);
static inline int nnl_pack_a_fast(int mr)
{
    return (mr == 8 || mr == 6) && nnl_pack_a8_ok();
}

/* The groups (of rows or columns) that cut `total` into pieces of `size`, a multiple of the
 * panel `edge`: a last piece of less than one panel (a partial panel alone) joins the one
 * before, so that no work unit sweeps all of the other operand again for a sliver of rows or
 * columns (49 output pixels as 24-row units were 24 + 24 + 1: the 1-row unit re-read the
 * whole of the weights from L2 for 1/49 of the work). nnl_group_end: group i's end. */
static inline nnl_idx nnl_groups(nnl_idx total, nnl_idx size, nnl_idx edge)
{
    const nnl_idx g = nnl_cdiv(total, size);
    return g > 1 && total - (g - 1) * size < edge ? g - 1 : g;
}

static inline nnl_idx nnl_group_end(nnl_idx i, nnl_idx groups, nnl_idx size, nnl_idx total)
{
    return i == groups - 1 ? total : nnl_min(total, (i + 1) * size);
}

/* The family for isa (NNL_ISA_AUTO: the best this CPU runs), or NULL when it is not available
 * (gemm_driver.c); the GEMM and the implicit conv both take their kernels from here. */
const nnl_kernel_s *nnl_select_s(int isa);
const nnl_kernel_d *nnl_select_d(int isa);

#endif
