/* BatchNorm per-channel kernels of nnlite._train (see train.h for the contract). */
#include "train.h"

#define LANES 8

/* Σ f(i) over one channel: 8 partial sums per lane position, combined in a fixed tree. */
static double combine(const double* acc) {
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

#define DEFINE_BN(T, SUF)                                                                     \
void nnl_bn_stats_##SUF(const T* x, nnl_tidx n, nnl_tidx s, nnl_tidx sn, double* mean,      \
                        double* m2) {                                                         \
    double acc[LANES] = {0}, tail = 0.0, mu, cnt = (double)n * (double)s;                     \
    nnl_tidx i, j, k, s8 = s - s % LANES;                                                     \
    for (i = 0; i < n; i++) {                                                                 \
        const T* p = x + i * sn;                                                              \
        for (j = 0; j < s8; j += LANES)                                                       \
            for (k = 0; k < LANES; k++) acc[k] += (double)p[j + k];                           \
        for (j = s8; j < s; j++) tail += (double)p[j];                                        \
    }                                                                                         \
    mu = (combine(acc) + tail) / cnt;                                                         \
    for (k = 0; k < LANES; k++) acc[k] = 0.0;                                                 \
    tail = 0.0;                                                                               \
    for (i = 0; i < n; i++) {                                                                 \
        const T* p = x + i * sn;                                                              \
        for (j = 0; j < s8; j += LANES)                                                       \
            for (k = 0; k < LANES; k++) {                                                     \
                double dv = (double)p[j + k] - mu;                                            \
                acc[k] += dv * dv;                                                            \
            }                                                                                 \
        for (j = s8; j < s; j++) {                                                            \
            double dv = (double)p[j] - mu;                                                    \
            tail += dv * dv;                                                                  \
        }                                                                                     \
    }                                                                                         \
    *mean = mu;                                                                               \
    *m2 = combine(acc) + tail;                                                                \
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
    double a1[LANES] = {0}, a2[LANES] = {0}, t1 = 0.0, t2 = 0.0;                              \
    nnl_tidx i, j, k, s8 = s - s % LANES;                                                     \
    for (i = 0; i < n; i++) {                                                                 \
        const T* g = gy + i * sn;                                                             \
        const T* p = x + i * sn;                                                              \
        for (j = 0; j < s8; j += LANES)                                                       \
            for (k = 0; k < LANES; k++) {                                                     \
                double gv = (double)g[j + k];                                                 \
                a1[k] += gv;                                                                  \
                a2[k] += gv * ((double)p[j + k] - mean);                                      \
            }                                                                                 \
        for (j = s8; j < s; j++) {                                                            \
            double gv = (double)g[j];                                                         \
            t1 += gv;                                                                         \
            t2 += gv * ((double)p[j] - mean);                                                 \
        }                                                                                     \
    }                                                                                         \
    *sgy = combine(a1) + t1;                                                                  \
    *sgxm = combine(a2) + t2;                                                                 \
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
