/* ReLU kernels of nnlite._train on contiguous ranges (see train.h). Branch-free selects so that
 * the compiler vectorises them (random signs would defeat a branch predictor). */
#include "train.h"

#define DEFINE_RELU(T, SUF)                                                                   \
void nnl_relu_fwd_##SUF(const T* x, T* y, nnl_tidx n) {                                      \
    nnl_tidx i;                                                                               \
    for (i = 0; i < n; i++) {                                                                 \
        T v = x[i];                                                                           \
        y[i] = (v <= (T)0) ? (T)0 : v;          /* NaN: the compare is false, NaN passes */   \
    }                                                                                         \
}                                                                                             \
void nnl_relu_bwd_##SUF(const T* gy, const T* y, T* gx, nnl_tidx n) {                        \
    nnl_tidx i;                                                                               \
    for (i = 0; i < n; i++) gx[i] = (y[i] <= (T)0) ? (T)0 : gy[i];  /* NaN output: passes */  \
}

DEFINE_RELU(float, s)
DEFINE_RELU(double, d)
