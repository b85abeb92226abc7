/* Scaled dot-product attention, y = softmax(alpha * q @ kt) @ v per batch item, by blocks of
 * query rows (contract in attention.h).
 *
 * A unit is one block of rows of one item: its scores (rows x L) are computed into the
 * thread's buffer by the GEMM (one thread, nnl_sgemm), turned into probabilities there by the
 * softmax row kernel (nnl_softmax_rows_s, one thread), and multiplied by v straight into y.
 * The scores of a whole item (M x L, 20 MB for 8 heads of 800 tokens) never go to memory:
 * a block's stay in the thread's cache between the three steps.
 *
 * Each element goes through exactly the arithmetic of the three unfused steps (the GEMM's
 * sums depend on K alone, never on which rows a call covers; the softmax on its row alone),
 * with one proviso the blocking keeps: a product of <= NNL_ATT_SKINNY rows takes the GEMM's
 * unpacked few-row path, whose sums are ordered differently, so a block is never that small
 * unless the whole item is (a remainder of 1..NNL_ATT_SKINNY rows joins the block before it).
 */
#include "attention.h"
#include "gemm_kernels.h"
#include "nnl_core.h"
#include "rowops.h"

typedef struct {
    nnl_idx M, L, D, Dv, rb, blocks;
    float alpha;
    int isa;
    const float *q;
    nnl_idx bsq, rsq, csq;
    const float *kt;
    nnl_idx bsk, rsk, csk;
    const float *v;
    nnl_idx bsv, rsv, csv;
    float *y;
    nnl_idx bsy, rsy;
    float *scores;
    nnl_idx per_thread;
    const float *kpk, *vpk;     /* per item: kt and v packed as the GEMM's B, or NULL */
    nnl_idx kq, vq;             /* packed elements per item */
    volatile int rc;
} att_ctx;

static void att_unit(void *ctx, nnl_idx u, int tid, int first)
{
    att_ctx *c = (att_ctx *)ctx;
    (void)first;
    const nnl_idx b = u / c->blocks, k = u % c->blocks;
    const nnl_idx r0 = k * c->rb;
    const nnl_idx r1 = k == c->blocks - 1 ? c->M : r0 + c->rb;
    const nnl_idx rows = r1 - r0;
    float *s = c->scores + (nnl_idx)tid * c->per_thread;
    const float *kpk = c->kpk ? c->kpk + b * c->kq : NULL;
    const float *vpk = c->vpk ? c->vpk + b * c->vq : NULL;
    int rc = nnl_sgemm_pk(1, rows, c->L, c->D, c->alpha, c->q + b * c->bsq + r0 * c->rsq, 0,
                          c->rsq, c->csq, c->kt + b * c->bsk, 0, c->rsk, c->csk, 0.0f, s, 0,
                          c->L, NULL, 0, NNL_BIAS_NONE, 0, 1, c->isa, NULL, kpk);
    nnl_softmax_rows_s(s, c->L, s, c->L, rows, c->L, 0, 1);
    rc |= nnl_sgemm_pk(1, rows, c->Dv, c->L, 1.0f, s, 0, c->L, 1, c->v + b * c->bsv, 0,
                       c->rsv, c->csv, 0.0f, c->y + b * c->bsy + r0 * c->rsy, 0, c->rsy, NULL,
                       0, NNL_BIAS_NONE, 0, 1, c->isa, NULL, vpk);
    if (rc != NNL_OK)
        c->rc = rc;
}

/* one item's kt and v packed as B operands (read by every block of the item) */
static void att_pack_unit(void *ctx, nnl_idx b, int tid, int first)
{
    att_ctx *c = (att_ctx *)ctx;
    (void)tid, (void)first;
    int rc = nnl_sgemm_pack(1, c->D, c->L, c->kt + b * c->bsk, c->rsk, c->csk, c->isa,
                            (float *)c->kpk + b * c->kq);
    rc |= nnl_sgemm_pack(1, c->L, c->Dv, c->v + b * c->bsv, c->rsv, c->csv, c->isa,
                         (float *)c->vpk + b * c->vq);
    if (rc != NNL_OK)
        c->rc = rc;
}

nnl_idx nnl_attention_packed(nnl_idx D, nnl_idx L, nnl_idx Dv, int isa)
{
    int mr, nr, mc, kc, nc;
    if (nnl_gemm_blocking(isa, (int)sizeof(float), &mr, &nr, &mc, &kc, &nc) != NNL_OK)
        return -1;
    return nnl_cdiv(L, nr) * nr * D + nnl_cdiv(Dv, nr) * nr * L;
}

nnl_idx nnl_attention_blocks(nnl_idx M, nnl_idx rb)
{
    if (M <= 0 || rb <= 0)
        return 0;
    nnl_idx blocks = nnl_cdiv(M, rb);
    const nnl_idx tail = M - (blocks - 1) * rb;
    if (blocks > 1 && tail <= NNL_ATT_SKINNY)
        blocks--;
    return blocks;
}

int nnl_attention_s(nnl_idx batch, nnl_idx M, nnl_idx L, nnl_idx D, nnl_idx Dv, float alpha,
                    const float *q, nnl_idx bsq, nnl_idx rsq, nnl_idx csq,
                    const float *kt, nnl_idx bsk, nnl_idx rsk, nnl_idx csk,
                    const float *v, nnl_idx bsv, nnl_idx rsv, nnl_idx csv,
                    float *y, nnl_idx bsy, nnl_idx rsy, nnl_idx rb, float *scores,
                    nnl_idx scores_len, float *packs, nnl_idx packs_len, int isa, int nt)
{
    if (batch < 0 || M < 0 || L < 1 || D < 0 || Dv < 0 || rb < 1 || nt < 1)
        return NNL_EINVAL;
    if (batch == 0 || M == 0 || Dv == 0)
        return NNL_OK;
    const nnl_idx blocks = nnl_attention_blocks(M, rb);
    const nnl_idx units = batch * blocks;
    if ((nnl_idx)nt > units)
        nt = (int)units;
    /* the largest block: rb rows plus a folded remainder, or the whole item */
    const nnl_idx rows_max = blocks == 1 ? M : rb + NNL_ATT_SKINNY;
    const nnl_idx per_thread = rows_max * L;
    if (scores_len < per_thread * (nnl_idx)nt)
        return NNL_EINVAL;
    att_ctx c = {M, L, D, Dv, rb, blocks, alpha, isa, q, bsq, rsq, csq, kt, bsk, rsk, csk,
                 v, bsv, rsv, csv, y, bsy, rsy, scores, per_thread, NULL, NULL, 0, 0, NNL_OK};
    /* kt and v packed once per item where an item has several blocks and `packs` holds them
     * all (else each block's products pack their own) */
    const nnl_idx per_item = nnl_attention_packed(D, L, Dv, isa);
    if (blocks > 1 && D > 0 && packs != NULL && per_item > 0 && packs_len >= batch * per_item) {
        int mr, nr, mc, kc, nc;
        nnl_gemm_blocking(isa, (int)sizeof(float), &mr, &nr, &mc, &kc, &nc);
        c.kq = nnl_cdiv(L, nr) * nr * D, c.vq = per_item - c.kq;
        c.kpk = packs, c.vpk = packs + batch * c.kq;
        nnl_parallel_for((int)nnl_min(nt, batch), batch, att_pack_unit, &c);
        if (c.rc != NNL_OK)
            return c.rc;
    }
    nnl_parallel_for(nt, units, att_unit, &c);
    return c.rc;
}
