/* Global average pool of contiguous planes (see pool_avg.h for the contract).
 *
 * The planes of a global pool are short (7x7 at the end of ResNet-50 and MobileNetV2), so the
 * cost is per plane: the row-major scalar loop of the adaptive pool and the plan's earlier
 * route, the GEMM's dot form, spent most of their time there (1280 x 7x7 at batch 8, two Zen 4
 * threads: 55 and 85 us). Here a plane is summed in vector lanes, two accumulators for long
 * planes, and reduced once:
 *   - AVX-512: the last partial vector is one masked load added into the first lanes, the
 *     lanes reduced by halves with register shuffles (_mm512_reduce_add_*);
 *   - AVX/AVX2: whole 8-float (4-double) vectors, reduced by halves, then the elements after
 *     the last whole vector added in order;
 *   - any other target: the same with the compiler's 16-byte vectors, reduced through an array.
 */
#include <string.h>

#include "pool_avg.h"

/* One plane loop for every target: V the vector type of VL elements T, HEAD the first
 * accumulator (the last partial vector's elements when the target loads it masked, else
 * zeros), LOAD / ADD / HSUM the target's operations, TAIL 1 when the elements after the last
 * whole vector are added in order after the reduction. */
#define NNL_PLANE_MEANS(NAME, T, V, VL, HEAD, ZERO, LOAD, ADD, HSUM, TAIL)                \
    void NAME(const T *x, ptrdiff_t planes, ptrdiff_t n, T *y)                            \
    {                                                                                     \
        const ptrdiff_t full = n / (VL) * (VL);                                           \
        for (ptrdiff_t p = 0; p < planes; p++) {                                          \
            const T *xp = x + p * n;                                                      \
            V a0 = HEAD(xp + full, n - full), a1 = ZERO;                                  \
            ptrdiff_t k = 0;                                                              \
            for (; k + 2 * (VL) <= full; k += 2 * (VL)) {                                 \
                a0 = ADD(a0, LOAD(xp + k));                                               \
                a1 = ADD(a1, LOAD(xp + k + (VL)));                                        \
            }                                                                             \
            if (k < full)                                                                 \
                a0 = ADD(a0, LOAD(xp + k));                                               \
            T sum = HSUM(ADD(a0, a1));                                                    \
            for (k = full; TAIL && k < n; k++)                                            \
                sum += xp[k];                                                             \
            y[p] = sum / (T)n;                                                            \
        }                                                                                 \
    }

#if defined(__AVX512F__)
#include <immintrin.h>

#define AVG_HEAD_S(p, r) _mm512_maskz_loadu_ps((__mmask16)((1u << (r)) - 1u), (p))
#define AVG_HEAD_D(p, r) _mm512_maskz_loadu_pd((__mmask8)((1u << (r)) - 1u), (p))
NNL_PLANE_MEANS(nnl_plane_means_s, float, __m512, 16, AVG_HEAD_S, _mm512_setzero_ps(),
                _mm512_loadu_ps, _mm512_add_ps, _mm512_reduce_add_ps, 0)
NNL_PLANE_MEANS(nnl_plane_means_d, double, __m512d, 8, AVG_HEAD_D, _mm512_setzero_pd(),
                _mm512_loadu_pd, _mm512_add_pd, _mm512_reduce_add_pd, 0)

#elif defined(__AVX__)
#include <immintrin.h>

static inline float avg_hsum8(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

static inline double avg_hsum4(__m256d v)
{
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    h = _mm_add_sd(h, _mm_unpackhi_pd(h, h));
    return _mm_cvtsd_f64(h);
}

#define AVG_HEAD_S(p, r) _mm256_setzero_ps()
#define AVG_HEAD_D(p, r) _mm256_setzero_pd()
NNL_PLANE_MEANS(nnl_plane_means_s, float, __m256, 8, AVG_HEAD_S, _mm256_setzero_ps(),
                _mm256_loadu_ps, _mm256_add_ps, avg_hsum8, 1)
NNL_PLANE_MEANS(nnl_plane_means_d, double, __m256d, 4, AVG_HEAD_D, _mm256_setzero_pd(),
                _mm256_loadu_pd, _mm256_add_pd, avg_hsum4, 1)

#else
/* the compiler's 16-byte vectors; unaligned loads through memcpy, lanes reduced by halves */
typedef float avg_vs __attribute__((vector_size(16)));
typedef double avg_vd __attribute__((vector_size(16)));

#define AVG_GENERIC(S, T, V)                                                              \
    static inline V avg_load_##S(const T *p)                                              \
    {                                                                                     \
        V v;                                                                              \
        memcpy(&v, p, sizeof v);                                                          \
        return v;                                                                         \
    }                                                                                     \
    static inline V avg_add_##S(V a, V b) { return a + b; }                               \
    static inline T avg_hsum_##S(V v)                                                     \
    {                                                                                     \
        enum { L = (int)(sizeof(V) / sizeof(T)) };                                        \
        T s[L];                                                                           \
        memcpy(s, &v, sizeof s);                                                          \
        for (int w = L / 2; w > 0; w /= 2)                                                \
            for (int l = 0; l < w; l++)                                                   \
                s[l] += s[l + w];                                                         \
        return s[0];                                                                      \
    }
AVG_GENERIC(s, float, avg_vs)
AVG_GENERIC(d, double, avg_vd)

#define AVG_HEAD_S(p, r) ((avg_vs){0})
#define AVG_HEAD_D(p, r) ((avg_vd){0})
NNL_PLANE_MEANS(nnl_plane_means_s, float, avg_vs, 4, AVG_HEAD_S, ((avg_vs){0}), avg_load_s,
                avg_add_s, avg_hsum_s, 1)
NNL_PLANE_MEANS(nnl_plane_means_d, double, avg_vd, 2, AVG_HEAD_D, ((avg_vd){0}), avg_load_d,
                avg_add_d, avg_hsum_d, 1)
#endif
