"""The measured constants of nnlite's Python-side kernel wrappers, in one table.

The native kernels' constants (the GEMM, implicit-conv and depthwise single-thread cut-offs,
the GEMM's shallowest K slice) are in ``csrc/core/nnl_tuning.h``, with the same wake-up figure.

Waking the OpenMP team, the reason for every single-thread cut-off: measured 2026-12 on the
2-core AMD EPYC (Zen 4) VM with ``OMP_WAIT_POLICY=PASSIVE`` (nnlite's default then; set in
``nnlite/__init__.py``), load average ~4.5, as an empty 2-thread ``omp parallel`` region after
5 ms of sleep, 400 times: median 15 us (p10 10 us, p90 24 us); after 0.2 ms of sleep: median
10 us (p90 37 us). On a loaded machine a woken thread may wait for a core for milliseconds.
"""

# im2col/col2im (nnlite.kernels.conv_cython): below this many column entries a call runs on
# one thread. Recorded when it was set (not re-measured): the copy of 2**17 float32 entries
# takes about as long as the wake-up above, so a second thread cannot pay for itself below it.
IM2COL_PARALLEL_MIN = 1 << 17

# Pooling and ROI kernels (nnlite.kernels.pool_cython, roi_cython, and the inference plan's max
# pools, nnlite._infer.kernels.PoolKernel): below this many inner-loop steps (taps x outputs) a
# call runs on one thread. Waking a second thread costs microseconds on an idle machine and
# milliseconds on a loaded one. Measured for the plan's pools (AMD EPYC Zen 4, 2 threads, the
# team spinning briefly between calls, nnlite's default): 64x112x112 3x3/2 (1.8M steps) 117 ->
# 61 us, 832x14x14 2x2/2 (0.16M) 39 -> 21 us, 32x28x28 3x3/1 (0.23M) 11 -> 9 us. The cut-off
# was 2**18 all the same, which left that 2x2/2 pool (GoogLeNet's maxpool4) on one thread: in
# the plan on Intel Emerald Rapids, 40 paired rounds, one thread 0.155 ms -> two 0.104 ms.
POOL_SERIAL_WORK = 1 << 17

