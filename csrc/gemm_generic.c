/* nnlite GEMM: the plain-C micro-kernels (float32 and float64). They always compile, on any
 * platform (no intrinsics), and are the fallback family for the x86 SIMD ones. Each row of the
 * MR x NR accumulator block is a GNU C generic vector that the compiler maps onto whatever SIMD
 * the build targets (plain loops without GCC/Clang). Layouts: see gemm_internal.h. */
#include <string.h>

#include "gemm_internal.h"

/* float32: MR x NR = 4 x 16 (a 4 x 16 accumulator block fits 16 SIMD registers of 4+ lanes) */
#define T float
#define EPI_T nnl_epi_s
#define KERNEL_T nnl_kernel_s
#define G_MR 4
#define G_NR 16
#define G_MC 0    /* cache blocks: 0 = from the caches at run time (nnl_blocking_rule) */
#define G_KC 0
#define G_NC 0
#define FN(name) name##_s
#include "gemm_generic_tmpl.h"
#undef T
#undef EPI_T
#undef KERNEL_T
#undef G_MR
#undef G_NR
#undef G_MC
#undef G_KC
#undef G_NC
#undef FN

/* float64: MR x NR = 4 x 8 */
#define T double
#define EPI_T nnl_epi_d
#define KERNEL_T nnl_kernel_d
#define G_MR 4
#define G_NR 8
#define G_MC 0
#define G_KC 0
#define G_NC 0
#define FN(name) name##_d
#include "gemm_generic_tmpl.h"
