/* Direct depthwise conv2d (groups == C, F = M*C: output channel f reads input channel f / M):
 *
 *     y[n, f, i, j] = act(beta * y[n, f, i, j] + bias[f] + sum_{a, b} w[f, a*KW + b]
 *                                            * x[n, f/M, i*SH - PT + a*DH, j*SW - PL + b*DW])
 *
 * (taps in the padding contribute 0). Per plane, the zero-padded plane is copied into its
 * stride-phase "wide" layout (see dw_plane_wide in convfast_direct_tmpl.h): every tap then reads
 * one contiguous stream, and the whole plane is ONE loop over blocks of NNL_DW_BLOCK vectors
 * whose accumulators stay in registers (a vector load and an FMA per tap and vector, one store
 * per vector), instead of one pass over the output per tap. The valid columns are copied out
 * through the epilogue. Planes narrower than a vector run NNL_DW_VBYTES/sizeof(T) channels at
 * a time with the channels in the vector lanes (dw_cl_block). Planes whose wide layout would
 * exceed NNL_DW_WIDE_MAX elements (or when
 * the buffer cannot be allocated) run dw_plane: the same register blocks over each output
 * row's interior columns, a checked scalar loop for the border columns.
 *
 * Vectors are GCC/Clang vector extensions sized to the widest unit the build targets
 * (AVX-512: 64 bytes), so the kernel is portable C. OpenMP over the N*F planes (each plane of y
 * is written by one thread only; one plane buffer per thread, malloc'd per call). No tap ever
 * reads outside the image plane: the wide copy range-checks rows and clips columns; in the row
 * kernel rows are range-checked, interior columns proven in range by [j0, j1), border columns
 * checked one by one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convfast.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__)
#define NNL_DW_VBYTES 64
#elif defined(__AVX__)
#define NNL_DW_VBYTES 32
#else
#define NNL_DW_VBYTES 16
#endif
#ifndef NNL_DW_BLOCK
#define NNL_DW_BLOCK 4 /* vectors per register block */
#endif
/* Planes whose wide layout needs more elements than this run the row kernel (no buffer). */
#ifndef NNL_DW_WIDE_MAX
#define NNL_DW_WIDE_MAX ((nnl_idx)1 << 20)
#endif
/* Work per thread NNL_DW_MIN_MACS_PER_THREAD: csrc/core/nnl_tuning.h. */

static int dw_geom_ok(const nnl_conv_geom *g)
{
    if (g->n < 0 || g->c < 1 || g->h < 0 || g->w < 0 || g->f < 0 || g->oh < 0 || g->ow < 0)
        return 0;
    if (g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1 || g->dh < 1 || g->dw < 1 ||
        g->pt < 0 || g->pl < 0)
        return 0;
    return g->g == g->c && g->f % g->c == 0;
}

/* threads for a call: as many as get NNL_DW_MIN_MACS_PER_THREAD multiply-adds each (1 without
 * OpenMP); the callers cap it at the number of planes (channel blocks), the unit a thread
 * takes whole, so every output plane is computed the same way on any number of threads */
static int dw_threads(const nnl_conv_geom *g, int nthreads)
{
    return nnl_team_by_share(nthreads, (double)g->n * g->f * g->oh * g->ow * g->kh * g->kw,
                             NNL_DW_MIN_MACS_PER_THREAD);
}

/* dw_row_copy_{s,d}(dst, src, n, sw, act): dst[v] = act(src[v * sw]) for v < n, sw >= 1.
 * The rows of the stride-phase copies and of the narrow planes' write-out are short (7 to
 * 30 elements at MobileNetV2's 14x14 and 7x7 maps): a vectorised loop never starts on them and
 * the scalar copies cost more than the convolution. With AVX-512, sw 1 and 2 run whole
 * vectors under a lane mask (masked-off lanes are neither read nor written, so a row ending at
 * its buffer's end is safe); stride 2 takes even lanes of two masked loads. */
#if defined(__AVX512F__)
#include "nnl_lanes.h"
#define NNL_DW_MASKED 1

/* the masked rows of dw_row_copy_{s,d}, sw a constant (1 or 2) after inlining */
static NNL_ALWAYS_INLINE void dw_rows_s(float *dst, const float *src, nnl_idx n, const int sw,
                                        int act)
{
    for (nnl_idx e = 0; e < n; e += 16) {
        __m512 v = nnl_gather16_s(src + sw * e, sw, 0, n - e);
        _mm512_mask_storeu_ps(dst + e, nnl_lanes16(0, n - e), NNL_ACT_VEC(v, act));
    }
}

static NNL_ALWAYS_INLINE void dw_rows_d(double *dst, const double *src, nnl_idx n, const int sw,
                                        int act)
{
    for (nnl_idx e = 0; e < n; e += 8) {
        __m512d v = nnl_gather8_d(src + sw * e, sw, 0, n - e);
        _mm512_mask_storeu_pd(dst + e, nnl_lanes8(0, n - e), NNL_ACT_VEC(v, act));
    }
}

/* sw a constant 1 or 2: masked whole vectors */
#define NNL_DW_FIXED(S, SW) dw_rows_##S(dst, src, n, (SW), act)
#else
#define NNL_DW_MASKED 0
/* sw a constant 1 or 2: a plain loop */
#define NNL_DW_FIXED(S, SW)                                                                   \
    for (nnl_idx v = 0; v < n; v++)                                                           \
    dst[v] = NNL_ACT(src[(SW) * v], act)
#endif

#define NNL_DW_DEFINE_ROW_COPY(T, S)                                                          \
    static NNL_NO_MEMCPY_IDIOM void dw_row_copy_##S(T *dst, const T *src, nnl_idx n,          \
                                                    nnl_idx sw, int act)                      \
    {                                                                                         \
        if (sw == 1)                                                                          \
            NNL_DW_FIXED(S, 1);                                                               \
        else if (sw == 2)                                                                     \
            NNL_DW_FIXED(S, 2);                                                               \
        else                                                                                  \
            for (nnl_idx v = 0; v < n; v++)                                                   \
                dst[v] = NNL_ACT(src[v * sw], act);                                           \
    }
NNL_DW_DEFINE_ROW_COPY(float, s)
NNL_DW_DEFINE_ROW_COPY(double, d)
#undef NNL_DW_DEFINE_ROW_COPY
#undef NNL_DW_FIXED

#define T float
#define FN(name) name##_s
#include "convfast_direct_tmpl.h"
#undef T
#undef FN

#define T double
#define FN(name) name##_d
#include "convfast_direct_tmpl.h"
#undef T
#undef FN

nnl_idx nnl_conv_depthwise_workspace(const nnl_conv_geom *geom, int elsize, int nthreads)
{
    return elsize == 8 ? dw_workspace_d(geom, nthreads) : dw_workspace_s(geom, nthreads);
}
