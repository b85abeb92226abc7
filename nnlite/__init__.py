"""nnlite: a from-scratch CPU convolution engine on NumPy with Cython/C kernels.

>>> import nnlite, nnlite.nn as nn, nnlite.nn.functional as F
>>> x = nnlite.tensor(np.random.rand(1, 3, 32, 32).astype("float32"), requires_grad=True)
>>> y = nn.Conv2d(3, 8, 3, padding=1)(x).relu().sum(); y.backward()
"""
__version__ = "0.1.0"


def _thread_policy():
    # No two thread pools spinning on the same cores (README, "Thread policy"). The kernels an
    # inference plan runs use nnlite's own pool (csrc/core/nnl_pool.c, which sets its own spin
    # and reads OMP_WAIT_POLICY); the settings below are for the OpenMP regions of the others
    # (training kernels, ROI ops, pool backward) and for OpenBLAS.
    # - OpenMP workers spin only briefly between parallel regions, then sleep (futex):
    #   GOMP_SPINCOUNT=1000 is 15-20 us of spinning on the 2-core AMD EPYC Zen 4 VM (a 2-thread
    #   GEMM after a serial gap of 15 us ran as fast as back to back, after 20 us 18 us slower,
    #   the worker's wake-up; 2026-12-05; an earlier VM measured about 45 us). An
    #   inference plan's steps follow each other within microseconds, so the team stays awake
    #   through a run: MobileNetV2 at batch 1, 2 threads, idle VM, medians of 30 runs in
    #   alternating processes, 7.0 / 7.2 ms with OMP_WAIT_POLICY=PASSIVE (no spin) -> 5.1 /
    #   6.3 ms; ResNet-50 44.3 / 46.0 -> 42.0 / 45.9 ms. libgomp's default (300000 spins, a few
    #   ms) turned a 1 ms 2-thread conv into 10-40 ms with another job on the second core; a
    #   short spin costs at most tens of us per region there (one busy process beside, same
    #   method: MobileNetV2 passive 11.4 / 10.8 ms, 500 spins 11.0 / 9.5, 2000 spins 11.2 /
    #   11.1; ResNet-50 81 / 85, 85 / 92, 91 / 89 ms). LLVM's libomp spins 200 ms by default:
    #   KMP_BLOCKTIME=0 makes it sleep at once.
    #   libgomp reads this once, when the first extension loads it, so it is set before any
    #   extension import.
    # - OpenBLAS workers spin ~0.1 s after every BLAS call (2**28 cycles) and halve the speed of
    #   the OpenMP conv that follows; 4 makes them sleep at once. OpenBLAS reads it when NumPy
    #   loads it: effective when nnlite is imported before NumPy (else export it).
    # Values already in the environment are left alone. Returns the OpenBLAS idle policy in
    # effect, for ``nnlite info``.
    import os
    import sys

    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = "1000"
        os.environ.setdefault("KMP_BLOCKTIME", "0")
    preset = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    if preset is not None:
        return f"OPENBLAS_THREAD_TIMEOUT={preset} (from the environment)"
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"
    if "numpy" in sys.modules:
        return ("OpenBLAS default (workers spin ~0.1 s after each threaded call): NumPy was "
                "imported before nnlite; import nnlite first or export OPENBLAS_THREAD_TIMEOUT=4")
    return "OPENBLAS_THREAD_TIMEOUT=4 (set by nnlite: idle workers sleep at once)"


_BLAS_IDLE = _thread_policy()

from ._config import (  # noqa: F401
    available_backends,
    backend,
    get_num_threads,
    set_num_threads,
    using_backend,
)
from ._random import manual_seed  # noqa: F401
from ._algorithms import available_conv_algorithms, conv_algorithm, get_conv_algorithm  # noqa
from .autograd import Function, enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401
from .tensor import Tensor, cat, stack, tensor  # noqa: F401
from . import kernels  # noqa: F401,E402
from . import functional  # noqa: F401,E402
from . import nn  # noqa: F401,E402
from . import ops  # noqa: F401,E402
from . import optim  # noqa: F401,E402


def _apply_env_threads():
    # NNLITE_NUM_THREADS applies to the BLAS too; otherwise the BLAS keeps its own default
    import os

    if os.environ.get("NNLITE_NUM_THREADS"):
        set_num_threads(get_num_threads())


_apply_env_threads()
from .io import load, save  # noqa: E402
from .summary import summary  # noqa: E402
from . import models  # noqa: E402
from .inference import optimize_for_inference  # noqa: E402
