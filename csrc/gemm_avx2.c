/* nnlite GEMM: AVX2 + FMA micro-kernels (float32 and float64), for x86-64 CPUs without
 * AVX-512. Per-function target attribute (builds under any -march); selected at run time. */
#include "gemm_internal.h"

#if NNL_X86_DISPATCH
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma")))

/* ---- float32: 8 lanes, 16 ymm registers */
#define T float
#define EPI_T nnl_epi_s
#define KERNEL_T nnl_kernel_s
#define FN(name) name##_avx2_s
#define VEC __m256
#define LANES 8
#define MASK_T __m256i
#define V_ZERO() _mm256_setzero_ps()
#define V_SET1(x) _mm256_set1_ps(x)
#define V_LOADU(p) _mm256_loadu_ps(p)
#define V_STOREU(p, v) _mm256_storeu_ps((p), (v))
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_MUL(a, b) _mm256_mul_ps((a), (b))
#define V_ADD(a, b) _mm256_add_ps((a), (b))
#define V_MAX(a, b) _mm256_max_ps((a), (b))
#define V_MIN(a, b) _mm256_min_ps((a), (b))
#define V_MASK(r) \
    _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define V_LOADM(m, p) _mm256_maskload_ps((p), (m))
#define V_STOREM(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#ifndef NNL_AVX2_S_MR /* (override MR and NV together with -D to tune) */
#define NNL_AVX2_S_MR 6   /* MR x NR = 6 x 16: 12 ymm accumulators, 2 B vectors, 1 broadcast */
#define NNL_AVX2_S_NV 2
#endif
/* Cache blocks: 0 = derived from this CPU's caches at run time (nnl_blocking_rule);
 * -DNNL_AVX2_S_MC=... etc. fixes one. */
#ifndef NNL_AVX2_S_MC
#define NNL_AVX2_S_MC 0
#endif
#ifndef NNL_AVX2_S_KC
#define NNL_AVX2_S_KC 0
#endif
#ifndef NNL_AVX2_S_NC
#define NNL_AVX2_S_NC 0
#endif
#define UKR_MR NNL_AVX2_S_MR
#define UKR_NV NNL_AVX2_S_NV
#define UKR_MC NNL_AVX2_S_MC
#define UKR_KC NNL_AVX2_S_KC
#define UKR_NC NNL_AVX2_S_NC
#include "gemm_simd_tmpl.h"

const nnl_kernel_s *nnl_avx2_kernel_s(void)
{
    return &simd_kernel_avx2_s;
}

#include "gemm_simd_undef.h"

/* ---- float64: 4 lanes */
#define T double
#define EPI_T nnl_epi_d
#define KERNEL_T nnl_kernel_d
#define FN(name) name##_avx2_d
#define VEC __m256d
#define LANES 4
#define MASK_T __m256i
#define V_ZERO() _mm256_setzero_pd()
#define V_SET1(x) _mm256_set1_pd(x)
#define V_LOADU(p) _mm256_loadu_pd(p)
#define V_STOREU(p, v) _mm256_storeu_pd((p), (v))
#define V_FMA(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#define V_MUL(a, b) _mm256_mul_pd((a), (b))
#define V_ADD(a, b) _mm256_add_pd((a), (b))
#define V_MAX(a, b) _mm256_max_pd((a), (b))
#define V_MIN(a, b) _mm256_min_pd((a), (b))
#define V_MASK(r) _mm256_cmpgt_epi64(_mm256_set1_epi64x(r), _mm256_setr_epi64x(0, 1, 2, 3))
#define V_LOADM(m, p) _mm256_maskload_pd((p), (m))
#define V_STOREM(p, m, v) _mm256_maskstore_pd((p), (m), (v))
#ifndef NNL_AVX2_D_MR /* (override MR and NV together with -D to tune) */
#define NNL_AVX2_D_MR 6   /* MR x NR = 6 x 8 */
#define NNL_AVX2_D_NV 2
#endif
/* Cache blocks: 0 = derived from this CPU's caches at run time (nnl_blocking_rule);
 * -DNNL_AVX2_D_MC=... etc. fixes one. */
#ifndef NNL_AVX2_D_MC
#define NNL_AVX2_D_MC 0
#endif
#ifndef NNL_AVX2_D_KC
#define NNL_AVX2_D_KC 0
#endif
#ifndef NNL_AVX2_D_NC
#define NNL_AVX2_D_NC 0
#endif
#define UKR_MR NNL_AVX2_D_MR
#define UKR_NV NNL_AVX2_D_NV
#define UKR_MC NNL_AVX2_D_MC
#define UKR_KC NNL_AVX2_D_KC
#define UKR_NC NNL_AVX2_D_NC
#include "gemm_simd_tmpl.h"

const nnl_kernel_d *nnl_avx2_kernel_d(void)
{
    return &simd_kernel_avx2_d;
}

#endif /* NNL_X86_DISPATCH */
