/* The measured constants of nnlite's native kernels, in one table: each value with what it
 * decides and how it was measured. The Python-side cut-offs are in nnlite/_constants.py, which
 * quotes the same wake-up figure. Every value can be overridden with -D at build time.
 *
 * Cost of waking the OpenMP team (the reason for every single-thread cut-off below).
 *   Measured 2026-12 on the 2-core AMD EPYC (Zen 4) VM, OMP_WAIT_POLICY=PASSIVE (nnlite's
 *   default, nnlite/__init__.py), load average ~4.5: an empty `#pragma omp parallel
 *   num_threads(2)` after 5 ms of sleep, 400 times: median 15 us (p10 10 us, p90 24 us);
 *   after 0.2 ms of sleep: median 10 us, p90 37 us. Earlier comments quoted 8 us to 0.1 ms
 *   for the same thing; those were end-to-end kernel timings that include re-packing and
 *   load imbalance, which the cut-offs below measure directly.
 */
#ifndef NNLITE_TUNING_H
#define NNLITE_TUNING_H

/* GEMM (gemm_driver.c): below this many multiply-adds a call runs on one thread.
 *   1 vs 2 threads, idle 2-core VM (recorded with the driver): 192^3 (7M) 80 vs 115 us,
 *   256^3 (17M) 176 vs 141-218 us, 384^3 550 vs 372 us. */
#ifndef NNL_MIN_PARALLEL_MACS
#define NNL_MIN_PARALLEL_MACS (1.0 * (1 << 23))
#endif

/* Implicit-GEMM conv (convfast_implicit.c): same, higher because every extra work unit
 *   re-packs its share of the image. 3x3/5x5 convs at 28x28, idle 2-core VM, speed-up of 2
 *   threads: 0.75x at 7M, 1.09x at 10M, 1.24x at 29M, 1.64x at 87M multiply-adds. */
#ifndef NNL_CF_MIN_PARALLEL_MACS
#define NNL_CF_MIN_PARALLEL_MACS (1.0 * (1 << 24))
#endif

/* Direct depthwise conv (convfast_direct.c): a call takes as many threads as get at least this
 *   many multiply-adds each (whole channel planes per thread): 2 threads from 3 * 2**20, the
 *   same 2-thread decisions as the older total cut-off. Measured 2026-12 on the 2-core VM,
 *   idle before and after each run: MobileNetV2's 3x3 layers, batch 1, bias + ReLU6, float32,
 *   300 alternating calls each of 1 and 2 threads, 8 rounds (benchmarks/
 *   bench_depthwise_threads.py [--sweep]); median(2 threads) / median(1 thread) by
 *   multiply-adds per thread: 1.35M-2.0M (112x112 s2, 56x56) 0.68-1.00, mostly 0.8-0.9;
 *   0.5M-0.7M (56x56 s2, 28x28) 0.75-1.22; 0.13M-0.34M (14x14, 14x14 s2, 7x7) 0.68-1.5,
 *   mostly 1.0-1.2; below 0.1M 1.1-5x. The 2-thread medians carry the passive team's wake-up
 *   (a 48-channel 7x7 layer: 9 us on 1 thread, 45-60 us median on 2, best 9 us). A cut-off of
 *   2**20 per thread (MobileNetV2's 96-channel 112x112 stride-2 layer on 2 threads) made the
 *   whole batch-1 plan slower, not faster: medians 13.7-17.5 vs 11.8-15.6 ms, 4 interleaved
 *   pairs of benchmarks/bench_inference.py runs. */
#ifndef NNL_DW_MIN_MACS_PER_THREAD
#define NNL_DW_MIN_MACS_PER_THREAD (1.5 * (1 << 20))
#endif

/* GEMM cache blocking (nnl_cache.c): shallowest K slice. One thread, CPU time, float32
 *   AVX-512 8 x 48 vs OpenBLAS, 256^3..2048^3, AMD EPYC Zen 4 (32 KB L1d, 1 MB L2): KC 72
 *   (BLIS's L1 rule alone) 0.79-0.92x of OpenBLAS; KC 216, 256, 360, 384 0.93-1.05x, within
 *   the noise of each other. */
#ifndef NNL_KC_MIN
#define NNL_KC_MIN 256
#endif

/* Share of the L1d that the KC x NR B micro-panel plus the MR x KC A micro-panel take
 * (BLIS's rule; binding only where it gives more than NNL_KC_MIN). */
#ifndef NNL_KC_L1_SHARE
#define NNL_KC_L1_SHARE 0.5
#endif

#endif
