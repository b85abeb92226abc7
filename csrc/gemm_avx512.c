/* nnlite GEMM: AVX-512F micro-kernels (float32 and float64). Compiled with a per-function
 * target attribute, so they build on any x86-64 GCC/Clang whatever -march is; the driver only
 * calls them when __builtin_cpu_supports says the CPU (and OS) runs AVX-512F. */
#include "gemm_internal.h"

#if NNL_X86_DISPATCH
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx2,fma")))

/* ---- float32: 16 lanes, 32 zmm registers */
#define T float
#define EPI_T nnl_epi_s
#define KERNEL_T nnl_kernel_s
#define FN(name) name##_avx512_s
#define VEC __m512
#define LANES 16
#define MASK_T __mmask16
#define V_ZERO() _mm512_setzero_ps()
#define V_SET1(x) _mm512_set1_ps(x)
#define V_LOADU(p) _mm512_loadu_ps(p)
#define V_STOREU(p, v) _mm512_storeu_ps((p), (v))
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define V_MUL(a, b) _mm512_mul_ps((a), (b))
#define V_ADD(a, b) _mm512_add_ps((a), (b))
#define V_MAX(a, b) _mm512_max_ps((a), (b))
#define V_MIN(a, b) _mm512_min_ps((a), (b))
#define V_MASK(r) ((__mmask16)((1u << (r)) - 1u))
#define V_LOADM(m, p) _mm512_maskz_loadu_ps((m), (p))
#define V_STOREM(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
/* 8 floats at p then 8 at q (AVX-512F: through the double-lane insert) */
#define V_JOIN(p, q)                                                                      \
    _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(            \
                                            _mm256_loadu_ps(p))),                         \
                                        _mm256_castps_pd(_mm256_loadu_ps(q)), 1))
#ifndef NNL_AVX512_S_MR /* (override MR and NV together with -D to tune) */
#define NNL_AVX512_S_MR 8   /* MR x NR = 8 x 48: 24 accumulators, 3 B vectors, 1 broadcast */
#define NNL_AVX512_S_NV 3
#endif
/* Cache blocks: 0 = derived from this CPU's caches at run time (nnl_blocking_rule);
 * -DNNL_AVX512_S_MC=... etc. fixes one. */
#ifndef NNL_AVX512_S_MC
#define NNL_AVX512_S_MC 0
#endif
#ifndef NNL_AVX512_S_KC
#define NNL_AVX512_S_KC 0
#endif
#ifndef NNL_AVX512_S_NC
#define NNL_AVX512_S_NC 0
#endif
#define UKR_MR NNL_AVX512_S_MR
#define UKR_NV NNL_AVX512_S_NV
#define UKR_MC NNL_AVX512_S_MC
#define UKR_KC NNL_AVX512_S_KC
#define UKR_NC NNL_AVX512_S_NC
#include "gemm_simd_tmpl.h"

const nnl_kernel_s *nnl_avx512_kernel_s(void)
{
    return &simd_kernel_avx512_s;
}

#include "gemm_simd_undef.h"

/* ---- float64: 8 lanes */
#define T double
#define EPI_T nnl_epi_d
#define KERNEL_T nnl_kernel_d
#define FN(name) name##_avx512_d
#define VEC __m512d
#define LANES 8
#define MASK_T __mmask8
#define V_ZERO() _mm512_setzero_pd()
#define V_SET1(x) _mm512_set1_pd(x)
#define V_LOADU(p) _mm512_loadu_pd(p)
#define V_STOREU(p, v) _mm512_storeu_pd((p), (v))
#define V_FMA(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#define V_MUL(a, b) _mm512_mul_pd((a), (b))
#define V_ADD(a, b) _mm512_add_pd((a), (b))
#define V_MAX(a, b) _mm512_max_pd((a), (b))
#define V_MIN(a, b) _mm512_min_pd((a), (b))
#define V_MASK(r) ((__mmask8)((1u << (r)) - 1u))
#define V_LOADM(m, p) _mm512_maskz_loadu_pd((m), (p))
#define V_STOREM(p, m, v) _mm512_mask_storeu_pd((p), (m), (v))
#ifndef NNL_AVX512_D_MR /* (override MR and NV together with -D to tune) */
#define NNL_AVX512_D_MR 8   /* MR x NR = 8 x 24 */
#define NNL_AVX512_D_NV 3
#endif
/* Cache blocks: 0 = derived from this CPU's caches at run time (nnl_blocking_rule);
 * -DNNL_AVX512_D_MC=... etc. fixes one. */
#ifndef NNL_AVX512_D_MC
#define NNL_AVX512_D_MC 0
#endif
#ifndef NNL_AVX512_D_KC
#define NNL_AVX512_D_KC 0
#endif
#ifndef NNL_AVX512_D_NC
#define NNL_AVX512_D_NC 0
#endif
#define UKR_MR NNL_AVX512_D_MR
#define UKR_NV NNL_AVX512_D_NV
#define UKR_MC NNL_AVX512_D_MC
#define UKR_KC NNL_AVX512_D_KC
#define UKR_NC NNL_AVX512_D_NC
#include "gemm_simd_tmpl.h"

const nnl_kernel_d *nnl_avx512_kernel_d(void)
{
    return &simd_kernel_avx512_d;
}

#endif /* NNL_X86_DISPATCH */
