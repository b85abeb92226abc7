/* nnlite's thread pool: the parallel loops of the kernels an inference plan runs.
 *
 * Why not OpenMP's team. Two things about a parallel region cost a whole run on a shared or
 * virtual machine:
 *   - the team meets at the end of every region, so the caller waits for a worker that has not
 *     even started (its core taken by another process, or its vCPU halted and not yet
 *     rescheduled by the host);
 *   - a worker idles into a futex sleep after a short spin (nnlite sets GOMP_SPINCOUNT=1000,
 *     15-20 us), so every one-thread stretch of a plan longer than that (a small GEMM, the
 *     Python between two steps) sends its vCPU to halt, and waking a halted vCPU costs tens of
 *     microseconds, milliseconds when the host is busy. A longer spin is no answer: it would
 *     also spin after the run, on the core of whatever the process does next.
 * The pool does what ONNX Runtime's does:
 *   - a job is a count of units that threads claim one at a time; the caller claims too and
 *     returns when every unit is DONE, not when every worker has come: a worker that wakes late
 *     finds nothing left and goes back to waiting;
 *   - while a plan runs (nnl_pool_hold) its workers spin between jobs instead of sleeping; when
 *     the run returns they spin briefly, then sleep.
 *
 * Protocol (C11 atomics, one job at a time; a second caller, or a unit that itself calls
 * nnl_parallel_for, runs its loop alone on its own thread):
 *   claim   = (epoch << 32) | next unit; CLOSED as the unit means no unit may be taken.
 *   caller: claim = E|CLOSED, wait until no worker is inside a job (active == 0), write the
 *           job, claim = E|0, posted = E, wake sleepers; take units; wait until done == units.
 *   worker: see posted change, active++, re-read claim: a unit is taken only by a CAS on E|i
 *           with i < units, so a worker that read an old epoch never runs a unit of a newer
 *           job; the job's fields are read only while active > 0, when the caller may not
 *           rewrite them (the caller closes the claim before it reads active: a worker that
 *           comes after that read sees the closed claim).
 * A unit is handed to its function with the number of the thread running it (0 = the caller,
 * 1 .. nt-1 the workers; private buffers are indexed by it) and whether it is that thread's
 * first unit of the job (per-thread set-up is done there, after a unit is held: a thread that
 * finds no unit never touches the caller's data, which may already be gone).
 *
 * Every extension links its own copy of this file (setup.py: hidden visibility), so the pool
 * state is one struct whose address the first extension to load publishes (nnl_pool_state)
 * and the others adopt (nnl_pool_adopt): one set of workers per process.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE   /* sched_getaffinity, CPU_COUNT */
#endif
#include "nnl_core.h"

#if NNL_POOL_PTHREADS

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define NNL_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define NNL_PAUSE() __asm__ __volatile__("yield")
#else
#define NNL_PAUSE() ((void)0)
#endif

#define POOL_MAX_WORKERS 63
#define CLAIM_CLOSED 0xffffffffu

typedef struct nnl_pool {
    pthread_mutex_t lock;            /* worker start-up and sleeping */
    pthread_cond_t wake;
    atomic_int busy;                 /* 1 while a caller owns the pool */
    atomic_uint_fast64_t claim;      /* epoch << 32 | next unit */
    atomic_uint posted;              /* epoch of the latest job */
    atomic_llong done;               /* units of the current job finished */
    atomic_int active;               /* workers inside a job */
    atomic_int sleepers;             /* workers asleep on `wake` */
    atomic_int hold;                 /* > 0 while a plan run keeps the workers spinning */
    /* the job: written by the caller only while the claim is closed and active == 0 */
    nnl_unit_fn fn;
    void *ctx;
    long long units;                 /* claimed units (each covers `group` of the caller's) */
    long long total, group;
    int nt;
    uint32_t epoch;                  /* the caller's epoch counter */
    int nworkers;                    /* workers started (1 .. nworkers) */
    int fork_handler;
    int passive;                     /* OMP_WAIT_POLICY=passive: workers never spin */
    int cpus;                        /* online CPUs: workers 1 .. cpus-1 may spin held */
    atomic_int tid[POOL_MAX_WORKERS + 1];   /* each worker's kernel thread id (Linux) */
} nnl_pool;

static nnl_pool pool_own = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};
static nnl_pool *pool_cur = &pool_own;

void *nnl_pool_state(void)
{
    return pool_cur;
}

void nnl_pool_adopt(void *state)
{
    if (state != NULL)
        pool_cur = (nnl_pool *)state;
}

/* Monotonic nanoseconds (vDSO: no system call). */
static long long pool_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A unit of job `epoch` (or -1 when none is left or the job is no longer current). */
static long long pool_take(nnl_pool *p, uint32_t epoch, long long units)
{
    uint_fast64_t w = atomic_load_explicit(&p->claim, memory_order_acquire);
    for (;;) {
        const uint32_t e = (uint32_t)(w >> 32), i = (uint32_t)w;
        if (e != epoch || i == CLAIM_CLOSED || (long long)i >= units)
            return -1;
        if (atomic_compare_exchange_weak_explicit(&p->claim, &w, w + 1, memory_order_acq_rel,
                                                  memory_order_acquire))
            return (long long)i;
    }
}

/* Run claimed units until none is left; `first` tracks this thread's first unit. */
static void pool_work(nnl_pool *p, uint32_t epoch, nnl_unit_fn fn, void *ctx, long long units,
                      long long total, long long group, int tid)
{
    int first = 1;
    long long u;
    while ((u = pool_take(p, epoch, units)) >= 0) {
        const long long hi = (u + 1) * group < total ? (u + 1) * group : total;
        for (long long v = u * group; v < hi; v++, first = 0)
            fn(ctx, (nnl_idx)v, tid, first);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

/* Spin (pausing) until posted != seen; while no plan holds the pool, give up after the short
 * spin and sleep. Every ~50 us of spinning the thread yields its core to any other runnable
 * thread (another library's workers), so a held pool never starves them. */
static void pool_wait_job(nnl_pool *p, unsigned seen, int idx)
{
    /* a held pool keeps spinning only the workers that have a core of their own beside the
     * caller's (more threads than cores were asked for: the others sleep between jobs) */
    const int may_hold = !p->passive && idx < p->cpus;
    const long long spin_ns = NNL_POOL_SPIN_NS, yield_ns = NNL_POOL_YIELD_NS;
    long long t0 = pool_now_ns(), ty = t0;
    for (;;) {
        for (int k = 0; k < 64; k++) {
            if (atomic_load_explicit(&p->posted, memory_order_acquire) != seen)
                return;
            NNL_PAUSE();
        }
        const long long t = pool_now_ns();
        if (may_hold && atomic_load_explicit(&p->hold, memory_order_relaxed) > 0) {
            t0 = t;
            if (t - ty > yield_ns) {
                sched_yield();
                ty = t;
            }
            continue;
        }
        if (t - t0 < spin_ns && !p->passive)
            continue;
        pthread_mutex_lock(&p->lock);
        atomic_fetch_add(&p->sleepers, 1);
        while (atomic_load(&p->posted) == seen && (atomic_load(&p->hold) <= 0 || !may_hold))
            pthread_cond_wait(&p->wake, &p->lock);
        atomic_fetch_sub(&p->sleepers, 1);
        pthread_mutex_unlock(&p->lock);
        t0 = ty = pool_now_ns();
    }
}

typedef struct {
    nnl_pool *p;
    int idx;
} pool_arg;

static void *pool_worker(void *arg)
{
    nnl_pool *p = ((pool_arg *)arg)->p;
    const int idx = ((pool_arg *)arg)->idx;
    free(arg);
#ifdef __linux__
    atomic_store(&p->tid[idx], (int)syscall(SYS_gettid));
#endif
    unsigned seen = atomic_load(&p->posted);
    for (;;) {
        pool_wait_job(p, seen, idx);
        seen = atomic_load_explicit(&p->posted, memory_order_acquire);
        atomic_fetch_add(&p->active, 1);
        const uint_fast64_t w = atomic_load(&p->claim);
        if ((uint32_t)(w >> 32) == seen && (uint32_t)w != CLAIM_CLOSED && idx < p->nt)
            pool_work(p, seen, p->fn, p->ctx, p->units, p->total, p->group, idx);
        atomic_fetch_sub_explicit(&p->active, 1, memory_order_release);
    }
    return NULL;
}

/* The CPUs this process may run on (its affinity mask: taskset, a container's cpuset), else
 * the online ones. */
static int pool_cpus(void)
{
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
#endif
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* In a child of fork() only the forking thread exists: the pool starts again empty. */
static void pool_after_fork(void)
{
    nnl_pool *p = pool_cur;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    atomic_store(&p->busy, 0);
    atomic_store(&p->active, 0);
    atomic_store(&p->sleepers, 0);
    atomic_store(&p->hold, 0);
    for (int i = 0; i <= POOL_MAX_WORKERS; i++)   /* the parent's threads, not ours */
        atomic_store(&p->tid[i], 0);
    p->nworkers = 0;
}

/* Start workers up to `want` (1 .. want); returns how many exist. */
static int pool_grow(nnl_pool *p, int want)
{
    if (want > POOL_MAX_WORKERS)
        want = POOL_MAX_WORKERS;
    if (p->nworkers >= want)
        return p->nworkers;
    pthread_mutex_lock(&p->lock);
    if (!p->fork_handler) {
        const char *policy = getenv("OMP_WAIT_POLICY");
        pthread_atfork(NULL, NULL, pool_after_fork);
        p->fork_handler = 1;
        /* the advice for a busy machine (README, thread policy) holds for the pool too */
        p->passive = policy != NULL && (policy[0] == 'p' || policy[0] == 'P');
        p->cpus = pool_cpus();
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);   /* signals stay with the Python threads */
    while (p->nworkers < want) {
        pool_arg *a = (pool_arg *)malloc(sizeof(pool_arg));
        pthread_t th;
        if (a == NULL)
            break;
        a->p = p, a->idx = p->nworkers + 1;
        if (pthread_create(&th, NULL, pool_worker, a) != 0) {
            free(a);
            break;
        }
        pthread_detach(th);
        p->nworkers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_mutex_unlock(&p->lock);
    return p->nworkers;
}

/* Where a run's sleeping workers wake (Linux). The kernel places a woken thread on the waker's
 * CPU when the thread's own CPU is a halted vCPU (it counts as preempted, not idle): the
 * worker then queues behind the caller until load balancing moves it, 1.9 ms after a 30 ms
 * idle spell (median; p90 6 ms) on the 2-vCPU Zen 4 VM, 0.08 ms when it may not run on the
 * caller's CPU. So while a run holds the pool, or while a loop that had to wake them runs,
 * the workers may run on every CPU of the caller's mask but the caller's own (steer = 1);
 * then they get the caller's mask back (steer = 0). */
static void pool_steer(nnl_pool *p, int steer)
{
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof(mask), &mask) != 0)
        return;
    if (steer) {
        const int cpu = sched_getcpu();
        if (cpu < 0 || !CPU_ISSET(cpu, &mask) || CPU_COUNT(&mask) < 2)
            return;
        CPU_CLR(cpu, &mask);
    }
    for (int i = 1; i <= p->nworkers && i <= POOL_MAX_WORKERS; i++) {
        const int tid = atomic_load(&p->tid[i]);
        if (tid > 0)
            sched_setaffinity((pid_t)tid, sizeof(mask), &mask);
    }
#else
    (void)p, (void)steer;
#endif
}

static void pool_serial(nnl_idx units, nnl_unit_fn fn, void *ctx)
{
    for (nnl_idx u = 0; u < units; u++)
        fn(ctx, u, 0, u == 0);
}

void nnl_parallel_for(int nt, nnl_idx units, nnl_unit_fn fn, void *ctx)
{
    nnl_pool *p = pool_cur;
    int expect = 0;
    if (nt > units)
        nt = (int)units;
    if (nt <= 1 || !atomic_compare_exchange_strong(&p->busy, &expect, 1)) {
        pool_serial(units, fn, ctx);   /* one thread, nested, or another caller's pool */
        return;
    }
    if (pool_grow(p, nt - 1) < 1) {
        atomic_store(&p->busy, 0);
        pool_serial(units, fn, ctx);
        return;
    }
    const uint32_t e = ++p->epoch;
    atomic_store(&p->claim, ((uint_fast64_t)e << 32) | CLAIM_CLOSED);
    while (atomic_load(&p->active) != 0)
        NNL_PAUSE();
    /* claims count in 32 bits: a huge loop is claimed in groups of consecutive units */
    const long long group = ((long long)units + 0x3fffffffLL) / 0x40000000LL;
    const long long claims = ((long long)units + group - 1) / group;
    p->fn = fn, p->ctx = ctx, p->units = claims, p->total = units, p->group = group, p->nt = nt;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store(&p->claim, (uint_fast64_t)e << 32);
    atomic_store(&p->posted, e);
    /* sleeping workers of a call outside a held run (an eager call after an idle spell): wake
     * them off this thread's CPU too, and give them their mask back when the loop is done */
    int steered = 0;
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->lock);
        if (atomic_load(&p->hold) <= 0 && !p->passive) {
            pool_steer(p, 1);
            steered = 1;
        }
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    pool_work(p, e, fn, ctx, claims, units, group, 0);
    /* the units others hold: wait for them (yielding now and then: a worker that lost its
     * core to this thread's own process gets it back) */
    long long ty = 0;
    for (int k = 0; atomic_load_explicit(&p->done, memory_order_acquire) < claims; k++) {
        NNL_PAUSE();
        if ((k & 255) == 255) {
            const long long t = pool_now_ns();
            if (ty == 0)
                ty = t;
            else if (t - ty > NNL_POOL_YIELD_NS) {
                sched_yield();
                ty = t;
            }
        }
    }
    if (steered) {
        pthread_mutex_lock(&p->lock);
        if (atomic_load(&p->hold) <= 0)
            pool_steer(p, 0);
        pthread_mutex_unlock(&p->lock);
    }
    atomic_store_explicit(&p->busy, 0, memory_order_release);
}

int nnl_pool_hold(int delta)
{
    nnl_pool *p = pool_cur;
    const int before = atomic_fetch_add(&p->hold, delta);
    const int after = before + delta;
    if (before <= 0 && after > 0 && !p->passive) {
        /* a run starts: wake the workers now, away from this thread's CPU, so they are
         * spinning by its first kernel */
        pthread_mutex_lock(&p->lock);
        pool_steer(p, 1);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    } else if (before > 0 && after <= 0 && !p->passive) {
        pthread_mutex_lock(&p->lock);
        pool_steer(p, 0);
        pthread_mutex_unlock(&p->lock);
    }
    return after;
}

int nnl_pool_workers(void)
{
    return pool_cur->nworkers;
}

int nnl_pool_worker_tid(int i)
{
    return i >= 1 && i <= POOL_MAX_WORKERS ? atomic_load(&pool_cur->tid[i]) : 0;
}

#else /* no POSIX threads: OpenMP's loop (or one thread) */

void *nnl_pool_state(void)
{
    return NULL;
}

void nnl_pool_adopt(void *state)
{
    (void)state;
}

void nnl_parallel_for(int nt, nnl_idx units, nnl_unit_fn fn, void *ctx)
{
    if (nt > units)
        nt = (int)units;
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        {
            const int tid = omp_get_thread_num();
            int first = 1;
#pragma omp for schedule(dynamic, 1)
            for (nnl_idx u = 0; u < units; u++) {
                fn(ctx, u, tid, first);
                first = 0;
            }
        }
        return;
    }
#endif
    for (nnl_idx u = 0; u < units; u++)
        fn(ctx, u, 0, u == 0);
}

int nnl_pool_hold(int delta)
{
    static int held;   /* counted all the same, for the callers that read it */
    held += delta;
    return held;
}

int nnl_pool_workers(void)
{
    return 0;
}

int nnl_pool_worker_tid(int i)
{
    (void)i;
    return 0;
}

#endif
