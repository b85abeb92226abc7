"""Scaled dot-product attention in one pass: y = softmax(alpha * q @ kt) @ v per batch item,
by blocks of query rows whose scores stay in a per-thread buffer (csrc/attention_kernels.c;
contract in csrc/attention.h). The inference plan's ``AttentionKernel`` calls it; this
function only checks what would make the C read or write out of bounds.
"""
from _common cimport check_status, share_pool

share_pool()


cdef extern from "attention.h" nogil:
    Py_ssize_t nnl_attention_blocks(Py_ssize_t M, Py_ssize_t rb)
    Py_ssize_t nnl_attention_packed(Py_ssize_t D, Py_ssize_t L, Py_ssize_t Dv, int isa)
    int nnl_attention_s(Py_ssize_t batch, Py_ssize_t M, Py_ssize_t L, Py_ssize_t D,
                        Py_ssize_t Dv, float alpha,
                        const float* q, Py_ssize_t bsq, Py_ssize_t rsq, Py_ssize_t csq,
                        const float* kt, Py_ssize_t bsk, Py_ssize_t rsk, Py_ssize_t csk,
                        const float* v, Py_ssize_t bsv, Py_ssize_t rsv, Py_ssize_t csv,
                        float* y, Py_ssize_t bsy, Py_ssize_t rsy, Py_ssize_t rb, float* scores,
                        Py_ssize_t scores_len, float* packs, Py_ssize_t packs_len, int isa,
                        int nt)
    int NNL_ATT_SKINNY


def scores_per_thread(Py_ssize_t M, Py_ssize_t L, Py_ssize_t rb):
    """float32 values of one thread's score buffer for M query rows in blocks of rb."""
    if M < 0 or L < 0 or rb < 1:
        raise ValueError(f"scores_per_thread: M={M}, L={L} must be >= 0 and rb={rb} >= 1")
    rows = M if nnl_attention_blocks(M, rb) <= 1 else rb + NNL_ATT_SKINNY
    return rows * L


def packed_per_item(Py_ssize_t D, Py_ssize_t L, Py_ssize_t Dv, int isa):
    """float32 values of one item's kt (D x L) and v (L x Dv) packed for GEMM family isa."""
    n = nnl_attention_packed(D, L, Dv, isa)
    if n < 0:
        raise ValueError(f"packed_per_item: isa code {isa} is not a GEMM family of this CPU")
    return n


def attention(const float[:, :, :] q, const float[:, :, :] kt, const float[:, :, :] v,
              float[:, :, :] y, float alpha, Py_ssize_t rb, float[::1] scores, int isa,
              int num_threads=1, float[::1] packs=None):
    """y[b] = softmax(alpha * q[b] @ kt[b]) @ v[b]: q (B, M, D), kt (B, D, L), v (B, L, Dv),
    y (B, M, Dv) with unit stride along its last axis; any other strides (0 to share an
    operand among the items); scores: num_threads * scores_per_thread(M, L, rb) values; isa a
    GEMM family code (``nnlite._gemm.isa_code``); packs: B * packed_per_item(D, L, Dv, isa)
    values to pack kt and v once per item in (None, or fewer: every block packs its own)."""
    cdef Py_ssize_t B = y.shape[0], M = y.shape[1], Dv = y.shape[2]
    cdef Py_ssize_t D = q.shape[2], L = kt.shape[2], es = sizeof(float)
    if (q.shape[0] != B or kt.shape[0] != B or v.shape[0] != B or q.shape[1] != M
            or kt.shape[1] != D or v.shape[1] != L or v.shape[2] != Dv):
        raise ValueError(f"attention: shapes q={tuple(q.shape)[:3]}, kt={tuple(kt.shape)[:3]}, "
                         f"v={tuple(v.shape)[:3]}, y={tuple(y.shape)[:3]} do not chain")
    if L < 1:
        raise ValueError("attention: no keys (L = 0): softmax over an empty row")
    if Dv > 1 and y.strides[2] != es:
        raise ValueError(f"attention: y needs unit stride along its last axis, got "
                         f"{y.strides[2]} bytes")
    for name, st in (("q", (q.strides[0], q.strides[1], q.strides[2])),
                     ("kt", (kt.strides[0], kt.strides[1], kt.strides[2])),
                     ("v", (v.strides[0], v.strides[1], v.strides[2])),
                     ("y", (y.strides[0], y.strides[1], y.strides[2]))):
        if any(s % es for s in st):
            raise ValueError(f"attention: {name}'s strides {st} are not whole floats")
    if B == 0 or M == 0 or Dv == 0:
        return
    if num_threads < 1:
        num_threads = 1
    need = num_threads * scores_per_thread(M, L, rb)
    if scores.shape[0] < need:
        raise ValueError(f"attention: scores holds {scores.shape[0]} values, "
                         f"{num_threads} threads need {need}")
    cdef int rc
    cdef float* pk = NULL
    cdef Py_ssize_t pk_len = 0
    if packs is not None and packs.shape[0] > 0:
        pk, pk_len = &packs[0], packs.shape[0]
    with nogil:
        rc = nnl_attention_s(B, M, L, D, Dv, alpha,
                             &q[0, 0, 0], q.strides[0] // es, q.strides[1] // es,
                             q.strides[2] // es,
                             &kt[0, 0, 0], kt.strides[0] // es, kt.strides[1] // es,
                             kt.strides[2] // es,
                             &v[0, 0, 0], v.strides[0] // es, v.strides[1] // es,
                             v.strides[2] // es,
                             &y[0, 0, 0], y.strides[0] // es, y.strides[1] // es, rb,
                             &scores[0], scores.shape[0], pk, pk_len, isa, num_threads)
    check_status(rc, "attention")
