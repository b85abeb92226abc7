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

#define NNL_PLANE_MEANS(NAME, T)                                                          \
    typedef T NAME##_vec __attribute__((vector_size(16)));                    \
    enum { NAME##_VL = 16 / (int)sizeof(T) };                                 \
    static inline NAME##_vec NAME##_load(const T *p)                                      \
    {                                                                                     \
        NAME##_vec v;                                                                     \
        memcpy(&v, p, sizeof v);                                                          \
        return v;                                                                         \
    }                                                                                     \
    void NAME(const T *x, ptrdiff_t planes, ptrdiff_t n, T *y)                            \
    {                                                                                     \
        const ptrdiff_t VL = NAME##_VL, full = n / VL * VL;                               \
        for (ptrdiff_t p = 0; p < planes; p++) {                                          \
            const T *xp = x + p * n;                                                      \
            NAME##_vec a0 = {0}, a1 = {0};                                                \
            ptrdiff_t k = 0;                                                              \
            for (; k + 2 * VL <= full; k += 2 * VL) {                                     \
                a0 += NAME##_load(xp + k);                                                \
                a1 += NAME##_load(xp + k + VL);                                           \
            }                                                                             \
            if (k < full)                                                                 \
                a0 += NAME##_load(xp + k);                                                \
            a0 += a1;                                                                     \
            /* the lanes by halves: lane l + lane l + w for w = VL/2, VL/4, ..., 1 */     \
            T s[NAME##_VL];                                                               \
            memcpy(s, &a0, sizeof s);                                                     \
            for (int w = NAME##_VL / 2; w > 0; w /= 2)                                    \
                for (int l = 0; l < w; l++)                                               \
                    s[l] += s[l + w];                                                     \
            T sum = s[0];                                                                 \
            for (k = full; k < n; k++)   /* the last partial vector, in order */          \
                sum += xp[k];                                                             \
            y[p] = sum / (T)n;                                                            \
        }                                                                                 \
    }

#if defined(__AVX512F__)
#include <immintrin.h>

void nnl_plane_means_s(const float *x, ptrdiff_t planes, ptrdiff_t n, float *y)
{
    const ptrdiff_t full = n / 16 * 16;
    const __mmask16 tail = (__mmask16)((1u << (n - full)) - 1u);
    for (ptrdiff_t p = 0; p < planes; p++) {
        const float *xp = x + p * n;
        __m512 a0 = _mm512_maskz_loadu_ps(tail, xp + full), a1 = _mm512_setzero_ps();
        ptrdiff_t k = 0;
        for (; k + 32 <= full; k += 32) {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(xp + k));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(xp + k + 16));
        }
        if (k < full)
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(xp + k));
        y[p] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) / (float)n;
    }
}

void nnl_plane_means_d(const double *x, ptrdiff_t planes, ptrdiff_t n, double *y)
{
    const ptrdiff_t full = n / 8 * 8;
    const __mmask8 tail = (__mmask8)((1u << (n - full)) - 1u);
    for (ptrdiff_t p = 0; p < planes; p++) {
        const double *xp = x + p * n;
        __m512d a0 = _mm512_maskz_loadu_pd(tail, xp + full), a1 = _mm512_setzero_pd();
        ptrdiff_t k = 0;
        for (; k + 16 <= full; k += 16) {
            a0 = _mm512_add_pd(a0, _mm512_loadu_pd(xp + k));
            a1 = _mm512_add_pd(a1, _mm512_loadu_pd(xp + k + 8));
        }
        if (k < full)
            a0 = _mm512_add_pd(a0, _mm512_loadu_pd(xp + k));
        y[p] = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1)) / (double)n;
    }
}
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

void nnl_plane_means_s(const float *x, ptrdiff_t planes, ptrdiff_t n, float *y)
{
    const ptrdiff_t full = n / 8 * 8;
    for (ptrdiff_t p = 0; p < planes; p++) {
        const float *xp = x + p * n;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        ptrdiff_t k = 0;
        for (; k + 16 <= full; k += 16) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(xp + k));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(xp + k + 8));
        }
        if (k < full)
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(xp + k));
        float sum = avg_hsum8(_mm256_add_ps(a0, a1));
        for (k = full; k < n; k++)
            sum += xp[k];
        y[p] = sum / (float)n;
    }
}

void nnl_plane_means_d(const double *x, ptrdiff_t planes, ptrdiff_t n, double *y)
{
    const ptrdiff_t full = n / 4 * 4;
    for (ptrdiff_t p = 0; p < planes; p++) {
        const double *xp = x + p * n;
        __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
        ptrdiff_t k = 0;
        for (; k + 8 <= full; k += 8) {
            a0 = _mm256_add_pd(a0, _mm256_loadu_pd(xp + k));
            a1 = _mm256_add_pd(a1, _mm256_loadu_pd(xp + k + 4));
        }
        if (k < full)
            a0 = _mm256_add_pd(a0, _mm256_loadu_pd(xp + k));
        double sum = avg_hsum4(_mm256_add_pd(a0, a1));
        for (k = full; k < n; k++)
            sum += xp[k];
        y[p] = sum / (double)n;
    }
}
#else
NNL_PLANE_MEANS(nnl_plane_means_s, float)
NNL_PLANE_MEANS(nnl_plane_means_d, double)
#endif
