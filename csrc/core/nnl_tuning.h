/* The measured constants of nnlite's native kernels, in one table: each value with what it
 * decides and how it was measured. The Python-side cut-offs are in nnlite/_constants.py, which
 * quotes the same wake-up figure. Every value can be overridden with -D at build time.
 *
 * Cost of waking the OpenMP team (the reason for every single-thread cut-off below).
 *   Measured 2026-12 on the 2-core AMD EPYC (Zen 4) VM, OMP_WAIT_POLICY=PASSIVE (nnlite's then
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
 *   256^3 (17M) 176 vs 141-218 us, 384^3 550 vs 372 us.
 *   The 1x1 convs of MobileNetV2 / GoogLeNet / ResNet-50 at batch 1 (1.5M-13M multiply-adds,
 *   weights pre-packed, bias + ReLU, called as the inference plan calls them:
 *   benchmarks/bench_gemm_threads.py, built with this cut-off at 0), 2026-12-04, the 2-core AMD
 *   EPYC Zen 4 VM, AVX-512 family, OMP_WAIT_POLICY=PASSIVE, load average 3.2-4.1 (other jobs on
 *   both cores), 200 alternating calls each: median(2 threads) / median(1 thread) 1.07-1.52,
 *   the best 2-thread call slower than the best 1-thread one in every layer (e.g. M=64 K=384
 *   N=196: 132 vs 171 us median; M=16 K=32 N=12544: 243 vs 270 us; M=160 K=960 N=49: 208 vs
 *   237 us). ONNX Runtime 1.32 gained nothing from its second thread in the same minutes
 *   (pw 32->16 @112x112: 241 vs 242 us). On a busy machine a second thread does not pay even
 *   at 14M-100M multiply-adds (2t/1t 1.01-2.42).
 *   Re-measured on the idle VM (load 0.9-1.2) under nnlite's short spin (GOMP_SPINCOUNT=1000,
 *   nnlite/__init__.py), same script and build (cut-off 0), 150 alternating calls,
 *   2026-12-04: 2t/1t 0.61-0.86 for every layer from 2.4M to 12.8M multiply-adds (M=16 K=32
 *   N=12544 147 -> 105 us, M=64 K=192 N=196 55 -> 48 us, M=16 K=192 N=784 54 -> 44 us,
 *   M=160 K=576 N=49 107 -> 84 us). Whole plans with this cut-off and the implicit conv's at
 *   2**22, 2 threads, 30-run medians / p10 in alternating processes: GoogLeNet batch 1
 *   16.1 / 18.3 / 22.4 -> 14.8 / 16.6 / 16.2 ms (p10 15.9 / 17.5 / 16.2 -> 14.7 / 15.5 /
 *   15.3), MobileNetV2 and ResNet-50 within the noise (p10 4.86-5.14 vs 4.82-5.61 ms,
 *   40.3-40.8 vs 39.6-40.3 ms). Under OMP_WAIT_POLICY=passive on a busy machine a higher
 *   cut-off pays (figures above): build with -DNNL_MIN_PARALLEL_MACS=8388608 there. */
#ifndef NNL_MIN_PARALLEL_MACS
#define NNL_MIN_PARALLEL_MACS (1.0 * (1 << 21))
#endif

/* GEMM (gemm_driver_tmpl.h): a column-major op(A) (rows 1 apart: a pixel-major product's
 *   channel-major image, e.g. the fused block's expand) is read in place by the micro-kernel
 *   instead of packed when the register tile has at least NNL_GEMM_A_INPLACE_MIN_TILE
 *   elements (a long k step hides the line each step of an in-place panel fetches) or K <=
 *   NNL_GEMM_A_INPLACE_MAX_K (the packing is most of the work). Measured 2026-12-06, 2-core
 *   AMD EPYC Zen 4 VM, one thread, B pre-packed, 400 calls, median us packed -> in place:
 *   AVX-512 (8 x 48) M=343 K=160 N=96 105.5 -> 100.7, M=49 K=160 N=960 144.3 -> 145.6,
 *   M=784 K=32 N=192 100.9 -> 99.8, M=784 K=24 N=144 62.6 -> 60.9, M=3136 K=64 N=256
 *   993 -> 976, no shape slower beyond the noise; AVX2 (6 x 16) K <= 32 3-4% faster
 *   (M=1568 K=16 N=96 66.8 -> 64.1, M=784 K=24 N=144 64.7 -> 62.1), deeper slower
 *   (M=343 K=160 N=96 109 -> 113, M=49 K=160 N=960 150 -> 168, M=3136 K=64 N=256
 *   1041 -> 1121). */
#ifndef NNL_GEMM_A_INPLACE_MIN_TILE
#define NNL_GEMM_A_INPLACE_MIN_TILE 256
#endif
#ifndef NNL_GEMM_A_INPLACE_MAX_K
#define NNL_GEMM_A_INPLACE_MAX_K 32
#endif

/* GEMM (gemm_driver_tmpl.h): the full MR-row panels of a row-major op(A) are read in place
 *   by the micro-kernel (rows lda apart) instead of packed when op(B) has at most
 *   NNL_GEMM_A_ROWS_MAX_PANELS NR-column panels (each sweeps the A block once: with few the
 *   packing is not paid back). Measured 2026-12-06, 2-core AMD EPYC Zen 4 VM, one thread, B
 *   pre-packed, A rows 16 elements longer than K, 400 calls, median us packed -> in place
 *   (two runs agree): AVX-512 392x144x24 44.2 -> 38.9, 392x192x32 56.9 -> 49.2, 196x384x64
 *   102 -> 94, 98x576x96 109.5 -> 104.4, 49x960x320 291 -> 287, 256^3 305 -> 299, 512^3 and
 *   1024^3 the same; AVX2 392x144x24 42.0 -> 35.0, 196x384x64 104.5 -> 96.0, 256^3
 *   313 -> 306, 512^3 2450 -> 2505 and 1024^3 19.9 -> 20.9 ms (32 and 64 panels: slower). */
#ifndef NNL_GEMM_A_ROWS_MAX_PANELS
#define NNL_GEMM_A_ROWS_MAX_PANELS 24
#endif

/* GEMM (gemm_driver_tmpl.h): a row-major B that a call would pack is read in place by the
 *   micro-kernels instead (only a ragged last NR panel is packed; the same bits either way)
 *   when K <= NNL_GEMM_INPLACE_MAX_K, M <= NNL_GEMM_INPLACE_MAX_M (or M <=
 *   NNL_GEMM_INPLACE_MAX_M_DEEP and K >= NNL_GEMM_INPLACE_DEEP_K) and a panel row is at least
 *   128 bytes (NR * element size: AVX-512's 48 floats, not AVX2's 16). Measured 2026-12-04,
 *   2-core AMD EPYC Zen 4 VM, load ~3.5, one thread, A pre-packed, bias + ReLU, 200
 *   alternating calls, median us packed -> in place (two runs): AVX-512 M=16 K=32 N=12544
 *   258 -> 201, 212 -> 162; M=24 K=16 N=12544 153 -> 142, 146 -> 136; M=64 K=64 N=3136
 *   307 -> 282, 317 -> 290; M=24 K=96 N=3136 194 -> 165, 189 -> 166. More rows: M=96 K=16
 *   N=12544 825 -> 931, 756 -> 770 (slower); M=256 K=64 N=3136 1238 -> 1247, 1397 -> 1381;
 *   M=128 K=128 N=3136 1232 -> 1202, 1330 -> 1271 (within the noise). AVX2 (64-byte panel
 *   rows): M=16 K=32 239 -> 249, M=256 K=64 1235 -> 1484 (slower). float64, AVX-512 (24-double
 *   rows), the shapes the limits admit: M=16 K=32 N=12544 472 -> 406, 453 -> 383; M=24 K=16
 *   410 -> 413, 397 -> 406; M=64 K=64 619 -> 574, 639 -> 608; M=24 K=96 448 -> 353,
 *   412 -> 330. The spread between runs of the same code is 5-10% on this shared machine. */
/* Raised 2026-12-04 (K 128 -> 1024; M up to NNL_GEMM_INPLACE_MAX_M_DEEP when K >=
 *   NNL_GEMM_INPLACE_DEEP_K): one thread, CPU time, load 2-2.5 (other jobs), A pre-packed, the
 *   same process timing the call with B pre-packed (no packing at all) as the ceiling, 9
 *   interleaved rounds, two runs of each build, GFLOP/s per call (B packed per call -> read in
 *   place; B pre-packed in brackets): float32 M=24 K=144 N=3136 79, 65 -> 92, 97 (101);
 *   M=32 K=192 N=784 74, 86 -> 98, 96 (97); M=64 K=256 N=3136 83, 96 -> 93, 101 (108);
 *   M=64 K=192 N=784 92, 95 -> 102, 101 (103); M=48 K=512 N=784 94, 94 -> 102, 101 (105);
 *   M=64 K=384 N=196 84, 88 -> 91, 92 (93); M=64 K=1024 N=196 90, 89 -> 87, 92 (96);
 *   float64 M=24 K=144 N=3136 35, 33 -> 48, 40 (50); M=32 K=192 N=784 40, 41 -> 49, 44 (49).
 *   M in 65..128, as the ratio (B packed per call or read in place) / (B pre-packed) of the same
 *   process: M=128 K=512 N=784 0.91, 0.86 -> 1.02, 1.00; M=80 K=320 N=784 0.90, 0.89 ->
 *   1.01, 0.99; M=96 K=576 N=196 0.96, 0.94 -> 0.99, 1.00; M=128 K=128 N=3136 0.94, 0.83 ->
 *   0.98, 0.94; M=128 K=64 N=3136 0.94, 0.91 -> 0.96, 0.99; M=128 K=256 N=3136 0.82, 0.85 ->
 *   0.84, 0.88; but M=96 K=16 N=12544 0.93, 1.10 -> 0.91, 0.95 (hence the K floor). */
#ifndef NNL_GEMM_INPLACE_MAX_K
#define NNL_GEMM_INPLACE_MAX_K 1024
#endif
#ifndef NNL_GEMM_INPLACE_MAX_M
#define NNL_GEMM_INPLACE_MAX_M 64
#endif
#ifndef NNL_GEMM_INPLACE_MAX_M_DEEP
#define NNL_GEMM_INPLACE_MAX_M_DEEP 128
#endif
#ifndef NNL_GEMM_INPLACE_DEEP_K
#define NNL_GEMM_INPLACE_DEEP_K 64
#endif

/* GEMM (gemm_nest_tmpl.h): while the row panels sweep a B panel read in place, the
 *   micro-kernel prefetches the next panel's rows (a share per row panel, one row per k step)
 *   when B's rows are at least NNL_PAGE_BYTES apart (each row in another page: the hardware
 *   prefetchers work within a page, so each row of the next panel was a miss) and a sweep
 *   has at least NNL_GEMM_PF_B_MIN_STEPS k steps (row panels x K slice: a shorter one does
 *   not hide the misses). Measured 2026-12-06, 2-core Intel Xeon (family 6 model 207, 2 MB L2),
 *   A pre-packed, bias + ReLU, 4 operand sets in rotation, 30 rounds, in-process A/B against
 *   the build without it, time new/old: one thread M=64 K=64 N=3136 0.87-0.93, M=64 K=256
 *   N=3136 0.71-0.89, M=128 K=256 N=3136 0.87-0.97, M=128 K=128 N=3136 0.92, M=24 K=144
 *   N=3136 0.81-0.88; two threads 0.92-0.99; rows 784 or 3136 bytes apart (N=196, 784)
 *   0.95-1.07 with it (M=128 K=512 N=784 1.07, M=64 K=1024 N=196 1.05: hence the page rule);
 *   M=16 K=32 N=12544 (64-step sweeps) 1.01-1.06 with it (hence the floor). ResNet-50 batch
 *   1, 2 threads: 0.98 of the build without it (two runs). */
#ifndef NNL_PAGE_BYTES
#define NNL_PAGE_BYTES 4096
#endif
#ifndef NNL_GEMM_PF_B_MIN_STEPS
#define NNL_GEMM_PF_B_MIN_STEPS 256
#endif

/* GEMM (gemm_nest_tmpl.h): a call whose C (the part it writes) has at least this many bytes
 *   writes lines that are in no cache (a batch's 1x1 conv at 56x56: 8 images x 256 channels x
 *   3136 pixels = 25.7 MB), its rows NR elements long in pages far apart, so each tile's
 *   write-out waited on its lines (perf: the tile stores were the micro-kernel's hottest
 *   instructions); each tile's K loop now prefetches the next tile's rows. Measured
 *   2026-12-06, Intel Emerald Rapids, 2 threads, alternating processes against the build
 *   without it: ResNet-50 at batch 8, its first 64->256 1x1 conv at 56x56 repeated 3.2-4.9
 *   against 4.8-5.2 ms; the whole plan against ONNX Runtime 0.99 / 1.02 / 1.04 against
 *   1.01 / 1.06 / 1.04; square GEMMs 1024-2048 against OpenBLAS 1.00-1.10 in two runs paired
 *   with the build without it (0.90-1.03), 0.86-1.08 in a run before them (1536^3 0.86, best
 *   of its rounds 0.91). */
#ifndef NNL_GEMM_PF_C_MIN_BYTES
#define NNL_GEMM_PF_C_MIN_BYTES (8 << 20)
#endif

/* Implicit-GEMM conv (convfast_implicit.c): same, higher because every extra work unit
 *   re-packs its share of the image. 3x3/5x5 convs at 28x28, idle 2-core VM, workers sleeping
 *   between regions (then the default), speed-up of 2 threads: 0.75x at 7M, 1.09x at 10M,
 *   1.24x at 29M, 1.64x at 87M multiply-adds. Under the short spin the team is awake: 2**22,
 *   measured with the GEMM's cut-off above (whole plans). */
#ifndef NNL_CF_MIN_PARALLEL_MACS
#define NNL_CF_MIN_PARALLEL_MACS (1.0 * (1 << 22))
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

/* Small-map direct conv (convfast_small.c): a second thread needs this many multiply-adds
 *   per thread. One image splits its filters over the team, so the team stays awake through
 *   the plan's small 3x3 convs (GoogLeNet's 16-48-channel branches at 7x7 to 28x28) instead of
 *   one thread working 40-190 us while the other's spin (GOMP_SPINCOUNT=1000, about 18 us on
 *   Zen 4) runs out and the next step pays its wake-up (30-40 us; a 2-thread GEMM of 88 us
 *   after a 27 us one-thread region: 129 us). 2 threads, AMD EPYC Zen 4, plan kernels, one
 *   thread -> two: 32->128 3x3 @14x14 171 -> 91 us, 32->64 @14 89 -> 50, 16->48 @14 40 -> 24,
 *   24->64 @14 70 -> 39, 32->128 @7 55 -> 31; the whole GoogLeNet at batch 1, in-process
 *   interleaved medians of 61, cut-off 1.5 * 2**20 (the depthwise one) -> 2**18: 13.33 ->
 *   13.18 and 12.77 -> 12.63 ms. */
#ifndef NNL_SMALL_MIN_MACS_PER_THREAD
#define NNL_SMALL_MIN_MACS_PER_THREAD (1.0 * (1 << 18))
#endif

/* GEMM cache blocking (nnl_cache.c): shallowest K slice. One thread, CPU time, float32
 *   AVX-512 8 x 48 vs OpenBLAS, 256^3..2048^3, AMD EPYC Zen 4 (32 KB L1d, 1 MB L2): KC 72
 *   (BLIS's L1 rule alone) 0.79-0.92x of OpenBLAS; KC 216, 256, 360, 384 0.93-1.05x, within
 *   the noise of each other. KC 384 measured again 2026-12-06 and left at 256: Intel
 *   Emerald Rapids (48 KB L1d, 2 MB L2), 2 threads, the blocking switched in one process
 *   between interleaved calls (15 rounds), time at KC 384 (MC from the L2 rule) over KC 256:
 *   AVX-512 2048^3 0.980, 1024^3 0.969, 512^3 0.995 (KC 512: 0.983, 0.938, 0.989); AVX2 (6 x
 *   16, KC 272) 0.980, 0.996, 0.995; but whole plans, two built under either blocking (set in
 *   every extension) and alternated, level: ResNet-50 at batch 1 0.994 / 1.006, GoogLeNet
 *   1.014 / 1.000, MobileNetV2 0.986, ResNet-50 at batch 8 1.004; and the implicit conv's
 *   packing buffers grow with the slices (96->128 3x3 at 28x28, one image: 0.73 MB against
 *   0.51). */
#ifndef NNL_KC_MIN
#define NNL_KC_MIN 256
#endif

/* Share of the L1d that the KC x NR B micro-panel plus the MR x KC A micro-panel take
 * (BLIS's rule; binding only where it gives more than NNL_KC_MIN). */
#ifndef NNL_KC_L1_SHARE
#define NNL_KC_L1_SHARE 0.5
#endif

/* Thread pool (nnl_pool.c). A worker with no job spins this long, then sleeps: the length of
 *   OpenMP's GOMP_SPINCOUNT=1000 on the Zen 4 VM (15-20 us), so a pool not held by a plan run
 *   (eager calls) keeps the idle behaviour measured there. While a plan run holds the pool,
 *   and while a caller waits for units, a spinning thread yields its core every
 *   NNL_POOL_YIELD_NS to any other runnable thread. */
#ifndef NNL_POOL_SPIN_NS
#define NNL_POOL_SPIN_NS 20000
#endif
#ifndef NNL_POOL_YIELD_NS
#define NNL_POOL_YIELD_NS 50000
#endif

#endif
