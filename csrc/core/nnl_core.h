/* nnlite native core: the helpers every C kernel shares, written once.
 *
 * All C sources under csrc/ (this directory, csrc/gemm_*.c, csrc/convfast_*.c, ...) are
 * compiled ONCE into the static library nnlite_core (setup.py, build_clib) that every
 * extension links; the .pyx modules cdef-extern the functions they call. Small helpers are
 * `static inline` here (one definition, inlined where used); the rest live in csrc/core/.
 */
#ifndef NNLITE_CORE_H
#define NNLITE_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "nnl_tuning.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef _MSC_VER
#include <intrin.h>
#endif

typedef ptrdiff_t nnl_idx;

/* The OpenMP team size of a call: the caller's nthreads (at least 1), but 1 without OpenMP or
 * when the call's work (multiply-adds or a like measure) is below its single-thread cut-off
 * (nnl_tuning.h): waking a team costs more than such a call gains. */
static inline int nnl_team_size(int nthreads, double work, double min_parallel)
{
#ifdef _OPENMP
    return (nthreads < 1 || work < min_parallel) ? 1 : nthreads;
#else
    (void)nthreads, (void)work, (void)min_parallel;
    return 1;
#endif
}

/* Threads for a call of `work` units split into whole shares of at least `min_per_thread`
 * units each: min(nthreads, work / min_per_thread), at least 1 (1 without OpenMP). */
static inline int nnl_team_by_share(int nthreads, double work, double min_per_thread)
{
#ifdef _OPENMP
    if (nthreads <= 1 || !(work >= 2.0 * min_per_thread))
        return 1;
    if (min_per_thread <= 0.0)
        return nthreads;
    const double fit = work / min_per_thread;
    return fit >= (double)nthreads ? nthreads : (int)fit;
#else
    (void)nthreads, (void)work, (void)min_per_thread;
    return 1;
#endif
}

/* This thread's number inside an OpenMP parallel region (0 in a build without OpenMP): the
 * index of its private packing/work buffers. */
static inline int nnl_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* The size of the team running the enclosing OpenMP parallel region (1 outside one or without
 * OpenMP): a region asked for nt threads may get fewer, so work cut among the team is cut by
 * this count. */
static inline int nnl_team_count(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* ------------------------------------------------------------------ thread pool */

/* POSIX threads behind nnl_parallel_for where the build is threaded (OpenMP) and not Windows;
 * else nnl_parallel_for is OpenMP's dynamic loop (or a plain loop without OpenMP). */
#if defined(_OPENMP) && !defined(_WIN32)
#define NNL_POOL_PTHREADS 1
#else
#define NNL_POOL_PTHREADS 0
#endif

/* One unit of a parallel loop: `tid` is the running thread's number (0 = the caller, below
 * the loop's nt: the index of its private buffers), `first` is 1 on the first unit that
 * thread runs in this loop (its per-thread set-up goes there). */
typedef void (*nnl_unit_fn)(void *ctx, nnl_idx unit, int tid, int first);

/* fn(ctx, u, tid, first) for every u in [0, units), on up to nt threads that take units one
 * at a time; returns when every unit is done (csrc/core/nnl_pool.c). A loop started inside
 * another's unit, or while another thread's loop runs, runs on the calling thread alone. */
void nnl_parallel_for(int nt, nnl_idx units, nnl_unit_fn fn, void *ctx);
/* delta +1 when a plan run starts, -1 when it ends: the workers spin between jobs while the
 * count is positive. Returns the count after the change. */
int nnl_pool_hold(int delta);
/* The pool's state, published by the first extension loaded and adopted by the others. */
void *nnl_pool_state(void);
void nnl_pool_adopt(void *state);
/* Workers started so far, and worker i's kernel thread id (1 <= i <= workers; 0 where unknown:
 * not Linux, or not started yet). */
int nnl_pool_workers(void);
int nnl_pool_worker_tid(int i);

/* A unit's error code into the loop's status (any one of the failures is kept). */
static inline void nnl_status_set(int *status, int rc)
{
    if (rc != 0) {
#if defined(__GNUC__) || defined(__clang__)
        __atomic_store_n(status, rc, __ATOMIC_RELAXED);
#else
        *(volatile int *)status = rc;
#endif
    }
}

/* A tiny lock around a few loads and stores (a claim of the fused block's band ranges). */
static inline void nnl_spin_lock(int *lock)
{
#if defined(__GNUC__) || defined(__clang__)
    while (__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(lock, __ATOMIC_RELAXED))
            ;
#elif defined(_MSC_VER)
    while (_InterlockedExchange((volatile long *)lock, 1))
        ;
#else
    *lock = 1;   /* a compiler without atomics builds nnlite single-threaded */
#endif
}

static inline void nnl_spin_unlock(int *lock)
{
#if defined(__GNUC__) || defined(__clang__)
    __atomic_store_n(lock, 0, __ATOMIC_RELEASE);
#else
    *(volatile int *)lock = 0;
#endif
}

/* Return codes of every nnl_* entry point. */
#define NNL_OK 0
#define NNL_ENOMEM 1
#define NNL_EINVAL 2

/* Fused activations of the epilogues. */
#define NNL_ACT_NONE 0
#define NNL_ACT_RELU 1
#define NNL_ACT_RELU6 2

/* Micro-kernel families; NNL_ISA_AUTO picks the best one the CPU supports. */
#define NNL_ISA_AUTO (-1)
#define NNL_ISA_GENERIC 0
#define NNL_ISA_AVX2 1
#define NNL_ISA_AVX512 2
#define NNL_ISA_COUNT 3

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define NNL_X86_DISPATCH 1
#else
#define NNL_X86_DISPATCH 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NNL_RESTRICT __restrict__
#define NNL_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define NNL_RESTRICT
#define NNL_ALWAYS_INLINE inline
#endif

/* GCC turns short copy loops (packing rows, plane copies of 100-200 bytes) into one memcpy or
 * memset call per row, whose call overhead dominates such short rows: functions marked with
 * this keep their loops inline. */
#if defined(__GNUC__) && !defined(__clang__)
#define NNL_NO_MEMCPY_IDIOM __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NNL_NO_MEMCPY_IDIOM
#endif

/* ------------------------------------------------------------------ integer helpers */

static inline nnl_idx nnl_min(nnl_idx a, nnl_idx b)
{
    return a < b ? a : b;
}

static inline nnl_idx nnl_max(nnl_idx a, nnl_idx b)
{
    return a > b ? a : b;
}

static inline nnl_idx nnl_clamp(nnl_idx v, nnl_idx lo, nnl_idx hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* ceil(a / b) for a >= 0, b > 0 */
static inline nnl_idx nnl_cdiv(nnl_idx a, nnl_idx b)
{
    return (a + b - 1) / b;
}

/* The depth of the K slices of a product (a packed GEMM operand's, the implicit conv's,
 * Winograd's) with K terms on a family whose cache blocking asks for KC: the slices are
 * equal, and as many as K / KC rounded to the nearest whole number (at least one), so a
 * slice is at most 1.5 KC deep (K = 320 on KC = 256: one slice, not two of 160; each slice
 * past the first reads and writes C again). Every packer and loop over K slices uses it, so a
 * packed operand's slices are the ones its product runs. */
static inline nnl_idx nnl_k_slice(nnl_idx K, nnl_idx kc)
{
    const nnl_idx n = (K + kc / 2) / kc;
    return nnl_cdiv(K, n < 1 ? 1 : n);
}

/* smallest t >= 0 with t*s >= v (v may be negative; s > 0); cannot overflow for any s */
static inline nnl_idx nnl_ceil_pos(nnl_idx v, nnl_idx s)
{
    return v <= 0 ? 0 : (v - 1) / s + 1;
}

/* n elements of elsize bytes rounded up to whole 64-byte lines (in elements) */
static inline size_t nnl_round64(size_t n, size_t elsize)
{
    const size_t per_line = 64 / elsize;
    return (n + per_line - 1) / per_line * per_line;
}

/* [lo, hi) = the output columns j < ow whose source column j*sw + off lies in [0, w)
 * (sw >= 1). Written without j*sw products or off + w sums of untrusted sizes, so it cannot
 * overflow; the same rule as col_range in csrc/_common.pxd for the Cython kernels. */
static inline void nnl_col_range(nnl_idx off, nnl_idx w, nnl_idx sw, nnl_idx ow, nnl_idx *lo,
                                 nnl_idx *hi)
{
    nnl_idx a = nnl_ceil_pos(-off, sw);
    nnl_idx b = w - off > 0 ? nnl_ceil_pos(w - off, sw) : 0;
    a = nnl_min(a, ow);
    *lo = a;
    *hi = nnl_max(a, nnl_min(b, ow));
}

/* --------------------------------------------------------------- scalar epilogue */

/* The write-out of every kernel, one element at a time (the SIMD micro-kernels of
 * gemm_simd_tmpl.h and the depthwise kernel's vectors follow the same rules):
 *   nnl_act_*(v, act)        NNL_ACT_*: ReLU max(0, v), ReLU6 min(max(0, v), 6); NaN stays NaN
 *                            (the compare is false for NaN), as torch.relu / F.relu6; -0 stays -0
 *   nnl_bias_act_*(v, b, act) act(v + *b), b NULL: act(v) (no + 0, which would turn -0 into +0)
 *   nnl_epi_one_*(acc, alpha, beta, c, b, act)
 *                            act(fma(acc, alpha, beta * *c) + *b): the GEMM's write-out of an
 *                            accumulator, rounded exactly as the SIMD micro-kernels do (one
 *                            fused multiply-add, written out so that the compiler's own
 *                            contraction choices cannot change it from one caller to the
 *                            next); c NULL: C is not read (beta == 0 or a first write), acc *
 *                            alpha
 * NNL_ACT, NNL_BIAS_ACT and NNL_EPI_ONE pick the one for the first argument's type. */
#if defined(__GNUC__) || defined(__clang__)
#define NNL_FMA_s __builtin_fmaf
#define NNL_FMA_d __builtin_fma
#else
#include <math.h>
#define NNL_FMA_s fmaf
#define NNL_FMA_d fma
#endif
#define NNL_DEFINE_EPILOGUE(T, S)                                                             \
    static inline T nnl_act_##S(T v, int act)                                                 \
    {                                                                                         \
        if (act != NNL_ACT_NONE) {                                                            \
            v = ((T)0 > v) ? (T)0 : v;                                                        \
            if (act == NNL_ACT_RELU6)                                                         \
                v = (v > (T)6) ? (T)6 : v;                                                    \
        }                                                                                     \
        return v;                                                                             \
    }                                                                                         \
    static inline T nnl_bias_act_##S(T v, const T *bias, int act)                             \
    {                                                                                         \
        if (bias)                                                                             \
            v += *bias;                                                                       \
        return nnl_act_##S(v, act);                                                           \
    }                                                                                         \
    static inline T nnl_epi_one_##S(T acc, T alpha, T beta, const T *c, const T *bias,        \
                                    int act)                                                  \
    {                                                                                         \
        return nnl_bias_act_##S(c ? NNL_FMA_##S(acc, alpha, beta * *c) : acc * alpha, bias,   \
                                act);                                                         \
    }

NNL_DEFINE_EPILOGUE(float, s)
NNL_DEFINE_EPILOGUE(double, d)
#undef NNL_DEFINE_EPILOGUE

#define NNL_ACT(v, act) _Generic((v), float: nnl_act_s, double: nnl_act_d)((v), (act))
#define NNL_BIAS_ACT(v, b, act)                                                               \
    _Generic((v), float: nnl_bias_act_s, double: nnl_bias_act_d)((v), (b), (act))
#define NNL_EPI_ONE(acc, alpha, beta, c, b, act)                                              \
    _Generic((acc), float: nnl_epi_one_s, double: nnl_epi_one_d)((acc), (alpha), (beta), (c), \
                                                                 (b), (act))

/* act(v) on a whole GCC vector v (the SIMD micro-kernels' __m256/__m512, the depthwise
 * kernel's generic vectors): nnl_act_*'s rule lane by lane, v < 0 -> +0, NaN kept, -0 kept,
 * v > 6 -> 6 for ReLU6, as compare masks and a bitwise select (no data-dependent branch). */
#define NNL_ACT_VEC(v, act)                                                                   \
    __extension__({                                                                           \
        __typeof__(v) nnl_a_ = (v);                                                           \
        if ((act) != NNL_ACT_NONE) {                                                          \
            const __typeof__(v) nnl_z_ = {0};                                                 \
            const __typeof__(nnl_a_ < nnl_z_) nnl_neg_ = nnl_a_ < nnl_z_;                     \
            nnl_a_ = (__typeof__(v))((__typeof__(nnl_neg_))nnl_a_ & ~nnl_neg_);               \
            if ((act) == NNL_ACT_RELU6) {                                                     \
                const __typeof__(v) nnl_6_ = nnl_z_ + 6;                                      \
                const __typeof__(nnl_neg_) nnl_big_ = nnl_a_ > nnl_6_;                        \
                nnl_a_ = (__typeof__(v))(((__typeof__(nnl_neg_))nnl_a_ & ~nnl_big_) |         \
                                         ((__typeof__(nnl_neg_))nnl_6_ & nnl_big_));          \
            }                                                                                 \
        }                                                                                     \
        nnl_a_;                                                                               \
    })

/* ------------------------------------------------------------ memory (nnl_alloc.c) */

/* malloc aligned to a 64-byte cache line; NULL when out of memory. Free with nnl_free64. */
void *nnl_alloc64(size_t bytes);
void nnl_free64(void *p);

/* `bytes` (at least 2 MB) in a mapping of their own that starts on a 2 MB boundary, advised for
 * transparent huge pages (Linux); NULL when smaller, out of memory or not Linux. Free with
 * nnl_huge_free(p, bytes). */
void *nnl_huge_alloc(size_t bytes);
void nnl_huge_free(void *p, size_t bytes);

/* One block of `team` per-thread buffer pairs (a kernel's private image and output buffers):
 * n1 then n2 elements of `elsize` bytes, each rounded up to whole 64-byte lines (*s1, *s2
 * elements; n1 at least 1). NULL when out of memory; free with nnl_free64. */
static inline void *nnl_alloc_pairs(size_t n1, size_t n2, size_t elsize, int team, size_t *s1,
                                    size_t *s2)
{
    *s1 = nnl_round64(n1 > 0 ? n1 : 1, elsize);
    *s2 = nnl_round64(n2, elsize);
    return nnl_alloc64(elsize * (*s1 + *s2) * (size_t)team);
}

/* ------------------------------------------------------------- ISA (nnl_isa.c) */

/* 1 when the micro-kernel family was compiled in and this CPU (and OS) can run it. */
int nnl_isa_available(int isa);
/* The family NNL_ISA_AUTO resolves to. */
int nnl_best_isa(void);
/* "generic", "avx2", "avx512" (or "unknown"). */
const char *nnl_isa_name(int isa);
/* 1 when the CPU runs AVX (x86 only). */
int nnl_cpu_has_avx(void);

/* ------------------------------------------------------------ caches (nnl_cache.c) */

typedef struct {
    long l1d, l2, l3;      /* bytes: L1 data, L2, this core's share of the L3 */
    const char *source;    /* "env", "sysfs", "cpuid" or "default" */
} nnl_cache_info;

/* The sizes in use, detected once per process (see nnl_cache.c). */
const nnl_cache_info *nnl_cache_sizes(void);

/* GEMM cache blocking of a MR x NR micro-kernel for elsize-byte elements from the cache sizes
 * (bytes): a pure function, see nnl_cache.c for the rules. */
void nnl_blocking_rule(long l1d, long l2, long l3, int mr, int nr, int elsize, int *mc,
                       int *kc, int *nc);

#endif
