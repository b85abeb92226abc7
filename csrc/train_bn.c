/* BatchNorm per-channel kernels of nnlite._train (see train.h for the contract). */
#include "train.h"

#include <string.h>

#define LANES 8

/* Σ f(i) over one channel: two vectors of 8 partial sums (GCC/Clang vector extensions: one zmm,
 * two ymm or four xmm each, whatever the build targets), the even and odd 8-element steps of
 * each row, added lane by lane at the end and combined in a fixed tree: two independent add
 * chains (one chain waited on the add latency every step), in registers across the whole
 * channel (as a double[8] array the compiler kept it in memory, and every step waited on a
 * store and a reload). A fixed order for any thread count. */
typedef double nnl_v8d __attribute__((vector_size(8 * sizeof(double))));
typedef float nnl_v8f __attribute__((vector_size(8 * sizeof(float))));

static inline nnl_v8d load8_s(const float* p) {
    nnl_v8f v;
    memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, nnl_v8d);
}

static inline nnl_v8d load8_d(const double* p) {
    nnl_v8d v;
    memcpy(&v, p, sizeof v);
    return v;
}

static double combine(nnl_v8d v) {
    double acc[LANES];
    memcpy(acc, &v, sizeof acc);
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

#define DEFINE_BN(T, SUF)                                                                     \
void nnl_bn_stats_##SUF(const T* x, nnl_tidx n, nnl_tidx s, nnl_tidx sn, double* mean,      \
                        double* m2) {                                                         \
    nnl_v8d acc = {0}, acc2 = {0}, vmu;                                                       \
    double tail = 0.0, mu, cnt = (double)n * (double)s;                                       \
    nnl_tidx i, j, s8 = s - s % LANES;                                                        \
    for (i = 0; i < n; i++) {                                                                 \
        const T* p = x + i * sn;                                                              \
        for (j = 0; j + 2 * LANES <= s8; j += 2 * LANES) {                                    \
            acc += load8_##SUF(p + j);                                                        \
            acc2 += load8_##SUF(p + j + LANES);                                               \
        }                                                                                     \
        for (; j < s8; j += LANES) acc += load8_##SUF(p + j);                                 \
        for (j = s8; j < s; j++) tail += (double)p[j];                                        \
    }                                                                                         \
    mu = (combine(acc + acc2) + tail) / cnt;                                                  \
    acc = acc2 = (nnl_v8d){0};                                                                \
    vmu = acc + mu;                                                                           \
    tail = 0.0;                                                                               \
    for (i = 0; i < n; i++) {                                                                 \
        const T* p = x + i * sn;                                                              \
        for (j = 0; j + 2 * LANES <= s8; j += 2 * LANES) {                                    \
            nnl_v8d dv = load8_##SUF(p + j) - vmu;                                            \
            nnl_v8d dw = load8_##SUF(p + j + LANES) - vmu;                                    \
            acc += dv * dv;                                                                   \
            acc2 += dw * dw;                                                                  \
        }                                                                                     \
        for (; j < s8; j += LANES) {                                                          \
            nnl_v8d dv = load8_##SUF(p + j) - vmu;                                            \
            acc += dv * dv;                                                                   \
        }                                                                                     \
        for (j = s8; j < s; j++) {                                                            \
            double dv = (double)p[j] - mu;                                                    \
            tail += dv * dv;                                                                  \
        }                                                                                     \
    }                                                                                         \
    *mean = mu;                                                                               \
    *m2 = combine(acc + acc2) + tail;                                                         \
}                                                                                             \
                                                                                              \
void nnl_bn_affine_##SUF(const T* x, T* y, nnl_tidx n, nnl_tidx s, nnl_tidx sn, T scale,    \
                         T shift, int relu) {                                                 \
    nnl_tidx i, j;                                                                            \
    for (i = 0; i < n; i++) {                                                                 \
        const T* p = x + i * sn;                                                              \
        T* q = y + i * sn;                                                                    \
        if (relu) {                                                                           \
            for (j = 0; j < s; j++) {                                                         \
                T v = p[j] * scale + shift;                                                   \
                q[j] = (v <= (T)0) ? (T)0 : v;        /* NaN passes, as ReLU */               \
            }                                                                                 \
        } else {                                                                              \
            for (j = 0; j < s; j++) q[j] = p[j] * scale + shift;                              \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
                                                                                              \
void nnl_bn_relu_mask_##SUF(const T* gy, const T* ym, T* out, nnl_tidx n, nnl_tidx s,       \
                            nnl_tidx sn) {                                                    \
    nnl_tidx i, j;                                                                            \
    for (i = 0; i < n; i++) {                                                                 \
        const T* g = gy + i * sn;                                                             \
        const T* r = ym + i * sn;                                                             \
        T* q = out + i * sn;                                                                  \
        for (j = 0; j < s; j++) q[j] = (r[j] <= (T)0) ? (T)0 : g[j];                          \
    }                                                                                         \
}                                                                                             \
                                                                                              \
void nnl_bn_bwd_sums_##SUF(const T* gy, const T* x, nnl_tidx n, nnl_tidx s, nnl_tidx sn,    \
                           double mean, double* sgy, double* sgxm) {                          \
    nnl_v8d a1 = {0}, a2 = {0}, b1 = {0}, b2 = {0}, vmean = a1 + mean;                        \
    double t1 = 0.0, t2 = 0.0;                                                                \
    nnl_tidx i, j, s8 = s - s % LANES;                                                        \
    for (i = 0; i < n; i++) {                                                                 \
        const T* g = gy + i * sn;                                                             \
        const T* p = x + i * sn;                                                              \
        for (j = 0; j + 2 * LANES <= s8; j += 2 * LANES) {                                    \
            nnl_v8d gv = load8_##SUF(g + j), gw = load8_##SUF(g + j + LANES);                 \
            a1 += gv;                                                                         \
            a2 += gv * (load8_##SUF(p + j) - vmean);                                          \
            b1 += gw;                                                                         \
            b2 += gw * (load8_##SUF(p + j + LANES) - vmean);                                  \
        }                                                                                     \
        for (; j < s8; j += LANES) {                                                          \
            nnl_v8d gv = load8_##SUF(g + j);                                                  \
            a1 += gv;                                                                         \
            a2 += gv * (load8_##SUF(p + j) - vmean);                                          \
        }                                                                                     \
        for (j = s8; j < s; j++) {                                                            \
            double gv = (double)g[j];                                                         \
            t1 += gv;                                                                         \
            t2 += gv * ((double)p[j] - mean);                                                 \
        }                                                                                     \
    }                                                                                         \
    *sgy = combine(a1 + b1) + t1;                                                             \
    *sgxm = combine(a2 + b2) + t2;                                                            \
}                                                                                             \
                                                                                              \
void nnl_bn_bwd_gx_##SUF(const T* gy, const T* x, T* gx, nnl_tidx n, nnl_tidx s,            \
                         nnl_tidx sn, T a, T b, T d) {                                        \
    nnl_tidx i, j;                                                                            \
    for (i = 0; i < n; i++) {                                                                 \
        const T* g = gy + i * sn;                                                             \
        const T* p = x + i * sn;                                                              \
        T* q = gx + i * sn;                                                                   \
        for (j = 0; j < s; j++) q[j] = a * g[j] + b * p[j] + d;                               \
    }                                                                                         \
}

DEFINE_BN(float, s)
DEFINE_BN(double, d)
