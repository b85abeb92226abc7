/* nnlite GEMM driver: BLIS-style blocking, packing and OpenMP threading around a register
 * micro-kernel (gemm_generic.c / gemm_avx2.c / gemm_avx512.c), for float32 and float64.
 *
 * Loop nest (row-major C[M, N] = A[M, K] @ B[K, N], per batch item):
 *
 *   for jc in N by NC:                      B block KC x NC packed once, shared by the team
 *     for pc in K by KC:
 *       pack B[pc:+KC, jc:+NC] -> Bp          (NR-wide micro-panels, split over the threads)
 *       barrier
 *       for ic in (this thread's rows) by MC:
 *         pack A[ic:+MC, pc:+KC] -> Ap        (MR-tall micro-panels, private to the thread)
 *         for jr in (this thread's NR panels of the block):
 *           for ir in MC by MR:  micro-kernel: C[ic+ir:+MR, jc+jr:+NR] (+)= Ap_ir @ Bp_jr
 *       barrier
 *
 * The team is split into a tm x tn grid over (MR row panels) x (NR column panels), chosen to
 * balance the work; K blocks are always reduced in the same order, so the result does not
 * depend on the thread count. Packing buffers are malloc'd per call: one B block per team and
 * one A block per thread (never static); partial tiles are zero-padded inside the packed
 * panels only, and the micro-kernel writes just the valid m x n corner.
 */
#include <stdint.h>
#include <stdlib.h>

#include "gemm_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Work units (see GEMM_NAME in gemm_driver_tmpl.h). */
#define NNL_UNIT_B_BYTES ((size_t)256 << 10) /* B chunk packed at once: half of a 1-2 MB L2 */
#define NNL_UNITS_PER_THREAD 3               /* dynamic scheduling granularity */
#define NNL_MIN_UNIT_PANELS 4                /* narrowest unit, in NR panels */

/* GCC turns the packing copies into one memcpy call per 100-200 byte row; keep them inline. */
#if defined(__GNUC__) && !defined(__clang__)
#define NNL_NO_MEMCPY_IDIOM __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NNL_NO_MEMCPY_IDIOM
#endif

/* Below this many multiply-adds a call runs on one thread (team start-up would dominate). */
#define NNL_MIN_PARALLEL_MACS (64.0 * 64.0 * 64.0)

static void *nnl_alloc64(size_t bytes)
{
    void *raw = malloc(bytes + 64 + sizeof(void *));
    if (raw == NULL)
        return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
    ((void **)p)[-1] = raw;
    return (void *)p;
}

static void nnl_free64(void *p)
{
    if (p != NULL)
        free(((void **)p)[-1]);
}

/* Workspace recycling. Each call takes ONE block for all its packing buffers (the team's B
 * block + one A block per thread) and owns it exclusively until it returns; the block then goes
 * back to a small mutex-protected free list instead of to free(). Without it, glibc returns
 * blocks of a few hundred KB to the kernel at every free (mmap threshold / heap trimming), and
 * the next call pays ~100 page faults: about half the time of a 256^3 product. Concurrent
 * calls never share a block. nnl_gemm_release_buffers() empties the list. */
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define NNL_WS_SLOTS 4
#define NNL_WS_MAX_BYTES ((size_t)64 << 20) /* larger blocks are freed, not cached */
static pthread_mutex_t nnl_ws_lock = PTHREAD_MUTEX_INITIALIZER;
static void *nnl_ws_ptr[NNL_WS_SLOTS];
static size_t nnl_ws_size[NNL_WS_SLOTS];

static void *nnl_ws_get(size_t bytes, size_t *got)
{
    void *p = NULL;
    int best = -1;
    pthread_mutex_lock(&nnl_ws_lock);
    for (int i = 0; i < NNL_WS_SLOTS; i++)
        if (nnl_ws_ptr[i] != NULL && nnl_ws_size[i] >= bytes &&
            (best < 0 || nnl_ws_size[i] < nnl_ws_size[best]))
            best = i;
    if (best >= 0) {
        p = nnl_ws_ptr[best];
        *got = nnl_ws_size[best];
        nnl_ws_ptr[best] = NULL;
    }
    pthread_mutex_unlock(&nnl_ws_lock);
    if (p == NULL) {
        p = nnl_alloc64(bytes);
        *got = bytes;
    }
    return p;
}

static void nnl_ws_put(void *p, size_t bytes)
{
    void *drop = p;
    if (p == NULL)
        return;
    if (bytes <= NNL_WS_MAX_BYTES) {
        int slot = -1;
        pthread_mutex_lock(&nnl_ws_lock);
        for (int i = 0; i < NNL_WS_SLOTS && slot < 0; i++)
            if (nnl_ws_ptr[i] == NULL)
                slot = i;
        if (slot < 0) {                       /* full: evict the smallest if it is smaller */
            slot = 0;
            for (int i = 1; i < NNL_WS_SLOTS; i++)
                if (nnl_ws_size[i] < nnl_ws_size[slot])
                    slot = i;
            if (nnl_ws_size[slot] >= bytes)
                slot = -1;
        }
        if (slot >= 0) {
            drop = nnl_ws_ptr[slot];
            nnl_ws_ptr[slot] = p;
            nnl_ws_size[slot] = bytes;
        }
        pthread_mutex_unlock(&nnl_ws_lock);
    }
    nnl_free64(drop);
}

void nnl_gemm_release_buffers(void)
{
    void *drop[NNL_WS_SLOTS];
    pthread_mutex_lock(&nnl_ws_lock);
    for (int i = 0; i < NNL_WS_SLOTS; i++) {
        drop[i] = nnl_ws_ptr[i];
        nnl_ws_ptr[i] = NULL;
        nnl_ws_size[i] = 0;
    }
    pthread_mutex_unlock(&nnl_ws_lock);
    for (int i = 0; i < NNL_WS_SLOTS; i++)
        nnl_free64(drop[i]);
}
#else /* no pthreads: plain per-call allocation */
static void *nnl_ws_get(size_t bytes, size_t *got)
{
    *got = bytes;
    return nnl_alloc64(bytes);
}

static void nnl_ws_put(void *p, size_t bytes)
{
    (void)bytes;
    nnl_free64(p);
}

void nnl_gemm_release_buffers(void)
{
}
#endif

static nnl_idx nnl_cdiv(nnl_idx a, nnl_idx b)
{
    return (a + b - 1) / b;
}

static nnl_idx nnl_min(nnl_idx a, nnl_idx b)
{
    return a < b ? a : b;
}

/* n elements of elsize bytes rounded up to a whole number of 64-byte lines (in elements) */
static size_t nnl_round64(size_t n, size_t elsize)
{
    const size_t per_line = 64 / elsize;
    return (n + per_line - 1) / per_line * per_line;
}

int nnl_gemm_isa_available(int isa)
{
    switch (isa) {
    case NNL_ISA_GENERIC:
        return 1;
#if NNL_X86_DISPATCH
    case NNL_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case NNL_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
#endif
    default:
        return 0;
    }
}

int nnl_gemm_best_isa(void)
{
    for (int isa = NNL_ISA_COUNT - 1; isa > 0; isa--)
        if (nnl_gemm_isa_available(isa))
            return isa;
    return NNL_ISA_GENERIC;
}

const char *nnl_gemm_isa_name(int isa)
{
    switch (isa) {
    case NNL_ISA_GENERIC:
        return "generic";
    case NNL_ISA_AVX2:
        return "avx2";
    case NNL_ISA_AVX512:
        return "avx512";
    default:
        return "unknown";
    }
}

/* float32 */
#define T float
#define EPI_T nnl_epi_s
#define KERNEL_T nnl_kernel_s
#define FN(name) name##_s
#define GEMM_NAME nnl_sgemm
#include "gemm_driver_tmpl.h"
#undef T
#undef EPI_T
#undef KERNEL_T
#undef FN
#undef GEMM_NAME

/* float64 */
#define T double
#define EPI_T nnl_epi_d
#define KERNEL_T nnl_kernel_d
#define FN(name) name##_d
#define GEMM_NAME nnl_dgemm
#include "gemm_driver_tmpl.h"
#undef T
#undef EPI_T
#undef KERNEL_T
#undef FN
#undef GEMM_NAME

int nnl_gemm_blocking(int isa, int elsize, int *mr, int *nr, int *mc, int *kc, int *nc)
{
    if (isa == NNL_ISA_AUTO)
        isa = nnl_gemm_best_isa();
    if (elsize == 4) {
        const nnl_kernel_s *k = nnl_select_s(isa);
        if (k == NULL)
            return NNL_EINVAL;
        *mr = k->mr, *nr = k->nr, *mc = k->mc, *kc = k->kc, *nc = k->nc;
        return NNL_OK;
    }
    if (elsize == 8) {
        const nnl_kernel_d *k = nnl_select_d(isa);
        if (k == NULL)
            return NNL_EINVAL;
        *mr = k->mr, *nr = k->nr, *mc = k->mc, *kc = k->kc, *nc = k->nc;
        return NNL_OK;
    }
    return NNL_EINVAL;
}
