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
/* Single-thread cut-off NNL_DW_MIN_PARALLEL_MACS: csrc/core/nnl_tuning.h. */

static int dw_geom_ok(const nnl_conv_geom *g)
{
    if (g->n < 0 || g->c < 1 || g->h < 0 || g->w < 0 || g->f < 0 || g->oh < 0 || g->ow < 0)
        return 0;
    if (g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1 || g->dh < 1 || g->dw < 1 ||
        g->pt < 0 || g->pl < 0)
        return 0;
    return g->g == g->c && g->f % g->c == 0;
}

/* threads for a call: 1 below NNL_DW_MIN_PARALLEL_MACS or without OpenMP */
static int dw_threads(const nnl_conv_geom *g, int nthreads)
{
    return nnl_team_size(nthreads, (double)g->n * g->f * g->oh * g->ow * g->kh * g->kw,
                         NNL_DW_MIN_PARALLEL_MACS);
}

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
