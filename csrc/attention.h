/* nnlite._attention: scaled dot-product attention in one pass over blocks of query rows
 * (csrc/attention_kernels.c, cdef extern'ed by csrc/attention.pyx).
 *
 *   y[b] = softmax(alpha * q[b] @ kt[b]) @ v[b]     for b < batch, softmax along each row
 *
 * q[b] is M x D, kt[b] D x L, v[b] L x Dv, y[b] M x Dv, each addressed by a batch, row and
 * column stride in elements (y's column stride is 1; a stride may be 0 to share an operand
 * among the items). Rows are cut into blocks of rb (the last takes a remainder of at most
 * NNL_ATT_SKINNY rows: nnl_attention_blocks); `scores` holds one (rows of the largest block)
 * x L buffer per thread, nt of them; `packs` (or NULL) room for every item's kt and v packed
 * once as the GEMM's B operands (nnl_attention_packed each; too little room: each block's
 * products pack their own, the same bits). Returns NNL_OK, or NNL_EINVAL for sizes out of
 * range or too small a score buffer.
 */
#ifndef NNLITE_ATTENTION_H
#define NNLITE_ATTENTION_H

#include "gemm_internal.h"
#include "nnl_core.h"

/* the GEMM's products of at most this many rows take its unpacked path: its own constant */
#define NNL_ATT_SKINNY NNL_SKINNY_M

nnl_idx nnl_attention_blocks(nnl_idx M, nnl_idx rb);
/* floats of one item's kt and v packed for family isa (`packs` holds batch of them), or -1 */
nnl_idx nnl_attention_packed(nnl_idx D, nnl_idx L, nnl_idx Dv, int isa);
int nnl_attention_s(nnl_idx batch, nnl_idx M, nnl_idx L, nnl_idx D, nnl_idx Dv, float alpha,
                    const float *q, nnl_idx bsq, nnl_idx rsq, nnl_idx csq,
                    const float *kt, nnl_idx bsk, nnl_idx rsk, nnl_idx csk,
                    const float *v, nnl_idx bsv, nnl_idx rsv, nnl_idx csv,
                    float *y, nnl_idx bsy, nnl_idx rsy, nnl_idx rb, float *scores,
                    nnl_idx scores_len, float *packs, nnl_idx packs_len, int isa, int nt);

#endif
